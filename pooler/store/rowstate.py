"""Projection rows as plain mappings, and the registry state they describe, with no database library.

`projection.read_rows` (SQLAlchemy) and `readonly.read_state` (the bare DB-API, for listings that must
start fast) both read the projection tables into `Rows` and turn them into a `LedgerState` here, so
the two paths can only differ in how rows are fetched, never in what they mean.
"""

from __future__ import annotations

import json
from dataclasses import fields
from types import MappingProxyType as frozen
from typing import Any, Mapping

from pooler.core.model import RECORD_TYPES, dec
from pooler.store.errors import StoreError
from pooler.store.reducer import (
    COLLECTION_KINDS, LIST_FIELDS, SETTING_KINDS, LedgerState, RateVersion, RecordState,
)

# Fields stored as canonical JSON text (sponsors have their own table instead).
JSON_FIELDS = LIST_FIELDS | {"speed"}

Rows = dict[str, list[dict[str, Any]]]

# The projection tables by name with their primary-key columns, parents before children: the names
# and keys of `tables.PROJECTION_TABLES` (tests/test_startup.py holds the two together), written out
# so that reading the rows needs no SQLAlchemy.
PROJECTION_KEYS: dict[str, tuple[str, ...]] = {
    "consortium": ("id",),
    "policy": ("id",),
    "accelerator": ("id",),
    "member": ("id",),
    "pool": ("id",),
    "dataset": ("id",),
    "model": ("id",),
    "project": ("id",),
    "accelerator_rate": ("accelerator", "seq"),
    "project_sponsor": ("project", "member"),
}
# Record kind -> the name of its projection table (`tables.RECORD_TABLES`).
RECORD_TABLE_NAMES: dict[str, str] = {kind: kind for kind in (*SETTING_KINDS, *COLLECTION_KINDS)}

_FIELD_NAMES = {kind: tuple(f.name for f in fields(cls)) for kind, cls in RECORD_TYPES.items()}


def _row_record(kind: str, row: Mapping[str, Any], sponsors: dict[str, str] | None = None) -> RecordState:
    plain: dict[str, Any] = {}
    for name in _FIELD_NAMES[kind]:
        if name == "sponsors":
            plain["sponsors"] = sponsors or {}
            continue
        value = row.get(name)
        if value is None:
            continue
        if name in JSON_FIELDS or (name == "access" and value.startswith("[")):
            value = json.loads(value)
        plain[name] = value
    record = RECORD_TYPES[kind].from_record(plain)
    return RecordState(record, row["added_seq"], row["changed_seq"], row.get("retired_seq"))


def rows_to_state(rows: Rows) -> LedgerState:
    """The state the projection rows describe (the inverse of `projection.state_rows`)."""
    sponsors: dict[str, dict[str, str]] = {}
    for row in rows["project_sponsor"]:
        sponsors.setdefault(row["project"], {})[row["member"]] = row["stake"]
    settings = {}
    for kind in SETTING_KINDS:
        for row in rows[RECORD_TABLE_NAMES[kind]]:
            settings[kind] = _row_record(kind, row)
    records = {}
    for kind in COLLECTION_KINDS:
        records[kind] = {
            row["id"]: _row_record(kind, row, sponsors.get(row["id"]) if kind == "project" else None)
            for row in rows[RECORD_TABLE_NAMES[kind]]
        }
    rates: dict[str, tuple[RateVersion, ...]] = {}
    for row in rows["accelerator_rate"]:
        version = RateVersion(row["accelerator"], row["seq"], row["from_period"], dec(row["rate"]))
        rates[row["accelerator"]] = rates.get(row["accelerator"], ()) + (version,)
    return LedgerState(
        settings=frozen(settings),
        records=frozen({kind: frozen(items) for kind, items in records.items()}),
        rates=frozen({acc: tuple(sorted(vs, key=lambda v: v.seq)) for acc, vs in rates.items()}),
    )


def state_from_rows(rows: Rows) -> LedgerState:
    """`rows_to_state`, with damaged rows reported as a `StoreError` that says what to do."""
    try:
        return rows_to_state(rows)
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
        raise StoreError(
            f"the ledger's projection tables are damaged ({exc}); run `pooler ledger verify`"
        ) from None


def records_of(state: LedgerState, kind: str, include_retired: bool = False) -> list[dict[str, Any]]:
    """Plain records of `kind` sorted by id, as `Reader.records` lists them: a retired one (listed
    with `include_retired`) also has `retired_seq`; accelerators carry their latest rate."""
    items = state.collection(kind)
    return [
        {**rs.record.to_record(), **({} if rs.active else {"retired_seq": rs.retired_seq})}
        for rs in (items[i] for i in sorted(items) if include_retired or items[i].active)
    ]
