"""The ledger store on real SQLite files: the hash chain, tamper detection, projections, versioned
rates, attachments, schema versions and migrations. Tampering is done with the raw sqlite3 module,
behind pooler's back, the way an admin with file access could."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from pooler.core.model import Accelerator, Consortium, Dataset, Member, Model, Policy, Pool, Project
from pooler.store import (
    GENESIS_HASH, MIGRATIONS, SCHEMA_VERSION, EntryRejected, Ledger, LedgerExists, LedgerNotFound,
    LedgerState, Migration, SchemaTooNew, StoreError, apply_entry, canonical_json,
)
from pooler.store.journal import Entry
from pooler.store.projection import read_rows, state_rows
from pooler.store.tables import metadata
from tests.backends import postgres_database

D = Decimal


class Clock:
    """A deterministic clock: one second per call from 2026-11-01T00:00:00Z."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(path):
    with Ledger.init(path, actor="tester", clock=Clock()) as ledger:
        yield ledger


def raw(path) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode: pooler's hooks, triggers aside, are not involved."""
    return sqlite3.connect(path, isolation_level=None)


def populate(ledger: Ledger) -> None:
    """A small registry touching every record kind, a versioned rate, a retirement and an attachment."""
    with ledger.writer("ana@pcl") as w:
        w.append("consortium.set", {"record": Consortium(name="Pearl River 算力联盟", period="month")})
        w.append("policy.set", {"record": Policy(contribution_weight=D("0.8"))})
        w.append("accelerator.add", {"record": Accelerator("ascend-910b", rate=D("1.0"))})
        w.append("accelerator.add", {"record": Accelerator("a800", rate=D("0.9"), name="A800")})
        w.append("member.add", {"record": Member("pcl", name="鹏城实验室", kind="state-lab", region="gba")})
        w.append("member.add", {"record": Member("huawei", name="Huawei", kind="firm")})
        w.append("member.add", {"record": Member("tiny", name="Tiny Co")})
        w.append("pool.add", {"record": Pool("pcl-brain", member="pcl", accelerator="ascend-910b",
                                             devices=D(4096), reserve=D("0.2"), cost=D("0.05"))})
        w.append("dataset.add", {"record": Dataset("wudao", member="pcl", access=("pcl", "huawei"),
                                                   residency=("beijing",), credit=D(5000))})
        w.append("model.add", {"record": Model("pangu", member="huawei", credit=D(2000))})
        w.append("project.add", {"record": Project(
            "mind-2", sponsors=(("pcl", D("0.7")), ("huawei", D("0.3"))), demand=D(1500000),
            speed=(("ascend-910b", D(1)), ("a800", D("0.8"))), datasets=("wudao",))})
    with ledger.writer("ana@pcl") as w:
        w.append("accelerator.change", {"record": Accelerator("a800", rate=D("1.2"), name="A800"),
                                        "from_period": "2026-12"})
        w.append("member.retire", {"id": "tiny", "note": "left the consortium"})
        w.append("alloc.run", {"period": "2026-11"}, attachments={"alloc_grant": [
            {"project": "mind-2", "pool": "pcl-brain", "device_hours": 1200, "units": D("1200.0")},
            {"project": "mind-2", "pool": "pcl-brain", "device_hours": 7, "units": "6.5"},
        ]})


def seq_of(ledger: Ledger, kind: str) -> int:
    return next(e.seq for e in ledger.entries() if e.kind == kind)


# --- the chain -----------------------------------------------------------------------------------


