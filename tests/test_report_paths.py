"""The fast ways of the audit report against the plain ones: usage summed here against the database's
sums, the project figures in integers against Decimals, the JSON writer against `json.dumps`, and the
report with its verification run in a second process against the report that verifies first."""

from __future__ import annotations

import json
import sqlite3
from decimal import Context as DecimalContext
from decimal import Decimal, localcontext

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pooler.core.settle import settle
from pooler.reports import audit as audit_module
from pooler.reports.audit import to_plain
from pooler.reports.render_csv import render_json
from pooler.services import beside, registry, report, usage
from pooler.services.registry import open_ledger
from tests.test_settle import _odd_settlement_inputs, _pair_hours
from tests.test_usage_bulk import OCT, _mixed_csv
from tests.test_usage_import_paths import _ctx

PERIOD = "2026-10"


@pytest.fixture
def ctx(tmp_path):
    """An SQLite ledger with `test_usage_bulk`'s consortium (ids with blanks, quotes, other scripts)."""
    return _ctx(tmp_path / "paths.db", tmp_path)


def test_usage_summed_here_equals_the_databases_sums(ctx, tmp_path):
    usage.import_usage(ctx, _mixed_csv(tmp_path / "a.csv", repeat=7, job=True), "csv")
    usage.import_usage(ctx, _mixed_csv(tmp_path / "b.csv", repeat=3), "csv")
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        here = report.used_device_hours(reader, PERIOD)
        database = {(str(j), str(p)): hours for (j, p), _, hours in reader.attachment_sums(
            "usage_line", "device_hours", ("project", "pool"), kind="usage.import", equal={"period": PERIOD})}
    assert here.fine  # figures finer than a nanohour are among them
    assert list(here) == list(database)  # the same pairs in the same order
    assert [str(h) for h in here.values()] == [str(h) for h in database.values()]  # the same text


@pytest.mark.parametrize("finer", [False, True])
def test_usage_summed_as_columns_equals_the_databases_sums(db_target, tmp_path, monkeypatch, finer):
    """From `_COLUMNS_FROM` lines on the pairs are summed by NumPy and kept as columns; a figure
    finer than a nanohour sends the whole period the exact way. Both give the database's sums (on
    PostgreSQL the lines come from a server-side cursor)."""
    ctx = _ctx(db_target, tmp_path)
    monkeypatch.setattr(report, "_COLUMNS_FROM", 0)
    if finer:
        csv = _mixed_csv(tmp_path / "a.csv", repeat=7)
    else:
        csv = tmp_path / "a.csv"
        csv.write_text("project,pool,device_hours,start,end\n" + "".join(
            f"{j},{p},{h},{1790812800 + 60 * i},{1790812800 + 60 * i + 3600}\n"
            for i, (j, p, h) in enumerate([("j2", "pb", "7"), ("j1", "pa", "1.5"), ("j 3", "pb", "0.000000001"),
                                           ("j1", "pb", "2"), ("j1", "pa", "2.25"), ("j 3", "pa", "12")])),
            encoding="utf-8")
    usage.import_usage(ctx, csv, "csv")
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        here = report.used_device_hours(reader, PERIOD)
        database = {(str(j), str(p)): hours for (j, p), _, hours in reader.attachment_sums(
            "usage_line", "device_hours", ("project", "pool"), kind="usage.import", equal={"period": PERIOD})}
    assert (here._nano is None) is not finer  # columns only, or the exact way
    assert len(here) == len(database) > 3
    assert list(here) == list(database)  # the same pairs in the same order
    assert list(here.values()) == list(database.values())
    if not isinstance(db_target, str):  # SQLite's sums are in canonical form too (PostgreSQL: 70.0)
        assert [str(h) for h in here.values()] == [str(h) for h in database.values()]


