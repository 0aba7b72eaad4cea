"""Checkpoints: a ledger head kept outside the ledger, optionally signed, to prove it was not cut back.

A hash chain shows that no entry was changed, but a journal with its last entries deleted (or its tail
rewritten and re-hashed) is still a valid chain. A checkpoint is the head (seq, hash) written down at
some moment and kept elsewhere (a report, a mail, another machine); `verify` with it proves the journal
still holds entry `seq` with exactly that hash. Signed with an Ed25519 key, it also proves who took it:

    {"ledger": "/srv/pooler.db", "seq": 42, "hash": "9f...", "time": "2026-11-30T23:59:00.000000Z",
     "signature": {"algorithm": "ed25519", "public_key": "<base64>", "value": "<base64>",
                   "signer": "ana@pcl"}}

The signature is over the canonical JSON of {"hash": ..., "seq": ...} (sorted keys, no spaces), so
anyone can check it with any Ed25519 library. It binds the position, not the file name or time.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pooler.errors import PoolerError, UsageError
from pooler.services.context import Context
from pooler.services.registry import open_ledger
from pooler.store.journal import canonical_json, format_time
from pooler.store.ledger import VerifyProblem, VerifyReport

ALGORITHM = "ed25519"
_HASH = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(PoolerError):
    """A checkpoint or key file that cannot be used as asked."""


def signed_bytes(seq: int, hash_: str) -> bytes:
    """What a checkpoint's signature covers: canonical JSON of {seq, hash}."""
    return canonical_json({"seq": seq, "hash": hash_}).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64(raw)


# --- keys -------------------------------------------------------------------------------------------


def keygen(path: Path) -> str:
    """Write a new Ed25519 private key (PEM, PKCS#8, readable by the owner only) to `path`, which must
    not exist yet; return the public key in base64."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        # O_EXCL: a key is never overwritten, since what it signed could no longer be re-signed.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; choose another file (keys are never overwritten)") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return public_key_b64(key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (unencrypted)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CheckpointError(f"{path} is an encrypted key; give an unencrypted Ed25519 PEM key "
                              "(pooler ledger keygen -o KEYFILE makes one)") from None
    except (ValueError, TypeError, binascii.Error) as exc:
        raise CheckpointError(f"{path} is not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} holds a {type(key).__name__.removeprefix('_')}, not an Ed25519 key "
                              "(pooler ledger keygen -o KEYFILE makes one)")
    return key


# --- taking a checkpoint ----------------------------------------------------------------------------


def make(ctx: Context, key_path: Path | None = None, signer: str | None = None) -> dict[str, Any]:
    """The ledger's current head as a checkpoint, signed with the key at `key_path` when given."""
    key = load_private_key(key_path) if key_path is not None else None  # before the ledger: fail early
    with open_ledger(ctx, read_only=True) as ledger:
        seq, hash_ = ledger.head()
        name = ledger.name
    checkpoint: dict[str, Any] = {"ledger": name, "seq": seq, "hash": hash_, "time": format_time(ctx.clock())}
    if key is not None:
        signature = {"algorithm": ALGORITHM, "public_key": public_key_b64(key),
                     "value": _b64(key.sign(signed_bytes(seq, hash_)))}
        if signer is not None:
            signature["signer"] = signer
        checkpoint["signature"] = signature
    return checkpoint


def dumps(checkpoint: dict[str, Any]) -> str:
    return json.dumps(checkpoint, indent=2, ensure_ascii=False) + "\n"


# --- reading and checking one -----------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    """A checkpoint file, checked for shape (not yet against any ledger)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"cannot read the checkpoint {path}: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"the checkpoint {path} is not JSON ({exc})") from None
    problems = []
    if not isinstance(data, dict):
        raise CheckpointError(f"the checkpoint {path} is not a JSON object")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        problems.append("seq must be a positive whole number")
    if not isinstance(data.get("hash"), str) or not _HASH.match(data["hash"]):
        problems.append("hash must be 64 lower-case hex digits")
    signature = data.get("signature")
    if signature is not None:
        if not isinstance(signature, dict):
            problems.append("signature must be an object")
        else:
            if signature.get("algorithm") != ALGORITHM:
                problems.append(f"signature.algorithm must be {ALGORITHM!r}, got {signature.get('algorithm')!r}")
            for field in ("public_key", "value"):
                if not isinstance(signature.get(field), str):
                    problems.append(f"signature.{field} must be base64 text")
    if problems:
        raise CheckpointError(f"the checkpoint {path} is malformed: " + "; ".join(problems))
    return data


def signature_problem(checkpoint: dict[str, Any]) -> str | None:
    """Why the checkpoint's signature does not hold, or None (also None when it is unsigned)."""
    signature = checkpoint.get("signature")
    if signature is None:
        return None
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(signature["public_key"], validate=True))
        value = base64.b64decode(signature["value"], validate=True)
    except (binascii.Error, ValueError):
        return "the checkpoint's signature or public key is not a valid Ed25519 value in base64"
    try:
        public.verify(value, signed_bytes(checkpoint["seq"], checkpoint["hash"]))
    except InvalidSignature:
        return ("the checkpoint's signature does not match its seq and hash: it was altered or forged "
                "after signing")
    return None


@dataclass(frozen=True)
class CheckpointVerification:
    """`verify --checkpoint`: the ledger's report with the checkpoint's own problems added."""

    report: VerifyReport
    checkpoint: dict[str, Any]

    @property
    def signed(self) -> bool:
        # (review: a file with "signature": null was reported as signed, by "an unnamed signer")
        return self.checkpoint.get("signature") is not None

    def to_dict(self) -> dict[str, Any]:
        signature = self.checkpoint.get("signature") or {}
        return {**self.report.to_dict(), "checkpoint": {
            "seq": self.checkpoint["seq"], "hash": self.checkpoint["hash"],
            "time": self.checkpoint.get("time"), "signed": self.signed,
            "public_key": signature.get("public_key"), "signer": signature.get("signer"),
        }}


def verify(ctx: Context, path: Path) -> CheckpointVerification:
    """Verify the whole ledger and that it still extends the checkpoint at `path` (and its signature)."""
    checkpoint = load(path)
    with open_ledger(ctx, read_only=True) as ledger:
        report = ledger.verify(checkpoint=(checkpoint["seq"], checkpoint["hash"]))
    problem = signature_problem(checkpoint)
    if problem is not None:
        # First: with a forged signature nothing else the checkpoint says can be trusted.
        report = replace(report, problems=(VerifyProblem(None, problem), *report.problems))
    return CheckpointVerification(report, checkpoint)