def test_init_writes_a_ledger_init_entry_hashed_as_documented(ledger):
    (entry,) = ledger.entries()
    assert (entry.seq, entry.kind, entry.actor) == (1, "ledger.init", "tester")
    assert entry.payload == {"schema_version": SCHEMA_VERSION}
    assert entry.time == "2026-11-01T00:00:01.000000Z"
    assert entry.prev_hash == GENESIS_HASH == "0" * 64
    # What an auditor recomputes with nothing but hashlib and json:
    body = json.dumps({"seq": 1, "time": entry.time, "actor": "tester", "kind": "ledger.init",
                       "payload": {"schema_version": SCHEMA_VERSION}},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert entry.hash == hashlib.sha256((GENESIS_HASH + body).encode()).hexdigest()
    assert ledger.head() == (1, entry.hash)


def test_appended_entries_chain_and_verify(ledger):
    populate(ledger)
    entries = list(ledger.entries())
    assert [e.seq for e in entries] == list(range(1, 16))
    for before, after in zip(entries, entries[1:]):
        assert after.prev_hash == before.hash
        assert after.hash == after.computed_hash()
    report = ledger.verify()
    assert report.ok, report.problems
    assert (report.entries, report.head_seq, report.head_hash) == (15, 15, entries[-1].hash)
    assert report.first_bad_seq is None and report.reason is None and report.problem is None
    assert report.to_dict()["ok"] is True and report.to_dict()["problems"] == []
    assert entries[1].to_dict() == {"seq": 2, "time": entries[1].time, "actor": "ana@pcl", "kind": "consortium.set",
                                    "payload": entries[1].payload, "prev_hash": entries[0].hash,
                                    "hash": entries[1].hash}


def test_entries_are_immutable_values(ledger):
    entry = ledger.entry(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.kind = "member.add"
    entry.payload["schema_version"] = 99  # a fresh copy each time
    assert entry.payload == {"schema_version": SCHEMA_VERSION}


def test_payloads_are_canonical_text_with_decimals_as_text(ledger):
    populate(ledger)
    pool = next(e for e in ledger.entries() if e.kind == "pool.add")
    assert pool.payload_json == canonical_json(pool.payload)
    assert pool.payload["record"]["devices"] == "4096" and pool.payload["record"]["reserve"] == "0.2"
    consortium = next(e for e in ledger.entries() if e.kind == "consortium.set")
    assert "算力联盟" in consortium.payload_json  # ensure_ascii=False


def test_entries_paging_limit_and_reverse(ledger):
    populate(ledger)
    assert [e.seq for e in ledger.entries(after=10)] == [11, 12, 13, 14, 15]
    assert [e.seq for e in ledger.entries(after=3, limit=2)] == [4, 5]
    assert [e.seq for e in ledger.entries(reverse=True, limit=3)] == [15, 14, 13]
    assert [e.seq for e in ledger.entries(reverse=True, before=3)] == [2, 1]


def test_floats_are_refused_in_payloads(ledger):
    with ledger.writer("t") as w:
        with pytest.raises(EntryRejected, match="float"):
            w.append("alloc.note", {"share": 0.3})
        with pytest.raises(EntryRejected, match="float"):
            w.append("accelerator.add", {"record": {"id": "h800", "rate": 1.5}})
    assert ledger.head()[0] == 1


@pytest.mark.parametrize("kind", ["Member.add", "member", "member add", ""])
def test_malformed_kinds_are_refused(ledger, kind):
    with ledger.writer("t") as w, pytest.raises(EntryRejected, match="not an entry kind"):
        w.append(kind, {})


def test_writer_needs_an_actor(ledger):
    with pytest.raises(EntryRejected, match="actor"):
        with ledger.writer("  "):
            pass


# --- transactions --------------------------------------------------------------------------------


def test_writer_rolls_back_everything_on_exception(ledger):
    populate(ledger)
    head, state = ledger.head(), ledger.state()
    with pytest.raises(RuntimeError):
        with ledger.writer("t") as w:
            w.append("member.add", {"record": Member("new", name="New")})
            w.append("alloc.run", {}, attachments={"alloc_grant": [
                {"project": "mind-2", "pool": "pcl-brain", "device_hours": 1, "units": "1"}]})
            assert w.head()[0] == head[0] + 2
            raise RuntimeError("crash before commit")
    assert ledger.head() == head
    assert ledger.state() == state
    assert ledger.verify().ok


def test_a_refused_entry_writes_nothing_and_the_transaction_goes_on(ledger):
    with ledger.writer("t") as w:
        w.append("member.add", {"record": Member("pcl", name="PCL")})
        with pytest.raises(EntryRejected, match="already exists"):
            w.append("member.add", {"record": Member("pcl", name="PCL again")})
        w.append("member.add", {"record": Member("baai", name="BAAI")})
        assert [m.id for m in w.snapshot().members] == ["baai", "pcl"]  # the writer sees its own appends
    assert [e.seq for e in ledger.entries()] == [1, 2, 3]
    assert ledger.verify().ok


def test_rollback_discards_the_transaction_and_ends_it(ledger):
    with ledger.writer("t") as w:
        w.append("member.add", {"record": Member("pcl", name="PCL")})
        w.rollback()  # a dry run: plan, then leave nothing behind
        with pytest.raises(StoreError, match="ended"):
            w.append("member.add", {"record": Member("baai")})
    assert ledger.head()[0] == 1 and ledger.snapshot().members == ()
    with ledger.writer("t") as w:  # the write lock was released
        w.append("member.add", {"record": Member("pcl", name="PCL")})
    assert ledger.head()[0] == 2


def test_store_errors_are_pooler_errors_for_the_cli(tmp_path):
    from pooler.errors import PoolerError

    with pytest.raises(PoolerError) as info:
        Ledger.open(tmp_path / "missing.db")
    assert isinstance(info.value, StoreError) and info.value.exit_code == 1


def test_a_writer_cannot_be_used_after_its_transaction(ledger):
    with ledger.writer("t") as w:
        pass
    with pytest.raises(StoreError, match="ended"):
        w.append("member.add", {"record": Member("late")})


# --- the reducer and projections -----------------------------------------------------------------


def test_snapshot_holds_the_active_records(ledger):
    populate(ledger)
    snap = ledger.snapshot()
    assert snap.consortium.name == "Pearl River 算力联盟"
    assert snap.policy.contribution_weight == D("0.8")
    assert [m.id for m in snap.members] == ["huawei", "pcl"]  # tiny is retired
    assert snap.pools[0].devices == D(4096) and snap.pools[0].reserve == D("0.2")
    assert snap.datasets[0].access == ("huawei", "pcl")
    assert snap.projects[0].sponsors == (("huawei", D("0.3")), ("pcl", D("0.7")))
    assert snap.models[0].credit == D(2000)


def test_an_empty_ledger_has_default_settings(ledger):
    snap = ledger.snapshot()
    assert snap.consortium == Consortium() and snap.policy == Policy()
    assert snap.members == () and snap.period is None


def test_retired_records_keep_their_rows(ledger):
    populate(ledger)
    retire_seq = seq_of(ledger, "member.retire")
    assert [r["id"] for r in ledger.records("member")] == ["huawei", "pcl"]
    tiny = {r["id"]: r for r in ledger.records("member", include_retired=True)}["tiny"]
    assert tiny == {"id": "tiny", "name": "Tiny Co", "retired_seq": retire_seq}
    assert ledger.records("member")[1] == {"id": "pcl", "name": "鹏城实验室", "kind": "state-lab", "region": "gba"}
    (state,) = [rs for rs in ledger.record_states("member", include_retired=True) if not rs.active]
    assert (state.record, state.added_seq, state.changed_seq, state.retired_seq) == (
        Member("tiny", name="Tiny Co"), 8, 8, retire_seq)
    assert [e.kind for e in ledger.entries_for("member", "tiny")] == ["member.add", "member.retire"]
    assert [e.seq for e in ledger.entries_for("consortium", "consortium")] == [2]
    with ledger.writer("t") as w:
        assert w.retired_ids("member") == {"tiny"}
        with pytest.raises(EntryRejected, match="retired at entry"):
            w.append("member.add", {"record": Member("tiny", name="Tiny again")})
        with pytest.raises(EntryRejected, match="retired at entry"):
            w.append("member.change", {"record": Member("tiny", name="Tiny renamed")})
        with pytest.raises(EntryRejected, match="retired at entry"):
            w.append("member.retire", {"id": "tiny"})


@pytest.mark.parametrize("kind,payload,message", [
    ("member.change", {"record": {"id": "nobody", "name": "X"}}, "no member 'nobody'"),
    ("member.retire", {"id": "nobody"}, "no member 'nobody'"),
    ("member.ad", {"record": {"id": "x"}}, "unknown entry kind 'member.ad'"),
    ("consortium.add", {"record": {}}, "expected consortium.set"),
    ("member.add", {"record": {"id": "x", "colour": "red"}}, "unknown field"),
    ("member.add", {"record": {"id": "", "name": "X"}}, "non-empty text id"),
    ("member.add", {"record": {"id": "x", "name": 5}}, "wrong shape"),
    ("member.add", {"id": "x"}, "unexpected payload key"),
    ("member.add", {}, "needs the full record"),
    ("member.add", {"record": Pool("p")}, "unknown field"),
    ("dataset.add", {"record": {"id": "d", "residency": "beijing"}}, "wrong shape"),
    ("pool.add", {"record": {"id": "p", "capacity": "lots"}}, "record"),
    ("pool.add", {"record": {"id": "p", "capacity": "NaN"}}, "finite"),
    ("policy.set", {"record": {"id": "other"}}, "always 'policy'"),
    ("member.add", {"record": Member("x"), "from_period": "2026-11"}, "unexpected payload key"),
    ("accelerator.change", {"record": Accelerator("a800"), "from_period": "2026-W47"}, "months"),
    ("accelerator.change", {"record": Accelerator("a800"), "from_period": "November"}, "period label"),
])
def test_the_reducer_refuses_entries_that_make_no_sense(ledger, kind, payload, message):
    populate(ledger)
    head = ledger.head()
    with ledger.writer("t") as w, pytest.raises(EntryRejected, match=message):
        w.append(kind, payload)
    assert ledger.head() == head


def test_apply_entry_is_pure(ledger):
    populate(ledger)
    state = ledger.rebuild_state()
    before = state_rows(state)
    entry = Entry.create(seq=99, time="t", actor="a", kind="member.add",
                         payload={"record": {"id": "zz", "name": "Z"}}, prev_hash=GENESIS_HASH)
    after = apply_entry(state, entry)
    assert state_rows(state) == before
    assert "zz" in after.records["member"] and "zz" not in state.records["member"]
    assert after.records["pool"] is state.records["pool"]  # untouched parts are shared, not copied
    assert apply_entry(state, dataclasses.replace(entry, kind="alloc.run")) is state


def test_projections_equal_the_journal_replay(ledger, path):
    populate(ledger)
    assert ledger.rebuild_state() == ledger.state()
    with ledger.reader() as r:
        assert read_rows(r._conn) == state_rows(ledger.rebuild_state())


def test_projections_store_exact_decimal_text(ledger, path):
    populate(ledger)
    db = raw(path)
    assert db.execute("SELECT devices, reserve, cost, capacity FROM pool").fetchone() == ("4096", "0.2", "0.05", None)
    assert db.execute("SELECT member, stake FROM project_sponsor ORDER BY member").fetchall() == [
        ("huawei", "0.3"), ("pcl", "0.7")]
    assert db.execute("SELECT access, residency FROM dataset").fetchone() == ('["huawei","pcl"]', '["beijing"]')
    assert db.execute("SELECT access FROM model").fetchone() == ("consortium",)
    assert db.execute("SELECT speed, datasets FROM project").fetchone() == (
        '{"a800":"0.8","ascend-910b":"1"}', '["wudao"]')
    assert db.execute("SELECT project, pool, device_hours, units FROM alloc_grant ORDER BY line").fetchall() == [
        ("mind-2", "pcl-brain", 1200, "1200"), ("mind-2", "pcl-brain", 7, "6.5")]
    # Aggregation in SQL works on the projection (counting here; stakes are summed as Decimals in Python).
    assert db.execute("SELECT count(*) FROM project_sponsor s JOIN project p ON p.id = s.project "
                      "WHERE p.retired_seq IS NULL").fetchone() == (2,)


# --- versioned rates -----------------------------------------------------------------------------


def test_rates_are_versioned_by_period(ledger, path):
    with ledger.writer("t") as w:
        w.append("accelerator.add", {"record": Accelerator("h800", rate=D(1))})
    with ledger.writer("t") as w:
        w.append("accelerator.change", {"record": Accelerator("h800", rate=D(2)), "from_period": "2026-11"})
    with ledger.writer("t") as w:
        w.append("accelerator.change", {"record": Accelerator("h800", rate=D(3)), "from_period": "2027-01"})

    def rate(period):
        return ledger.snapshot(period).accelerators[0].rate

    cases = {"2026-10": D(1), "2026-11": D(2), "2026-12": D(2), "2027-01": D(3), "2027-06": D(3), None: D(3)}
    assert {p: rate(p) for p in cases} == cases
    assert ledger.snapshot("2026-10").period == "2026-10"

    # A later decision from 2026-12 on never touches 2026-11 or before, and wins over 2027-01.
    with ledger.writer("t") as w:
        w.append("accelerator.change", {"record": Accelerator("h800", rate=D(5)), "from_period": "2026-12"})
    cases = {"2026-10": D(1), "2026-11": D(2), "2026-12": D(5), "2027-01": D(5), None: D(5)}
    assert {p: rate(p) for p in cases} == cases

    # A change that leaves the rate alone records no version, so history stays as it was.
    with ledger.writer("t") as w:
        w.append("accelerator.change", {"record": Accelerator("h800", rate=D(5), name="H800")})
    assert {p: rate(p) for p in cases} == cases
    assert ledger.snapshot().accelerators[0].name == "H800"
    assert [(v.from_period, v.rate) for v in ledger.rates("h800")] == [
        (None, D(1)), ("2026-11", D(2)), ("2027-01", D(3)), ("2026-12", D(5))]
    assert raw(path).execute("SELECT count(*) FROM accelerator_rate").fetchone() == (4,)

    # A new rate without a period applies from the start: a correction of every period.
    with ledger.writer("t") as w:
        w.append("accelerator.change", {"record": Accelerator("h800", rate=D(7))})
    assert {p: rate(p) for p in cases} == {p: D(7) for p in cases}
    assert ledger.verify().ok
    assert ledger.rebuild_state() == ledger.state()


# --- attachments ---------------------------------------------------------------------------------


def test_attachments_carry_a_digest_anyone_can_recompute(ledger):
    populate(ledger)
    entry = next(e for e in ledger.entries() if e.kind == "alloc.run")
    summary = entry.payload["attachments"]["alloc_grant"]
    lines = [
        '{"device_hours":1200,"pool":"pcl-brain","project":"mind-2","units":"1200"}\n',
        '{"device_hours":7,"pool":"pcl-brain","project":"mind-2","units":"6.5"}\n',
    ]
    assert summary == {"rows": 2, "digest": hashlib.sha256("".join(lines).encode()).hexdigest()}
    assert ledger.attachment_rows(entry.seq, "alloc_grant") == [
        {"project": "mind-2", "pool": "pcl-brain", "device_hours": 1200, "units": D(1200)},
        {"project": "mind-2", "pool": "pcl-brain", "device_hours": 7, "units": D("6.5")},
    ]


def test_a_large_batch_from_a_generator_is_streamed_digested_and_verified(ledger, monkeypatch):
    import pooler.store.ledger as ledger_module
    from pooler.store import attachment_table, digest_rows

    # Small chunks, so the rows go through the spool file in several pieces (and a partial last one).
    monkeypatch.setattr(ledger_module, "_ATTACHMENT_CHUNK", 7_000)

    def rows():
        for i in range(50_000):
            yield {"project": f"proj-{i % 13}", "pool": "pool-\u00e9" if i % 5 else 'po"ol', "period": "2026-11",
                   "device_hours": D(i % 97) / 4 if i % 3 else str(i % 11) + ".50",
                   "start": 1_790_000_000 + i, "end": 1_790_003_600 + i, "job": None if i % 2 else str(i)}

    with ledger.writer("t") as w:
        entry = w.append("usage.import", {"file": "big.csv"}, attachments={"usage_line": rows()})
    spec = attachment_table("usage_line")
    expected = digest_rows(spec.canonical(row, "row") for row in rows())
    assert entry.payload["attachments"]["usage_line"] == {"rows": 50_000, "digest": expected[1]}
    assert expected[0] == 50_000
    stored = ledger.attachment_rows(entry.seq, "usage_line")
    assert len(stored) == 50_000
    assert stored[1] == {"project": "proj-1", "pool": "pool-\u00e9", "period": "2026-11", "device_hours": D("0.25"),
                         "start": 1_790_000_001, "end": 1_790_003_601, "job": None}
    assert stored[6]["device_hours"] == D("6.5") and stored[6]["job"] == "6"
    assert ledger.verify().ok


def test_an_empty_batch_is_recorded_as_zero_rows(ledger):
    with ledger.writer("t") as w:
        entry = w.append("alloc.run", {"period": "2026-11"}, attachments={"alloc_grant": []})
    assert entry.payload["attachments"]["alloc_grant"] == {"rows": 0, "digest": hashlib.sha256(b"").hexdigest()}
    assert ledger.verify().ok


@pytest.mark.parametrize("rows,attachment,message", [
    ([{"project": "p", "pool": "q", "device_hours": 1, "units": 1.5}], "alloc_grant", "units"),
    ([{"project": "p", "pool": "q", "device_hours": True, "units": "1"}], "alloc_grant", "integer"),
    ([{"project": "p", "pool": "q", "device_hours": D("1.5"), "units": "1"}], "alloc_grant", "integer"),
    ([{"project": "p", "pool": "q", "units": "1"}], "alloc_grant", "device_hours is required"),
    ([{"project": "p", "pool": "q", "device_hours": 1, "units": "1", "x": 1}], "alloc_grant", "unknown column"),
    ([{"project": 5, "pool": "q", "device_hours": 1, "units": "1"}], "alloc_grant", "text"),
    ([{"project": "p", "pool": "q", "device_hours": 1, "units": "1"}], "no_such_table", "not an attachment table"),
])
def test_bad_attachment_rows_are_refused(ledger, rows, attachment, message):
    with ledger.writer("t") as w, pytest.raises(EntryRejected, match=message):
        w.append("alloc.run", {}, attachments={attachment: rows})
    assert ledger.head()[0] == 1


def test_the_attachments_payload_key_is_reserved(ledger):
    with ledger.writer("t") as w, pytest.raises(EntryRejected, match="reserved"):
        w.append("alloc.run", {"attachments": {}})


# --- the database refuses edits ------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE journal SET actor = 'mallory' WHERE seq = 2",
    "DELETE FROM journal WHERE seq = 2",
    "DELETE FROM journal",
    "UPDATE alloc_grant SET device_hours = 9999",
    "DELETE FROM alloc_grant",
])
def test_triggers_refuse_update_and_delete(ledger, path, statement):
    populate(ledger)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw(path).execute(statement)
    assert ledger.verify().ok


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(ledger, path):
    assert raw(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with ledger.reader() as r:
        conn = r._conn
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


# --- tampering is detected -----------------------------------------------------------------------


def drop_guards(path) -> list[str]:
    """Drop the append-only triggers; return their SQL so that a careful forger can put them back."""
    db = raw(path)
    triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for name, _ in triggers:
        db.execute(f"DROP TRIGGER {name}")
    return [sql for _, sql in triggers]


def restore_guards(path, statements: list[str]) -> None:
    db = raw(path)
    for sql in statements:
        db.execute(sql)


def test_an_edited_payload_is_a_hash_mismatch(ledger, path):
    populate(ledger)
    target = seq_of(ledger, "pool.add")
    guards = drop_guards(path)
    raw(path).execute("UPDATE journal SET payload = replace(payload, '\"4096\"', '\"8192\"') WHERE seq = ?",
                      (target,))
    restore_guards(path, guards)
    report = ledger.verify()
    assert not report.ok
    assert report.first_bad_seq == target
    assert report.reason.startswith("hash mismatch")
    # The replay now disagrees with the projection too, and says where.
    assert any(p.table == "pool" and p.key == "pcl-brain" and "8192" in p.reason for p in report.problems)


def test_missing_guards_are_reported(ledger, path):
    drop_guards(path)
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq is None
    from pooler.store.attachments import attachment_tables

    assert {p.table for p in report.problems} == {"journal", *(t.name for t in attachment_tables())}
    assert "journal_no_update" in report.reason


def test_a_deleted_middle_row_is_a_gap(ledger, path):
    populate(ledger)
    guards = drop_guards(path)
    raw(path).execute("DELETE FROM journal WHERE seq = 7")
    restore_guards(path, guards)
    report = ledger.verify()
    assert report.first_bad_seq == 8
    assert report.reason == "gap in seq: entry 7 missing (a row was deleted)"
    assert report.problem == "entry #8: gap in seq: entry 7 missing (a row was deleted)"
    assert report.to_dict()["first_bad_seq"] == 8 and report.to_dict()["ok"] is False
    assert any(p.seq == 8 and p.reason.startswith("broken prev link") for p in report.problems)


def test_a_deleted_last_row_needs_a_checkpoint(ledger, path):
    populate(ledger)
    checkpoint = ledger.head()
    guards = drop_guards(path)
    db = raw(path)
    # The forger also removes the last entry's effects, so the projections match the shorter journal.
    db.execute("DELETE FROM alloc_grant WHERE seq = 15")
    db.execute("DELETE FROM journal WHERE seq = 15")
    restore_guards(path, guards)
    # NOT detectable from the ledger alone: entries 1..14 are a valid chain on their own, and a hash
    # chain cannot tell its end from a cut. Only a head kept elsewhere (a checkpoint) reveals it.
    assert ledger.verify().ok
    report = ledger.verify(checkpoint=checkpoint)
    assert not report.ok and "entries were removed" in report.reason


def test_a_wrong_checkpoint_hash_is_reported(ledger):
    populate(ledger)
    seq, _ = ledger.head()
    report = ledger.verify(checkpoint=(seq, "f" * 64))
    assert report.first_bad_seq == seq and "checkpoint" in report.reason


def test_an_edited_projection_row_is_named(ledger, path):
    populate(ledger)
    raw(path).execute("UPDATE member SET name = 'Mallory Labs' WHERE id = 'pcl'")
    report = ledger.verify()
    assert not report.ok
    (problem,) = report.problems
    assert (problem.table, problem.key, problem.seq) == ("member", "pcl", None)
    assert "projection differs from the journal replay: table member, id 'pcl'" in problem.reason
    assert "'Mallory Labs' in the table" in problem.reason


def test_a_cell_emptied_behind_pooler_s_back_reads_empty_not_none(ledger, path):
    """Review: "capacity is '1' in the table but None in the journal" (Python's None)."""
    populate(ledger)
    raw(path).execute("UPDATE member SET region = NULL WHERE id = 'pcl'")
    (problem,) = ledger.verify().problems
    assert "region is empty in the table but 'gba' in the journal" in problem.reason
    assert "None" not in problem.reason


@pytest.mark.parametrize("statement,table,key", [
    ("DELETE FROM project_sponsor WHERE member = 'huawei'", "project_sponsor", "mind-2/huawei"),
    ("INSERT INTO member VALUES ('ghost', 'Ghost', NULL, NULL, 1, 1, NULL)", "member", "ghost"),
    ("UPDATE accelerator_rate SET rate = '9' WHERE accelerator = 'a800' AND from_period IS NULL",
     "accelerator_rate", "a800/5"),
    ("UPDATE member SET retired_seq = NULL WHERE id = 'tiny'", "member", "tiny"),
])
def test_other_projection_edits_are_named(ledger, path, statement, table, key):
    populate(ledger)
    raw(path).execute(statement)
    problems = ledger.verify().problems
    assert [(p.table, p.key) for p in problems] == [(table, key)]


def edit_a_grant(ledger, path) -> int:
    """Populate, then change one attached grant row behind pooler's back; the run's seq."""
    populate(ledger)
    target = seq_of(ledger, "alloc.run")
    guards = drop_guards(path)
    raw(path).execute("UPDATE alloc_grant SET device_hours = 9999 WHERE seq = ? AND line = 2", (target,))
    restore_guards(path, guards)
    return target


def test_an_edited_attachment_row_is_a_bad_digest(ledger, path):
    target = edit_a_grant(ledger, path)
    report = ledger.verify()
    assert report.first_bad_seq == target and report.reason.startswith("bad attachment digest")
    assert report.problems[0].table == "alloc_grant"


def test_attachment_rows_nobody_declared_are_reported(ledger, path):
    populate(ledger)
    raw(path).execute("INSERT INTO alloc_grant VALUES (3, 1, 'mind-2', 'pcl-brain', 5, '5')")
    report = ledger.verify()
    assert report.first_bad_seq == 3 and "declares none" in report.reason


# --- opening, schema versions and migrations -----------------------------------------------------


def test_opening_a_missing_file_is_ledger_not_found(tmp_path):
    missing = tmp_path / "nope.db"
    with pytest.raises(LedgerNotFound) as info:
        Ledger.open(missing)
    assert str(missing) in str(info.value) and "pooler init" in str(info.value)
    assert not missing.exists()  # opening never creates a file


def test_opening_a_database_that_is_no_ledger_is_ledger_not_found(tmp_path):
    other = tmp_path / "other.db"
    raw(other).execute("CREATE TABLE t (x)")
    with pytest.raises(LedgerNotFound, match="not a pooler ledger"):
        Ledger.open(other)


def test_init_in_a_database_holding_other_tables_is_refused_and_adds_none(tmp_path):
    """Review: `init` of an SQLite file holding another program's tables added pooler's tables to it
    and said "Created an empty ledger"; only tables named like pooler's were refused."""
    other = tmp_path / "other.db"
    raw(other).execute("CREATE TABLE notes (x)")
    with pytest.raises(StoreError, match=r"other.db is not empty \(it has tables notes\) and is not a pooler ledger"):
        Ledger.init(other, actor="t")
    assert [r[0] for r in raw(other).execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_no_place_for_a_ledger(url):
    """Review: `--db sqlite:// init` said "Created an empty ledger at sqlite://", gone at once."""
    for action in (lambda: Ledger.init(url, actor="t"), lambda: Ledger.open(url)):
        with pytest.raises(StoreError, match=r"an in-memory SQLite database \(sqlite://\) is gone"):
            action()


def test_init_on_an_existing_ledger_is_ledger_exists(ledger, path):
    with pytest.raises(LedgerExists, match=str(path)):
        Ledger.init(path, actor="t")
    assert ledger.head()[0] == 1


def test_a_failed_init_leaves_no_file_behind(path):
    with pytest.raises(EntryRejected, match="actor"):
        Ledger.init(path, actor="")
    assert not path.exists()


def test_init_in_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Ledger.init(tmp_path / "no" / "such" / "dir.db", actor="t")


def test_a_path_and_an_sqlite_url_open_the_same_ledger(ledger, path):
    with Ledger.open(f"sqlite:///{path}") as by_url, Ledger.open(str(path)) as by_path:
        assert by_url.head() == by_path.head() == ledger.head()


def test_a_newer_schema_is_refused(ledger, path):
    raw(path).execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaTooNew) as info:
        Ledger.open(path)
    assert (info.value.found, info.value.supported) == (99, SCHEMA_VERSION)
    assert "upgrade pooler" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("value", ["2x", "-1", "0", "", "\u0662"])
def test_a_damaged_schema_version_is_one_error_and_touches_nothing(ledger, path, value):
    """Review: a schema version of "2x" was a ValueError traceback from every command, `ledger verify`
    included, and "-1" made `open` try to create the schema again over the tables."""
    from pooler.store.errors import StoreError

    raw(path).execute(f"UPDATE meta SET value = '{value}' WHERE key = 'schema_version'")
    before = path.read_bytes()
    for action in (Ledger.open, lambda p: Ledger.init(p, actor="t")):
        with pytest.raises(StoreError, match=r"the ledger's schema version is damaged \(meta schema_version = "):
            action(path)
    assert path.read_bytes() == before


def add_note_table(conn, backend) -> None:
    """A stand-in for a future release's migration: one function, appended to MIGRATIONS."""
    conn.exec_driver_sql("CREATE TABLE note (seq INTEGER PRIMARY KEY REFERENCES journal (seq), text TEXT)")
    for statement in backend.append_only_ddl("note"):
        conn.exec_driver_sql(statement)


def test_a_ledger_migrates_to_a_future_version(ledger, path):
    populate(ledger)
    head = ledger.head()
    ledger.close()
    now, future = SCHEMA_VERSION, SCHEMA_VERSION + 1
    with_note = (*MIGRATIONS, Migration(future, "add the note table", add_note_table))
    with Ledger.open(path, migrations=with_note, actor="upgrader", clock=Clock()) as upgraded:
        assert upgraded.schema_version() == future
        migrate = upgraded.entry(head[0] + 1)
        assert (migrate.kind, migrate.actor, migrate.prev_hash) == ("ledger.migrate", "upgrader", head[1])
        assert migrate.payload == {"from_version": now, "to_version": future, "migrations": ["add the note table"]}
        assert upgraded.verify().ok
        assert upgraded.snapshot() == Ledger.open(path, migrations=with_note).snapshot()
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db = raw(path)
        db.execute("INSERT INTO note VALUES (1, 'hello')")
        db.execute("DELETE FROM note")
    # Opening again migrates nothing more; today's code refuses the upgraded ledger.
    with Ledger.open(path, migrations=with_note) as again:
        assert again.head()[0] == head[0] + 1
    with pytest.raises(SchemaTooNew):
        Ledger.open(path)


def test_migrations_must_be_numbered_without_gaps(ledger, path):
    ledger.close()
    with pytest.raises(ValueError, match="numbered"):
        Ledger.open(path, migrations=(*MIGRATIONS, Migration(SCHEMA_VERSION + 2, "skips one", add_note_table)))


def _usage_columns(conn) -> tuple[dict[str, str], list[str]]:
    """The types of usage_line's time columns and the tables its foreign keys name."""
    found = inspect(conn)
    types = {c["name"]: str(c["type"]) for c in found.get_columns("usage_line") if c["name"] in ("start", "end")}
    return types, [fk["referred_table"] for fk in found.get_foreign_keys("usage_line")]


USAGE_ROW = {"project": "mind-2", "pool": "pcl-brain", "period": "2026-11", "device_hours": "2.5",
             "start": 1_793_491_200, "end": 1_793_500_200, "job": "77"}
LATE = 3_000_000_000  # 2065-01-24: past the last moment of a 32-bit time (2038-01-19T03:14:07Z)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_version_1_ledger_migrates_to_the_latest_version(backend, tmp_path):
    """A ledger as release 1 made it, usage lines and all: opening it with today's code records one
    `ledger.migrate` entry; on PostgreSQL the usage times become 64-bit and the per-row journal key goes
    (SQLite's integers were 64-bit already and its table stays as it was); the chain verifies, and
    a usage line after 2038 is stored and read back on both."""
    with contextlib.ExitStack() as stack:
        target = tmp_path / "v1.db" if backend == "sqlite" else stack.enter_context(postgres_database())
        with Ledger.init(target, actor="t", clock=Clock(), migrations=MIGRATIONS[:1]) as old:
            assert old.schema_version() == 1 and old.entry(1).payload == {"schema_version": 1}
            populate(old)
            with old.writer("t") as w:
                w.append("usage.import", {"file": "a.csv"}, attachments={"usage_line": [USAGE_ROW]})
            head = old.head()
            with old._engine.connect() as conn:
                assert _usage_columns(conn) == ({"start": "INTEGER", "end": "INTEGER"}, ["journal"])
        with Ledger.open(target, actor="upgrader", clock=Clock()) as new:
            assert new.schema_version() == SCHEMA_VERSION == 3
            migrate = new.entry(head[0] + 1)
            assert (migrate.kind, migrate.prev_hash) == ("ledger.migrate", head[1])
            assert migrate.payload["from_version"] == 1 and migrate.payload["to_version"] == 3
            with new._engine.connect() as conn:
                expected = ({"start": "INTEGER", "end": "INTEGER"}, ["journal"]) if backend == "sqlite" else (
                    {"start": "BIGINT", "end": "BIGINT"}, [])
                assert _usage_columns(conn) == expected
                assert _job_index(conn) == ["job", "start"]
            # the lines recorded before the index are found through it
            assert new.usage_of_jobs(["77", "78"]) == [("77", "pcl-brain", USAGE_ROW["start"], "2.5")]
            late = {**USAGE_ROW, "start": LATE, "end": LATE + 3600, "job": None}
            with new.writer("t") as w:
                w.append("usage.import", {"file": "b.csv"}, attachments={"usage_line": [USAGE_ROW, late]})
            assert new.verify().ok
            stored = new.attachment_rows(new.head()[0], "usage_line")
            assert [(r["start"], r["end"]) for r in stored] == [(USAGE_ROW["start"], USAGE_ROW["end"]),
                                                                (LATE, LATE + 3600)]
        with Ledger.open(target) as again:  # migrated once
            assert again.head()[0] == head[0] + 2


def test_a_new_ledger_is_built_by_every_migration_in_turn(db_target):
    """A new ledger runs version 1 as released, then each later migration: the same shape as a
    migrated one, and its `ledger.init` names the latest version."""
    with Ledger.init(db_target, actor="t") as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION
        assert ledger.entry(1).payload == {"schema_version": SCHEMA_VERSION}
        with ledger._engine.connect() as conn:
            types, keys = _usage_columns(conn)
        postgres = "://" in str(db_target)
        assert types == ({"start": "BIGINT", "end": "BIGINT"} if postgres else {"start": "INTEGER", "end": "INTEGER"})
        assert keys == ([] if postgres else ["journal"])
        with ledger._engine.connect() as conn:
            assert _job_index(conn) == ["job", "start"]


def _job_index(conn) -> list[str]:
    """The columns of the usage lines' job index (migration 3)."""
    from sqlalchemy import inspect

    found = [ix for ix in inspect(conn).get_indexes("usage_line") if ix["name"] == "usage_line_job"]
    return list(found[0]["column_names"]) if found else []


def test_usage_lines_of_no_entry_are_reported_on_postgresql():
    """Without the per-row key on PostgreSQL, a row naming an entry that does not exist can be
    inserted by hand; verify reports it (and SQLite's key still refuses it at commit)."""
    with postgres_database() as url:
        with Ledger.init(url, actor="t", clock=Clock()) as ledger:
            populate(ledger)
            missing = ledger.head()[0] + 50
            with ledger._engine.begin() as conn:
                conn.execute(text("INSERT INTO usage_line VALUES (:seq, 1, 'mind-2', 'pcl-brain', '2026-11', "
                                  "'1', 0, 3600, NULL)"), {"seq": missing})
            report = ledger.verify()
            assert not report.ok and report.first_bad_seq == missing
            assert "usage_line holds 1 row(s) for entry" in report.reason and "declares none" in report.reason


def test_a_new_ledger_has_exactly_the_tables_the_models_define(ledger, path):
    engine = create_engine(f"sqlite:///{path}")
    try:
        found = inspect(engine)
        assert set(found.get_table_names()) == set(metadata.tables)
        for name, table in metadata.tables.items():
            assert {c["name"] for c in found.get_columns(name)} == set(table.c.keys()), name
    finally:
        engine.dispose()


def test_rebuild_state_replays_from_an_empty_state(ledger):
    populate(ledger)
    assert ledger.rebuild_state() != LedgerState()
    assert ledger.rebuild_state().snapshot("2026-11") == ledger.snapshot("2026-11")


# --- property: whatever the operations, the tables and the replay agree --------------------------

IDS = st.sampled_from(["a", "b", "c"])
AMOUNTS = st.integers(1, 40).map(lambda n: D(n) / 4)
PERIODS = st.one_of(st.none(), st.sampled_from(["2026-10", "2026-11", "2027-01"]))
OPERATIONS = st.one_of(
    st.tuples(st.just("member.add"), IDS, st.text(max_size=3)),
    st.tuples(st.just("member.change"), IDS, st.text(max_size=3)),
    st.tuples(st.just("member.retire"), IDS),
    st.tuples(st.just("accelerator.add"), IDS, AMOUNTS),
    st.tuples(st.just("accelerator.change"), IDS, AMOUNTS, PERIODS),
    st.tuples(st.just("project.add"), IDS, st.dictionaries(IDS, AMOUNTS, max_size=3)),
    st.tuples(st.just("project.change"), IDS, st.dictionaries(IDS, AMOUNTS, max_size=3)),
    st.tuples(st.just("project.retire"), IDS),
    st.tuples(st.just("commit"),),
)


def payload_of(operation) -> tuple[str, dict]:
    kind, *args = operation
    if kind.endswith(".retire"):
        return kind, {"id": args[0]}
    if kind.startswith("member."):
        return kind, {"record": Member(args[0], name=args[1])}
    if kind.startswith("accelerator."):
        payload = {"record": Accelerator(args[0], rate=args[1])}
        if kind == "accelerator.change" and args[2] is not None:
            payload["from_period"] = args[2]
        return kind, payload
    return kind, {"record": Project(args[0], sponsors=tuple(args[1].items()), demand=D(10))}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(OPERATIONS, max_size=25))