def test_rows_come_a_chunk_at_a_time_and_a_stream_left_early_lets_go(db_target, tmp_path, monkeypatch):
    from pooler.store import ledger as ledger_module

    ctx = _ctx(db_target, tmp_path)
    usage.import_usage(ctx, _mixed_csv(tmp_path / "a.csv", repeat=7), "csv")
    monkeypatch.setattr(ledger_module, "_ATTACHMENT_CHUNK", 4)
    columns = ("project", "pool", "device_hours", "end")
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        chunks = list(reader.attachment_chunks("usage_line", columns, kind="usage.import"))
        rows = reader.attachment_rows(reader.head()[0], "usage_line")
        for _ in range(3):  # left after one chunk: the cursor is closed, the next stream starts afresh
            stream = reader.attachment_chunks("usage_line", columns, equal={"period": PERIOD})
            first = next(stream)
            stream.close()
        head = reader.head()
    assert [len(c) for c in chunks[:-1]] == [4] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 4
    flat = [tuple(r) for c in chunks for r in c]
    assert len(flat) == len(rows) > 40 and list(first) == list(chunks[0])
    assert all(type(v) in (str, int) for r in flat for v in r)
    assert [(p, q, Decimal(h), e) for p, q, h, e in flat] == [
        (r["project"], r["pool"], r["device_hours"], r["end"]) for r in rows]
    assert head[0] > 0  # the transaction is still usable after the streams left early


@pytest.mark.parametrize("window_blocks", [1, 2048])
def test_columns_hold_the_rows_of_the_chunks_whatever_their_texts(db_target, tmp_path, monkeypatch, window_blocks):
    """`attachment_columns` (on PostgreSQL: a window of the table's blocks joined by the server and
    split here) gives the rows `attachment_chunks` gives, as columns: with windows of one block, with
    a value holding a tab (that window row by row), with NULLs (jobs not given), with ids of blanks,
    quotes and other scripts."""
    from pooler.store import ledger as ledger_module

    ctx = _ctx(db_target, tmp_path)
    usage.import_usage(ctx, _mixed_csv(tmp_path / "a.csv", repeat=40, job=True), "csv")
    tabbed = tmp_path / "c.csv"  # whole blocks of rows with a tab in a value and no NULL
    tabbed.write_text("project,pool,device_hours,start,end,job\n" + "".join(
        f'j1,pa,2,{OCT + i},{OCT + 3600},"a\tjob {i}"\nj 3,pb,1,{OCT},{OCT + 60},plain\n' for i in range(300)),
        encoding="utf-8")
    usage.import_usage(ctx, tabbed, "csv")
    usage.import_usage(ctx, _mixed_csv(tmp_path / "b.csv", repeat=5), "csv")  # no job: NULL
    monkeypatch.setattr(ledger_module, "_COLUMN_BLOCKS", window_blocks)
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        for columns, equal in [(("project", "pool", "device_hours"), {"period": PERIOD}),
                               (("job", "project", "period"), None),
                               (("job",), {"project": "j1"}),
                               (("project", "end"), None)]:  # not all text: the chunks' way
            chunks = sorted((row for chunk in reader.attachment_chunks(
                "usage_line", columns, kind="usage.import", equal=equal) for row in chunk), key=repr)
            parts = list(reader.attachment_columns("usage_line", columns, kind="usage.import", equal=equal))
            assert all(len(part) == len(columns) and len(part[0]) > 0 for part in parts)
            assert sorted((row for part in parts for row in zip(*part)), key=repr) == chunks, columns
            assert len(chunks) > 40
        jobs = [job for part in reader.attachment_columns("usage_line", ("job",), kind="usage.import")
                for job in part[0]]
    assert "a\tjob 7" in jobs and None in jobs and "plain" in jobs


