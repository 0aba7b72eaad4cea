"""Checkpoints: keygen, sign and verify round trip; a truncated or re-hashed journal and forged
signatures are caught by `ledger verify --checkpoint` while a plain verify passes."""

from __future__ import annotations

import base64
import json

import pytest

from pooler.store.journal import entry_hash
from tests.backends import query, table_names, tamper
from tests.conftest import EXAMPLES


@pytest.fixture
def ledger(cli):
    assert cli("init").exit_code == 0
    assert cli("apply", EXAMPLES / "small.toml").exit_code == 0
    return cli


@pytest.fixture
def key(cli, tmp_path):
    path = tmp_path / "admin.pem"
    result = cli("ledger", "keygen", "-o", path, db_path=None)
    assert result.exit_code == 0, result.stderr
    public = result.stdout.strip()
    assert len(base64.b64decode(public)) == 32
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert path.stat().st_mode & 0o077 == 0
    return path, public


def _checkpoint(cli, tmp_path, *args, name="head.json"):
    path = tmp_path / name
    result = cli("ledger", "checkpoint", *args, "-o", path)
    assert result.exit_code == 0, result.stderr
    return path, json.loads(path.read_text())


def test_checkpoint_prints_the_head(ledger):
    result = ledger("ledger", "checkpoint")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    head = ledger("ledger", "log", "--limit", "1", "--json").json()[0]
    assert (data["seq"], data["hash"]) == (head["seq"], head["hash"])
    assert set(data) == {"ledger", "seq", "hash", "time"}
    assert data["ledger"] == str(ledger.db)


def test_keygen_sign_verify_round_trip(ledger, tmp_path, key):
    key_path, public = key
    path, data = _checkpoint(ledger, tmp_path, "--sign", key_path, "--signer", "ana@pcl")
    assert data["signature"]["algorithm"] == "ed25519"
    assert data["signature"]["public_key"] == public and data["signature"]["signer"] == "ana@pcl"
    # Anyone can check it with the documented message: canonical JSON of {hash, seq}.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    message = json.dumps({"seq": data["seq"], "hash": data["hash"]}, sort_keys=True, separators=(",", ":"))
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(
        base64.b64decode(data["signature"]["value"]), message.encode())
    # The journal may grow after the checkpoint: it still extends it.
    assert ledger("alloc", "run", "--period", "2026-11").exit_code == 0
    result = ledger("ledger", "verify", "--checkpoint", path)
    assert result.exit_code == 0, result.stderr
    assert f"extends the checkpoint at entry #{data['seq']}" in result.stdout and public in result.stdout
    assert "the file names the signer 'ana@pcl'" in result.stdout and "signed by" not in result.stdout
    as_json = ledger("ledger", "verify", "--checkpoint", path, "--json").json()
    assert as_json["ok"] and as_json["checkpoint"]["signed"] and as_json["checkpoint"]["signer"] == "ana@pcl"


def test_a_null_signature_is_unsigned(ledger, tmp_path):
    """Review: a checkpoint whose "signature" is null was reported as signed (`"signed": true`, "signed
    by an unnamed signer with key None"), which fooled a script checking `checkpoint.signed`."""
    path, data = _checkpoint(ledger, tmp_path)
    path.write_text(json.dumps({**data, "signature": None}), encoding="utf-8")
    result = ledger("ledger", "verify", "--checkpoint", path)
    assert result.exit_code == 0 and "; unsigned." in result.stdout and "key None" not in result.stdout
    as_json = ledger("ledger", "verify", "--checkpoint", path, "--json").json()
    assert as_json["checkpoint"]["signed"] is False and as_json["checkpoint"]["public_key"] is None


def test_keygen_never_overwrites(cli, key):
    path, _ = key
    before = path.read_bytes()
    again = cli("ledger", "keygen", "-o", path, db_path=None)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert path.read_bytes() == before


