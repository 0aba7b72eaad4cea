"""The quota dashboard: `pooler tui`.

The app reads through `pooler.services` only. Reads run in worker threads so the screen never waits:
first the Overview (cheap), then the tables (the period's audit), then the full verification; the
Allocate view solves its dry run in a worker too. `pooler tui` starts the app through `tui.start`,
which begins reading the Overview before Textual is even imported; the first load then waits for
that read instead of starting its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.color import Color as RichColor
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from pooler.errors import PoolerError
from pooler.services import dashboard
from pooler.services.context import Context
from tui import views
from tui.footer import KeysFooter
from tui.screens import CommitScreen, HelpScreen, MemberScreen, PeriodScreen, ProjectScreen
from tui.table import TableView

if TYPE_CHECKING:
    from pooler.services import alloc
    from tui.start import EarlyOverview

# `pooler.services.alloc` and `pooler.services.ledger` are imported where they are used, in workers
# that run after the first screen: it needs neither (nor the manifest reader and the reports below
# them), so the app starts without them.

TABS = ("overview", "members", "projects", "pools", "ledger", "allocate")
TAB_LABELS = ("1 Overview", "2 Members", "3 Projects", "4 Pools", "5 Ledger", "6 Allocate")
SHORT_TAB_LABELS = ("1 Over", "2 Memb", "3 Proj", "4 Pools", "5 Ledger", "6 Alloc")
LEDGER_LIMIT = 2000  # newest journal entries listed in the Ledger view
# Text colours on the light theme, at least 4.5:1 against its backgrounds (the table rows, the
# zebra stripes and the panels, #c8c8c8 to #e0e0e0); the dark theme keeps the theme's own.
LIGHT_COLOURS = {"over": "#7a4100", "ok": "#1a6630", "error": "#9b1b3b"}


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, PoolerError):
        text = str(exc)
        # the command line's option name means nothing here: the period is the one asked for
        return "period " + text[len("--period: "):] if text.startswith("--period: ") else text
    return f"unexpected {type(exc).__name__}: {exc}"


class _Cancelled(Exception):
    """Raised from a preview's progress callback when its worker was cancelled: stops the solve."""


PAGES = Binding.Group("Page")


class PeriodField(Input):
    """The Allocate view's Period field: Enter previews (and the footer says so)."""

    BINDINGS = [Binding("enter", "submit", "Preview")]