def test_columns_are_read_in_windows_only_within_one_snapshot(db_target, tmp_path, monkeypatch):
    """The windows of `attachment_columns` are statements of their own, so they add up to the table
    only under one snapshot: in a READ COMMITTED transaction on PostgreSQL the rows come from
    `attachment_chunks` instead (the same rows); in a reader's transaction they do not."""
    from pooler.store.ledger import Reader

    ctx = _ctx(db_target, tmp_path)
    usage.import_usage(ctx, _mixed_csv(tmp_path / "a.csv", repeat=7), "csv")
    chunked = []
    real = Reader.attachment_chunks

    def spy(self, *args, **kwargs):
        chunked.append(args[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Reader, "attachment_chunks", spy)
    columns = ("project", "pool", "device_hours")

    def rows(reader):
        return sorted(row for part in reader.attachment_columns("usage_line", columns, kind="usage.import")
                      for row in zip(*part))

    with open_ledger(ctx) as ledger:
        with ledger.reader() as reader:
            in_reader = rows(reader)
        postgres = ledger._engine.dialect.name == "postgresql"
        assert chunked == ([] if postgres else ["usage_line"])
        chunked.clear()
        with ledger._engine.connect() as conn, conn.begin():
            if postgres:
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            assert rows(Reader(conn)) == in_reader
    assert chunked == ["usage_line"] and len(in_reader) > 7


def test_a_stream_outliving_its_transaction_does_not_fail_the_next_one(db_target, tmp_path, monkeypatch):
    """A stream kept alive after its read transaction (say by a traceback) and closed later, while
    the same pooled connection is in another transaction: that transaction goes on (on PostgreSQL
    the server-side cursor was closed when the first transaction ended)."""
    from pooler.store import ledger as ledger_module

    ctx = _ctx(db_target, tmp_path)
    usage.import_usage(ctx, _mixed_csv(tmp_path / "a.csv", repeat=3), "csv")
    monkeypatch.setattr(ledger_module, "_ATTACHMENT_CHUNK", 2)
    with open_ledger(ctx) as ledger:
        with ledger.reader() as reader:
            stream = reader.attachment_chunks("usage_line", ("project", "pool"), kind="usage.import")
            next(stream)
        with ledger.reader() as reader:
            head = reader.head()
            stream.close()  # late
            assert reader.head() == head and reader.state().consortium is not None
        with ledger.writer("t@paths") as writer:  # and inside a write transaction
            stream = writer.attachment_chunks("usage_line", ("project", "pool"), kind="usage.import")
            assert next(stream)
        del stream
        assert ledger.verify().ok


_pair_lines = st.lists(st.tuples(st.sampled_from(["j1", "j 3", "J", "é", "j10", "j2", "\u4e2d"]),
                                 st.sampled_from(["pa", "pb", "p'1", "P", "p\u00e9"]),
                                 st.integers(0, 10**12) | st.sampled_from([0, 1, 10**9])), max_size=60)


@settings(max_examples=200, deadline=None)
@given(_pair_lines)
def test_lines_summed_as_columns_equal_a_dict_of_sums(lines):
    import numpy as np

    from pooler.core.usage import PairColumns, PairHours

    projects = list(dict.fromkeys(j for j, _, _ in lines))
    pools = list(dict.fromkeys(p for _, p, _ in lines))
    columns = PairColumns.of_lines(np.array([projects.index(j) for j, _, _ in lines], dtype=np.int64), projects,
                                   np.array([pools.index(p) for _, p, _ in lines], dtype=np.int64), pools,
                                   np.array([n for _, _, n in lines], dtype=np.int64))
    sums: dict = {}
    for j, p, n in lines:
        sums[(j, p)] = sums.get((j, p), 0) + n
    expected = dict(sorted(sums.items()))
    assert list(columns.as_dict().items()) == list(expected.items())
    assert [columns.key(i) for i in range(len(columns))] == list(expected)
    pairs = PairHours.of_columns(columns)
    assert len(pairs) == len(expected) and pairs.nano_range() == (min(expected.values(), default=0),
                                                                   max(expected.values(), default=0))
    assert dict(pairs) == dict(PairHours(expected, ordered=True))


def test_lines_too_big_for_int64_are_not_summed_as_columns():
    import numpy as np

    from pooler.core.usage import PairColumns

    big = np.array([2**61, 2**61], dtype=np.int64)
    assert PairColumns.of_lines(np.zeros(2, dtype=np.int64), ["j"], np.zeros(2, dtype=np.int64), ["p"], big) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_settlement_inputs())
