"""What the import's faster paths must keep: the ids and period kind it reads without the whole state,
the per-pair totals made only when read, period totals of lines in no time order, and on PostgreSQL
the rows sent by COPY (the same rows, digest and payload as SQLite's; a COPY that fails leaves
nothing behind)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError

from pooler.io.usage import PeriodOf, ReadStats, Tally, read_csv, scan_csv
from pooler.services import registry, usage
from pooler.services.context import Context
from pooler.services.registry import open_ledger
from tests.backends import db_digest
from tests.test_usage_bulk import LEDGER, OCT, _mixed_csv

WEEKLY = LEDGER.replace('name = "Bulk"', 'name = "Bulk"\nperiod = "week"')


def _ctx(db_target, tmp_path, manifest=LEDGER) -> Context:
    ctx = Context(db=str(db_target), actor="test@paths")
    registry.init(ctx)
    (tmp_path / "paths.toml").write_text(manifest, encoding="utf-8")
    registry.apply(ctx, tmp_path / "paths.toml")
    return ctx


@pytest.mark.parametrize("manifest", [LEDGER, WEEKLY])
def test_usage_view_is_what_the_state_holds(db_target, tmp_path, manifest):
    ctx = _ctx(db_target, tmp_path, manifest)
    registry.retire(ctx, "project", "j2")  # retired ids stay known: their usage may still arrive
    with open_ledger(ctx) as ledger, ledger.writer("t") as writer:
        kind, projects, pools = writer.usage_view()
        state = writer.state()
        assert kind == state.consortium.period == ("week" if manifest is WEEKLY else "month")
        assert projects == frozenset(state.collection("project")) and "j2" in projects
        assert pools == frozenset(state.collection("pool")) == {"pa", "pb"}
        writer.rollback()


def test_an_empty_ledger_has_the_default_period_kind(db_target):
    ctx = Context(db=str(db_target), actor="test@paths")
    registry.init(ctx)
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        assert reader.usage_view() == (reader.state().consortium.period, frozenset(), frozenset())


def _shuffled_csv(path, n=3000, seed=3):
    """Lines over three months in random order (a period switch nearly every other line), on many
    pairs, some with figures finer than a nanohour and some that only the slow path reads."""
    rng = random.Random(seed)
    projects, pools = ["j1", "j2", "j 3"], ["pa", "pb"]
    lines = ["project,pool,device_hours,start,end"]
    for i in range(n):
        start = OCT - 30 * 86_400 + rng.randrange(90 * 86_400)
        hours = rng.choice(["1.25", "0.5", "3", "0.0000000001", "2.50", " 4 ", str(rng.randrange(1, 900) / 100)])
        lines.append(f"{rng.choice(projects)},{rng.choice(pools)},{hours},{start},{start + 36_000}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_totals_of_shuffled_lines_equal_the_line_by_line_reading(tmp_path):
    path = _shuffled_csv(tmp_path / "s.csv")
    projects, pools = frozenset({"j1", "j2", "j 3"}), frozenset({"pa", "pb"})
    reference = list(read_csv(path.open(encoding="utf-8", newline=""), projects=projects, pools=pools,
                              period=PeriodOf("month"), stats=ReadStats()))
    stats, tally = ReadStats(), Tally(skip_bad=False)
    rows = [r for chunk in scan_csv(path.open(encoding="utf-8", newline=""), projects=projects, pools=pools,
                                    period=PeriodOf("month"), stats=stats, tally=tally) for r in chunk]
    assert len(rows) == len(reference) == 3000 and not tally.problems
    periods: dict = {}
    pairs: dict = {}
    for line in reference:
        lines, hours = periods.get(line.period, (0, Decimal(0)))
        periods[line.period] = (lines + 1, hours + line.device_hours)
        key = (line.project, line.pool)
        pairs[key] = pairs.get(key, Decimal(0)) + line.device_hours
    assert len(periods) == 3
    assert {label: (n, h) for label, n, h in tally.by_period()} == periods
    totals = tally.pair_totals()
    assert dict(totals) == pairs == dict(tally.by_pair())
    assert len(totals) == len(pairs) and ("j1", "pa") in totals and ("j1", "nope") not in totals
    with pytest.raises(KeyError):
        totals[("j1", "nope")]


def test_a_fixed_period_counts_every_line_once(tmp_path):
    path = _shuffled_csv(tmp_path / "s.csv", n=500)
    stats, tally = ReadStats(), Tally(skip_bad=False)
    list(scan_csv(path.open(encoding="utf-8", newline=""), projects=frozenset({"j1", "j2", "j 3"}),
                  pools=frozenset({"pa", "pb"}), period=PeriodOf("month", "2026-12"), stats=stats, tally=tally))
    ((label, lines, hours),) = tally.by_period()
    assert (label, lines) == ("2026-12", 500) and hours == sum(dict(tally.by_pair()).values())


def test_the_outcome_and_its_json_list_every_pair(db_target, tmp_path):
    ctx = _ctx(db_target, tmp_path)
    outcome = usage.import_usage(ctx, _shuffled_csv(tmp_path / "s.csv", n=800), "csv")
    data = outcome.to_json_dict()
    assert len(data["by_project_pool"]) == len(outcome.by_project_pool) == 6
    assert sum(outcome.by_project_pool.values()) == outcome.device_hours
    assert [(r["project"], r["pool"]) for r in data["by_project_pool"]] == sorted(outcome.by_project_pool)


def test_rows_and_entry_are_the_same_on_both_databases(db_target, tmp_path):
    """Whatever the way in (SQLite's INSERTs, PostgreSQL's COPY): the same stored rows, the same
    payload (row count and digest included), and `verify` passes."""
    path = _mixed_csv(tmp_path / "u.csv", repeat=2, job=True)
    odd = tmp_path / "odd.csv"  # text COPY must escape tabs, newlines, backslashes; NULL stays NULL
    odd.write_text('project,pool,device_hours,start,end,job\n'
                   '"q""uo ü李",pa,1,1790812800,1790816400,"a\tb\\\\N\nc\\\\"\n'
                   'j1,pb,2.5,1790812800,1790816400,\n'
                   'j1,pb,2.5,1790812800,1790816400,\\N\n', encoding="utf-8")
    here = _ctx(tmp_path / "reference.db", tmp_path)
    for c in (_ctx(db_target, tmp_path), here):
        for f in (path, odd):
            usage.import_usage(c, f, "csv")
    seen = []
    for c in (here, Context(db=str(db_target), actor="x")):
        with open_ledger(c) as ledger:
            assert ledger.verify().ok
            entries = [e for e in ledger.entries() if e.kind == "usage.import"]
            seen.append([(e.payload, ledger.attachment_rows(e.seq, "usage_line")) for e in entries])
    assert seen[0] == seen[1]
    odd_rows = seen[0][1][1]
    assert [r["job"] for r in odd_rows] == ["a\tb\\\\N\nc\\\\", None, "\\N"]


class _Spoiled:
    """The import's chunks, spoiled after `after` rows: the reader refuses there (`by_reader`), or a row
    goes to the database with a NUL in its job id, which PostgreSQL's text refuses (in the COPY)."""

    def __init__(self, chunks, after: int, by_reader: bool) -> None:
        self.chunks, self.after, self.by_reader = chunks, after, by_reader

    def __iter__(self):
        sent = 0
        for chunk in self.chunks:
            if sent + len(chunk) > self.after:
                if self.by_reader:
                    raise usage.UsageImportError("refused in the middle")
                chunk = [*chunk[:-1], (*chunk[-1][:6], "nul\x00here")]
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.chunks.close()


