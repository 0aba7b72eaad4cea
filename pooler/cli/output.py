"""Where output goes: tables and JSON on stdout; messages, warnings and progress on stderr.

Rich is imported when a table, a message or one of the consoles (`out`, `err`) is first used, not
before: JSON output (`print_json`) needs none of it (issue #6).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

out: Console
err: Console


def _consoles() -> None:
    global out, err
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=False)
    # soft_wrap: the terminal wraps long lines; no newline is put inside a path or an id (copy and paste)
    err = Console(stderr=True, highlight=False, soft_wrap=True)


def _console(name: str) -> Console:
    if name not in globals():
        _consoles()  # both at once, as importing this module made them before; once
    return globals()[name]


def __getattr__(name: str) -> Any:
    if name in ("out", "err"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from rich.text import Text

    _console("err").print(Text(text, style=style or ""))


# Below this many characters (or its longest, if shorter) a text column is not folded further: a
# table that would need it is printed wider than the terminal instead (`show`)
_TEXT_AT_LEAST = 16


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          numeric: Sequence[str] = ()) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # A light box: at 80 columns every character of border is a character taken from the figures.
    # the title as Text too: it may hold an id (`member show '[/]'` was a markup error)
    t = Table(title=None if title is None else Text(title, style="table.title"), title_justify="left",
              header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    cells = [[v if isinstance(v, (Text, Bar)) else Text("" if v is None else str(v)) for v in row]
             for row in rows]
    bars = {i for i in range(len(columns)) if any(i < len(c) and isinstance(c[i], Bar) for c in cells)}
    need = 3 * (len(columns) - 1) + 2  # the columns' gaps and the edges (SIMPLE_HEAD, pad_edge off)
    for i, name in enumerate(columns):
        is_number = name in numeric
        if i in bars:
            # a bar gives way first when the terminal is narrow: drawn shorter, never cut off
            t.add_column(name, no_wrap=False)
            need += 3
            continue
        # Numbers never wrap nor shrink (a cropped figure misreads); nor do the ids of the first
        # column (copied and pasted whole). Other text folds when the terminal is narrow (kept
        # whole, over two lines), except beside a bar, which gives way instead; what still does
        # not fit makes `show` print wider than the terminal.
        longest = max([len(name), *(c[i].cell_len for c in cells if i < len(c))])
        # Short text columns (a status word) keep their width too, so they are never squeezed away.
        width = longest if is_number or longest <= 12 else len(name)
        no_wrap = is_number or i == 0 or name == "" or bool(bars)
        t.add_column(name, justify="right" if is_number else "left", overflow="fold",
                     no_wrap=no_wrap, min_width=width)
        # (a column is never narrower than its min_width, its heading when that is longer)
        need += longest if no_wrap else max(width, min(longest, _TEXT_AT_LEAST))
    t.need = need  # type: ignore[attr-defined] - the narrowest it is drawn at (see `show`)
    for row in cells:
        # Text, not str: an id like "[red]x" must be shown verbatim, not as markup.
        t.add_row(*row)
    return t


def show(renderable: Any) -> None:
    """Print a `table` on stdout whole: where the terminal (or a pipe, at 80 columns) is narrower
    than the table can be drawn with every figure whole and its text folded to no less than
    `_TEXT_AT_LEAST` characters, at the width that needs instead: lines longer than the terminal
    rather than numbers cut off without a sign (Rich's last resort)."""
    console = _console("out")
    need = getattr(renderable, "need", 0)
    width = console.width
    if need <= width:
        console.print(renderable)
        return
    console.width = need  # (print's own width may only narrow the console's)
    try:
        console.print(renderable)
    finally:
        console.width = width


class Bar:
    """A quota bar in a table cell (`bar`): `width` characters, fewer when the table must give way
    (at least 3), drawn to scale at the width it gets."""

    def __init__(self, fraction: float, width: int) -> None:
        self.fraction, self.width = fraction, width

    @property
    def cell_len(self) -> int:
        return self.width

    def __rich_measure__(self, console, options):  # noqa: ANN001, ANN204 - Rich's protocol
        from rich.measure import Measurement

        return Measurement(min(3, options.max_width), min(self.width, options.max_width))

    def __rich_console__(self, console, options):  # noqa: ANN001, ANN204 - Rich's protocol
        yield bar_text(self.fraction, max(1, min(self.width, options.max_width)))


def bar(fraction: float, width: int = 16) -> Bar:
    """A quota bar for a table cell, `width` characters at most (see `bar_text`)."""
    return Bar(fraction, width)


def bar_text(fraction: float, width: int) -> Text:
    """A quota bar: eighths of a block for the filled part, dim dots for the rest."""
    from rich.text import Text

    fraction = 0.0 if fraction != fraction else min(max(fraction, 0.0), 1.0)  # NaN reads as empty
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])
    style = "green" if fraction >= 0.999 else "yellow" if fraction >= 0.5 else "red"
    text = Text(filled, style=style)
    text.append("·" * (width - len(filled)), style="dim")
    return text


def when(iso: str) -> str:
    """A journal time for a table: to the second, in UTC ("2026-11-29 13:10:43"), as the dashboard
    shows it; JSON keeps the full ISO text with microseconds."""
    return iso[:19].replace("T", " ")


def number(value: float | None, places: int = 0) -> str:
    """Thousands separators; blank for None."""
    if value is None:
        return ""
    return f"{value:,.{places}f}"


def database_refusal(exc: BaseException) -> str | None:
    """One line for an error the database driver raised that the store did not word (a table of the
    ledger missing or renamed behind pooler's back, a privilege taken away): the database's own first
    line, not a traceback. None for anything else (a fault in pooler keeps its traceback)."""
    errors = sys.modules.get("sqlalchemy.exc")  # loaded whenever a database was used
    if errors is None or not isinstance(exc, errors.DBAPIError):
        return None
    detail = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    if "permission denied" in first.lower() or "readonly database" in first.lower():
        # (review: a role without the privileges read "The ledger may be damaged")
        return (f"the database refused a statement of pooler's: {first}. The role (or user) in --db may "
                "not do this on the ledger's tables: use the ledger database's owner, or have it grant "
                "the privileges; nothing was written")
    return (f"the database refused a statement of pooler's: {first}. "
            "The ledger may be damaged, changed behind pooler's back, or not a pooler ledger; nothing "
            "was written")
