"""Where output goes: tables and JSON on stdout; messages, warnings and progress on stderr."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(data: Any) -> None:
    """Machine output: indented JSON on stdout, and nothing else there."""
    # Plain print, not Rich: Rich would wrap long strings and colour the text.
    print(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))


def message(text: str, style: str | None = None) -> None:
    """A line for people on stderr. Never parsed as markup: ids may contain brackets."""
    err.print(Text(text, style=style or ""))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          numeric: Sequence[str] = ()) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(columns):
        is_number = name in numeric
        # Numbers and the leading id column never wrap (a wrapped figure or id misreads); other text
        # wraps when the terminal is narrow.
        t.add_column(name, justify="right" if is_number else "left", overflow="fold",
                     no_wrap=is_number or i == 0)
    for row in rows:
        # Text, not str: an id like "[red]x" must be shown verbatim, not as markup.
        t.add_row(*(v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row))
    return t