@pytest.mark.parametrize("by_reader", [True, False])
def test_a_failing_copy_leaves_nothing(tmp_path, monkeypatch, by_reader):
    """On PostgreSQL the rows go to the database by COPY as they are read: an import refused in the
    middle of it, after many rows went in, by the reader or by the database, leaves nothing."""
    from tests.backends import postgres_database

    real = usage.rows_of
    with postgres_database() as url:
        ctx = _ctx(url, tmp_path)
        usage.import_usage(ctx, _mixed_csv(tmp_path / "first.csv"), "csv")
        before = db_digest(url)
        path = tmp_path / "many.csv"
        path.write_text("\n".join(["project,pool,device_hours,start,end",
                                   *[f"j1,pa,1.5,{OCT + i},{OCT + i + 3600}" for i in range(45_000)]]) + "\n",
                        encoding="utf-8")
        monkeypatch.setattr(usage, "rows_of", lambda *a, **k: _Spoiled(real(*a, **k), 40_000, by_reader))
        with pytest.raises(usage.UsageImportError if by_reader else DBAPIError):
            usage.import_usage(ctx, path, "csv")
        monkeypatch.setattr(usage, "rows_of", real)
        assert db_digest(url) == before
        with open_ledger(ctx) as ledger:
            assert ledger.verify().ok
        usage.import_usage(ctx, _mixed_csv(tmp_path / "after.csv", repeat=2), "csv")  # the ledger still writes
        with open_ledger(ctx) as ledger:
            assert ledger.verify().ok


