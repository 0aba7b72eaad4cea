"""A report as Markdown: a title, then one headed section per table, then notes."""

from __future__ import annotations

from typing import Any, Mapping

from pooler.reports.audit import KEY_VALUE, column_name, section_rows, sections
from pooler.reports.text import human, is_numeric, label


# Characters that start Markdown markup inline (emphasis, code, links and images, raw HTML,
# entities, strikethrough) or end a table cell: each written with a backslash, which CommonMark and
# GitHub's Markdown show as the character itself.
_MARKUP = str.maketrans({c: "\\" + c for c in "\\`*_[]<>!~|&"})


def _cell(text: str) -> str:
    # Names, reasons and notes are anyone's text: "<script>" or "[x](http://...)" in a member's name
    # was raw HTML or a link in a viewer; a pipe would end the cell and a newline the row.
    return text.translate(_MARKUP).replace("\n", " ")


def _table(section: str, rows: list[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    keys = list(rows[0])
    lines = ["| " + " | ".join(label(column_name(section, k)) for k in keys) + " |",
             "|" + "|".join("---:" if is_numeric(k, rows) else "---" for k in keys) + "|"]
    lines += ["| " + " | ".join(_cell(human(k, r.get(k))) for k in keys) + " |" for r in rows]
    return lines


def _key_values(row: Mapping[str, Any]) -> list[str]:
    return ["| item | value |", "|---|---|"] + [f"| {label(k)} | {_cell(human(k, v))} |"
                                                 for k, v in row.items()]


def render_markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# {_cell(report['title'])}", ""]
    run = report.get("run") or {}
    if run:
        lines += [f"Run #{run.get('seq')} recorded {run.get('time')} by {_cell(str(run.get('actor')))}, "
                  f"solved from ledger state #{run.get('state_seq')}. Quantities in {report['unit']}"
                  f" unless marked device-hours.", ""]
    for key, title in sections(report):
        rows = section_rows(report, key)
        lines += [f"## {title}", ""]
        lines += _key_values(rows[0]) if key in KEY_VALUE and len(rows) == 1 else _table(key, rows)
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {_cell(n)}" for n in report["notes"]] + [""]
    return "\n".join(lines)
