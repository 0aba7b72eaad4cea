"""Projections: the registry state as table rows, and back.

`state_rows(state)` is the one mapping from a `LedgerState` to rows; `rowstate.rows_to_state` is the
way back (shared with the DB-API read path in `readonly.py`). The writer uses it (through
`write_changes`) to store what the reducer computed, and `verify` uses it to compare a replay of the
journal with the tables, so the two can only disagree when someone edited the tables.
"""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import Connection, delete, insert, select, update

from pooler.core.model import dec_str
from pooler.store.journal import canonical_json_of_texts
from pooler.store.reducer import COLLECTION_KINDS, SETTING_KINDS, LedgerState, RateVersion, RecordState
from pooler.store.rowstate import JSON_FIELDS, Rows, rows_to_state, state_from_rows
from pooler.store.tables import (
    PROJECTION_TABLES, RECORD_TABLES, AcceleratorRateRow, ProjectSponsorRow,
)

__all__ = ["JSON_FIELDS", "Rows", "compare_rows", "load_state", "read_rows", "record_row", "rows_to_state",
           "state_rows", "write_changes"]


def _table(row_type):
    return row_type.__table__


def _key(table, row: Mapping[str, Any]) -> tuple:
    return tuple(row[c.name] for c in table.primary_key.columns)


# Per record kind: its table's columns, all None (a row starts as a copy), and whether it has retired_seq.
_ROW_TEMPLATES: dict[str, tuple[dict[str, Any], bool]] = {}


def _row_template(kind: str) -> tuple[dict[str, Any], bool]:
    found = _ROW_TEMPLATES.get(kind)
    if found is None:
        names = _table(RECORD_TABLES[kind]).c.keys()
        found = _ROW_TEMPLATES[kind] = ({name: None for name in names}, "retired_seq" in names)
    return found


