"""A report as one CSV file, and as JSON.

CSV layout: one header row whose first column is `section`, followed by the union of every section's
columns in order of first appearance; each data row names its section and leaves the columns of other
sections empty. Numbers are exact decimal text, booleans `true`/`false`, missing values empty. Read it
back with `csv.DictReader` and filter on `section`. Notes come last as rows of section `notes`.
A column holds one unit: device-hours columns say so in their name (a pool's `capacity`, `granted`
and `used` of the JSON are `capacity_device_hours`, `granted_device_hours` and `used_device_hours`
here, the names the projects' and the summary's device-hours columns have), all others are in the
report's unit, or are counts, ratios or text.

Formulas. A spreadsheet opening the file takes a cell that begins with `=`, `+`, `-` or `@` for a
formula and runs it (OWASP, CSV Injection; CWE-1236), and the ids, names, reasons, actors and notes a
report writes are whatever someone registered. So every TEXT cell whose first character is `=`, `+`,
`-`, `@`, NUL, any whitespace (a tab, CR or LF, which some spreadsheets skip, or a space, which an
import may trim) or an apostrophe is written with one apostrophe before it (`=HYPERLINK(...)` ->
`'=HYPERLINK(...)`, `'quoted` -> `''quoted`): the marker spreadsheets read as "this is text".
Number cells are never touched: a balance of -5 is written `-5` and stays a number; a member whose
id is the text "-5" is written `'-5`. No number, boolean or empty cell begins with an apostrophe, so
a program gets every value back exactly by removing one leading apostrophe from any cell that has
one (`unguard`). The JSON form is never escaped.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any, Mapping

from pooler.core.model import dec_str
from pooler.reports.audit import column_name, section_rows, sections, to_plain


# The first characters after which a text cell is marked: those that start a formula, NUL, and the
# apostrophe itself (so that the marker can always be removed); any whitespace is marked too.
FORMULA_START = frozenset("=+-@\0'")


def guard(text: str) -> str:
    """A text cell as written: one apostrophe before it when its first character could start a
    formula (or is whitespace or an apostrophe), else as it is."""
    first = text[:1]
    return "'" + text if first and (first in FORMULA_START or first.isspace()) else text


def unguard(cell: str) -> str:
    """A cell's value as the report holds it: `guard` undone (one leading apostrophe removed)."""
    return cell[1:] if cell[:1] == "'" else cell


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Decimal, int, float)):  # numbers stay numbers: -5 is -5
        return str(to_plain(value))
    return guard(str(value))


def render_csv(report: Mapping[str, Any]) -> str:
    columns: list[str] = ["section"]
    rows: list[dict[str, str]] = []
    for key, _title in sections(report):
        for row in section_rows(report, key):
            named = {column_name(key, k): v for k, v in row.items()}
            for name in named:
                if name not in columns:
                    columns.append(name)
            rows.append({"section": key, **{k: _text(v) for k, v in named.items()}})
    if report.get("notes"):
        if "note" not in columns:
            columns.append("note")
        rows += [{"section": "notes", "note": guard(n)} for n in report["notes"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def render_json(report: Mapping[str, Any]) -> str:
    """Indented JSON; quantities as exact decimal text (parse with `decimal.Decimal`).

    The text is `json.dumps(to_plain(report), indent=2, ensure_ascii=False)`, character for
    character, but written faster: a report is mostly tables of flat rows with the same keys, and
    such a table is written a column at a time by the json module's C encoder (`_table`); any other
    list or mapping whose values are all plain is written in one call (with the newline and
    indentation as its item separator), Decimals turned into text on the way; only the nesting
    above the rows is walked here. An audit of ten thousand projects has some 300,000 values."""
    return _indented(report, 0) + "\n"


_PLAIN = (str, int, float, bool, type(None), Decimal)


def _decimal_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return dec_str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _indented(value: Any, level: int) -> str:
    """`json.dumps(to_plain(value), indent=2, ensure_ascii=False)` at nesting `level`."""
    if isinstance(value, Mapping):
        items = value if type(value) is dict else dict(value)
        if not items:
            return "{}"
        pad = "  " * (level + 1)
        if all(v.__class__ in _PLAIN for v in items.values()):
            text = json.dumps(items, ensure_ascii=False, separators=(",\n" + pad, ": "), default=_decimal_text)
            return "{\n" + pad + text[1:-1] + "\n" + "  " * level + "}"
        return ("{\n" + ",\n".join(pad + _key(k) + ": " + _indented(v, level + 1) for k, v in items.items())
                + "\n" + "  " * level + "}")
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        table = _table(value, level) if value[0].__class__ is dict else None
        if table is not None:
            return table
        pad = "  " * (level + 1)
        if all(v.__class__ in _PLAIN for v in value):
            text = json.dumps(list(value), ensure_ascii=False, separators=(",\n" + pad, ": "),
                              default=_decimal_text)
            return "[\n" + pad + text[1:-1] + "\n" + "  " * level + "]"
        return "[\n" + ",\n".join(pad + _indented(v, level + 1) for v in value) + "\n" + "  " * level + "]"
    return json.dumps(to_plain(value), ensure_ascii=False)


def _table(rows: list | tuple, level: int) -> str | None:
    """`_indented` of a list of flat dicts with the same keys in the same order (a report's table),
    written a column at a time: each column's values by one call of the C encoder (a value's JSON
    never holds a raw newline, so the newline separates them), then the rows joined from the pieces.
    None when the list is anything else."""
    first = rows[0]
    keys = tuple(first)
    # text keys only: 1, 1.0 and True are one key to ==, yet each is written in its own way
    if not keys or not all(k.__class__ is str for k in keys) or not all(
            r.__class__ is dict and tuple(r) == keys for r in rows):
        return None
    pad, inner = "  " * (level + 1), "  " * (level + 2)
    pieces = []
    for n, key in enumerate(keys):
        column = [r[key] for r in rows]
        if not all(v.__class__ in _PLAIN for v in column):
            return None
        text = json.dumps(column, ensure_ascii=False, separators=("\n", ": "), default=_decimal_text)
        prefix = ("{\n" if n == 0 else ",\n") + inner + _key(key) + ": "
        pieces.append([prefix + v for v in text[1:-1].split("\n")])
    pieces.append(["\n" + pad + "}"] * len(rows))
    return "[\n" + pad + (",\n" + pad).join(map("".join, zip(*pieces))) + "\n" + "  " * level + "]"


def _key(key: Any) -> str:
    """A key as json.dumps writes it (numbers, booleans and None become text)."""
    return json.dumps({key: 0}, ensure_ascii=False)[1:-4]