def test_tables_and_replay_agree_whatever_the_operations(tmp_path_factory, operations):
    path = tmp_path_factory.mktemp("prop") / "ledger.db"
    with Ledger.init(path, actor="t", clock=Clock()) as ledger:
        batches = [[]]
        for operation in operations:
            if operation[0] == "commit":
                batches.append([])
            else:
                batches[-1].append(payload_of(operation))
        for batch in batches:
            with ledger.writer("t") as w:
                for kind, payload in batch:
                    try:
                        w.append(kind, payload)
                    except EntryRejected:
                        pass  # adding twice, changing what is retired...: refused, nothing written
        report = ledger.verify()
        assert report.ok, report.problems
        replayed = ledger.rebuild_state()
        assert replayed == ledger.state()
        for period in (None, "2026-09", "2026-11", "2027-02"):
            assert replayed.snapshot(period) == ledger.snapshot(period)


# --- PostgreSQL (needs a server: .ci/run starts one) ------------------------------------------

@pytest.fixture
def postgres_url():
    """A fresh database on the test server (skipped without one; see tests/backends.py)."""
    with postgres_database() as url:
        yield make_url(url)


def test_postgresql_ledger_matches_sqlite_and_guards_itself(postgres_url, tmp_path):
    with Ledger.init(postgres_url, actor="tester", clock=Clock()) as pg, \
            Ledger.init(tmp_path / "l.db", actor="tester", clock=Clock()) as lite:
        populate(pg)
        populate(lite)
        assert pg.head() == lite.head()  # the same bytes are hashed whatever the database
        assert pg.verify().ok
        assert pg.snapshot("2026-11") == lite.snapshot("2026-11")
        engine = create_engine(postgres_url)
        try:
            for statement in ("UPDATE journal SET actor = 'mallory'", "DELETE FROM journal WHERE seq = 2",
                              "TRUNCATE journal CASCADE", "DELETE FROM alloc_grant"):
                with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
                    conn.execute(text(statement))
            with engine.begin() as conn:
                conn.execute(text("UPDATE member SET name = 'X' WHERE id = 'pcl'"))
        finally:
            engine.dispose()
        assert [(p.table, p.key) for p in pg.verify().problems] == [("member", "pcl")]