def record_row(kind: str, rs: RecordState, plain: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The projection row of one record (sponsors excluded). `plain`: `rs.record.to_record()` when
    the caller has it already (it is only read)."""
    template, retirable = _row_template(kind)
    row: dict[str, Any] = template.copy()
    for name, value in (rs.record.to_record() if plain is None else plain).items():
        if name == "sponsors":
            continue
        row[name] = canonical_json_of_texts(value) if isinstance(value, (list, dict)) else value
    row["added_seq"] = rs.added_seq
    row["changed_seq"] = rs.changed_seq
    if retirable:
        row["retired_seq"] = rs.retired_seq
    return row


def sponsor_rows(rs: RecordState) -> list[dict[str, Any]]:
    return [
        {"project": rs.record.id, "member": member, "stake": dec_str(stake)}
        for member, stake in rs.record.sponsors  # type: ignore[attr-defined]
    ]


def rate_row(version: RateVersion) -> dict[str, Any]:
    return {"accelerator": version.accelerator, "seq": version.seq,
            "from_period": version.from_period, "rate": dec_str(version.rate)}


def state_rows(state: LedgerState, plains: Mapping[int, tuple[Any, Mapping[str, Any]]] | None = None) -> Rows:
    """Every projection row the state implies, per table, in primary-key order.

    `plains`: the plain records `apply_entry` made on the way (see there), used instead of writing
    the same records out again."""
    out: Rows = {_table(t).name: [] for t in PROJECTION_TABLES}

    def row(kind: str, rs: RecordState) -> dict[str, Any]:
        found = plains.get(id(rs.record)) if plains else None
        return record_row(kind, rs, found[1] if found is not None and found[0] is rs.record else None)

    for kind in SETTING_KINDS:
        if kind in state.settings:
            out[_table(RECORD_TABLES[kind]).name].append(row(kind, state.settings[kind]))
    for kind in COLLECTION_KINDS:
        items = state.records[kind]
        out[_table(RECORD_TABLES[kind]).name] = [row(kind, items[i]) for i in sorted(items)]
    projects = state.records["project"]
    out["project_sponsor"] = [row for i in sorted(projects) for row in sponsor_rows(projects[i])]
    out["project_sponsor"].sort(key=lambda r: (r["project"], r["member"]))
    out["accelerator_rate"] = [
        rate_row(v) for acc in sorted(state.rates) for v in sorted(state.rates[acc], key=lambda v: v.seq)
    ]
    return out


def read_rows(conn: Connection) -> Rows:
    """Every projection row in the database, per table, in primary-key order."""
    out: Rows = {}
    for row_type in PROJECTION_TABLES:
        table = _table(row_type)
        result = conn.execute(select(table).order_by(*table.primary_key.columns))
        names = list(result.keys())
        out[table.name] = [dict(zip(names, r)) for r in result.all()]  # fetchall: not a fetchone per row
    return out


def compare_rows(expected: Rows, actual: Rows) -> list[tuple[str, str, str]]:
    """(table, key, what differs) for every row where the tables disagree with `expected`."""
    problems = []
    for row_type in PROJECTION_TABLES:
        table = _table(row_type)
        if expected.get(table.name, []) == actual.get(table.name, []):
            continue  # the same rows in the same order: the walk below would find nothing
        want = {_key(table, r): r for r in expected.get(table.name, [])}
        have = {_key(table, r): r for r in actual.get(table.name, [])}
        for key in sorted(set(want) | set(have), key=repr):
            label = "/".join(str(k) for k in key)
            if key not in have:
                problems.append((table.name, label, "the row is missing from the table"))
            elif key not in want:
                problems.append((table.name, label, "the table has a row the journal never wrote"))
            else:
                diffs = [
                    f"{name} is {_shown(have[key].get(name))} in the table but {_shown(want[key].get(name))} "
                    "in the journal"
                    for name in table.c.keys() if have[key].get(name) != want[key].get(name)
                ]
                if diffs:
                    problems.append((table.name, label, "; ".join(diffs)))
    return problems


# --- loading -------------------------------------------------------------------------------------


def load_state(conn: Connection) -> LedgerState:
    """The state held in the projection tables (trusted: `verify` is what checks them)."""
    return state_from_rows(read_rows(conn))


# --- writing -------------------------------------------------------------------------------------


def _upsert(conn: Connection, row_type, row: dict[str, Any], exists: bool) -> None:
    table = _table(row_type)
    if exists:
        where = [c == row[c.name] for c in table.primary_key.columns]
        conn.execute(update(table).where(*where).values(row))
    else:
        conn.execute(insert(table).values(row))


def write_changes(conn: Connection, old: LedgerState, new: LedgerState) -> None:
    """Write what changed between two states (found by identity: the reducer shares what it keeps)."""
    for kind in SETTING_KINDS:
        before, after = old.settings.get(kind), new.settings.get(kind)
        if after is not None and after is not before:
            _upsert(conn, RECORD_TABLES[kind], record_row(kind, after), exists=before is not None)
    for kind in COLLECTION_KINDS:
        before_items, after_items = old.records[kind], new.records[kind]
        if after_items is before_items:
            continue
        for record_id, after in after_items.items():
            before = before_items.get(record_id)
            if after is before:
                continue
            _upsert(conn, RECORD_TABLES[kind], record_row(kind, after), exists=before is not None)
            if kind == "project" and (before is None or before.record.sponsors != after.record.sponsors):  # type: ignore[attr-defined]
                sponsors = _table(ProjectSponsorRow)
                conn.execute(delete(sponsors).where(sponsors.c.project == record_id))
                if rows := sponsor_rows(after):
                    conn.execute(insert(sponsors), rows)
    rates = _table(AcceleratorRateRow)
    for accelerator, versions in new.rates.items():
        previous = old.rates.get(accelerator, ())
        if versions is not previous and len(versions) > len(previous):
            conn.execute(insert(rates), [rate_row(v) for v in versions[len(previous):]])


def _shown(value: Any) -> str:
    """A projection cell in a message: quoted text, or "empty" (NULL; not Python's `None`)."""
    return "empty" if value is None else repr(value)
