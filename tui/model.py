"""Table contents as plain values: rows, filtering, sort cycling and pages. No Textual here.

A table holds all its rows as tuples of short text plus sort values; the screen shows one page of
the filtered, sorted rows at a time, so a ledger with 10,000 projects never builds 10,000 rows of
widgets or renderables at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

PAGE_SIZE = 200


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool = False
    width: int | None = None  # fixed width for bars; None: fit the content


@dataclass(frozen=True)
class Row:
    key: str
    cells: tuple[Any, ...]  # text (or Rich Text) per column
    values: dict[str, Any]  # sort values by column key
    text: str  # what the filter searches, lower case
    group: str | None = None  # rows are kept together by group whatever the sort (pools by region)


@dataclass(frozen=True)
class Sort:
    column: str
    descending: bool
    name: str | None = None  # for sort values that are no column

    def label(self, columns: Sequence[Column]) -> str:
        name = self.name or next((c.label for c in columns if c.key == self.column), self.column)
        return f"{name} {'↓' if self.descending else '↑'}"


@dataclass
class TableModel:
    """The rows of one table with the current filter, sort and page."""

    columns: tuple[Column, ...]
    sorts: tuple[Sort, ...]  # what `s` cycles through; the first is the default
    rows: list[Row] = field(default_factory=list)
    query: str = ""
    sort_index: int = 0
    page: int = 0
    page_size: int = PAGE_SIZE
    _view: list[Row] | None = None

    def set_rows(self, rows: Sequence[Row]) -> None:
        self.rows = list(rows)
        self._view = None
        self.page = min(self.page, max(0, self.pages - 1))

    @property
    def sort(self) -> Sort:
        return self.sorts[self.sort_index % len(self.sorts)]

    def cycle_sort(self) -> Sort:
        self.sort_index = (self.sort_index + 1) % len(self.sorts)
        self._view, self.page = None, 0
        return self.sort

    def set_query(self, query: str) -> None:
        if query != self.query:
            self.query = query
            self._view, self.page = None, 0

    @property
    def view(self) -> list[Row]:
        """The filtered rows in sort order (ties by key, so the order is always the same)."""
        if self._view is None:
            words = self.query.lower().split()
            rows = [r for r in self.rows if all(w in r.text for w in words)] if words else list(self.rows)
            sort = self.sort
            rows.sort(key=lambda r: r.key)
            # Missing values go last in either direction; the sort is stable, so ties stay by key.
            present = [r for r in rows if r.values.get(sort.column) is not None]
            present.sort(key=lambda r: r.values[sort.column], reverse=sort.descending)
            rows = present + [r for r in rows if r.values.get(sort.column) is None]
            if any(r.group is not None for r in rows):
                order = {g: i for i, g in enumerate(sorted({r.group or "" for r in rows}))}
                rows.sort(key=lambda r: order[r.group or ""])  # stable: keeps the sort within groups
            self._view = rows
        return self._view

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.view) // self.page_size))

    def turn(self, step: int) -> bool:
        """Move `step` pages (clamped); whether the page changed."""
        page = min(max(0, self.page + step), self.pages - 1)
        changed = page != self.page
        self.page = page
        return changed

    def page_rows(self) -> list[Row]:
        start = self.page * self.page_size
        return self.view[start:start + self.page_size]

    def status(self, noun: str) -> str:
        """E.g. "12 of 19 projects · filter "gz" · sorted by allocated ↓ · page 1/1"."""
        shown, total = len(self.view), len(self.rows)
        noun = _singular(noun) if total == 1 else noun
        parts = [f"{shown:,} {noun}" if shown == total else f"{shown:,} of {total:,} {noun}"]
        if self.query:
            parts.append(f'filter "{self.query}"')
        parts.append(f"sorted by {self.sort.label(self.columns)}")
        if self.pages > 1:
            start = self.page * self.page_size
            parts.append(f"rows {start + 1:,}-{min(start + self.page_size, shown):,}, "
                         f"page {self.page + 1}/{self.pages} ([ ])")
        return " · ".join(parts)


def _singular(noun: str) -> str:
    """The noun of one row: "entries" -> "entry", "pools, in device-hours" -> "pool, in device-hours"
    (review: "1 entries"); a noun of two kinds ("members and projects") stays as it is."""
    word, sep, rest = noun.partition(" ")
    head = word.rstrip(",")
    if " and " in noun or not head.endswith("s"):
        return noun
    one = head[:-3] + "y" if head.endswith("ies") else head[:-1]
    return one + word[len(head):] + sep + rest


def row(key: str, cells: Sequence[Any], values: dict[str, Any], *, group: str | None = None,
        text: Callable[[], str] | None = None) -> Row:
    """A row whose filter text is its plain cells (and the key)."""
    searchable = text() if text is not None else " ".join([key, *(str(c) for c in cells)])
    return Row(key, tuple(cells), values, searchable.lower(), group)