# --- attachment digests beside the replay -----------------------------------------------------------


def test_digests_made_beside_the_replay_are_the_ones_verify_makes(ledger, path):
    from pooler.store.attachments import attachment_table
    from pooler.store.digests import DigestsBeside
    from pooler.store.ledger import _sqlite_digest

    populate(ledger)
    beside = DigestsBeside.start(ledger._engine)
    assert beside is not None  # a file: the thread runs
    head = ledger.head()[0]
    digests = beside.result(head)
    assert digests  # alloc_grant rows (at least) were digested
    with ledger._transaction() as conn:
        for (name, seq), made in digests.items():
            assert made == _sqlite_digest(conn, attachment_table(name), seq)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_digests_beside_in_many_windows_on_several_connections_are_the_exact_ones(backend, tmp_path, monkeypatch):
    """Windows of 7 lines, run by two connections at once with at most one waiting to be hashed:
    each entry's digest is the exact one (`digest_stored_rows`, row by row in Python), the texts
    hashed in order across windows and entries, windows with texts JSON escapes and without (on
    PostgreSQL: `row_to_json` and the quick way); a row changed behind pooler's back is still a bad
    digest, and a window that fails leaves the verification to do it all the usual way."""
    from sqlalchemy import select

    from pooler.store import digests
    from pooler.store import ledger as ledger_module
    from pooler.store.attachments import attachment_table, digest_stored_rows
    from pooler.store.digests import DigestsBeside

    monkeypatch.setattr(ledger_module, "_DIGEST_WINDOW", 7)
    monkeypatch.setattr(digests, "_AHEAD", 1)
    with contextlib.ExitStack() as stack:
        target = tmp_path / "l.db" if backend == "sqlite" else stack.enter_context(postgres_database())
        led = stack.enter_context(Ledger.init(target, actor="tester", clock=Clock()))
        populate(led)
        with led.writer("ana@pcl") as w:
            runs = [w.append("alloc.run", {"period": f"2026-1{k}"}, attachments={"alloc_grant": [
                {"project": f"p{i}", "pool": ODD_TEXTS[i % len(ODD_TEXTS)] if i % 10 == 0 else f"pool-{i}",
                 "device_hours": i, "units": f"{i}.5"}
                for i in range(n)]}).seq for k, n in enumerate((50, 7, 1))]
        spec = attachment_table("alloc_grant")
        t = spec.table
        beside = DigestsBeside.start(led._engine, led._backend.reader_options())
        made = beside.result(led.head()[0])
        with led._transaction() as conn:
            for seq in [seq_of(led, "alloc.run"), *runs]:
                rows = conn.execute(select(*[t.c[c] for c, _ in spec.columns]).where(t.c.seq == seq)
                                    .order_by(t.c.line))
                assert made[("alloc_grant", seq)] == digest_stored_rows(spec, rows)
        assert led.verify().ok
        change = "UPDATE alloc_grant SET units = '9' WHERE seq = :s AND line = 30"
        if backend == "sqlite":
            guards = drop_guards(target)
            raw(target).execute(change.replace(":s", "?"), (runs[0],))
            restore_guards(target, guards)
        else:
            engine = create_engine(target)
            try:
                with engine.begin() as conn:
                    conn.execute(text("ALTER TABLE alloc_grant DISABLE TRIGGER USER"))
                    conn.execute(text(change), {"s": runs[0]})
                    conn.execute(text("ALTER TABLE alloc_grant ENABLE TRIGGER USER"))
            finally:
                engine.dispose()
        report = led.verify()
        assert report.first_bad_seq == runs[0] and report.reason.startswith("bad attachment digest")

        def broken(conn, low, high):
            raise RuntimeError("a window that fails")

        plan_of = ledger_module.digest_plan_of
        monkeypatch.setattr(ledger_module, "digest_plan_of", lambda conn: lambda c, spec, seq: dataclasses.replace(
            plan_of(conn)(c, spec, seq), window=broken))
        beside = DigestsBeside.start(led._engine, led._backend.reader_options())
        assert beside.result(led.head()[0]) == {}  # the verification does it all itself
        assert not [th for th in threading.enumerate() if th.name.startswith("pooler-verify-window")]
        again = led.verify()
        assert again.problems == report.problems


