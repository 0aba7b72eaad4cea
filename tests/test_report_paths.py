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
from tests.test_usage_bulk import _mixed_csv
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
