"""Modal screens: keys, a member's statement, a project's grants and explanation, the period picker
and the commit confirmation."""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Group as RichGroup
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.format import compact, full, pct

KEYS = (
    ("1-6", "switch view: Overview, Members, Projects, Pools, Ledger, Allocate (or click a tab)"),
    ("↑ ↓ PgUp PgDn Home End", "move in a table; scroll the Overview"),
    ("Enter", "open the row: a member's statement, a project's grants and explanation"),
    ("/", "filter the current table (words that must all appear); Enter keeps it, Esc clears it"),
    ("Esc", "leave the Allocate view's Period field (it has the focus when the view opens, and "
            "the other keys are typed into it)"),
    ("s", "cycle the sort of the current table"),
    ("[ ]", "previous / next page of a long table (in the footer while there are pages)"),
    ("p", "choose the period (of the recorded runs)"),
    ("r", "refresh from the ledger"),
    ("v", "verify the ledger (hash chain, attached rows, projections) in the background"),
    ("t", "switch between the dark and the light theme"),
    ("?", "this help"),
    ("q", "quit"),
)


class _Modal(ModalScreen[Any]):
    DEFAULT_CSS = """
    _Modal { align: center middle; }
    _Modal > .box {
        width: 90%; max-width: 120; height: auto; max-height: 90%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    _Modal .title { text-style: bold; padding: 0 0 1 0; }
    _Modal .hint { color: $text-muted; padding: 1 0 0 0; }
    """
    BINDINGS = [Binding("escape", "dismiss_screen", "Close"), Binding("q", "dismiss_screen", "Close", show=False)]

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


class HelpScreen(_Modal):
    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with VerticalScroll(classes="box"):
            yield Static("Keys", classes="title")
            yield Static(table)
            yield Static("Figures are in the consortium's normalised units unless a column says "
                         "device-hours (dev-h); 1.2M = 1,200,000; - is a figure not known yet. "
                         "Esc closes this.", classes="hint")