def test_digests_of_another_head_are_not_used(ledger, path):
    from pooler.store.digests import DigestsBeside

    populate(ledger)
    beside = DigestsBeside.start(ledger._engine)
    assert beside.result(ledger.head()[0] + 1) == {}  # the replay saw another journal: do it all again


def test_no_digests_beside_an_in_memory_database():
    from sqlalchemy import create_engine

    from pooler.store.digests import DigestsBeside

    assert DigestsBeside.start(create_engine("sqlite://")) is None
    assert DigestsBeside.start(create_engine("sqlite:///:memory:")) is None


def test_an_edited_attachment_row_is_found_with_or_without_the_digests_beside(ledger, path, monkeypatch):
    from pooler.store import digests

    target = edit_a_grant(ledger, path)
    with_thread = ledger.verify()
    monkeypatch.setattr(digests.DigestsBeside, "start", classmethod(lambda cls, engine, options=None: None))
    without = ledger.verify()
    assert with_thread.problems == without.problems and with_thread.first_bad_seq == target


ODD_TEXTS = ['quote " and \\ backslash', "tab\tnew\nline\r", "control \x01\x1f\x7f", "鹏城 ✓ 🚀", "'single'", ""]


def test_postgresql_digests_its_rows_as_python_does(postgres_url):
    """The server-side digest (a proof only) equals the exact one for text JSON must escape, and a
    changed row still shows as a bad digest."""
    from sqlalchemy import select

    from pooler.store.attachments import attachment_table, digest_stored_rows
    from pooler.store.digests import DigestsBeside
    from pooler.store.ledger import _postgres_digest

    with Ledger.init(postgres_url, actor="tester", clock=Clock()) as pg:
        populate(pg)
        with pg.writer("ana@pcl") as w:
            entry = w.append("alloc.run", {"period": "2026-12"}, attachments={"alloc_grant": [
                {"project": text_, "pool": f"p{i}", "device_hours": i, "units": f"{i}.5"}
                for i, text_ in enumerate(ODD_TEXTS)]})
        spec = attachment_table("alloc_grant")
        t = spec.table
        with pg._transaction() as conn:
            for seq in (seq_of(pg, "alloc.run"), entry.seq):
                rows = conn.execute(select(*[t.c[c] for c, _ in spec.columns]).where(t.c.seq == seq)
                                    .order_by(t.c.line))
                assert _postgres_digest(conn, spec, seq) == digest_stored_rows(spec, rows)
        assert pg.verify().ok
        beside = DigestsBeside.start(pg._engine, pg._backend.reader_options())  # and in a thread
        with pg._transaction() as conn:
            assert beside.result(pg.head()[0])[("alloc_grant", entry.seq)] == _postgres_digest(conn, spec, entry.seq)
        engine = create_engine(postgres_url)
        try:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE alloc_grant DISABLE TRIGGER USER"))
                conn.execute(text("UPDATE alloc_grant SET units = '9' WHERE seq = :s AND line = 2"), {"s": entry.seq})
                conn.execute(text("ALTER TABLE alloc_grant ENABLE TRIGGER USER"))
        finally:
            engine.dispose()
        report = pg.verify()
        assert report.first_bad_seq == entry.seq and report.reason.startswith("bad attachment digest")


