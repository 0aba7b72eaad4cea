"""The bulk paths of usage: the fast CSV reader against the line-by-line one, rows inserted before their
entry (and taken back when the import is refused), exact sums made by the database, the streamed
decayed usage against the reference, and `verify` still catching any edit of a usage row."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooler.core.model import dec_str
from pooler.core.usage import ChargedLine, member_usage
from pooler.io.usage import PeriodOf, ReadStats, Tally, read_csv, scan_csv
from pooler.services import registry, usage
from pooler.services.context import Context
from pooler.services.registry import open_ledger
from pooler.services.report import used_device_hours
from pooler.store.attachments import attachment_table, canonical_decimal

LEDGER = """
[consortium]
name = "Bulk"

[policy]
usage_half_life_days = 7

[[accelerators]]
id = "gpu"
rate = 1.5

[[members]]
id = "a"
name = "A"

[[members]]
id = "b"
name = "B"

[[pools]]
id = "pa"
member = "a"
accelerator = "gpu"
capacity = 100000

[[pools]]
id = "pb"
member = "b"
accelerator = "gpu"
capacity = 100000

[[projects]]
id = "j1"
sponsors = { a = 1 }
demand = 1000

[[projects]]
id = "j2"
sponsors = { a = 1, b = 2 }
demand = 1000

[[projects]]
id = "j 3"
sponsors = { b = 1 }
demand = 1000