def test_settlement_and_project_figures_from_columns_equal_those_from_a_dict(inputs):
    """The report's big-ledger way (pairs held as columns, never a dict) gives the same settlement and
    project figures as pairs held as a dict."""
    import numpy as np

    from pooler.core import settle as settle_module
    from pooler.core.usage import PairColumns, PairHours

    snap, figures, granted, used = inputs
    whole = {k: v for k, v in used.items() if v >= 0 and v.scaleb(9) % 1 == 0}
    as_dict = _pair_hours(whole, ordered=True)
    if max(as_dict.nano.values(), default=0) >= 2**62:  # lines this big never reach the columns
        return
    keys = list(as_dict.nano)
    projects, pools = list(dict.fromkeys(k[0] for k in keys)), list(dict.fromkeys(k[1] for k in keys))
    columns = PairColumns.of_lines(np.array([projects.index(k[0]) for k in keys], dtype=np.int64), projects,
                                   np.array([pools.index(k[1]) for k in keys], dtype=np.int64), pools,
                                   np.array(list(as_dict.nano.values()), dtype=np.int64))
    if columns is None:  # too big for int64: the report keeps the dict
        return
    old = settle_module._ARRAYS_FROM, audit_module._ARRAYS_FROM
    try:
        settle_module._ARRAYS_FROM = audit_module._ARRAYS_FROM = 0
        from_columns = PairHours.of_columns(columns)
        settled = settle(snap, None, figures, granted, from_columns)
        assert settled == settle(snap, None, figures, granted, as_dict)
        pools_by_id = {p.pool: p for p in settled.pools}
        records = snap.by_id("project")
        assert (audit_module._project_use(from_columns, pools_by_id, records)
                == audit_module._project_use(as_dict, pools_by_id, records))
    finally:
        settle_module._ARRAYS_FROM, audit_module._ARRAYS_FROM = old


def test_a_stored_figure_that_is_not_a_number_is_an_error(ctx, tmp_path):
    usage.import_usage(ctx, _mixed_csv(tmp_path / "a.csv"), "csv")
    conn = sqlite3.connect(ctx.db, isolation_level=None)
    conn.execute("DROP TRIGGER usage_line_no_update")
    conn.execute("UPDATE usage_line SET device_hours = 'lots' WHERE line = 3")
    conn.close()
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        with pytest.raises(Exception, match="'lots' where a decimal quantity belongs"):
            report.used_device_hours(reader, PERIOD)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_settlement_inputs())
def test_project_figures_in_integers_equal_the_decimal_ones(inputs):
    snap, figures, granted, used = inputs
    pairs = _pair_hours(used, ordered=False)
    pools = {p.pool: p for p in settle(snap, None, figures, granted, pairs).pools}
    records = snap.by_id("project")
    fast = audit_module._project_use(pairs, pools, records)
    if fast is not None:  # None: a figure finer than a nanohour, negative, or too long to be sure of
        assert fast == audit_module._project_use_decimal(dict(pairs), pools, records)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_settlement_inputs(), st.sampled_from([1, 10**6, 10**13]))
def test_project_figures_in_arrays_equal_the_integer_loop(inputs, scale):
    """The NumPy way (big ledgers) gives the loop's figures in the same text (the same exponent, so
    the report's bytes are the same); figures too big for int64 (scale 1e13) fall back to the loop."""
    snap, figures, granted, used = inputs
    with localcontext(DecimalContext(prec=100)):
        whole = {k: v * scale for k, v in used.items() if v >= 0 and (v * scale).scaleb(9) % 1 == 0}
        pairs = _pair_hours(whole, ordered=True)
    pools = {p.pool: p for p in settle(snap, None, figures, granted, pairs).pools}
    records = snap.by_id("project")
    old = audit_module._ARRAYS_FROM
    try:
        audit_module._ARRAYS_FROM = 0
        arrays = audit_module._project_use(pairs, pools, records)
        audit_module._ARRAYS_FROM = 10**12
        loop = audit_module._project_use(pairs, pools, records)
    finally:
        audit_module._ARRAYS_FROM = old
    as_text = None if loop is None else tuple({k: str(v) for k, v in part.items()} for part in loop)
    assert (None if arrays is None else tuple({k: str(v) for k, v in part.items()} for part in arrays)) == as_text


