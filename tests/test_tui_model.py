"""The dashboard's table model and cell formats: pure values, no Textual."""

import pytest

from tui.format import bar, compact, pct, stacked_bar
from tui.model import Column, Sort, TableModel, row

COLUMNS = (Column("id", "id"), Column("size", "size", numeric=True))


def _model(n=5, page_size=200):
    m = TableModel(COLUMNS, (Sort("size", True), Sort("id", False)), page_size=page_size)
    sizes = {f"p{i}": (None if i == 2 else i % 3) for i in range(n)}
    m.set_rows([row(k, (k, v), {"id": k, "size": v}) for k, v in sizes.items()])
    return m


def test_sort_cycles_and_missing_values_go_last_both_ways():
    m = _model()
    assert [r.key for r in m.view] == ["p1", "p4", "p0", "p3", "p2"]  # ties by key, None last
    assert m.cycle_sort() == Sort("id", False)
    assert [r.key for r in m.view] == ["p0", "p1", "p2", "p3", "p4"]
    m.cycle_sort()
    assert m.sort == Sort("size", True)


def test_filter_needs_every_word():
    m = _model()
    m.set_query("p1")
    assert [r.key for r in m.view] == ["p1"]
    m.set_query("p 4")
    assert [r.key for r in m.view] == ["p4"]
    m.set_query("")
    assert len(m.view) == 5


def test_pages_show_a_slice_and_clamp():
    m = _model(n=450, page_size=200)
    assert m.pages == 3 and len(m.page_rows()) == 200
    assert m.turn(5) and m.page == 2 and len(m.page_rows()) == 50
    assert not m.turn(1)
    assert "rows 401-450, page 3/3" in m.status("projects")
    m.set_query("p44")  # a new filter starts at the first page
    assert m.page == 0 and {r.key for r in m.view} == {"p44"} | {f"p44{i}" for i in range(10)}


def test_groups_stay_together_whatever_the_sort():
    m = TableModel(COLUMNS, (Sort("size", True),))
    m.set_rows([row("a", ("a", 1), {"size": 1}, group="west"), row("b", ("b", 9), {"size": 9}, group="east"),
                row("c", ("c", 5), {"size": 5}, group="west")])
    assert [r.key for r in m.view] == ["b", "c", "a"]


@pytest.mark.parametrize("value,text", [(None, "-"), (0, "0"), (950, "950"), (12345, "12.3k"),
                                        (4_510_000, "4.51M"), (1.66e9, "1.66G"), (-2500, "-2.50k")])
def test_compact(value, text):
    assert compact(value) == text


def test_bars_and_ratios():
    assert bar(0.5, 4) == "██░░" and bar(None, 3) == "░░░" and bar(2, 2) == "██"
    assert len(bar(0.33, 10)) == 10
    assert stacked_bar(0.5, 0.5, 8) == "██▒▒    " and stacked_bar(0, 1, 3) == "   "
    assert pct(1, 0) == "-" and pct(0.125) == "12.5%"


def test_one_row_is_counted_in_the_singular():
    """Review: the Ledger view of a new ledger said "1 entries"."""
    one = _model(n=1)
    assert one.status("entries").startswith("1 entry · ")
    assert one.status("pools, in device-hours (dev-h)").startswith("1 pool, in device-hours (dev-h) · ")
    assert one.status("members and projects").startswith("1 members and projects · ")
    assert _model(n=2).status("entries").startswith("2 entries · ")
    one.set_query("nothing")
    assert one.status("projects").startswith("0 of 1 project · ")