def _grid(rows: Iterable[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    return table


def _table(title: str, columns: list[str], rows: list[tuple], numeric: set[str]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False, box=None,
                  header_style="bold", padding=(0, 1))
    for c in columns:
        table.add_column(c, justify="right" if c in numeric else "left", overflow="fold")
    for r in rows:
        table.add_row(*[str(x) for x in r])
    if not rows:
        table.add_row(*(["(none)"] + [""] * (len(columns) - 1)))
    return table


class MemberScreen(_Modal):
    """A member's statement: figures, projects sponsored, pools contributed, lending by counterparty."""

    def __init__(self, statement: dict[str, Any]) -> None:
        super().__init__()
        self.statement = statement

    def compose(self) -> ComposeResult:
        s = self.statement
        unit = s.get("unit") or "units"
        row = s["statement"][0]
        # Figures not known are "-", as in the Members table: the allocation's before any run, and
        # what usage gives (used, lent, borrowed, balance) before usage is imported (review: the
        # statement said "used 0" where the table said "-").
        usage = s.get("has_usage", True)

        def amount(value: Any, why: str = "", known: bool = True) -> str:
            if value is None or not known:
                return "-"
            return f"{full(value)} {unit}" + (f"  ({why})" if why else "")

        allocated = row["allocated"]
        figures = _grid([
            ("share", pct(row["share"])),
            ("contributed", amount(row["contributed"])),
            ("entitled", amount(row["entitled"], "share × the period's pooled units")),
            ("allocated", amount(allocated, f"{pct(allocated, row['entitled'])} of entitled"
                                 if allocated is not None else "")),
            ("used", amount(row["used"], f"of which on its own pools {full(row['own_use'])}", usage)),
            ("lent", amount(row["lent"], "its pools used by others' projects", usage)),
            ("borrowed", amount(row["borrowed"], "others' pools it used", usage)),
            ("balance", amount(row["balance"], "lent − borrowed", usage)),
        ])
        projects = _table("Projects sponsored", ["project", "stake", "demand", "allocated", "its part", "bottleneck"],
                          [(p["project"], pct(p["stake"]), compact(p["demand"]), compact(p["allocated"]),
                            compact(p["member_part"]), p["bottleneck"]) for p in s["projects"]],
                          {"stake", "demand", "allocated", "its part"})
        pools = _table("Pools contributed (device-hours)", ["pool", "accelerator", "region", "capacity", "granted", "used", "idle"],
                       [(p["pool"], p["accelerator"], p["region"], compact(p["capacity"]), compact(p["granted"]),
                         compact(p["used"] if usage else None), pct(p["idle_share"])) for p in s["pools"]],
                       {"capacity", "granted", "used", "idle"})
        flows = _table(f"Lending and borrowing by counterparty ({unit})", ["member", "lent to", "borrowed from", "net"],
                       [(c["member"], compact(c["lent_to"]), compact(c["borrowed_from"]), compact(c["net"]))
                        for c in s["counterparties"]] if usage else [("(not known before usage is imported)", "", "", "")],
                       {"lent to", "borrowed from", "net"})
        with VerticalScroll(classes="box"):
            yield Static(s["title"], classes="title")
            yield Static(RichGroup(figures, Text(""), projects, Text(""), pools, Text(""), flows))
            if s.get("notes"):
                yield Static("\n".join(s["notes"]), classes="hint")
            yield Static("Esc closes this.", classes="hint")


class ProjectScreen(_Modal):
    """A project's grants by pool and, below, the explanation `pooler alloc explain` gives."""

    def __init__(self, detail: dict[str, Any]) -> None:
        super().__init__()
        self.detail = detail

    def compose(self) -> ComposeResult:
        d = self.detail
        unit = d["explanation"].get("unit") or "units"
        grants = _table(f"Grants by pool ({d['explanation']['period']})", ["pool", "device-hours", unit],
                        [(g["pool"], full(g["device_hours"]), full(g["units"])) for g in d["grants"]],
                        {"device-hours", unit})
        words = Text()
        for i, (line, style) in enumerate(d["lines"]):
            if i:
                words.append("\n")
            words.append(line, style=style or "")
        with VerticalScroll(classes="box"):
            yield Static(f"Project {d['project']}", classes="title")
            yield Static(grants)
            yield Static(Text(""))
            yield Static(words)
            yield Static("Esc closes this.", classes="hint")


class PeriodScreen(_Modal):
    """Pick one of the periods with a recorded run."""

    def __init__(self, periods: tuple[str, ...], current: str | None, nothing: str = "") -> None:
        super().__init__()
        self.periods = periods
        self.current = current
        self.nothing = nothing  # why no period can be allocated yet, in words ("" when one can)

    def compose(self) -> ComposeResult:
        options = OptionList(*[Option(p + ("  (shown)" if p == self.current else ""), id=p)
                               for p in reversed(self.periods)])
        with Vertical(classes="box"):
            yield Static("Period", classes="title")
            if self.periods:
                yield options
            else:
                # (review: on an empty ledger it said "press 6", and allocating said "nothing to allocate")
                yield Static(self.nothing or "No run is recorded yet: press 6 to allocate a period.")
            yield Static("Enter picks, Esc cancels.", classes="hint")

    def on_mount(self) -> None:
        if self.periods:
            self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class CommitScreen(_Modal):
    """Confirm a commit: says what it records and asks for the reason; returns the reason or None."""

    DEFAULT_CSS = """
    CommitScreen Horizontal { height: auto; padding: 1 0 0 0; }
    CommitScreen Button { margin: 0 2 0 0; }
    """
    BINDINGS = [Binding("escape", "dismiss_screen", "Cancel")]

    def __init__(self, period: str, supersedes: int | None) -> None:
        super().__init__()
        self.period = period
        self.supersedes = supersedes

    def compose(self) -> ComposeResult:
        what = (f"This records a new run for {self.period} that supersedes run #{self.supersedes}; "
                "both stay in the journal." if self.supersedes else
                f"This records the allocation of {self.period} in the ledger as one journal entry.")
        with Vertical(classes="box"):
            yield Static(f"Commit the allocation of {self.period}?", classes="title")
            yield Static(what + " It is solved again from the ledger as it is at the moment of "
                                "committing.")
            yield Input(placeholder="reason (required), e.g. monthly run, pool outage fixed", id="reason")
            with Horizontal():
                yield Button("Commit", variant="primary", id="confirm")
                yield Button("Cancel", id="cancel")
            yield Static("", classes="hint", id="commit-hint")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def _confirm(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.query_one("#commit-hint", Static).update("Give a reason in words: it is recorded with the run.")
            return
        self.dismiss(reason)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self._confirm()
        else:
            self.dismiss(None)
