"""The dashboard's footer: Textual's, fitted to the terminal's width and to what the focus takes.

Textual's footer lists every binding shown, left to right, and cuts what does not fit on the right,
where "q Quit" is (review: at 60 columns, with the Ledger's `[ ] Page`, it read "... ? Keys" and no
Quit). This one gives up the keys of `OPTIONAL`, in that order, until the rest fits; `? Keys` lists
them all. In a text field (the Allocate view's Period, a table's filter box) the keys that would be
typed into it are left out: they would not act (review: `/ Filter` and `q Quit` were listed while
`/` and `q` went into the field), and the field's own keys (Enter, Esc) are listed instead.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import groupby

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding
from textual.keys import _character_to_key
from textual.widgets import Footer, Input
from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup

# the actions whose keys the footer gives up first when they do not all fit (all are in `?`)
OPTIONAL = ("verify", "refresh", "period", "sort", "filter")
# the keys a text field takes as text: printable characters, by their binding names ("slash", "q")
TYPED_KEYS = frozenset(_character_to_key(chr(c)) for c in range(32, 127))
PALETTE_CELLS = 12  # "▏^p palette " on the right


class KeysFooter(Footer):
    """The footer for a terminal `fit`'s width: compact below 80 columns, with the keys that fit,
    and the command palette's key only where all the others fit beside it."""

    def __init__(self) -> None:
        super().__init__()
        self._fit_width = 0  # the terminal's width as the app last gave it (0: the footer's own)

    def fit(self, width: int) -> None:
        """Lay the footer out for `width` columns (at once: Textual's footer took a change of
        `compact` or of the palette's key only at the next change of the bindings)."""
        if width == self._fit_width:
            return
        self._fit_width = width
        self.compact = width < 80
        if self.is_attached and self._bindings_ready:
            self.refresh(recompose=True)

    def _typing(self) -> bool:
        return isinstance(self.screen.focused, Input)

    def _items(self) -> list[list[tuple[Binding, bool, str]]]:
        """The bindings to show, one list per action, in the footer's order (Textual's)."""
        typing = self._typing()
        by_action: defaultdict[str, list[tuple[Binding, bool, str]]] = defaultdict(list)
        for _, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show and not (typing and binding.key in TYPED_KEYS):
                by_action[binding.action].append((binding, enabled, tooltip))
        return list(by_action.values())

    def _cells(self, items: list[list[tuple[Binding, bool, str]]]) -> int:
        """The columns `items` take on the footer (a little more, never less)."""
        compact, total = self.compact, 0
        for group, members in groupby(items, lambda m: m[0][0].group):
            members = list(members)
            if group is not None and len(members) > 1:  # "[ ] Page "
                keys = sum(cell_len(self.app.get_key_display(m[0][0])) + 1 for m in members)
                total += 1 + keys + cell_len(group.description) + 1
            else:
                for m in members:
                    binding = m[0][0]
                    total += (cell_len(self.app.get_key_display(binding)) + cell_len(binding.description)
                              + (2 if compact else 3))
        return total

    def _fitting(self) -> tuple[list[list[tuple[Binding, bool, str]]], bool]:
        """The bindings that fit, and whether the command palette's key does too (from 80 columns,
        where all the others fit beside it)."""
        items = self._items()
        width = (self._fit_width or self.size.width) - 1
        palette = (self._fit_width or self.size.width) >= 80 and self.app.ENABLE_COMMAND_PALETTE \
            and self._cells(items) <= width - PALETTE_CELLS
        for action in OPTIONAL:
            if self._cells(items) <= width:
                break
            items = [m for m in items if m[0][0].action != action]
        return items, palette

    def compose(self) -> ComposeResult:
        # Textual's `Footer.compose`, over the bindings that fit
        if not self._bindings_ready:
            return
        items, palette = self._fitting()
        self.set_reactive(Footer.show_command_palette, palette)
        self.styles.grid_size_columns = len(items)
        for group, members in groupby(items, lambda m: m[0][0].group):
            members = list(members)
            if group is not None and len(members) > 1:
                with KeyGroup(classes="-compact" if group.compact else ""):
                    for m in members:
                        binding, enabled, tooltip = m[0]
                        yield FooterKey(binding.key, self.app.get_key_display(binding), "", binding.action,
                                        disabled=not enabled, tooltip=tooltip or binding.description,
                                        classes="-grouped").data_bind(compact=Footer.compact)
                yield FooterLabel(group.description)
            else:
                for m in members:
                    binding, enabled, tooltip = m[0]
                    yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                                    binding.action, disabled=not enabled,
                                    tooltip=tooltip).data_bind(compact=Footer.compact)
        if palette:
            try:
                _, binding, enabled, tooltip = self.screen.active_bindings[self.app.COMMAND_PALETTE_BINDING]
            except KeyError:
                pass
            else:
                yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                                binding.action, classes="-command-palette", disabled=not enabled,
                                tooltip=binding.tooltip or binding.description)