def test_postgresql_quick_digest_does_not_hide_a_column_of_another_type(postgres_url):
    """An integer column turned into text keeps its digits: the quick way would write them as it
    writes an integer, so it is used only for columns of the types pooler made; `row_to_json` writes
    the text with quotes, and the change shows as a bad digest."""
    from pooler.store.attachments import attachment_table
    from pooler.store.ledger import _postgres_digest_plan, _postgres_quick_sql

    quote = '"{}"'.format
    spec = attachment_table("alloc_grant")
    made = {"project": "character varying", "pool": "character varying", "device_hours": "bigint",
            "units": "character varying(64)"}
    assert _postgres_quick_sql(spec, quote, "FROM t", made) is not None
    for name, other in (("device_hours", "text"), ("units", "numeric"), ("pool", "bigint"),
                        ("units", "character varying(64)[]"), ("pool", "text[]"), ("device_hours", "bigint[]")):
        assert _postgres_quick_sql(spec, quote, "FROM t", {**made, name: other}) is None
    with Ledger.init(postgres_url, actor="tester", clock=Clock()) as pg:
        populate(pg)
        seq = seq_of(pg, "alloc.run")
        with pg._transaction() as conn:
            before = _postgres_digest_plan(conn, spec, seq).window(conn, 0, 10)
        engine = create_engine(postgres_url)
        try:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE alloc_grant ALTER COLUMN device_hours TYPE text"))
        finally:
            engine.dispose()
        with pg._transaction() as conn:
            after = _postgres_digest_plan(conn, spec, seq).window(conn, 0, 10)
        assert isinstance(before, bytes) and isinstance(after, str)  # the quick way, then row_to_json
        assert b'"device_hours":1200' in before and '"device_hours":"1200"' in after
        report = pg.verify()
        assert report.first_bad_seq == seq and report.reason.startswith("bad attachment digest")


