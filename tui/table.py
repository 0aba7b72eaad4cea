"""A table view: a status line, a DataTable showing one page of a `TableModel`, and a filter box."""

from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from tui.format import bar, compact, pct, stacked_bar
from tui.model import Column, Row, Sort, TableModel

GROUP_PREFIX = "\x00group:"  # keys of group header rows; no record id starts with a NUL


class FilterBox(Input):
    """A table's filter box: Enter keeps the filter (and the footer says so)."""

    BINDINGS = [Binding("enter", "submit", "Keep the filter")]


class TableView(Vertical):
    """One table of the dashboard. `set_rows` fills it; `/`, `s`, `[` and `]` act on it."""

    DEFAULT_CSS = """
    TableView { height: 1fr; }
    TableView > .status { height: 1; padding: 0 1; color: $text-muted; }
    TableView > .message { padding: 1 2; height: auto; }
    TableView > DataTable { height: 1fr; }
    TableView > Input { dock: bottom; display: none; }
    TableView > Input.shown { display: block; }
    """

    BINDINGS = [
        # in the footer while there is a filter to clear (see `check_action`)
        Binding("escape", "close_filter", "Clear the filter"),
    ]

    class Opened(Message):
        """Enter on a row: the table's name and the row's key."""

        def __init__(self, table: str, key: str) -> None:
            self.table = table
            self.key = key
            super().__init__()

    def __init__(self, name: str, noun: str, columns: tuple[Column, ...], sorts: tuple[Sort, ...],
                 *, id: str | None = None, bar_width: int = 10,
                 palette: Callable[[], dict[str, str]] | None = None) -> None:
        super().__init__(id=id)
        self.table_name = name
        self.noun = noun
        self.model = TableModel(columns, sorts)
        self.bar_width = bar_width
        self.palette = palette or (lambda: {})
        self.loaded = False
        self._message: str | None = "Loading…"
        self.note: Text | None = None  # said on the status line after the rows, sort and page

    def compose(self) -> ComposeResult:
        yield Static("", classes="status")
        yield Static(self._message or "", classes="message")
        # a heading of two lines (a figure and its unit) makes the header two lines high
        lines = max(column.label.count("\n") + 1 for column in self.model.columns)
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, header_height=lines)
        self._add_columns(table)
        yield table
        yield FilterBox(placeholder="filter: words that must all appear (Enter keeps it, Esc clears it)")

    def _add_columns(self, table: DataTable) -> None:
        for column in self.model.columns:
            table.add_column(Text(column.label, justify="right" if column.numeric else "left"),
                             key=column.key, width=column.width)

    def set_columns(self, columns: tuple[Column, ...]) -> None:
        """Other headings for the same keys (the Allocate view's, once a preview is committed)."""
        if columns == self.model.columns:
            return
        self.model.columns = columns
        self.data_table.clear(columns=True)
        self._add_columns(self.data_table)
        if self.loaded:
            self.render_page()

    @property
    def data_table(self) -> DataTable:
        return self.query_one(DataTable)

    # --- contents ---

    def show_message(self, text: str | Text) -> None:
        """A message instead of rows (loading, nothing recorded, an error)."""
        self._message = str(text)
        message = self.query_one(".message", Static)
        message.update(text)
        message.display = True
        self.data_table.display = False
        self.query_one(".status", Static).update("")

    def set_rows(self, rows: list[Row]) -> None:
        self.model.set_rows(rows)
        self.loaded = True
        self._message = None
        self.query_one(".message", Static).display = False
        self.data_table.display = True
        self.render_page()

    def render_page(self, keep: str | None = None) -> None:
        """Put the current page of the model into the DataTable (only that page is ever built)."""
        table = self.data_table
        keep = keep if keep is not None else self.cursor_key()
        table.clear()
        group = None
        colours = self.palette()
        index = 0
        for r in self.model.page_rows():
            if r.group is not None and r.group != group:
                group = r.group
                label = Text(f"▸ {group}", style="bold")
                table.add_row(label, *[""] * (len(self.model.columns) - 1), key=GROUP_PREFIX + group)
                index += 1
            table.add_row(*[self._cell(c, v, colours) for c, v in zip(self.model.columns, r.cells)], key=r.key)
            if r.key == keep:
                table.move_cursor(row=index, animate=False)
            index += 1
        self.render_status()

    def render_status(self) -> None:
        line = Text(self.model.status(self.noun))
        if self.note:
            line.append(" · ")
            line.append_text(self.note)
        self.query_one(".status", Static).update(line)
        self.app.refresh_bindings()  # the footer lists `[ ]` while there are pages

    def _cell(self, column: Column, value: Any, colours: dict[str, str]) -> Any:
        if column.key == "use_bar":  # (extent, filled part of it)
            return Text(stacked_bar(value[0], value[1], self.bar_width), style=colours.get("bar", ""))
        if column.key.endswith("_bar"):
            fraction, over = (value if isinstance(value, tuple) else (value, None))
            style = colours.get("bar", "")
            text = Text(bar(fraction, self.bar_width), style=style)
            if over is not None:
                text.append(f" {pct(over)}", style=colours.get("over", "") if over and over > 1 else "")
            return text
        if isinstance(value, Text):
            return value
        if column.numeric:
            return Text(value if isinstance(value, str) else compact(value), justify="right")
        return "" if value is None else str(value)

    def cursor_key(self) -> str | None:
        table = self.data_table
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # an empty or just-cleared table has no cell under the cursor
            return None
        return key

    def row_keys(self) -> list[str]:
        """The keys of the rows on the page, in order (group headers left out)."""
        return [r.key for r in self.model.page_rows()]

    # --- actions (called by the app for the active table) ---

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_filter":
            try:
                return self.query_one(Input).has_class("shown") or bool(self.model.query)
            except Exception:  # not composed yet
                return False
        return True

    def open_filter(self) -> None:
        box = self.query_one(Input)
        box.add_class("shown")
        box.value = self.model.query
        box.focus()

    def action_close_filter(self) -> None:
        """Esc: closes the filter box and clears the filter, open or applied (review: once applied
        with Enter, Esc left it in place, though the help says Esc clears it)."""
        box = self.query_one(Input)
        if box.has_class("shown") or self.model.query:
            box.remove_class("shown")
            box.value = ""
            self.model.set_query("")
            self.render_page()
            self.data_table.focus()

    def cycle_sort(self) -> None:
        self.model.cycle_sort()
        self.render_page()
        # the new order starts at its top (review: "sorted by # ↑" showed #34 first, scrolled)
        self.data_table.move_cursor(row=0, animate=False)
        self.data_table.scroll_home(animate=False)

    def turn(self, step: int) -> None:
        if self.model.turn(step):
            self.render_page()
            self.data_table.move_cursor(row=0, animate=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.model.set_query(event.value)
        if self.loaded:
            self.render_page()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        box = self.query_one(Input)
        box.remove_class("shown")
        self.data_table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if key is not None and not key.startswith(GROUP_PREFIX):
            self.post_message(self.Opened(self.table_name, key))
