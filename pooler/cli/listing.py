"""The `list` commands' table (`pooler member list` and the rest), with no Typer import (issue #6).

`pooler.cli.fast` renders listings with this module without importing Typer or Click, and the Typer
commands of `pooler.cli.registry` use the same functions; tests/test_startup.py holds the two paths'
output together.
"""

from __future__ import annotations

from typing import Any

# Columns shown by `list`, per kind (every field is in `show` and `--json`).
LIST_COLUMNS = {
    "accelerator": ["id", "rate", "name"],
    "member": ["id", "name", "kind", "region"],
    "pool": ["id", "member", "accelerator", "capacity", "devices", "hours", "region", "reserve", "cost"],
    "dataset": ["id", "member", "access", "residency", "credit"],
    "model": ["id", "member", "access", "residency", "credit"],
    "project": ["id", "sponsors", "demand", "weight", "speed", "regions", "datasets", "models"],
}
NUMERIC = {"rate", "capacity", "devices", "hours", "reserve", "cost", "credit", "demand", "weight"}


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_list(kind: str, records: list[dict[str, Any]], show_retired: bool) -> None:
    from pooler.cli.output import show, table

    columns = list(LIST_COLUMNS[kind]) + (["retired"] if show_retired else [])
    rows = [
        [cell(r.get(c)) if c != "retired" else ("#%s" % r["retired_seq"] if r.get("retired_seq") else "")
         for c in columns]
        for r in records
    ]
    show(table(f"{len(records)} {kind}{'s' if len(records) != 1 else ''}", columns, rows,
                    numeric=[c for c in columns if c in NUMERIC]))