def test_postgresql_quick_digest_sees_a_backslash_whatever_standard_conforming_strings(postgres_url):
    """With `standard_conforming_strings = off` a backslash in a SQL literal is an escape: the quick
    way's check of the characters JSON escapes must still see a backslash (a row stored as the
    escaped form of its declared text would otherwise pass as intact; found by review)."""
    from sqlalchemy import select

    from pooler.store.attachments import attachment_table, digest_stored_rows
    from pooler.store.ledger import _postgres_digest

    with Ledger.init(postgres_url, actor="tester", clock=Clock()) as pg:
        with pg.writer("ana@pcl") as w:
            seq = w.append("alloc.run", {"period": "2026-12"}, attachments={"alloc_grant": [
                {"project": "p\\\\", "pool": "tab\\there", "device_hours": 1, "units": "1"}]}).seq
        spec = attachment_table("alloc_grant")
        t = spec.table
        with pg._transaction() as conn:
            conn.execute(text("SET LOCAL standard_conforming_strings = off"))
            rows = conn.execute(select(*[t.c[c] for c, _ in spec.columns]).where(t.c.seq == seq))
            exact = digest_stored_rows(spec, rows)
            assert _postgres_digest(conn, spec, seq) == exact


def test_postgresql_quick_digest_does_not_pass_rows_one_of_which_has_a_null(postgres_url):
    """The quick way joins a row with `||`, so a row with a NULL where pooler's table has none
    would be left out of the text: two declared rows, the first tampered to hold both rows' JSON in
    a value and the second given a NULL, would give the declared text. The NULL, the quotes and the
    newline in the value each send the window to `row_to_json`, and verify sees the bad digest."""
    from pooler.store.attachments import attachment_table
    from pooler.store.ledger import _postgres_digest

    with Ledger.init(postgres_url, actor="tester", clock=Clock()) as pg:
        with pg.writer("ana@pcl") as w:
            entry = w.append("alloc.run", {"period": "2026-12"}, attachments={"alloc_grant": [
                {"project": "J", "pool": "P", "device_hours": 1, "units": "1.5"},
                {"project": "J2", "pool": "P2", "device_hours": 2, "units": "2.5"}]})
        seq, declared = entry.seq, entry.payload["attachments"]["alloc_grant"]["digest"]
        spec = attachment_table("alloc_grant")
        with pg._transaction() as conn:
            assert _postgres_digest(conn, spec, seq) == (2, declared)
        engine = create_engine(postgres_url)
        try:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE alloc_grant DISABLE TRIGGER USER"))
                conn.execute(text("ALTER TABLE alloc_grant ALTER COLUMN project DROP NOT NULL"))
                conn.execute(text("UPDATE alloc_grant SET units = :u WHERE seq = :s AND units = '1.5'"),
                             {"u": '1.5"}\n{"device_hours":2,"pool":"P2","project":"J2","units":"2.5', "s": seq})
                conn.execute(text("UPDATE alloc_grant SET project = NULL WHERE seq = :s AND units = '2.5'"),
                             {"s": seq})
                conn.execute(text("ALTER TABLE alloc_grant ENABLE TRIGGER USER"))
        finally:
            engine.dispose()
        with pg._transaction() as conn:
            count, digest = _postgres_digest(conn, spec, seq)
        assert count == 2 and digest != declared
        report = pg.verify()
        assert report.first_bad_seq == seq and report.reason.startswith("bad attachment digest")


@pytest.mark.parametrize("declared, tampered", [
    ({"project": "team~1", "job": None}, "project = 'team' || chr(8254) || '1'"),  # the quick way
    ({"project": "p1", "job": "dir\\file"}, "job = 'dir' || chr(165) || chr(165) || 'file'"),  # row_to_json
])
def test_postgresql_verify_reads_utf8_whatever_client_encoding_the_database_sets(declared, tampered):
    """A database (or role) whose default client encoding is SJIS: PostgreSQL writes U+00A5 as a
    backslash and U+203E as a tilde there, so a row changed to those characters would read as its
    declared text and pass verify. pooler's connections ask for UTF-8 (found by review)."""
    from sqlalchemy.engine import make_url

    rows = [{**declared, "pool": "q", "period": "2026-10", "device_hours": "1.5", "start": 0, "end": 10},
            {"project": "p", "pool": "q", "period": "2026-10", "device_hours": "2", "start": 0, "end": 10,
             "job": "j"}]
    with postgres_database() as url:
        with Ledger.init(url, actor="tester", clock=Clock()) as pg:
            with pg.writer("ana@pcl") as w:
                w.append("usage.import", {"period": "2026-10"}, attachments={"usage_line": rows})
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE usage_line DISABLE TRIGGER USER"))
                conn.execute(text(f"UPDATE usage_line SET {tampered} WHERE line = 1"))
                conn.execute(text("ALTER TABLE usage_line ENABLE TRIGGER USER"))
                conn.execute(text(f"ALTER DATABASE {make_url(url).database} SET client_encoding = 'SJIS'"))
        finally:
            engine.dispose()
        with Ledger.open(url) as pg:
            with pg._transaction() as conn:
                assert conn.exec_driver_sql("SHOW client_encoding").scalar() == "UTF8"
            report = pg.verify()
        assert not report.ok and report.reason.startswith("bad attachment digest")


def test_postgresql_verify_uses_postgresqls_own_operators_whatever_the_search_path():
    """A database owner puts a schema with its own `||` for (varchar, varchar) ahead of pg_catalog on
    the database's search path, one that writes a changed figure back as the declared one (the
    quick join's first `||` joins a literal and the varchar `device_hours`, so it would take that
    operator): the verification's statements name pg_catalog's operators and functions, so the
    change still shows (found by review)."""
    from sqlalchemy.engine import make_url

    rows = [{"project": p, "pool": "q", "period": "2026-10", "device_hours": h, "start": 0, "end": 10, "job": None}
            for p, h in (("p1", "1.5"), ("p2", "2"))]
    with postgres_database() as url:
        with Ledger.init(url, actor="tester", clock=Clock()) as pg:
            with pg.writer("ana@pcl") as w:
                seq = w.append("usage.import", {"period": "2026-10"}, attachments={"usage_line": rows}).seq
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE usage_line DISABLE TRIGGER USER"))
                conn.execute(text("UPDATE usage_line SET device_hours = '1500' WHERE device_hours = '1.5'"))
                conn.execute(text("ALTER TABLE usage_line ENABLE TRIGGER USER"))
                conn.execute(text(
                    "CREATE FUNCTION public.pooler_test_cat(varchar, varchar) RETURNS text LANGUAGE sql "
                    "AS $$ SELECT pg_catalog.textcat($1::text, (CASE WHEN $2::text = '1500' THEN '1.5' "
                    "ELSE $2::text END)) $$"))
                conn.execute(text("CREATE OPERATOR public.|| (LEFTARG = varchar, RIGHTARG = varchar, "
                                  "FUNCTION = public.pooler_test_cat)"))
                conn.execute(text(f"ALTER DATABASE {make_url(url).database} SET search_path = public, pg_catalog"))
        finally:
            engine.dispose()
        check = create_engine(url)  # the operator does what it is meant to on a plain connection
        try:
            with check.connect() as conn:
                assert conn.execute(text(
                    "SELECT 'x' || device_hours FROM usage_line WHERE project = 'p1'")).scalar() == "x1.5"
        finally:
            check.dispose()
        with Ledger.open(url) as pg:
            report = pg.verify()
        assert not report.ok and report.first_bad_seq == seq and report.reason.startswith("bad attachment digest")