def test_project_figures_in_arrays_keep_the_loops_form_of_a_speed(monkeypatch):
    """A speed written 2.50 in one table and 2.5 in another is one figure to the loop, in the form
    of the pair it meets first; the arrays see every table at once, so they leave such tables to it."""
    from tests.test_settle import _snapshot

    snap = _snapshot([("p1", "A", "gpu", 100), ("p2", "A", "tpu", 100)],
                     [("a", {"A": 1}, {"gpu": "2.50", "tpu": "1"}), ("b", {"A": 1}, {"gpu": "2.5"})],
                     rates={"gpu": "1", "tpu": "1"})
    pairs = _pair_hours({("a", "p2"): Decimal(1), ("b", "p1"): Decimal("0.1")}, ordered=True)
    pools = {p.pool: p for p in settle(snap, None, {}, {}, pairs).pools}
    records = snap.by_id("project")
    monkeypatch.setattr(audit_module, "_ARRAYS_FROM", 0)
    arrays = audit_module._project_use(pairs, pools, records)
    monkeypatch.setattr(audit_module, "_ARRAYS_FROM", 10**12)
    loop = audit_module._project_use(pairs, pools, records)
    assert {k: str(v) for k, v in arrays[1].items()} == {k: str(v) for k, v in loop[1].items()} == {
        "a": "1.0000000000", "b": "0.2500000000"}  # one decimal for 2.5 (b's own table), nine of nanohours


def test_project_figures_in_arrays_decline_factors_no_float_can_hold(monkeypatch):
    """A rate of 1E-400 beside a rate of 1: at their common scale the coarser factor has some 400
    digits; the arrays leave such figures to the loop instead of failing."""
    from tests.test_settle import _snapshot

    snap = _snapshot([("p1", "A", "gpu", 100), ("p2", "A", "tpu", 100)], [("a", {"A": 1}, None)],
                     rates={"gpu": "1E-400", "tpu": "1"})
    pairs = _pair_hours({("a", "p1"): Decimal(5), ("a", "p2"): Decimal(7)}, ordered=True)
    pools = {p.pool: p for p in settle(snap, None, {}, {}, pairs).pools}
    assert audit_module._project_use_arrays(pairs.columns(), pools, snap.by_id("project")) is None
    monkeypatch.setattr(audit_module, "_ARRAYS_FROM", 0)
    arrays = audit_module._project_use(pairs, pools, snap.by_id("project"))
    monkeypatch.setattr(audit_module, "_ARRAYS_FROM", 10**12)
    assert arrays == audit_module._project_use(pairs, pools, snap.by_id("project"))


def test_project_figures_of_ordinary_usage_take_the_integer_way(ctx, tmp_path):
    usage.import_usage(ctx, _mixed_csv(tmp_path / "a.csv", repeat=5), "csv")
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        used = report.used_device_hours(reader, PERIOD)
        snapshot = reader.state().snapshot(PERIOD)
    ordinary = type(used)({key: n for key, n in used.nano.items() if key not in used.fine}, ordered=True)
    pools = {p.pool: p for p in settle(snapshot, PERIOD, {}, {}, ordinary).pools}
    fast = audit_module._project_use(ordinary, pools, snapshot.by_id("project"))
    assert fast is not None and fast[1]
    assert fast == audit_module._project_use_decimal(dict(ordinary), pools, snapshot.by_id("project"))


_leaves = (st.text(max_size=5) | st.integers() | st.booleans() | st.none()
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.decimals(allow_nan=False, allow_infinity=False, places=None))
_keys = st.text(max_size=5) | st.integers(-3, 3) | st.booleans() | st.none()
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4)
                       | st.tuples(inner, inner), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), _values, max_size=5))
