"""A report as one CSV file, and as JSON.

CSV layout: one header row whose first column is `section`, followed by the union of every section's
columns in order of first appearance; each data row names its section and leaves the columns of other
sections empty. Numbers are exact decimal text, booleans `true`/`false`, missing values empty. Read it
back with `csv.DictReader` and filter on `section`. Notes come last as rows of section `notes`.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Mapping

from pooler.reports.audit import sections, to_plain


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(to_plain(value))


def render_csv(report: Mapping[str, Any]) -> str:
    columns: list[str] = ["section"]
    rows: list[dict[str, str]] = []
    for key, _title in sections(report):
        for row in report.get(key) or []:
            for name in row:
                if name not in columns:
                    columns.append(name)
            rows.append({"section": key, **{k: _text(v) for k, v in row.items()}})
    if report.get("notes"):
        if "note" not in columns:
            columns.append("note")
        rows += [{"section": "notes", "note": n} for n in report["notes"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def render_json(report: Mapping[str, Any]) -> str:
    """Indented JSON; quantities as exact decimal text (parse with `decimal.Decimal`)."""
    return json.dumps(to_plain(report), indent=2, ensure_ascii=False) + "\n"