def test_postgresql_verify_finds_pooler_s_tables_beside_a_schema_named_after_the_user():
    """The search path's "$user" comes before public: a schema of the user's name created after
    pooler's tables (in public) becomes current_schema(). The verification pins the search path to
    pg_catalog and the schema of the journal it reads, not to current_schema() (which made it fail
    with a traceback: relation "journal" does not exist)."""
    with postgres_database() as url:
        with Ledger.init(url, actor="tester", clock=Clock()) as pg:
            populate(pg)
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE SCHEMA AUTHORIZATION CURRENT_USER"))
                assert conn.execute(text("SELECT current_schema()")).scalar() != "public"
        finally:
            engine.dispose()
        with Ledger.open(url) as pg:
            report = pg.verify()
        assert report.ok, report.reason


_PLAIN_VALUES = st.text(alphabet=st.sampled_from('ab 7.é鹏\\"\n\t\x01\x1f\x7f'), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_PLAIN_VALUES, st.one_of(st.none(), _PLAIN_VALUES), st.integers(-3, 10**12)),
                min_size=1, max_size=8),
       st.booleans())
def test_plain_join_check_takes_exactly_the_texts_with_nothing_json_escapes(rows, numpy):
    """`_plain_join` (in Python, and with NumPy for big windows) says a window joined the quick way
    is the canonical text exactly when no value holds a backslash, a quote or a control character."""
    import json
    import pytest as _pytest

    from pooler.store import ledger as ledger_module

    def quick(a, b, n):  # the quick way's text of one row: texts quoted as they are
        return '{"a":"' + a + '","b":' + ('null' if b is None else '"' + b + '"') + ',"n":' + str(n) + "}"

    data = "\n".join(quick(*row) for row in rows).encode("utf-8")
    quotes = len(rows) * 8 + 2 * sum(b is not None for _, b, _ in rows)
    plain = all(not any(c in '\\"' or ord(c) < 0x20 for c in (a + (b or ""))) for a, b, _ in rows)
    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger_module, "_NUMPY_FROM", 0 if numpy else 1 << 20)
        assert ledger_module._plain_join(data, len(rows), quotes) is plain
    if plain:  # and then it is the canonical text
        assert data == "\n".join(json.dumps({"a": a, "b": b, "n": n}, ensure_ascii=False, separators=(",", ":"))
                                   for a, b, n in rows).encode("utf-8")


_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                    st.decimals(allow_nan=True, allow_infinity=True, places=None),
                    st.floats(allow_nan=False), st.sampled_from([D("1.50"), D("-0"), D("sNaN")]))
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_plain_json_is_the_careful_walk_whichever_way_it_goes(value):
    """`plain_json` tries a walk that builds no paths first; it must give exactly what the careful
    walk gives, and the same error (with its path) when there is one."""
    from pooler.store.journal import _plain_json, plain_json

    def outcome(f):
        try:
            return "ok", f(value, "payload")
        except EntryRejected as exc:
            return "refused", str(exc)
    assert outcome(plain_json) == outcome(_plain_json)


@pytest.mark.parametrize("url, words", [
    ("postgresql+psycopg://alice:Sekr1tPW@127.0.0.1:notaport/db", "its port is not a number"),
    ("postgresql+psycopg://alice:p@Sekr1tPW@127.0.0.1/db", "its password holds an '@'; write it as %40"),
])
def test_a_bad_database_url_is_one_error_without_its_password(url, words):
    """Review: a port that is no number was a ValueError traceback while the message was being made,
    and an unescaped '@' in the password sent the driver to a host named after the rest of it, which
    its message then printed."""
    from pooler.store.db import database_url

    with pytest.raises(StoreError) as info:
        database_url(url)
    assert words in str(info.value) and "Sekr1tPW" not in str(info.value) and "alice:***@" in str(info.value)


def test_shown_db_hides_a_password_whole():
    from pooler.store.urls import shown_db

    assert shown_db("./pooler.db") == "./pooler.db"
    assert shown_db("sqlite:////tmp/a:b@c/x.db") == "sqlite:////tmp/a:b@c/x.db"
    assert shown_db("postgresql+psycopg://alice@h/db") == "postgresql+psycopg://alice@h/db"
    for secret in ("s3cret", "p@ss", "pa/ss", "a:b"):
        assert shown_db(f"postgresql+psycopg://alice:{secret}@127.0.0.1:5432/db") == \
            "postgresql+psycopg://alice:***@127.0.0.1:5432/db"


def test_a_connection_lost_mid_read_is_one_error_that_says_so():
    """Review: `ledger verify` while the PostgreSQL server stopped was a traceback
    (PendingRollbackError), and an import lost its connection with two lines, one of psycopg's."""
    import logging

    from sqlalchemy import create_engine, text

    with postgres_database() as url:
        Ledger.init(url, actor="t").close()
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with Ledger.open(url, actor="t") as ledger:
            with pytest.raises(StoreError, match="the connection to the database was lost"):
                with ledger.reader() as reader:
                    pid = reader._conn.execute(text("SELECT pg_backend_pid()")).scalar()
                    with admin.connect() as conn:
                        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    reader.entries()
        admin.dispose()
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("psycopg").handlers)


@pytest.mark.parametrize("url", ["postgresql+psycopq://u@127.0.0.1/db", "postgresql+psycopg2://u@127.0.0.1/db",
                                 "postgres+psycopg://u@127.0.0.1/db"])
def test_a_postgresql_url_with_another_driver_says_what_to_write(url):
    """Review: a typo in the driver gave "Can't load plugin: sqlalchemy.dialects:postgresql.psycopq",
    psycopg2 "No module named 'psycopg2'", and `postgres://` was "not SQLite or PostgreSQL"."""
    with pytest.raises(StoreError, match=r"reaches PostgreSQL through psycopg \(version 3\): write "
                                         r"postgresql\+psycopg://USER@HOST/DBNAME"):
        Ledger.open(url)


def test_a_postgresql_url_without_a_driver_means_psycopg():
    from pooler.store.db import database_url

    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        assert database_url(url).drivername == "postgresql+psycopg"
    with pytest.raises(StoreError, match=r"a mysql database: --db takes a file path, sqlite:///PATH, or "):
        Ledger.open("mysql://u@h/db")


def test_a_missing_postgresql_database_says_to_create_it():
    from sqlalchemy.engine import make_url

    from tests.backends import need_postgres

    url = make_url(need_postgres()).set(database="pooler_no_such_db").render_as_string(hide_password=False)
    for action in (lambda: Ledger.open(url), lambda: Ledger.init(url, actor="t")):
        with pytest.raises(StoreError, match=r"does not exist \(create the database first, e.g. `createdb DBNAME`"):
            action()


def test_a_password_given_as_a_query_parameter_is_hidden_too():
    """Review: `?password=` (and `sslpassword=`) was shown by `init`, in errors and in checkpoints."""
    from pooler.store.db import database_url, describe
    from pooler.store.urls import shown_db

    url = "postgresql+psycopg://pooler@127.0.0.1:5432/p3?password=TopSecret9&sslpassword=Other7&connect_timeout=3"
    for shown in (shown_db(url), describe(database_url(url))):
        assert "TopSecret9" not in shown and "Other7" not in shown and "connect_timeout=3" in shown


@pytest.mark.parametrize("detail, hint", [
    ('FATAL:  database "nosuchdb" does not exist', True), ('FATAL:  role "database_admin" does not exist', False),
    ('could not translate host name "database-1": does not exist', False),
])
def test_the_create_it_hint_is_for_a_missing_database_only(detail, hint):
    from pooler.store.db import connection_hint

    assert bool(connection_hint(detail)) is hint


@pytest.mark.parametrize("url", ["sqlite:///file::memory:?uri=true", "sqlite:///file:m?mode=memory&uri=true"])
def test_an_in_memory_database_named_as_a_uri_is_refused_too(url):
    with pytest.raises(StoreError, match=r"an in-memory SQLite database"):
        Ledger.init(url, actor="t")