class Views(TabbedContent):
    """The six views' tabs. A pane whose widget took the focus becomes the view shown, as in any
    TabbedContent, unless the focus has moved on by the time that word arrives: two view keys
    pressed quickly ("41") focused the first view's table, and its late word switched back to it
    after the second key had switched (review)."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors_with_self:
            event.stop()
            event.prevent_default()  # TabbedContent's own handler would show the pane


class PoolerApp(App[int]):
    """The dashboard over one ledger."""

    TITLE = "pooler"
    CSS = """
    #header { height: 1; padding: 0 1; background: $panel; }
    #overview-pane { padding: 0 1; }
    #ov-note { padding: 1 0; color: $warning; text-style: bold; height: auto; }
    #ov-note.error { color: $error; }
    App.-light-mode #ov-note { color: #7a4100; }  /* $warning reads at 1.5:1 on the light theme */
    #ov-totals { height: auto; padding: 1 0 0 0; }
    #ov-groups { height: auto; padding: 0 0 1 0; }
    #ov-groups > Static { width: 1fr; height: auto; }
    #ov-groups.narrow { layout: vertical; }
    #ov-ledger { height: auto; padding: 1 0; }
    #ov-hint { color: $text-muted; height: auto; }
    #alloc-form { height: auto; padding: 1 1 0 1; }
    #alloc-form Input { width: 16; }
    #alloc-form Button { margin: 0 0 0 2; min-width: 12; }
    #alloc-form Static { width: auto; padding: 1 1 0 0; }
    #alloc-status { height: auto; padding: 1 1; }
    #tabs { height: 1fr; }
    Footer.-compact FooterLabel { margin: 0 1 0 0; }  /* "[ ] Page p Period", not "Pagep Period" */
    #tabs > ContentSwitcher { height: 1fr; }
    TabPane { padding: 0; height: 1fr; }
    """

    BINDINGS = [
        Binding("1", "show('overview')", "Overview", show=False),
        Binding("2", "show('members')", "Members", show=False),
        Binding("3", "show('projects')", "Projects", show=False),
        Binding("4", "show('pools')", "Pools", show=False),
        Binding("5", "show('ledger')", "Ledger", show=False),
        Binding("6", "show('allocate')", "Allocate", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "sort", "Sort"),
        # in the footer while the view shown has more than one page (see `check_action`)
        Binding("left_square_bracket", "page(-1)", "Prev page", key_display="[", group=PAGES),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]", group=PAGES),
        Binding("p", "period", "Period"),
        Binding("r", "refresh", "Refresh"),
        Binding("v", "verify", "Verify"),
        Binding("t", "theme", "Theme", show=False),
        Binding("question_mark", "help", "Keys", key_display="?"),
        # in the Allocate view's Period field every key is typed into it: Esc leaves it (in the
        # footer while the field has the focus: see `check_action`)
        Binding("escape", "leave_field", "Leave the field"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, db: str | None = None, *, period: str | None = None, ctx: Context | None = None,
                 verify_on_open: bool = True, early: EarlyOverview | None = None) -> None:
        super().__init__()
        self._early = early  # the Overview already being read (see tui.start), for the first load
        self._width = 0  # the terminal's width as the last resize gave it (0: none yet)
        self.ctx = ctx if ctx is not None else Context(db=db) if db is not None else Context()
        self.period = period
        self.verify_on_open = verify_on_open
        self.overview: dashboard.Overview | None = None
        self.details: dashboard.Details | None = None
        self.registered: dict[str, Any] | None = None  # the records, while no run is recorded
        self.verification: dict[str, Any] | None = None
        self.loaded = False  # the Overview shows figures (or a message)
        self.tables_loaded = False
        self.preview: alloc.RunOutcome | None = None
        self._verifying = False  # a verification is running
        self._ledger_shown = (0, 0)  # entries the Ledger view lists, and the head's number
        self.painted: dict[str, float] = {}  # perf_counter when the Overview and the tables were drawn

    # --- layout ---

    def compose(self) -> ComposeResult:
        yield Static("pooler · opening the ledger…", id="header")
        with Views(id="tabs", initial="overview"):
            with TabPane(TAB_LABELS[0], id="overview"):
                with VerticalScroll(id="overview-pane"):
                    yield Static("", id="ov-note")
                    yield Static("Loading…", id="ov-totals")
                    yield Static("", id="ov-ledger")
                    with Horizontal(id="ov-groups"):
                        yield Static("", id="ov-regions")
                        yield Static("", id="ov-types")
                    yield Static("Press 2-6 for members, projects, pools, the ledger and allocation; "
                                 "Enter opens a row; ? lists the keys.", id="ov-hint")
            with TabPane(TAB_LABELS[1], id="members"):
                yield TableView("members", "members", views.MEMBER_COLUMNS, views.MEMBER_SORTS,
                                id="members-table", palette=self.palette)
            with TabPane(TAB_LABELS[2], id="projects"):
                yield TableView("projects", "projects", views.PROJECT_COLUMNS, views.PROJECT_SORTS,
                                id="projects-table", palette=self.palette)
            with TabPane(TAB_LABELS[3], id="pools"):
                yield TableView("pools", views.POOL_NOUN, views.POOL_COLUMNS, views.POOL_SORTS,
                                id="pools-table", palette=self.palette)
            with TabPane(TAB_LABELS[4], id="ledger"):
                yield TableView("ledger", "entries", views.LEDGER_COLUMNS, views.LEDGER_SORTS,
                                id="ledger-table", palette=self.palette)
            with TabPane(TAB_LABELS[5], id="allocate"):
                with Vertical():
                    with Horizontal(id="alloc-form"):
                        yield Static("Period")
                        yield PeriodField(placeholder="2026-11", id="alloc-period")
                        yield Button("Preview", id="alloc-preview", variant="primary")
                        yield Button("Commit…", id="alloc-commit", disabled=True)
                    yield Static("Type a period and press Enter or Preview: the allocation is solved "
                                 "in the background as a dry run, and compared with the committed run. "
                                 "Esc leaves the Period field, for the keys 1-5 and the others.",
                                 id="alloc-status")
                    yield TableView("diff", "members and projects", views.DIFF_COLUMNS, views.DIFF_SORTS,
                                    id="diff-table", palette=self.palette)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.query_one("#diff-table", TableView).show_message("No preview yet.")
        self.call_after_refresh(self._focus_view, "overview")
        self.load()

    def on_resize(self, event) -> None:  # noqa: ANN001 - Textual's event
        # the event's size: the app's own may still be the old one here (review: after a resize
        # to 80 columns the panels stayed side by side, and went stacked when resized back to 120)
        self._width = event.size.width
        self._fit_chrome(self._width)
        bar_width = 6 if self._width < 100 else 10 if self._width < 140 else 16
        for table in self.query(TableView):
            if table.bar_width != bar_width:
                table.bar_width = bar_width
                if table.loaded:
                    table.render_page()
        if self.overview is not None:
            self._paint_overview()

    def _fit_chrome(self, width: int) -> None:
        """The tab bar and the footer in `width` columns (review: at 60 the tabs were clipped after
        "6 All" and the footer dropped "? Keys q Quit"): shorter tab names below 70 columns; below
        80 a compact footer, without the command palette's key (see `KeysFooter`)."""
        tabs = self.query_one(TabbedContent)
        for tab, label in zip(TABS, TAB_LABELS if width >= 70 else SHORT_TAB_LABELS):
            tabs.get_tab(tab).label = label
        self.query_one(KeysFooter).fit(width)

    def palette(self) -> dict[str, str]:
        """Colours from the current theme, so the text stays readable on dark and light themes."""
        v = self.theme_variables

        def colour(name: str, fallback: str) -> str:
            value = v.get(name, "")
            try:
                RichColor.parse(value)
            except Exception:  # theme values such as "auto 60%" are Textual's, not Rich colours
                return fallback
            return value

        colours = {"bar": colour("primary", ""), "over": colour("warning", "yellow"),
                   "ok": colour("success", "green"), "error": colour("error", "red"), "muted": "dim"}
        if not self.current_theme.dark:
            # the theme's warning and success are for dark backgrounds: on the light theme's greys
            # (#c8c8c8 to #e0e0e0) they read at 1.3:1 and 1.8:1 (review); these read at 4.6:1 or more
            colours.update(LIGHT_COLOURS)
        return colours

    def table(self, name: str) -> TableView:
        return self.query_one(f"#{name}-table", TableView)

    def active_table(self) -> TableView | None:
        active = self.query_one(TabbedContent).active
        name = {"allocate": "diff"}.get(active, active)
        try:
            return self.table(name)
        except Exception:  # the Overview has no table
            return None

    # --- loading (worker threads) ---

    def load(self) -> None:
        self.loaded = self.tables_loaded = False
        for name in ("members", "projects", "pools"):
            self.table(name).show_message("Loading…")
        early, self._early = self._early, None  # only the first load, never a refresh, takes it
        self._load(self.period, early if early is not None and early.period == self.period else None)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self, period: str | None, early: EarlyOverview | None = None) -> None:
        worker = get_current_worker()
        try:
            if early is not None:
                o = early.result()
            else:
                o = dashboard.overview(self.ctx, period)
        except Exception as exc:  # an expected failure becomes a message in the app, never a traceback
            if not worker.is_cancelled:
                self.call_from_thread(self._failed, _error_text(exc))
            return
        if not worker.is_cancelled:
            self.call_from_thread(self._show_overview, o)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load_tables(self, o: dashboard.Overview) -> None:
        from pooler.services import ledger as ledger_service

        worker = get_current_worker()
        try:
            entries = ledger_service.log(self.ctx, limit=LEDGER_LIMIT)
        except Exception as exc:
            entries, log_error = [], _error_text(exc)
        else:
            log_error = None
        if worker.is_cancelled:
            return
        self.call_from_thread(self._show_ledger, entries, log_error, o.head_seq)
        if o.period is None:
            if o.members or o.pools:
                # the records as registered, with the allocation's columns empty (review: only the
                # words "No allocation is recorded yet" in three views)
                try:
                    records = dashboard.registered(self.ctx)
                except Exception:  # the views then say what the Overview says
                    records = None
                if records is not None and not worker.is_cancelled:
                    self.call_from_thread(self._show_registered, records)
                    return
            self.call_from_thread(self._no_details, o.note or "No allocation is recorded.")
            return
        try:
            d = dashboard.details(self.ctx, o.period)
        except Exception as exc:
            if not worker.is_cancelled:
                self.call_from_thread(self._no_details, _error_text(exc))
            return
        if not worker.is_cancelled:
            self.call_from_thread(self._show_details, d)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            # Expected failures are caught in the workers; this is a bug, said in words, not a traceback.
            self.notify(f"Internal error in {event.worker.name}: {_error_text(event.worker.error)}",
                        severity="error", timeout=15)
            if event.worker.group == "load":
                self._failed(_error_text(event.worker.error))
            return

    def _failed(self, message: str) -> None:
        self.overview = None
        self.registered = None
        self.query_one("#header", Static).update(Text(f"pooler · {self.ctx.shown_db}", style="bold"))
        note = self.query_one("#ov-note", Static)
        note.update(f"Error: {message}")
        note.add_class("error")
        note.display = True  # (hidden by an Overview painted before without a note: review, a refresh
        #                       while the server was down left the Overview blank)
        self.query_one("#ov-totals", Static).update("")
        self.query_one("#ov-regions", Static).update("")
        self.query_one("#ov-types", Static).update("")
        self.query_one("#ov-ledger", Static).update("")
        for name in ("members", "projects", "pools", "ledger"):
            self.table(name).show_message(f"Error: {message}")
        self.loaded = self.tables_loaded = True

    def _show_overview(self, o: dashboard.Overview) -> None:
        self.overview = o
        self.period = o.period
        period_box = self.query_one("#alloc-period", Input)
        if not period_box.value:
            period_box.value = dashboard.current_period(self.ctx, o.period_kind)
        self._paint_overview()
        self.loaded = True
        # The tables are read once the Overview is on screen: a busy reader thread would slow the paint.
        self.call_after_refresh(self._mark, "overview")
        self.call_after_refresh(self._load_tables, o)

    def _mark(self, what: str) -> None:
        self.painted[what] = time.perf_counter()

    def _paint_overview(self) -> None:
        o = self.overview
        assert o is not None
        colours = self.palette()
        full = self._width or self.size.width
        header = Text("pooler · ", style="bold")
        header.append_text(views.overview_header(o, full - 2 - len(header)))  # the header's padding
        self.query_one("#header", Static).update(header)
        note = self.query_one("#ov-note", Static)
        note.remove_class("error")
        note.update(o.note or "")
        note.display = bool(o.note)
        self.query_one("#ov-totals", Static).update(views.overview_totals(o, colours))
        inner = full - 4  # the pane's padding and its scroll bar
        # side by side only when both panels fit with whole names and bars of some length
        narrow = not views.groups_side_by_side(o, inner)
        self.query_one("#ov-groups").set_class(narrow, "narrow")
        regions, types = views.overview_groups(o, inner if narrow else inner // 2, colours)
        self.query_one("#ov-regions", Static).update(regions)
        self.query_one("#ov-types", Static).update(types if o.by_accelerator else "")
        self.query_one("#ov-ledger", Static).update(
            views.ledger_status(o, self.verification, colours, self.ctx.shown_db, inner))

    def _show_ledger(self, entries: list, error: str | None, head_seq: int) -> None:
        from pooler.services import ledger as ledger_service  # imported already by `_load_tables`

        table = self.table("ledger")
        if error:
            table.show_message(f"Error: {error}")
            return
        self._ledger_shown = (len(entries), head_seq)
        table.note = self._ledger_note()
        table.set_rows(views.ledger_rows(entries, ledger_service.subject))
        self._refocus()

    def _ledger_note(self) -> Text:
        """What the Ledger view's line says after its rows, sort and page: how many of the entries
        it lists, and whether the ledger verifies (review: a sort or a page replaced it, and it
        replaced the page)."""
        note = Text()
        listed, head_seq = self._ledger_shown
        if head_seq > listed:
            note.append(f"the newest {listed:,} of {head_seq:,}")
        if self.verification is not None or self._verifying:
            if note:
                note.append(" · ")
            # (the line counts the entries already)
            note.append_text(views.verify_status(self.verification, self.palette(), count=False))
        return note

    def _no_details(self, message: str) -> None:
        self.registered = None
        for name in ("members", "projects", "pools"):
            self.table(name).show_message(message)
        self.tables_loaded = True
        self._verify_after_load()

    def _show_registered(self, records: dict[str, Any]) -> None:
        self.details = None
        self.registered = records
        note = Text("no allocation recorded yet: 6 allocates one", style="bold")
        for name, rows in (("members", views.member_rows(records, has_usage=False)),
                           ("projects", views.project_rows(records)),
                           ("pools", views.pool_rows(records, has_usage=False))):
            self.table(name).note = note
            self.table(name).set_rows(rows)
        self._refocus()
        self.tables_loaded = True
        self._verify_after_load()

    def _show_details(self, d: dashboard.Details) -> None:
        for name in ("members", "projects", "pools"):
            self.table(name).note = None
        self.details = d
        self.registered = None
        self.table("members").set_rows(views.member_rows(d.report, d.has_usage))
        self.table("projects").set_rows(views.project_rows(d.report))
        self.table("pools").set_rows(views.pool_rows(d.report, d.has_usage))
        self._refocus()
        self.tables_loaded = True
        self.call_after_refresh(self._mark, "tables")
        self._verify_after_load()

    def _refocus(self) -> None:
        """The shown view's table takes the focus back once it is filled again: hidden behind
        "Loading…" during a refresh it lost it, and Enter and the arrows did nothing (review)."""
        if self.focused is not None or self.screen is not self.screen_stack[0]:
            return
        table = self.active_table()
        if table is not None and table.table_name != "diff" and table.loaded:
            self.set_focus(table.data_table)

    def _verify_after_load(self) -> None:
        # The verification starts once the views are filled, so it never delays them.
        if self.verify_on_open and self.verification is None:
            self.call_after_refresh(self.action_verify)

    # --- verification ---

    def action_verify(self) -> None:
        self.verification = None
        if self.overview is not None:
            self._paint_overview()
        self._verifying = True
        self._set_ledger_note()
        self._verify()

    def _set_ledger_note(self) -> None:
        table = self.table("ledger")
        table.note = self._ledger_note()
        if table.loaded:
            table.render_status()

    @work(thread=True, exclusive=True, group="verify", exit_on_error=False)
    def _verify(self) -> None:
        try:
            report = dashboard.verify(self.ctx)
            result = {"ok": report.ok, "entries": report.entries, "problem": report.problem,
                      "problems": len(report.problems)}
        except Exception as exc:
            result = {"error": _error_text(exc)}
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self._verified, result)

    def _verified(self, result: dict[str, Any]) -> None:
        self.verification = result
        if self.overview is not None:
            self._paint_overview()
        self._verifying = False
        self._set_ledger_note()
        if not result.get("error") and not result["ok"]:
            self.notify(f"The ledger does not verify: {result['problem']}", severity="error", timeout=10)

    # --- actions ---

    def action_show(self, tab: str) -> None:
        # Focus first leaves the pane: a focused widget in a hidden pane would switch back to it.
        self.set_focus(None)
        self.query_one(TabbedContent).active = tab
        # The focus moves once the pane is shown, and only if the view is still the one shown: two
        # keys pressed quickly ("41") focused the first view's table after the second had switched,
        # and the tab bar followed the focus back to the first (review).
        self.call_after_refresh(self._focus_view, tab)

    def _focus_view(self, tab: str) -> None:
        if self.query_one(TabbedContent).active != tab or self.screen is not self.screen_stack[0]:
            return
        if tab == "allocate":
            # "Type a period and press Enter" is true at once: the digits go into the field, and
            # Esc leaves it for the view keys (review: focus on Preview, a typed period switched views)
            committing = any(w.group == "commit" and w.is_running for w in self.workers)
            # (not while a commit solves: the field would take the view keys for minutes)
            self.set_focus(self.query_one("#alloc-preview" if committing else "#alloc-period"))
            return
        if tab == "overview":
            # the pane scrolls with the arrows, PgUp and PgDn (review: at 100x30 its last lines
            # could be reached only with the mouse); the view keys are the app's, and still act
            self.set_focus(self.query_one("#overview-pane"))
            return
        table = self.active_table()
        if table is not None:
            # at once, not later as `focus()` does: a key pressed meanwhile would find it moved
            self.set_focus(table.data_table)

    def action_leave_field(self) -> None:
        """Esc in the Allocate view's Period field: focus goes to Preview, and the keys work again."""
        if isinstance(self.focused, Input) and self.focused.id == "alloc-period":
            self.query_one("#alloc-preview", Button).focus()

    def action_filter(self) -> None:
        table = self.active_table()
        if table is not None:
            table.open_filter()

    def action_sort(self) -> None:
        table = self.active_table()
        if table is not None and table.loaded:
            table.cycle_sort()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_field":  # Esc in the footer while the Period field has the focus
            return isinstance(self.focused, Input) and self.focused.id == "alloc-period"
        if action in ("filter", "sort"):  # not on the Overview, which has no table
            try:
                return self.active_table() is not None
            except Exception:  # not composed yet
                return False
        if action == "page":  # `[` `]` in the footer only where there are pages to turn
            try:
                table = self.active_table()
            except Exception:  # not composed yet
                return False
            return table is not None and table.loaded and table.model.pages > 1
        return True

    def action_page(self, step: int) -> None:
        table = self.active_table()
        if table is not None and table.loaded:
            table.turn(step)

    def action_refresh(self) -> None:
        self.verification = None
        self.load()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"
        self.table("ledger").note = self._ledger_note()
        if self.overview is not None:
            self._paint_overview()
        for name in ("members", "projects", "pools", "ledger", "diff"):
            table = self.table(name)
            if table.loaded:
                table.render_page()

    def action_period(self) -> None:
        periods = self.overview.periods if self.overview else ()

        def chosen(period: str | None) -> None:
            if period and period != self.period:
                self.period = period
                self.load()

        empty = "" if self.overview is None or self.overview.can_allocate else self.overview.note
        self.push_screen(PeriodScreen(periods, self.period, empty), chosen)

    async def action_quit(self) -> None:
        self.exit(0)

    # --- details ---

    def on_table_view_opened(self, event: TableView.Opened) -> None:
        d = self.details
        try:
            if event.table == "members" and d is not None:
                self.push_screen(MemberScreen(dashboard.member_statement(d, event.key)))
            elif event.table == "members" and self.registered is not None:
                # before any run: what is known (review: Enter opened nothing)
                self.push_screen(MemberScreen(dashboard.registered_statement(self.registered, event.key)))
            elif event.table == "projects" and d is None and self.registered is not None:
                self.notify("No allocation is recorded yet: a project's grants and their explanation come "
                            "with the first run (6 allocates one).")
            elif event.table == "projects" and d is not None:
                self.push_screen(ProjectScreen(dashboard.project_detail(d, event.key)))
            elif event.table == "diff" and d is not None and event.key.startswith("project:"):
                project = event.key.split(":", 1)[1]
                if project in d.grants or any(p["project"] == project for p in d.view.projects):
                    self.push_screen(ProjectScreen(dashboard.project_detail(d, project)))
        except PoolerError as exc:
            self.notify(str(exc), severity="warning")

    # --- allocate ---

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "alloc-period":
            event.stop()
            self.start_preview()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "alloc-preview":
            self.start_preview()
        elif event.button.id == "alloc-commit":
            self.ask_commit()

    def start_preview(self) -> None:
        period = self.query_one("#alloc-period", Input).value.strip() or None
        self.preview = None
        self._disable_commit()
        self.query_one("#alloc-status", Static).update(
            f"Solving {period or 'the current period'} in the background (a dry run: nothing is recorded)… "
            "the other views stay usable.")
        self.query_one("#diff-table", TableView).show_message("Solving…")
        self._preview(period)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _preview(self, period: str | None) -> None:
        worker = get_current_worker()
        # another preview, or the app closing: a dry run may stop anywhere
        progress = self._progress(worker, "Solving", period, stop_when_cancelled=True)
        try:
            from pooler.services import alloc

            outcome = alloc.run(self.ctx, period, dry_run=True, progress=progress)
            committed = outcome.previous
            if committed is None:
                try:
                    committed = alloc.show(self.ctx)  # the latest committed run of any period
                except PoolerError:
                    committed = None
            changes = alloc.preview_changes(outcome, committed)
        except Exception as exc:
            if not worker.is_cancelled:
                self.call_from_thread(self._preview_failed, _error_text(exc))
            return
        if not worker.is_cancelled:
            self.call_from_thread(self._show_preview, outcome, changes, worker)

    def _progress(self, worker: Worker, doing: str, period: str | None, *, stop_when_cancelled: bool):
        """The progress callback for a solve in `worker`'s thread: `_solving` a few times a second,
        and, with `stop_when_cancelled`, `_Cancelled` raised into the solve once the worker is."""
        shown = [0.0]

        def progress(p) -> None:
            if stop_when_cancelled and worker.is_cancelled:
                raise _Cancelled
            now = time.monotonic()
            if now - shown[0] >= 0.25:
                shown[0] = now
                self.call_from_thread(self._solving, worker, doing, period, p)

        return progress

    def _solving(self, worker: Worker, doing: str, period: str | None, p: Any) -> None:
        """How far a solve has got (at 10,000 projects it takes minutes); on the UI thread, so a
        worker cancelled meanwhile (another preview started) shows nothing."""
        from pooler.services.alloc import progress_text

        if worker.is_cancelled:
            return
        if doing == "Solving" and self.preview is None:
            self.query_one("#alloc-status", Static).update(
                f"Solving {period or 'the current period'} in the background (a dry run: nothing is "
                f"recorded)… {progress_text(p)}. The other views stay usable.")
        elif doing == "Committing":
            self.query_one("#alloc-status", Static).update(
                f"Committing {period}: solving it again from the ledger… {progress_text(p)}.")

    def _preview_failed(self, message: str) -> None:
        self.query_one("#alloc-status", Static).update(Text(f"Error: {message}", style=self.palette()["error"]))
        self.query_one("#diff-table", TableView).show_message("No preview.")

    def _show_preview(self, outcome: alloc.RunOutcome, changes: dict[str, Any],
                      worker: Worker | None = None) -> None:
        if worker is not None and worker.is_cancelled:  # another preview was started meanwhile
            return
        self.preview = outcome
        m = outcome.result["metrics"]
        against = changes.get("against")
        base = (f"compared with the committed run #{against['seq']} of {against['period']}" if against
                else "no committed run to compare with")
        moved = sum(1 for r in changes["projects"] if abs(r["change"]) >= 0.5)
        status = Text()
        status.append(f"Preview of {outcome.period}: ", style="bold")
        status.append(f"utilisation {m['utilisation'] * 100:.1f}% · Jain's index {m['jain_index']:.3f} · "
                      f"{m['satisfied_projects']} of {len(outcome.result['projects'])} projects fully served · "
                      f"{len(outcome.result['grants'])} grants; {base}: {moved} projects change.\n")
        status.append("Press Commit… to record it" + (
            f" (it supersedes run #{outcome.supersedes}, and needs a reason)." if outcome.supersedes else
            " (with a reason)."))
        self.query_one("#alloc-status", Static).update(status)
        self.query_one("#alloc-commit", Button).disabled = False
        table = self.query_one("#diff-table", TableView)
        table.set_columns(views.DIFF_COLUMNS)
        table.set_rows(views.diff_rows(changes))

    def _disable_commit(self) -> None:
        """Disable Commit; focus on it goes to Preview first: Textual would hand it to the Period
        field, which then takes the keys that switch views as text (for the minutes a commit of
        10,000 projects solves)."""
        commit = self.query_one("#alloc-commit", Button)
        if commit.screen.focused in (commit, None):
            self._focus_preview()
        commit.disabled = True

    def _focus_preview(self) -> None:
        """Preview takes the focus, at once and only while the Allocate view is shown: a deferred
        `focus()` could land after a view key had switched views, and the tab bar followed the
        focus back to Allocate (the view keys while a commit solves, a flaky test)."""
        if self.query_one(TabbedContent).active == "allocate":
            preview = self.query_one("#alloc-preview", Button)
            preview.screen.set_focus(preview)

    def ask_commit(self) -> None:
        outcome = self.preview
        if outcome is None:
            return

        def confirmed(reason: str | None) -> None:
            if reason:
                self._disable_commit()
                self.query_one("#alloc-status", Static).update(f"Committing {outcome.period}…")
                self._commit(outcome, reason)

        self.push_screen(CommitScreen(outcome.period, outcome.supersedes), confirmed)

    @work(thread=True, exclusive=True, group="commit", exit_on_error=False)
    def _commit(self, preview: alloc.RunOutcome, reason: str) -> None:
        # shown only: a commit, once asked for, is not given up half-way
        period = preview.period
        progress = self._progress(get_current_worker(), "Committing", period, stop_when_cancelled=False)
        try:
            from pooler.services import alloc

            outcome = alloc.run(self.ctx, period, reason=reason, progress=progress)
        except Exception as exc:
            self.call_from_thread(self._preview_failed, _error_text(exc))
            return
        self.call_from_thread(self._committed, outcome, dashboard.commit_changes(preview, outcome))

    def _committed(self, outcome: alloc.RunOutcome, changes: dict[str, Any]) -> None:
        extra = f", superseding #{outcome.supersedes}" if outcome.supersedes else ""
        status = Text(f"Recorded the {outcome.period} run as entry #{outcome.seq}{extra}. "
                      "The other views now show it.", style=self.palette()["ok"])
        # The commit solved again from the ledger as it is now: the table shows what was recorded,
        # beside the preview (review: it kept showing the preview, which a project added meanwhile
        # had made wrong)
        members, projects = dashboard.moved(changes, "member"), dashboard.moved(changes, "project")
        if members or projects:
            status.append(f"\nIt differs from the preview: {members} members and {projects} projects moved, "
                          "as the ledger changed after the preview. The table shows the recorded "
                          "allocation beside the preview.", style=f"bold {self.palette()['over']}")
        else:
            status.append("\nIt is the allocation the preview showed.")
        self.query_one("#alloc-status", Static).update(status)
        table = self.query_one("#diff-table", TableView)
        table.set_columns(views.diff_columns("preview", "recorded"))
        table.set_rows(views.diff_rows(changes))
        self.notify(f"Recorded the {outcome.period} run as entry #{outcome.seq}{extra}"
                    + (" (it differs from the preview)." if members or projects else "."))
        self.preview = None
        self.period = outcome.period
        self.verification = None
        # focus leaves the Commit button, now disabled, for Preview (not the Period field, which
        # would take the keys that switch views); not if another view is shown meanwhile
        self._focus_preview()
        self.load()

    # --- for tests and the benchmark ---

    def row_counts(self) -> dict[str, int]:
        return {name: len(self.table(name).model.rows) for name in ("members", "projects", "pools", "ledger")}


def run(db: str, period: str | None = None, ctx: Context | None = None) -> int:
    """Run the dashboard in the terminal; the exit code (as `tui.start.run`, which `pooler tui` uses)."""
    from tui.start import run as start

    return start(db, period, ctx)
