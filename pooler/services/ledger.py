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
    with open_ledger(ctx, read_only=True) as ledger:
        return list(ledger.entries(reverse=True, limit=limit))


def subject(entry) -> str:
    """What an entry is about, for one line of a log: an id, a count of rows."""
    payload = entry.payload
    if isinstance(payload, dict):
        if "record" in payload and isinstance(payload["record"], dict):
            return str(payload["record"].get("id", ""))
        if "id" in payload:
            return str(payload["id"])
        if entry.kind == "usage.import" and "file" in payload:
            # (review: the subject read "None", the import's --period when none was given)
            lines = payload.get("recorded")
            return f"{payload['file']} ({lines:,} {'line' if lines == 1 else 'lines'})" if isinstance(lines, int) \
                else str(payload["file"])
        if payload.get("period") is not None:
            return str(payload["period"])
    return ""


def verify(ctx: Context):
    with open_ledger(ctx, read_only=True) as ledger, collector_paused():
        return ledger.verify()


def export(ctx: Context, fmt: str, *, rows: bool = False) -> Iterator[str]:
    """The current state as a manifest (toml, json) or the whole journal, one JSON line per entry;
    with `rows` (jsonl), each entry's attached rows after it, one line each:
    `{"attached_to": seq, "table": name, "row": {...}}`, the row as its digest covers it (decimals as
    their exact text), in line order: the digests in the payloads can be recomputed from the file."""
    with open_ledger(ctx, read_only=True) as ledger:
        if fmt in ("toml", "json"):
            yield dump_manifest(ledger.snapshot(), fmt)
            return
        if not rows:
            for entry in ledger.entries():
                yield json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
            return
        from pooler.store.attachments import attachment_table

        with ledger.reader() as reader:  # the entries and their rows as one moment saw them
            for entry in reader.entries():
                yield json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
                payload = entry.payload
                attached = payload.get("attachments") if isinstance(payload, dict) else None
                for table in sorted(attached or {}):
                    names = [name for name, _ in attachment_table(table).columns]
                    for values in reader.attachment_stream(table, names, equal={"seq": entry.seq}):
                        yield json.dumps({"attached_to": entry.seq, "table": table, "row": dict(zip(names, values))},
                                         ensure_ascii=False, sort_keys=True) + "\n"
