"""Reading the journal: log, verify and export."""

from __future__ import annotations

import json
from typing import Iterator

from pooler.io.manifest import dump_manifest
from pooler.services.context import Context
from pooler.services.heap import collector_paused
from pooler.services.registry import open_ledger


def log(ctx: Context, *, limit: int | None = 50) -> list:
    """Journal entries, newest first."""
    with open_ledger(ctx) as ledger:
        return list(ledger.entries(reverse=True, limit=limit))


def subject(entry) -> str:
    """What an entry is about, for one line of a log: an id, a count of rows."""
    payload = entry.payload
    if isinstance(payload, dict):
        if "record" in payload and isinstance(payload["record"], dict):
            return str(payload["record"].get("id", ""))
        if "id" in payload:
            return str(payload["id"])
        if "period" in payload:
            return str(payload["period"])
    return ""


def verify(ctx: Context):
    with open_ledger(ctx) as ledger, collector_paused():
        return ledger.verify()


def export(ctx: Context, fmt: str) -> Iterator[str]:
    """The current state as a manifest (toml, json) or the whole journal, one JSON line per entry."""
    with open_ledger(ctx) as ledger:
        if fmt in ("toml", "json"):
            yield dump_manifest(ledger.snapshot(), fmt)
            return
        for entry in ledger.entries():
            yield json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