@pytest.mark.parametrize("fmt, text", [
    ("csv", "project,pool,device_hours,start,end\nj1,pa,1,1790812800,1" + "0" * 300 + "\n"),
    ("csv", "project,pool,device_hours,start,end\nj1,pa,1,1790812800,9999-12-31T23:00:00\n"),
    ("sacct", "1|c|j1|u|pa|normal|gres/gpu=1|15|1790812800|1" + "0" * 300 + "|COMPLETED\n"),
    ("sacct", "1|c|j1|u|pa|normal|gres/gpu=1|1" + "0" * 300 + "|1790812800|Unknown|RUNNING\n"),
])
def test_times_past_the_year_9000_are_bad_lines(tmp_path, fmt, text):
    """Found by tests/test_hostile.py: such an end made the period lookup overflow (a traceback)."""
    ctx = _ctx(tmp_path / "late.db", tmp_path)
    path = tmp_path / "late.txt"
    path.write_text(text, encoding="utf-8")
    before = db_digest(tmp_path / "late.db")
    with pytest.raises(usage.UsageImportError, match="line"):
        usage.import_usage(ctx, path, fmt, include_running=fmt == "sacct")
    assert db_digest(tmp_path / "late.db") == before


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["p", "q", "r"]),
                          st.integers(0, 10**12), st.booleans(), st.integers(1, 9)), max_size=40),
       st.integers(0, 15))
def test_the_largest_pairs_are_the_exact_leaders(entries, n):
    """`PairTotals.largest` (the usage summary on a terminal) ranks exactly as sorting every pair's
    Decimal would: whole nanohours as integers, pairs with a finer remainder made exact."""
    tally = Tally(skip_bad=False)
    for project, pool, nano, finer, digit in entries:
        key = (project, pool)
        tally.pairs[key] = tally.pairs.get(key, 0) + nano
        if finer:  # a remainder below a nanohour, as `Tally.add` keeps it
            tally.fine_pairs[key] = tally.fine_pairs.get(key, Decimal(0)) + Decimal(digit).scaleb(-10)
    totals = tally.pair_totals()
    expected = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    assert totals.largest(n) == expected


def test_times_after_2038_are_stored(db_target, tmp_path):
    """Usage times are 64-bit on both databases (PostgreSQL's were 32-bit until schema version 2, and
    a line after 2038-01-19T03:14:07Z ended the import in a driver traceback)."""
    ctx = _ctx(db_target, tmp_path)
    path = tmp_path / "2040.csv"
    path.write_text("project,pool,device_hours,start,end\n"
                    "j1,pa,1,2037-12-31T00:00:00Z,2037-12-31T01:00:00Z\n"
                    "j1,pa,10,2040-01-01T00:00:00Z,2040-01-01T10:00:00Z\n", encoding="utf-8")
    outcome = usage.import_usage(ctx, path, "csv")
    assert outcome.recorded == 2
    with open_ledger(ctx) as ledger:
        rows = ledger.attachment_rows(outcome.seq, "usage_line")
        assert rows[-1]["end"] == 2209024800 and ledger.verify().ok


def _copy_decode(text: str) -> list[tuple]:
    """PostgreSQL's reading of COPY's text format (the subset `_CopyRows` writes), written apart."""
    unescape = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
    if "\r" in text:
        raise ValueError("literal carriage return found in data")  # PostgreSQL: a line ends there
    rows = []
    for line in text.split("\n")[:-1]:
        row = []
        for field in line.split("\t"):
            if field == "\\N":
                row.append(None)
                continue
            out, i = [], 0
            while i < len(field):
                if field[i] == "\\":
                    out.append(unescape[field[i + 1]])
                    i += 2
                else:
                    out.append(field[i])
                    i += 1
            row.append("".join(out))
        rows.append(tuple(row))
    return rows


_COPY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**62), _COPY_TEXT, st.one_of(st.none(), _COPY_TEXT),
                          st.sampled_from(["plain", "x\\N", "\\", "\t", "\n", "\r", "é"])), max_size=30))
def test_copy_text_reads_back_as_the_rows(rows):
    """A chunk written the quick way (no value needs escaping) or value by value reads back, by
    PostgreSQL's rules, as exactly its rows: ints as their digits, text as it is, NULL as NULL."""
    from pooler.store.ledger import _CopyRows

    copy = _CopyRows(None, "", 4, [2])
    expected = [(str(n), a, b, c) for n, a, b, c in rows]
    assert _copy_decode(copy._text(rows)) == expected