def test_checkpoint_catches_a_truncated_journal(ledger, tmp_path, key):
    assert ledger("alloc", "run", "--period", "2026-11").exit_code == 0
    path, data = _checkpoint(ledger, tmp_path, "--sign", key[0])
    # The last entry is the run: remove it with its rows, as someone hiding it would.
    seq = data["seq"]
    rows = [f'delete from "{t}" where seq = {int(seq)}' for t in table_names(ledger.db) if t.startswith("alloc_")]
    tamper(ledger.db, *rows, f"delete from journal where seq = {int(seq)}")
    plain = ledger("ledger", "verify")
    assert plain.exit_code == 0, plain.stderr  # a shorter chain is still a valid chain
    checked = ledger("ledger", "verify", "--checkpoint", path)
    assert checked.exit_code == 1
    assert checked.stderr.startswith("Error: verification failed")
    assert f"entry {seq}" in checked.stderr and "removed" in checked.stderr


def test_checkpoint_catches_a_rewritten_and_rehashed_entry(ledger, tmp_path):
    path, data = _checkpoint(ledger, tmp_path)
    [(seq, time, kind, payload, prev)] = query(
        ledger.db, f"select seq, time, kind, payload, prev_hash from journal where seq = {int(data['seq'])}")
    forged = entry_hash(prev, seq, time, "mallory@evil", kind, json.loads(payload))
    tamper(ledger.db, f"update journal set actor = 'mallory@evil', hash = '{forged}' where seq = {int(seq)}")
    assert ledger("ledger", "verify").exit_code == 0  # the chain was re-hashed consistently
    checked = ledger("ledger", "verify", "--checkpoint", path)
    assert checked.exit_code == 1 and "differs from the checkpoint" in checked.stderr


def test_forged_signatures_are_refused(ledger, tmp_path, key):
    path, data = _checkpoint(ledger, tmp_path, "--sign", key[0])
    value = bytearray(base64.b64decode(data["signature"]["value"]))
    value[0] ^= 1
    forged = {**data, "signature": {**data["signature"], "value": base64.b64encode(bytes(value)).decode()}}
    path.write_text(json.dumps(forged))
    result = ledger("ledger", "verify", "--checkpoint", path)
    assert result.exit_code == 1 and "signature does not match" in result.stderr
    # A signed checkpoint moved to another entry keeps a signature that no longer fits it.
    earlier = ledger("ledger", "log", "--all", "--json").json()[-2]
    moved = {**data, "seq": earlier["seq"], "hash": earlier["hash"]}
    path.write_text(json.dumps(moved))
    result = ledger("ledger", "verify", "--checkpoint", path)
    assert result.exit_code == 1 and "signature does not match" in result.stderr
    garbage = {**data, "signature": {**data["signature"], "public_key": "not base64!"}}
    path.write_text(json.dumps(garbage))
    result = ledger("ledger", "verify", "--checkpoint", path)
    assert result.exit_code == 1 and "not a valid Ed25519" in result.stderr


def test_bad_files_are_clear_errors(ledger, tmp_path):
    missing = ledger("ledger", "verify", "--checkpoint", tmp_path / "none.json")
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: cannot read the checkpoint")
    bad = tmp_path / "bad.json"
    bad.write_text('{"seq": "x", "hash": "abc"}')
    result = ledger("ledger", "verify", "--checkpoint", bad)
    assert result.exit_code == 1 and "malformed" in result.stderr
    bad.write_text("not json")
    assert ledger("ledger", "verify", "--checkpoint", bad).exit_code == 1
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    result = ledger("ledger", "checkpoint", "--sign", not_a_key)
    assert result.exit_code == 1 and "not a PEM private key" in result.stderr
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    not_a_key.write_bytes(other)
    result = ledger("ledger", "checkpoint", "--sign", not_a_key)
    assert result.exit_code == 1 and "not an Ed25519 key" in result.stderr
    unwritable = ledger("ledger", "checkpoint", "-o", tmp_path / "no" / "dir" / "c.json")
    assert unwritable.exit_code == 2 and "cannot write" in unwritable.stderr


@pytest.mark.parametrize("args", [["ledger", "checkpoint"], ["ledger", "keygen"], ["ledger", "verify"]])
def test_help_has_an_example(cli, args):
    result = cli(*args, "--help", db_path=None)
    assert result.exit_code == 0 and "Example" in result.stdout