def test_the_json_writer_writes_what_json_dumps_writes(value):
    assert render_json(value) == json.dumps(to_plain(value), indent=2, ensure_ascii=False) + "\n"


@st.composite
def _tables(draw):
    """A report's tables: lists of flat rows with the same keys, now and then one row that is not."""
    keys = draw(st.lists(_keys, min_size=1, max_size=4, unique_by=lambda k: json.dumps({k: 0})))
    rows = draw(st.lists(st.fixed_dictionaries({k: _leaves | st.text(alphabet="\n\r\"\\{},:\u2028é")
                                                for k in keys}), min_size=1, max_size=6))
    if rows and draw(st.booleans()):
        odd = draw(st.sampled_from(["reordered", "short", "nested", "not a dict"]))
        row = dict(rows[-1])
        if odd == "reordered":
            row = dict(reversed(list(row.items())))
        elif odd == "short":
            row.pop(keys[0])
        elif odd == "nested":
            row[keys[0]] = [draw(_leaves)]
        else:
            row = list(row.values())
        rows.append(row)
    return rows


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), _tables(), max_size=3), st.integers(0, 2))
def test_tables_are_written_as_json_dumps_writes_them(value, depth):
    for _ in range(depth):
        value = {"level": [value]}
    assert render_json(value) == json.dumps(to_plain(value), indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("rows", [[{1: "a"}, {True: "b"}], [{1.0: 1}, {1: 2}], [{0: 0}, {False: 0}, {0.0: 0}],
                                  [{"k": 1}, {"k": 2}]])
def test_keys_equal_to_python_but_written_apart_stay_apart(rows):
    value = {"t": rows}
    assert render_json(value) == json.dumps(to_plain(value), indent=2, ensure_ascii=False) + "\n"


def test_the_report_is_the_same_with_its_verification_beside(ctx, tmp_path, monkeypatch):
    from pooler.services import alloc
    from tests.test_reports import EXAMPLES

    registry.apply(ctx, EXAMPLES / "c2net.toml")
    alloc.run(ctx, "2026-11")
    path = tmp_path / "u.csv"
    path.write_text("project,pool,device_hours,start,end\n"
                    "pangu-next,huawei-guian-910c,123.456,1794000000,1794100000\n"
                    "wudao-3,pcl-cloudbrain-2,7,1794000000,1794100000\n", encoding="utf-8")
    usage.import_usage(ctx, path, "csv")
    if not beside.can_fork():
        pytest.skip("no safe fork in this process (not Linux, or other threads running)")
    forked = report.audit(ctx, "2026-11")
    monkeypatch.setattr(beside, "can_fork", lambda: False)
    here = report.audit(ctx, "2026-11")
    assert forked == here and here["ledger"][0]["verified"] is True
    # A tampered row: both ways report the verification's finding.
    conn = sqlite3.connect(ctx.db, isolation_level=None)
    conn.execute("DROP TRIGGER usage_line_no_update")
    conn.execute("UPDATE usage_line SET device_hours = '8' WHERE device_hours = '7'")
    conn.close()
    monkeypatch.undo()
    tampered = report.audit(ctx, "2026-11")
    assert tampered["ledger"][0]["verified"] is False
    assert "bad attachment digest: usage_line" in tampered["ledger"][0]["problems"]


def test_a_failing_verification_is_raised_from_the_second_process(ctx, monkeypatch):
    def refuse(_ctx):
        raise RuntimeError("verification refused")

    if not beside.can_fork():
        pytest.skip("no safe fork in this process (not Linux, or other threads running)")
    with beside.Beside(refuse, ctx) as job:
        with pytest.raises(RuntimeError, match="verification refused"):
            job.result()
    with beside.Beside(sum, [Decimal(1), Decimal("0.5")]) as job:
        assert job.result() == Decimal("1.5")