[[projects]]
id = "q\\"uo ü李"
sponsors = { b = 1 }
demand = 1000
"""

OCT = 1_790_812_800  # 2026-10-01T00:00:00Z


@pytest.fixture
def ctx(tmp_path):
    context = Context(db=str(tmp_path / "bulk.db"), actor="test@bulk")
    registry.init(context)
    (tmp_path / "bulk.toml").write_text(LEDGER, encoding="utf-8")
    registry.apply(context, tmp_path / "bulk.toml")
    return context


# Lines that take the fast path and lines that do not (blanks around values, non-canonical and fine
# figures, ISO times, an id with a space, Arabic-Indic digits, a quoted field), all good.
MIXED = [
    "j1,pa,1.5,{s},{e}",
    "j1,pa,1.50,{s},{e}",
    "j2,pb,007,{s},{e}",
    "j2,pb,0.000000001,{s},{e}",
    "j2,pb,0.0000000001,{s},{e}",          # finer than a nanohour: exact Decimal path
    " j1 , pa , 2 , {s} , {e} ",
    "j 3,pb,3.25,{s},{e}",
    "j1,pa,4,2026-10-02T00:00:00,2026-10-02T05:00:00Z",
    '"j2","pa","1e1",{s},{e}',
    "j1,pa,0,{s},{s}",
    "j1,pa,1,{s},{e}",
]


def _mixed_csv(path: Path, repeat: int = 1, job: bool = False) -> Path:
    lines = ["project,pool,device_hours,start,end" + (",job" if job else "")]
    for r in range(repeat):
        for i, template in enumerate(MIXED):
            s = OCT + 86_400 * (r % 40) + 60 * i
            lines.append(template.format(s=s, e=s + 36_000) + (f", job-{r}-{i} " if job else ""))
        lines.append("")  # a blank line is skipped, not counted
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _reference_rows(path: Path, projects, pools, kind="month"):
    stats = ReadStats()
    items = list(read_csv(path.open(encoding="utf-8", newline=""), projects=projects, pools=pools,
                          period=PeriodOf(kind), stats=stats))
    return items, stats


@pytest.mark.parametrize("job", [False, True])
def test_fast_reader_reads_what_the_line_by_line_reader_reads(tmp_path, job):
    path = _mixed_csv(tmp_path / "u.csv", repeat=3, job=job)
    projects, pools = frozenset({"j1", "j2", "j 3"}), frozenset({"pa", "pb"})
    reference, ref_stats = _reference_rows(path, projects, pools)
    stats, tally = ReadStats(), Tally(skip_bad=False)
    rows = [row for chunk in scan_csv(path.open(encoding="utf-8", newline=""), projects=projects, pools=pools,
                                      period=PeriodOf("month"), stats=stats, tally=tally) for row in chunk]
    assert not tally.problems and stats.lines == ref_stats.lines == len(reference) == 33
    spec = attachment_table("usage_line")
    names = [name for name, _ in spec.columns]
    encode = spec.encoder()
    for row, line in zip(rows, reference, strict=True):
        expected = {"project": line.project, "pool": line.pool, "period": line.period,
                    "device_hours": line.device_hours, "start": line.start, "end": line.end, "job": line.job}
        assert encode(dict(zip(names, row)), 1, 1) == encode(expected, 1, 1)
    assert dict(tally.by_pair()) == _sums(((l.project, l.pool), l.device_hours) for l in reference)
    assert {p: h for p, _, h in tally.by_period()} == _sums((l.period, l.device_hours) for l in reference)


def _sums(pairs):
    out: dict = {}
    for key, value in pairs:
        out[key] = out.get(key, Decimal(0)) + value
    return out


def test_bad_lines_are_listed_with_their_numbers_and_nothing_is_written(ctx, tmp_path):
    path = tmp_path / "bad.csv"
    good = [f"j1,pa,1.5,{OCT + i},{OCT + i + 3600}" for i in range(30_000)]
    # Bad lines after several chunks of good ones have been inserted: all must be taken back.
    lines = ["project,pool,device_hours,start,end", *good,
             f"j1,pa,-1,{OCT},{OCT + 3600}", f"nope,pa,1,{OCT},{OCT + 3600}", *good[:10],
             f"j1,pa,1,{OCT + 10},{OCT}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open_ledger(ctx) as ledger:
        head = ledger.head()
    with pytest.raises(usage.UsageImportError) as info:
        usage.import_usage(ctx, path, "csv")
    assert [p.line for p in info.value.problems] == [30_002, 30_003, 30_014]
    assert "negative" in info.value.problems[0].reason and "'nope'" in info.value.problems[1].reason
    with open_ledger(ctx) as ledger:
        assert ledger.head() == head
        assert ledger.verify().ok
    conn = sqlite3.connect(ctx.db)
    assert conn.execute("SELECT count(*) FROM usage_line").fetchone() == (0,)
    # --skip-bad records the good lines, numbered 1..N without gaps.
    outcome = usage.import_usage(ctx, path, "csv", skip_bad=True)
    assert outcome.recorded == 30_010 and [p.line for p in outcome.skipped] == [30_002, 30_003, 30_014]
    assert conn.execute("SELECT count(*), min(line), max(line) FROM usage_line").fetchone() == (30_010, 1, 30_010)


def test_an_import_equals_the_line_by_line_reading(ctx, tmp_path):
    path = _mixed_csv(tmp_path / "u.csv", repeat=5)
    with open_ledger(ctx) as ledger:
        state = ledger.state()
    reference, _ = _reference_rows(path, frozenset(state.collection("project")), frozenset(state.collection("pool")))
    outcome = usage.import_usage(ctx, path, "csv")
    assert outcome.recorded == len(reference) == 55
    assert outcome.device_hours == sum((l.device_hours for l in reference), Decimal(0))
    with open_ledger(ctx) as ledger:
        stored = ledger.attachment_rows(outcome.seq, "usage_line")
        assert ledger.verify().ok
    assert [(r["project"], r["pool"], r["period"], r["device_hours"], r["start"], r["end"]) for r in stored] == \
        [(l.project, l.pool, l.period, l.device_hours, l.start, l.end) for l in reference]
    assert [dec_str(r["device_hours"]) for r in stored][:5] == ["1.5", "1.5", "7", "0.000000001", "0.0000000001"]


def test_database_sums_are_exact(ctx, tmp_path):
    path = _mixed_csv(tmp_path / "u.csv", repeat=4)
    usage.import_usage(ctx, path, "csv")
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        rows = [r for e in reader.entries_of_kind("usage.import") for r in reader.attachment_rows(e.seq, "usage_line")]
        expected = _sums(((r["project"], r["pool"]), r["device_hours"]) for r in rows if r["period"] == "2026-10")
        assert used_device_hours(reader, "2026-10") == expected
        assert expected[("j2", "pb")] == 4 * (7 + Decimal("0.000000001") + Decimal("0.0000000001"))
        assert used_device_hours(reader, "2026-09") == {}


def test_sums_that_overflow_64_bits_fall_back_to_exact_python(ctx):
    with open_ledger(ctx) as ledger:
        with ledger.writer("t") as w:
            seq = w.append("usage.import", {"file": "huge"}, attachments={"usage_line": [
                {"project": "j1", "pool": "pa", "period": "2026-10", "device_hours": "999999999.987654321",
                 "start": OCT, "end": OCT + 1, "job": None} for _ in range(20)]}).seq
        with ledger.reader() as reader:
            sums = list(reader.attachment_sums("usage_line", "device_hours", ("project",), kind="usage.import"))
    assert sums == [(("j1",), 20, 20 * Decimal("999999999.987654321"))]
    assert seq > 0


def test_streamed_decayed_usage_equals_the_reference(ctx, tmp_path):
    for r in range(3):
        usage.import_usage(ctx, _mixed_csv(tmp_path / f"u{r}.csv", repeat=10 + r), "csv")
    fair = usage.fairshare(ctx, "2026-12")
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        state = reader.state()
        lines = [ChargedLine(row["project"], row["pool"], row["period"], row["device_hours"], row["end"])
                 for e in reader.entries_of_kind("usage.import")
                 for row in reader.attachment_rows(e.seq, "usage_line")]
    reference = member_usage(lines, stakes={p: dict(rs.record.sponsors) for p, rs in state.collection("project").items()},
                             rate=lambda pool, period: Decimal("1.5"), as_of=1_796_083_200,
                             half_life_days=Decimal(7), members=["a", "b"])
    assert fair.lines == reference.lines == len(lines)
    assert {r.member: r.decayed_usage for r in fair.rows} == dict(reference.decayed)  # digit for digit
    assert {r.member: r.raw_usage for r in fair.rows} == dict(reference.raw)


@pytest.mark.parametrize("statement", [
    "UPDATE usage_line SET device_hours = '1.6' WHERE line = 1",
    "UPDATE usage_line SET device_hours = '1.50' WHERE line = 1",        # same value, other text
    "UPDATE usage_line SET project = 'j2' WHERE line = 2",
    "UPDATE usage_line SET \"end\" = \"end\" + 1 WHERE line = 3",
    "UPDATE usage_line SET start = start || 'x' WHERE line = 3",          # an int become text
    "UPDATE usage_line SET job = 'x' WHERE line = 4",
    "UPDATE usage_line SET period = '2026-11' WHERE line = 5",
    "UPDATE usage_line SET device_hours = 7.0 WHERE line = 3",           # a float in place of "7"
    "DELETE FROM usage_line WHERE line = 7",
    "UPDATE usage_line SET line = line + 1000 WHERE line = 8",
    "INSERT INTO usage_line SELECT seq, 999, project, pool, period, device_hours, start, \"end\", job "
    "FROM usage_line WHERE line = 1",
])
def test_verify_catches_any_edit_of_a_usage_row(ctx, tmp_path, statement):
    usage.import_usage(ctx, _mixed_csv(tmp_path / "u.csv", repeat=2, job=True), "csv")
    with open_ledger(ctx) as ledger:
        assert ledger.verify().ok
    conn = sqlite3.connect(ctx.db, isolation_level=None)
    conn.execute("DROP TRIGGER usage_line_no_update")
    conn.execute("DROP TRIGGER usage_line_no_delete")
    conn.execute(statement)
    conn.executescript("""
        CREATE TRIGGER usage_line_no_update BEFORE UPDATE ON usage_line
        BEGIN SELECT RAISE(ABORT, 'usage_line is append-only: UPDATE refused'); END;
        CREATE TRIGGER usage_line_no_delete BEFORE DELETE ON usage_line
        BEGIN SELECT RAISE(ABORT, 'usage_line is append-only: DELETE refused'); END;
    """)
    conn.close()
    with open_ledger(ctx) as ledger:
        report = ledger.verify()
    assert not report.ok
    assert "bad attachment digest: usage_line" in report.problems[0].reason


def test_rows_sqlite_writes_differently_still_verify(ctx, tmp_path):
    """Ids with quotes, control characters and other scripts: the fast JSON digest may disagree with
    Python's canonical text, and then the exact way decides."""
    path = tmp_path / "odd.csv"
    path.write_text('project,pool,device_hours,start,end,job\n"q""uo ü李",pa,1,1790812800,1790816400,"a\x1fb\x01\tc"\n',
                    encoding="utf-8")
    outcome = usage.import_usage(ctx, path, "csv")
    assert outcome.recorded == 1
    with open_ledger(ctx) as ledger:
        assert ledger.verify().ok
        row = ledger.attachment_rows(outcome.seq, "usage_line")[0]
    assert (row["project"], row["job"]) == ('q"uo ü李', "a\x1fb\x01\tc")


@settings(max_examples=300, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=None) | st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{0,5})?", fullmatch=True))
def test_canonical_decimal_text_is_recognised_exactly(value):
    text = str(value)
    try:
        canonical = dec_str(Decimal(text))
    except Exception:
        return
    assert bool(canonical_decimal(text)) == (canonical == text)
