"""Several pooler processes writing to one ledger at once, on SQLite and on PostgreSQL: every entry
lands exactly once, the chain verifies, nobody sees "database is locked", and a reader always sees
one consistent moment."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from decimal import Decimal

from pooler.core.model import Accelerator, Member, Pool
from pooler.store import Ledger

WRITERS = 8
APPENDS = 200
DEADLINE_SECONDS = 240


_barrier = None


def _start(barrier) -> None:
    """Pool initializer: a barrier can reach a spawned process only as it starts, not as an argument."""
    global _barrier
    _barrier = barrier


def expected_of(writer: int, i: int):
    """What the i-th write of a writer is: a member, a pool of its first member, or a batch of rows."""
    return ("member", f"m{writer}-{i:03d}") if i % 3 == 0 else \
        ("pool", f"q{writer}-{i:03d}") if i % 3 == 1 else ("batch", i)


def write(path: str, writer: int) -> list[int]:
    """One process: 200 transactions, in turn a member, a pool (registry entries whose projections are
    written in the same transaction) and a batch of attached rows."""
    seqs = []
    with Ledger.open(path) as ledger:
        _barrier.wait(timeout=DEADLINE_SECONDS)  # start together, so the transactions really interleave
        for i in range(APPENDS):
            kind, key = expected_of(writer, i)
            with ledger.writer(f"writer-{writer}") as w:
                if kind == "member":
                    entry = w.append("member.add", {"record": Member(key, name=f"{writer}/{i}")})
                elif kind == "pool":
                    entry = w.append("pool.add", {"record": Pool(
                        key, member=f"m{writer}-000", accelerator="a800", capacity=Decimal(8 * i))})
                else:
                    entry = w.append("alloc.run", {"writer": writer, "i": i}, attachments={"alloc_grant": [
                        {"project": f"p{writer}", "pool": "gpu", "device_hours": i + k, "units": f"{i}.5"}
                        for k in range(25)]})
            seqs.append(entry.seq)
    return seqs


def check_one_moment(ledger: Ledger) -> int:
    """Within one read transaction, the journal and the member projection describe the same moment."""
    with ledger.reader() as r:
        seq, _ = r.head()
        entries = r.entries()
        members = len(r.records("member"))
    adds = sum(e.kind == "member.add" for e in entries)
    assert len(entries) == seq and members == adds, f"head {seq}, {adds} adds, {members} members"
    return seq


def test_eight_processes_append_1600_entries_exactly_once(db_target):
    path = str(db_target)
    with Ledger.init(path, actor="tester") as ledger, ledger.writer("tester") as w:
        w.append("accelerator.add", {"record": Accelerator("a800", rate=Decimal(1))})
    total = 2 + WRITERS * APPENDS
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    deadline = time.monotonic() + DEADLINE_SECONDS
    reads = 0
    with ProcessPoolExecutor(WRITERS, mp_context=context, initializer=_start, initargs=(barrier,)) as pool, \
            Ledger.open(path) as reader:
        writers = [pool.submit(write, path, n) for n in range(WRITERS)]
        # This process reads while the children write.
        while not all(f.done() for f in writers) and time.monotonic() < deadline:
            check_one_moment(reader)
            reads += 1
            time.sleep(0.02)
        # Any exception in a child ("database is locked" included) is re-raised here.
        written = [seq for future in writers for seq in future.result(timeout=DEADLINE_SECONDS)]
    assert reads > 0

    assert sorted(written) == list(range(3, total + 1))  # each seq given to exactly one append
    with Ledger.open(path) as ledger:
        assert check_one_moment(ledger) == total
        entries = list(ledger.entries())
        landed = [
            (e.actor, (e.kind.split(".")[0], e.payload["record"]["id"]) if e.kind != "alloc.run"
             else ("batch", e.payload["i"])) for e in entries[2:]
        ]
        expected = [(f"writer-{w}", expected_of(w, i)) for w in range(WRITERS) for i in range(APPENDS)]
        assert sorted(landed, key=str) == sorted(expected, key=str)  # all 400, none twice
        for w in range(WRITERS):  # and each writer's appends in its own order
            assert [x for actor, x in landed if actor == f"writer-{w}"] == [
                x for actor, x in expected if actor == f"writer-{w}"]
        report = ledger.verify()  # chain, attachment digests and projections
        assert report.ok, report.problems
        assert report.entries == total
        snap = ledger.snapshot()
        assert len(snap.members) == sum(expected_of(0, i)[0] == "member" for i in range(APPENDS)) * WRITERS
        assert len(snap.pools) == sum(expected_of(0, i)[0] == "pool" for i in range(APPENDS)) * WRITERS
        run = next(e for e in entries if e.kind == "alloc.run")
        rows = ledger.attachment_rows(run.seq, "alloc_grant")
        assert [r["device_hours"] for r in rows] == [run.payload["i"] + k for k in range(25)]


def test_racing_inits_make_one_ledger(tmp_path):
    """Four `pooler init` at once on one new file: one creates the ledger, the others are told it exists."""
    from concurrent.futures import ThreadPoolExecutor

    from pooler.store import LedgerExists

    path = tmp_path / "ledger.db"

    def init(n: int) -> str:
        try:
            Ledger.init(path, actor=f"admin-{n}").close()
            return "created"
        except LedgerExists:
            return "exists"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(init, range(4)))
    assert outcomes == ["created", "exists", "exists", "exists"]
    with Ledger.open(path) as ledger:
        assert [e.kind for e in ledger.entries()] == ["ledger.init"] and ledger.verify().ok
