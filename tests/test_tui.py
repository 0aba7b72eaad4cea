"""The dashboard (`pooler tui`), headless: views, keys, filtering, sorting, details, the allocate flow,
errors shown in the app, and screenshots of the main views compared with stored SVGs.

The ledger is the example consortium recorded with a fixed clock and actor, so every hash, time and
figure on screen is the same on every run.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from syrupy.extensions.image import SVGImageSnapshotExtension

from pooler.services import alloc, dashboard, registry, report, usage
from pooler.services.context import Context

ROOT = Path(__file__).resolve().parents[1]
CLOCK = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
SIZE = (110, 32)


def _ctx(db: Path | str) -> Context:
    return Context(db=str(db), actor="admin@consortium", clock=lambda: CLOCK)


@pytest.fixture(scope="module")
def example_ledger(tmp_path_factory) -> Path:
    """The example consortium with its 2026-11 run and a usage import (80% of every grant)."""
    folder = tmp_path_factory.mktemp("tui-example")
    ctx = _ctx(folder / "pooler.db")
    registry.init(ctx)
    registry.apply(ctx, ROOT / "examples" / "c2net.toml")
    with pytest.MonkeyPatch.context() as mp:
        # The run records the solver's time, which would change every hash after it: stop the watch.
        mp.setattr("pooler.core.alloc.time.perf_counter", lambda: 0.0)
        outcome = alloc.run(ctx, "2026-11")
    lines = folder / "usage-2026-11.csv"
    with lines.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["project", "pool", "device_hours", "start", "end"])
        for g in outcome.result["grants"]:
            out.writerow([g["project"], g["pool"], round(g["device_hours"] * 0.8, 3),
                          "2026-11-02T00:00:00Z", "2026-11-18T00:00:00Z"])
    usage.import_usage(ctx, lines, "csv", period="2026-11")
    return folder / "pooler.db"


@pytest.fixture
def ledger(example_ledger, tmp_path, monkeypatch) -> str:
    """A copy of the example ledger as ./pooler.db in a fresh folder (the app shows the path given)."""
    shutil.copy(example_ledger, tmp_path / "pooler.db")
    monkeypatch.chdir(tmp_path)
    return "pooler.db"


def _app(db: str, **kw):
    from tui.app import PoolerApp

    return PoolerApp(ctx=_ctx(db), **kw)


async def _until(pilot, condition, seconds: float = 5.0) -> None:
    """Let the app run until `condition()` holds, for at most `seconds` (the caller then asserts it)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)


async def _settle(app, pilot) -> None:
    """Wait until the views are filled and every worker (verification, preview) has finished."""
    for _ in range(600):
        if app.loaded and app.tables_loaded and not any(w.is_running for w in app.workers):
            break
        await pilot.pause(0.05)
    await app.workers.wait_for_complete()
    await pilot.pause()


def drive(app, steps, size=SIZE):
    """Run `steps(app, pilot)` against the app headless; returns the app after it stopped."""
    async def main():
        async with app.run_test(size=size) as pilot:
            await _settle(app, pilot)
            await steps(app, pilot)
    asyncio.run(main())
    return app


def shown(app, name: str) -> list[str]:
    return app.table(name).row_keys()


# --- views and keys ----------------------------------------------------------------------------------


def test_every_view_opens_and_number_keys_switch(ledger):
    from textual.widgets import TabbedContent

    seen = []

    async def steps(app, pilot):
        assert app.overview.period == "2026-11" and app.verification["ok"]
        for key, tab in zip("234561", ("members", "projects", "pools", "ledger", "allocate", "overview")):
            if key == "1":  # the Allocate view opens in its Period field: Esc leaves it
                await pilot.press("escape")
            await pilot.press(key)
            await pilot.pause()
            seen.append(app.query_one(TabbedContent).active)
        assert app.row_counts() == {"members": 16, "projects": 19, "pools": 17, "ledger": 74}

    drive(_app(ledger), steps)
    assert seen == ["members", "projects", "pools", "ledger", "allocate", "overview"]


def test_q_quits_with_exit_code_0(ledger):
    async def steps(app, pilot):
        await pilot.press("2")
        await pilot.press("q")
        await pilot.pause()

    app = drive(_app(ledger), steps)
    assert app.return_code == 0


def test_filter_narrows_the_rows_and_escape_clears_it(ledger):
    async def steps(app, pilot):
        await pilot.press("3", "slash")
        await pilot.press(*"mind")
        await pilot.pause()
        assert shown(app, "projects") == ["pengcheng-mind-2"]
        await pilot.press("escape")
        await pilot.pause()
        assert len(shown(app, "projects")) == 19
        # words must all appear, in any column the filter searches (here a sponsor and a bottleneck)
        await pilot.press("slash", *"tsinghua fairness", "enter")
        await pilot.pause()
        keys = shown(app, "projects")
        assert keys and len(keys) < 19
        rows = {r["project"]: r for r in app.details.report["projects"]}
        assert all("tsinghua" in rows[k]["sponsors"] and rows[k]["bottleneck"] == "fairness" for k in keys)

    drive(_app(ledger), steps)


def test_s_cycles_the_sort(ledger):
    async def steps(app, pilot):
        await pilot.press("2")
        first = shown(app, "members")
        shares = {m["member"]: m["share"] for m in app.details.report["members"]}
        assert first == sorted(shares, key=lambda m: (-shares[m], m))
        await pilot.press("s")
        second = shown(app, "members")
        allocated = {m["member"]: m["allocated"] for m in app.details.report["members"]}
        assert second == sorted(allocated, key=lambda m: (-allocated[m], m)) and second != first
        assert "sorted by allocated" in str(app.table("members").query_one(".status").render())
        # a new order starts at its top, wherever the cursor was (review: the view stayed scrolled)
        await pilot.press("5", "pagedown", "pagedown")
        await pilot.pause()
        table = app.table("ledger").data_table
        assert table.cursor_row > 20 and table.scroll_y > 0
        await pilot.press("s")
        await pilot.pause()
        assert table.cursor_row == 0 and table.scroll_y == 0

    drive(_app(ledger), steps)


def test_pools_are_grouped_by_region(ledger):
    async def steps(app, pilot):
        await pilot.press("4", "s")  # sorted by capacity, still inside the region groups
        regions = {p["pool"]: p["region"] for p in app.details.report["pools"]}
        keys = shown(app, "pools")
        order = [regions[k] for k in keys]
        assert order == sorted(order)

    drive(_app(ledger), steps)


# --- details -----------------------------------------------------------------------------------------


def test_enter_on_a_member_opens_its_statement(ledger):
    from tui.screens import MemberScreen

    async def steps(app, pilot):
        await pilot.press("2", "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MemberScreen)
        assert screen.statement["member"] == "pcl"  # the largest share comes first
        assert screen.statement["pools"] and screen.statement["projects"]
        await pilot.press("escape")
        assert not isinstance(app.screen, MemberScreen)

    drive(_app(ledger), steps)


def test_enter_on_a_project_opens_its_grants_and_explanation(ledger):
    from tui.screens import ProjectScreen

    async def steps(app, pilot):
        await pilot.press("3", "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ProjectScreen)
        d = screen.detail
        assert d["project"] == "pengcheng-mind-2"
        assert sum(g["device_hours"] for g in d["grants"]) > 0
        explained = alloc.explain(_ctx(ledger), "pengcheng-mind-2", "2026-11")
        assert d["explanation"] == explained
        assert [text for text, _ in d["lines"]] == [text for text, _ in alloc.explanation_lines(explained)]

    drive(_app(ledger), steps)


# --- allocate ----------------------------------------------------------------------------------------


def test_allocate_previews_in_a_worker_then_commits_with_a_reason(ledger):
    from textual.widgets import Input, TabbedContent

    from tui.screens import CommitScreen

    async def steps(app, pilot):
        await pilot.press("6")
        box = app.query_one("#alloc-period", Input)
        assert box.value == "2026-11"  # the clock's period
        box.value = "2026-12"
        await pilot.click("#alloc-preview")
        await _settle(app, pilot)
        assert app.preview is not None and app.preview.period == "2026-12" and app.preview.seq is None
        diff = shown(app, "diff")
        assert "project:pengcheng-mind-2" in diff and "member:pcl" in diff
        # the table's line counts its rows, members and projects, not changes: the status above
        # says how many projects change
        line = str(app.table("diff").query_one(".status").render())
        assert line.startswith(f"{len(diff)} members and projects · sorted by size of change"), line
        assert "projects change." in str(app.query_one("#alloc-status").render())
        assert [r["period"] for r in alloc.periods(_ctx(ledger))] == ["2026-11"]  # nothing recorded yet
        await pilot.click("#alloc-commit")
        await pilot.pause()
        assert isinstance(app.screen, CommitScreen)
        await pilot.press("enter")  # no reason: refused, the screen stays
        assert isinstance(app.screen, CommitScreen)
        await pilot.press(*"december run", "enter")
        await _settle(app, pilot)
        assert app.overview.period == "2026-12"
        # the keys that switch views work at once (review: focus went to the Period field, which
        # took them as text)
        assert not isinstance(app.focused, Input)
        await pilot.press("1")
        assert app.query_one(TabbedContent).active == "overview"
        # and in the Period field, Esc leaves it
        await pilot.press("6")
        box.focus()
        await pilot.press("2")
        assert box.value.endswith("2") and app.query_one(TabbedContent).active == "allocate"
        await pilot.press("escape", "2")
        assert app.query_one(TabbedContent).active == "members"

    drive(_app(ledger), steps)
    runs = alloc.periods(_ctx(ledger))
    assert [(r["period"], r["reason"], r["committed"]) for r in runs] == [
        ("2026-11", None, True), ("2026-12", "december run", True)]


def test_allocate_shows_how_far_the_preview_has_got(ledger, monkeypatch):
    """While the preview solves, the Allocate view's status says how far it has got, in the words of
    `alloc run` in a terminal; the preview's own line replaces it when the solve ends, and a late
    word of a cancelled worker (another preview started) shows nothing. A preview whose worker is
    cancelled stops its solve at the next word (quitting does not wait for it)."""
    from textual.widgets import Static
    from textual.worker import get_current_worker

    from pooler.core.alloc_fair import Progress
    from pooler.services import alloc as alloc_service

    seen, raised = [], []
    real = alloc_service.run

    def run(ctx, period=None, *, progress=None, **kwargs):
        assert progress is not None  # the dashboard asks for the solve's progress
        seen.append(period)
        if len(seen) == 1:  # the first preview is cancelled as it solves
            get_current_worker().cancel()
            try:
                progress(Progress("members", 1, 2, 1))
            except Exception as exc:
                raised.append(type(exc).__name__)
                raise
        return real(ctx, period, progress=progress, **kwargs)

    monkeypatch.setattr(alloc_service, "run", run)

    class Worker:
        is_cancelled = False

    async def steps(app, pilot):
        await pilot.press("6")
        status = app.query_one("#alloc-status", Static)
        await pilot.click("#alloc-preview")
        await _settle(app, pilot)
        assert raised == ["_Cancelled"] and app.preview is None and "Preview of" not in str(status.content)
        live = Worker()
        app._solving(live, "Solving", "2026-12", Progress("projects", 5, 10, 17))
        await pilot.pause()
        assert "Solving 2026-12 in the background" in str(status.content)
        assert "step 2, projects: 5 of 10 settled · 17 LPs" in str(status.content)
        gone = Worker()
        gone.is_cancelled = True
        app._solving(gone, "Solving", "2026-10", Progress("projects", 6, 10, 18))
        await pilot.pause()
        assert "2026-10" not in str(status.content)
        await pilot.click("#alloc-preview")
        await _settle(app, pilot)
        assert app.preview is not None and "Preview of 2026-11" in str(status.content)
        app._solving(live, "Solving", "2026-11", Progress("projects", 6, 10, 18))  # late: the preview stays
        await pilot.pause()
        assert "Preview of 2026-11" in str(status.content) and "settled" not in str(status.content)

    drive(_app(ledger), steps)
    assert len(seen) == 2


def test_period_selector_switches_the_views(ledger):
    alloc.run(_ctx(ledger), "2026-12")

    async def steps(app, pilot):
        assert app.overview.period == "2026-12"  # the latest by default
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("down", "enter")  # newest first: 2026-12, then 2026-11
        await _settle(app, pilot)
        assert app.overview.period == "2026-11" and app.details.period == "2026-11"

    drive(_app(ledger), steps)


# --- errors, shown in the app ------------------------------------------------------------------------


def _note(app) -> str:
    return str(app.query_one("#ov-note").render())


def test_a_period_of_the_wrong_kind_is_a_message_without_the_option_s_name(ledger):
    """`pooler tui --period 2026-W47` on a ledger of months: the app says so, in its own words (it
    said "Error: --period: ..." after the command line's option)."""
    async def steps(app, pilot):
        note = _note(app)
        assert "period '2026-W47' is a week, but this consortium's periods are months" in note
        assert "--period" not in note

    drive(_app(ledger, period="2026-W47"), steps)


def test_a_missing_ledger_is_a_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def steps(app, pilot):
        assert "Error: no ledger at" in _note(app) and "pooler init" in _note(app)
        assert "Error:" in str(app.table("members").query_one(".message").render())
        await pilot.press("2", "3", "q")

    app = drive(_app("nothing.db"), steps)
    assert app.return_code == 0
    assert not (tmp_path / "nothing.db").exists()


def test_a_ledger_url_s_password_is_not_shown(tmp_path, monkeypatch):
    """Review: the header and the ledger line showed the --db URL with its password (a wrong one
    beside an Error line that hid it)."""
    monkeypatch.chdir(tmp_path)

    async def steps(app, pilot):
        assert "Error:" in _note(app)
        header = str(app.query_one("#header").content)
        assert header == "pooler · postgresql+psycopg://alice:***@127.0.0.1:1/ledger"
        assert "Sekr1tPW" not in _note(app)
        await pilot.press("q")

    drive(_app("postgresql+psycopg://alice:Sekr1tPW@127.0.0.1:1/ledger"), steps)


def test_a_refresh_that_cannot_read_the_ledger_says_so_on_the_overview(ledger, tmp_path):
    """Review: with the PostgreSQL server stopped, `r` left the Overview blank (its error went into a
    line hidden since the first paint); the other views said it."""
    async def steps(app, pilot):
        assert not app.query_one("#ov-note").display
        (tmp_path / "pooler.db").rename(tmp_path / "away.db")
        await pilot.press("r")
        await _settle(app, pilot)
        note = app.query_one("#ov-note")
        assert note.display and "Error: no ledger at" in _note(app)
        (tmp_path / "away.db").rename(tmp_path / "pooler.db")
        await pilot.press("r")
        await _settle(app, pilot)
        assert not app.query_one("#ov-note").display and app.overview is not None

    drive(_app(ledger), steps)


def test_an_empty_ledger_is_a_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry.init(_ctx("empty.db"))

    async def steps(app, pilot):
        assert "The ledger is empty" in _note(app)
        assert "empty" in str(app.table("projects").query_one(".message").render())

    drive(_app("empty.db"), steps)


def test_a_ledger_that_fails_verification_says_so(ledger):
    con = sqlite3.connect(ledger)
    for (name,) in con.execute("select name from sqlite_master where type = 'trigger' and tbl_name = 'alloc_grant'"):
        con.execute(f'drop trigger "{name}"')
    con.execute("update alloc_grant set device_hours = device_hours + 1 where line = 1")
    con.commit()
    con.close()

    async def steps(app, pilot):
        assert app.verification is not None and not app.verification["ok"]
        text = str(app.query_one("#ov-ledger").render())
        assert "DOES NOT VERIFY" in text and "alloc_grant" in text

    drive(_app(ledger), steps)


# --- the services the dashboard reads ----------------------------------------------------------------


def test_overview_groups_agree_with_the_audit(ledger):
    ctx = _ctx(ledger)
    o = dashboard.overview(ctx)
    audit = report.audit(ctx)
    for groups, section in ((o.by_region, "by_region"), (o.by_accelerator, "by_accelerator")):
        assert [(g.name, g.pools, g.capacity_units, g.granted_units, g.used_units) for g in groups] == [
            (r["name"], r["pools"], r["units"], r["granted_units"], r["used_capacity_units"]) for r in audit[section]]
    summary = audit["summary"][0]
    assert o.capacity_units == summary["capacity_units"] and o.allocated_units == summary["allocated_units"]
    assert round(o.idle_share, 6) == summary["idle_share"]
    d = dashboard.details(ctx)
    assert d.report["members"] == audit["members"] and d.report["projects"] == audit["projects"]
    assert dashboard.member_statement(d, "pcl")["counterparties"] == report.member(ctx, "pcl")["counterparties"]


def test_overview_without_a_run_shows_the_capacity(tmp_path):
    ctx = _ctx(tmp_path / "l.db")
    registry.init(ctx)
    registry.apply(ctx, ROOT / "examples" / "c2net.toml")
    o = dashboard.overview(ctx)
    assert o.period is None and "No allocation is recorded" in o.note
    assert o.capacity_units > 0 and o.pools == 17
    # review: the note said "nothing to allocate: the ledger has no projects yet" with 19 of them
    # (the overview replays no project entries; the projection says whether any is active)
    assert o.can_allocate and o.note == "No allocation is recorded yet: press 6 (Allocate) to preview and commit one."
    for project in registry.list_records(ctx, "project"):
        registry.retire(ctx, "project", project["id"])
    o = dashboard.overview(ctx)
    assert not o.can_allocate and "the ledger has no projects yet" in o.note


def test_preview_changes_against_the_committed_run(ledger):
    ctx = _ctx(ledger)
    outcome = alloc.run(ctx, "2026-11", dry_run=True)
    changes = alloc.preview_changes(outcome, None)
    assert changes["against"] == {"period": "2026-11", "seq": outcome.supersedes}
    # the same state solved again: nothing moves
    assert all(abs(r["change"]) < 1e-6 for r in changes["members"] + changes["projects"])


# --- screenshots --------------------------------------------------------------------------------------


@pytest.fixture
def svg(snapshot):
    return snapshot.use_extension(SVGImageSnapshotExtension)


@pytest.mark.parametrize("key,view", [("1", "overview"), ("2", "members"), ("3", "projects"),
                                      ("4", "pools"), ("5", "ledger")])
def test_screenshot(ledger, svg, key, view):
    shots = []

    async def steps(app, pilot):
        await pilot.press(key)
        await pilot.pause()
        shots.append(app.export_screenshot(title=f"pooler tui: {view}"))

    drive(_app(ledger), steps)
    assert shots[0] == svg


def test_the_overview_lays_itself_out_again_when_the_terminal_is_resized(ledger):
    """Review: resized from 120 to 80 columns the region and accelerator panels stayed side by side
    (their figures cut to "1…"), and resized back to 120 they went stacked: the layout followed the
    size before the resize. (Side by side now needs 150 columns here: see the next test.)"""
    def regions(which: str = "#ov-regions") -> str:  # the panel as drawn, at its width on screen
        import io

        from rich.console import Console

        panel = app.query_one(which)
        console = Console(width=panel.size.width, file=io.StringIO(), record=True, color_system=None)
        console.print(panel.content)
        return console.export_text()

    async def steps(app, pilot):
        groups = app.query_one("#ov-groups")
        assert not groups.has_class("narrow")
        wide = regions()
        await pilot.resize_terminal(80, 24)
        await _settle(app, pilot)
        assert groups.has_class("narrow")
        narrow = regions()
        assert narrow != wide and "1.37M" in narrow and narrow.count("100.0%") == wide.count("100.0%")
        await pilot.press("r")
        await _settle(app, pilot)
        assert groups.has_class("narrow") and regions() == narrow
        await pilot.resize_terminal(160, 40)
        await _settle(app, pilot)
        assert not groups.has_class("narrow") and regions() == wide

    app = _app(ledger)
    drive(app, steps, size=(160, 40))


def test_the_overview_panels_keep_their_heading_on_one_line(tmp_path):
    """Review: side by side (from 120 columns, 60 each) and before usage is imported, the accelerator
    panel's heading, as the table's title, wrapped "not granted" onto the column headings."""
    import io

    from rich.console import Console

    from tui import views

    ctx = _ctx(tmp_path / "l.db")
    registry.init(ctx)
    registry.apply(ctx, ROOT / "examples" / "c2net.toml")
    alloc.run(ctx, "2026-11")
    o = dashboard.overview(ctx)
    assert not o.has_usage
    for panel in views.overview_groups(o, 60, {}):
        console = Console(width=60, file=io.StringIO(), record=True, color_system=None)
        console.print(panel)
        first, second = console.export_text().splitlines()[:2]
        assert first.rstrip().endswith("█ granted ▒ not granted") and "granted" in second.split()[-1]


def test_the_view_keys_work_while_a_commit_solves(ledger, monkeypatch):
    """Review: while a commit solved (minutes at 10,000 projects) the focus sat in the Period field,
    which took `3` as text instead of switching to the Projects view."""
    import time as clock

    from textual.widgets import Input, TabbedContent

    real_run = alloc.run

    def slow_run(*args, **kw):
        if not kw.get("dry_run"):
            clock.sleep(1.5)
        return real_run(*args, **kw)

    monkeypatch.setattr(alloc, "run", slow_run)

    async def steps(app, pilot):
        await pilot.press("6")
        app.query_one("#alloc-period", Input).value = "2026-12"
        await pilot.click("#alloc-preview")
        await _settle(app, pilot)
        await pilot.click("#alloc-commit")
        await pilot.pause()
        await pilot.press(*"dec", "enter")
        await pilot.pause(0.2)
        assert any(w.is_running for w in app.workers)  # still committing
        assert not isinstance(app.focused, Input)
        await pilot.press("3")
        # (on a busy machine the switch lands a moment later; had the field taken the key, it
        # would read "2026-123" and the view would never switch)
        await _until(pilot, lambda: app.query_one(TabbedContent).active == "projects")
        assert app.query_one(TabbedContent).active == "projects"
        assert app.query_one("#alloc-period", Input).value == "2026-12"
        await _settle(app, pilot)
        # the commit's end leaves the view shown alone (it focused Preview there, and the tab bar
        # followed the focus back to Allocate: on a busy machine the commit ended while this test
        # waited for the switch)
        await pilot.pause(0.2)
        assert not any(w.is_running for w in app.workers)
        assert app.query_one(TabbedContent).active == "projects" and app.overview.period == "2026-12"
        assert app.focused is app.table("projects").data_table

    drive(_app(ledger), steps)
    assert [r["period"] for r in alloc.periods(_ctx(ledger))] == ["2026-11", "2026-12"]


def test_the_header_fits_at_80_columns_giving_up_the_reason_first(ledger):
    """Review: at 80 columns the header was cut after "run #73 of", so the run's date and who ran it
    were lost without a sign. The reason, then who ran it, then the date now give way, in that
    order, and what is left is cut with an ellipsis only when even the run's number does not fit."""
    from tui import views

    def header_text(app) -> str:
        return str(app.query_one("#header").content)

    async def steps(app, pilot):
        wide = header_text(app)
        assert "period 2026-11" in wide and "run #" in wide and " by admin@consortium" in wide
        await pilot.resize_terminal(80, 24)
        await _settle(app, pilot)
        narrow = header_text(app)
        assert len(narrow) <= 78 and "period 2026-11" in narrow and "run #" in narrow
        assert " by " not in narrow and not narrow.endswith("…")

    drive(_app(ledger), steps, size=(120, 40))
    import dataclasses

    o = dashboard.overview(_ctx(ledger))
    o = dataclasses.replace(o, run=dict(o.run, reason="pool outage fixed"))
    full = views.overview_header(o).plain
    assert full.endswith(" by admin@consortium (pool outage fixed)")
    for width in range(10, len(full) + 2):
        text = views.overview_header(o, width).plain
        assert len(text) <= width
        if width >= len(full):
            assert text == full
        elif "(pool" in text:  # the reason goes first, whole
            raise AssertionError(text)
    assert views.overview_header(o, 20).plain.endswith("…")
    # in terminal cells: a name of two-cell characters gives way as whole pieces too
    from rich.cells import cell_len

    wide = dataclasses.replace(o, consortium="粤港澳大湾区人工智能算力网络联盟")
    for width in (70, 80):  # (narrower, the name is shortened: see the 60-column test)
        text = views.overview_header(wide, width).plain
        whole = views.overview_header(wide).plain
        assert cell_len(text) <= width and not text.endswith("…") and whole.startswith(text)
        assert whole[len(text):].startswith((" of ", " by ", " (")) and f"run #{o.run['seq']}" in text


def test_a_pool_idle_over_30_percent_is_marked_in_words(ledger):
    """Review: the Pools view marked a pool idle over 30% (the audit's flag) only in bold, which a
    terminal without bold, or a reader, does not see. It now says IDLE, as the audit does."""
    from tui import views

    base = {"pool": "p", "member": "m", "accelerator": "a", "region": "r", "capacity": 100.0,
            "granted": 100.0, "used": 50.0}
    idle, busy = views.pool_rows({"pools": [dict(base, idle_share=0.5, flagged=True),
                                            dict(base, pool="q", idle_share=0.2, flagged=False)]})
    assert idle.cells[6].plain == "50.0% IDLE" and busy.cells[6].plain == "20.0%"


# --- the dashboard review (focus, keys, units, commit, colours, layout) --------------------------------


def _focus_in(app, tab: str) -> bool:
    """Whether view `tab` is shown and the focus is in it."""
    from textual.widgets import TabbedContent, TabPane

    focused = app.focused
    return (app.query_one(TabbedContent).active == tab and focused is not None
            and app.query_one(f"#{tab}", TabPane) in focused.ancestors_with_self)


def test_two_view_keys_pressed_quickly_land_on_the_last(ledger):
    """Review: `tmux send-keys -l 41` showed the Pools view: the first key's table took the focus
    after the second key had switched, and the tab bar followed the focus back."""
    from textual.widgets import TabbedContent

    from textual import events

    async def steps(app, pilot):
        for first, second, tab in (("4", "1", "overview"), ("2", "5", "ledger"), ("3", "4", "pools"),
                                   ("5", "2", "members")):
            # both in the queue before the first is handled, as from a terminal (`pilot.press`
            # waits for the app to be idle after each key)
            for key in (first, second):
                app.post_message(events.Key(key, key))
            # until both keys are handled: the second key's view shown, the focus in it (a fixed
            # 0.2 s was too short on a loaded machine: the first key's view still showed, and the
            # second's came a moment later); then a while for a late word from the first key's pane
            await _until(pilot, lambda: _focus_in(app, tab))
            await pilot.pause(0.2)
            assert app.query_one(TabbedContent).active == tab, (first, second)
            assert _focus_in(app, tab), (first, second, app.focused)
        await _until(pilot, lambda: app.focused is app.table("members").data_table)
        assert app.focused is app.table("members").data_table
        assert app.query_one(TabbedContent).active == "members"
        # the first key's table focused before the second key is handled (a busy machine): the
        # pane's word that it holds the focus arrives after the switch, and must not switch back
        app.set_focus(app.table("projects").data_table)
        app.action_show("pools")
        await pilot.pause(0.2)
        assert app.query_one(TabbedContent).active == "pools"
        # (the view's table takes the focus a moment later: on a busy machine, later than 0.2 s)
        await _until(pilot, lambda: app.focused is app.table("pools").data_table)
        assert app.focused is app.table("pools").data_table
        assert app.query_one(TabbedContent).active == "pools"

    drive(_app(ledger), steps)


def test_the_allocate_view_opens_in_its_period_field(ledger):
    """Review: the focus was on Preview, so a period typed at once switched views ("2026-12": the
    2 showed Members). The field now has the focus; Esc leaves it for the view keys."""
    from textual.widgets import Input, TabbedContent

    async def steps(app, pilot):
        await pilot.press("6")
        await pilot.pause()
        box = app.query_one("#alloc-period", Input)
        assert app.focused is box
        assert "Esc leaves the Period field" in str(app.query_one("#alloc-status").render())
        await pilot.press(*"2026-12", "enter")  # the prefilled period is selected: typing replaces it
        await _settle(app, pilot)
        assert app.query_one(TabbedContent).active == "allocate"
        assert app.preview is not None and app.preview.period == "2026-12"
        await pilot.press("escape", "3")
        assert app.query_one(TabbedContent).active == "projects"

    drive(_app(ledger), steps)


def test_the_pools_view_says_its_figures_are_device_hours(ledger):
    """Review: the Pools view gave capacity, granted and used in device-hours under headings that
    looked like the consortium's unit (README: figures are in that unit unless a column says
    device-hours); a region's pools added to 3.15M there while the Overview said 3.72M NCU."""
    async def steps(app, pilot):
        await pilot.press("4")
        await pilot.pause()
        table = app.table("pools")
        labels = {str(k.value): c.label.plain for k, c in table.data_table.columns.items()}
        assert [labels[k] for k in ("capacity", "granted", "used")] == [
            "capacity\ndev-h", "granted\ndev-h", "used\ndev-h"]
        status = str(table.query_one(".status").render())
        assert status.startswith("17 pools, in device-hours (dev-h) · sorted by pool ↑"), status
        pools = {p["pool"]: p for p in app.details.report["pools"]}
        row = next(r for r in table.model.rows if r.key == "pcl-cloudbrain-2")
        assert row.cells[3] == float(pools["pcl-cloudbrain-2"]["capacity"])  # device-hours, not units
        await pilot.press("s")
        assert "sorted by capacity ↓" in str(table.query_one(".status").render())

    drive(_app(ledger), steps)


def test_after_a_commit_the_table_shows_the_recorded_run_and_says_when_it_differs(ledger):
    """Review: after a commit the table still showed the preview, though the commit solves again from
    the ledger: with a project added meanwhile the recorded run differed (aquila-3 showed 22.7k ->
    71.4k, recorded 35.7k) and the new project had no row."""
    from textual.widgets import Input

    from tui.screens import CommitScreen

    async def steps(app, pilot):
        await pilot.press("6")
        app.query_one("#alloc-period", Input).value = "2026-12"
        await pilot.click("#alloc-preview")
        await _settle(app, pilot)
        preview = {p: v["allocated"] for p, v in app.preview.result["projects"].items()}
        labels = [c.label.plain for c in app.table("diff").data_table.columns.values()]
        assert labels == ["what", "id", "committed", "preview", "change"]
        # meanwhile, from another terminal: a project that competes with aquila-3
        registry.add(_ctx(ledger), "project", {"id": "newcomer", "sponsors": {"baai": 1.0},
                                               "demand": 900000, "weight": 2.0})
        await pilot.click("#alloc-commit")
        await pilot.pause()
        assert isinstance(app.screen, CommitScreen)
        await pilot.press(*"december run", "enter")
        await _settle(app, pilot)
        recorded = alloc.show(_ctx(ledger), "2026-12")
        got = {p["project"]: p["allocated"] for p in recorded.projects}
        table = app.table("diff")
        labels = [c.label.plain for c in table.data_table.columns.values()]
        assert labels == ["what", "id", "preview", "recorded", "change"]
        rows = {r.key: r for r in table.model.rows}
        assert rows["project:newcomer"].cells[2:4] == (None, float(got["newcomer"]))
        aquila = rows["project:aquila-3"].cells
        assert aquila[2] == preview["aquila-3"] and aquila[3] == float(got["aquila-3"])
        assert abs(aquila[3] - aquila[2]) >= 0.5
        status = str(app.query_one("#alloc-status").render())
        assert f"Recorded the 2026-12 run as entry #{recorded.entry.seq}" in status
        assert "It differs from the preview" in status and "projects moved" in status
        # a preview again: the headings are the preview's
        await pilot.click("#alloc-preview")
        await _settle(app, pilot)
        assert [c.label.plain for c in table.data_table.columns.values()][2:4] == ["committed", "preview"]

    drive(_app(ledger), steps)


def test_the_table_keeps_the_focus_through_a_refresh(ledger):
    """Review: after `r` in Members or Projects, Enter and the arrows did nothing until another view
    was shown: the table, hidden behind "Loading…" while it reloaded, lost the focus."""
    from tui.screens import MemberScreen, ProjectScreen

    async def steps(app, pilot):
        for key, name, screen in (("2", "members", MemberScreen), ("3", "projects", ProjectScreen)):
            await pilot.press(key, "down")
            await pilot.press("r")
            await _settle(app, pilot)
            table = app.table(name).data_table
            assert app.focused is table
            assert table.cursor_row == 1  # where it was
            await pilot.press("down", "enter")
            await pilot.pause()
            assert isinstance(app.screen, screen)
            await pilot.press("escape")
            await pilot.pause()

    drive(_app(ledger), steps)


def test_escape_clears_an_applied_filter(ledger):
    """Review: `/`, words, Enter, then Esc left the filter in place (the line still said `filter
    "china"`); the README and the help say Esc clears it."""
    async def steps(app, pilot):
        await pilot.press("2", "slash", *"china", "enter")
        await pilot.pause()
        status = app.table("members").query_one(".status")
        assert 'filter "china"' in str(status.render()) and len(shown(app, "members")) < 16
        await pilot.press("escape")
        await pilot.pause()
        assert "filter" not in str(status.render()) and len(shown(app, "members")) == 16
        assert app.focused is app.table("members").data_table

    drive(_app(ledger), steps)


def _contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two colours."""
    from rich.color import Color

    def luminance(colour: str) -> float:
        r, g, b = (c / 255 for c in Color.parse(colour).get_truecolor())
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_light_theme_s_colours_are_readable(ledger):
    """Review: on the light theme (`t`) an over-100% quota was #fea62b on #dddddd (about 1.3:1) and
    "✓ verifies" #4ebf71 on #e0e0e0 (1.76:1). Both now read at 4.5:1 or more against the theme's
    backgrounds; the dark theme keeps its colours."""
    async def steps(app, pilot):
        dark = app.palette()
        assert dark["over"].upper() == "#FEA62B" and dark["ok"].upper() == "#4EBF71"
        for name in ("over", "ok", "error"):
            assert _contrast(dark[name], app.theme_variables["surface"]) >= 3, name
        await pilot.press("2", "t")
        await pilot.pause()
        assert app.theme == "textual-light"
        light = app.palette()
        grounds = [app.theme_variables[v] for v in ("background", "surface", "panel")] + ["#dddddd"]
        for name in ("over", "ok", "error"):
            assert min(_contrast(light[name], g) for g in grounds) >= 4.5, name
        # an over-100% quota in the Members view is drawn in it
        table = app.table("members")
        over = [r.key for r in table.model.rows if r.values["quota"] and r.values["quota"] > 1]
        assert over
        cell = table.data_table.get_row(over[0])[-1]
        assert any(str(span.style) == light["over"] for span in cell.spans)
        from textual.color import Color

        line = app.query_one("#ov-ledger").render()  # "✓ verifies" in it
        assert any(getattr(span.style, "foreground", None) == Color.parse(light["ok"]) for span in line.spans)

    drive(_app(ledger), steps)


def _text(widget) -> list[str]:
    """A widget's content as drawn at its width on screen, line by line."""
    import io

    from rich.console import Console

    console = Console(width=widget.content_size.width, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text().rstrip("\n").splitlines()


def test_the_overview_panels_go_side_by_side_only_when_they_fit(ledger):
    """Review: at 120x40 the region and accelerator panels sat side by side with 8-cell bars and
    region names cut ("beijing-tianjin-h…"), while stacked at 100x30 they read better. They go
    side by side only where both fit with whole names and bars of 16 cells."""
    async def steps(app, pilot):
        groups = app.query_one("#ov-groups")
        for width, side_by_side in ((100, False), (120, False), (130, None), (140, None), (160, True)):
            await pilot.resize_terminal(width, 40)
            await _settle(app, pilot)
            if side_by_side is not None:  # (in between: whichever fits, as below)
                assert groups.has_class("narrow") != side_by_side, width
            lines = _text(app.query_one("#ov-regions"))
            assert any("beijing-tianjin-hebei " in line for line in lines), (width, lines)
            bar = max(line.count("█") + line.count("▒") for line in lines)
            assert bar >= 16, (width, lines)

    drive(_app(ledger), steps, size=(120, 40))


def test_the_ledger_line_fits_on_one_line(ledger, tmp_path):
    """Review: at 80x24 the Overview's ledger line wrapped ("✓ verifies (79" / "entries)") with the
    demo's long path; the hash, then the start of the path give way, the verification stays whole."""
    long_name = str(tmp_path / "a-rather-long-folder-name-for-the-ledger" / "pooler.db")
    (tmp_path / "a-rather-long-folder-name-for-the-ledger").mkdir()
    shutil.copy(ledger, long_name)

    async def steps(app, pilot):
        for width in (200, 110, 80, 60):
            await pilot.resize_terminal(width, 24)
            await _settle(app, pilot)
            lines = _text(app.query_one("#ov-ledger"))
            assert len(lines) == 1, (width, lines)
            assert lines[0].rstrip().endswith("✓ verifies (74 entries)") and "pooler.db" in lines[0]
        assert "…" in lines[0]

    drive(_app(long_name), steps, size=(200, 24))


def test_at_60_columns_the_header_keeps_the_period_and_the_tabs_and_keys_fit(ledger):
    """Review: at 60x20 the header cut the period ("period 20…"), the tab bar was clipped (no
    "6 Allocate"), and the footer dropped "? Keys q Quit"."""
    from textual.widgets import Tab
    from textual.widgets._footer import FooterKey

    async def steps(app, pilot):
        for width in (60, 80, 110):
            await pilot.resize_terminal(width, 20)
            await _settle(app, pilot)
            header = str(app.query_one("#header").content)
            assert "period 2026-11" in header and len(header) <= width - 2, header
            tabs = list(app.query(Tab))
            assert len(tabs) == 6 and all(t.region.right <= width for t in tabs), width
            assert tabs[-1].label.plain.startswith("6 Alloc")
            keys = {k.key: k for k in app.query(FooterKey)}
            for key in ("question_mark", "q"):
                assert key in keys and 0 < keys[key].region.right <= width, (width, key)
        assert tabs[0].label.plain == "1 Overview"  # whole words where they fit

    drive(_app(ledger), steps, size=(110, 32))


def test_the_ledger_view_keeps_its_verify_status_and_page_through_sorts(ledger):
    """Review: in the Ledger view a sort replaced the line's "✓ verifies" with "74 entries · sorted
    by # ↑"; with more than one page, page 1 did not say "page 1/2" (the verify line replaced it),
    and the footer did not list `[ ]`."""
    from textual.widgets._footer import FooterKey

    def footer_keys() -> set[str]:
        return {k.key for k in app.query(FooterKey)}

    async def steps(app, pilot):
        await pilot.press("5")
        await pilot.pause()
        status = app.table("ledger").query_one(".status")
        assert str(status.render()) == "74 entries · sorted by # ↓ · ✓ verifies"
        await pilot.press("s")
        await pilot.pause()
        assert str(status.render()) == "74 entries · sorted by # ↑ · ✓ verifies"
        assert "right_square_bracket" not in footer_keys()  # one page: nothing to turn
        app.table("ledger").model.page_size = 30  # (200 a page otherwise: the example has 74 entries)
        await pilot.press("v")
        await _settle(app, pilot)
        line = str(status.render())
        assert "rows 1-30, page 1/3 ([ ])" in line and line.endswith("✓ verifies"), line
        assert {"left_square_bracket", "right_square_bracket"} <= footer_keys()
        await pilot.press("right_square_bracket", "s")
        await pilot.pause()
        line = str(status.render())
        assert "page 1/3" in line and "sorted by kind ↑" in line and line.endswith("✓ verifies")
        await pilot.press("2")
        await pilot.pause()
        assert "right_square_bracket" not in footer_keys()

    app = _app(ledger)
    drive(app, steps)


# --- before a run, and before usage ------------------------------------------------------------------


def test_before_usage_is_imported_used_and_balance_are_a_dash(tmp_path, monkeypatch):
    """Review: with a run but no usage, Members showed used 0 and balance 0 (and Pools used 0) while
    the Overview said "no usage imported for the period yet"; they now say "-" as it does."""
    monkeypatch.chdir(tmp_path)
    ctx = _ctx("l.db")
    registry.init(ctx)
    registry.apply(ctx, ROOT / "examples" / "c2net.toml")
    alloc.run(ctx, "2026-11")

    async def steps(app, pilot):
        assert not app.overview.has_usage and not app.details.has_usage
        await pilot.press("2")
        await pilot.pause()
        row = app.table("members").data_table.get_row("pcl")
        assert [str(c) for c in row[5:7]] == ["-", "-"] and str(row[4]) != "-"
        pool = app.table("pools").data_table.get_row("pcl-cloudbrain-2")
        assert str(pool[5]) == "-" and str(pool[4]) != "-"

    drive(_app("l.db"), steps)


def test_before_any_run_the_tables_list_the_records_registered(tmp_path, monkeypatch):
    """Review: with members but no run, Members, Projects and Pools said only "No allocation is
    recorded yet". They list the records registered, the allocation's columns empty."""
    monkeypatch.chdir(tmp_path)
    ctx = _ctx("l.db")
    registry.init(ctx)
    registry.apply(ctx, ROOT / "examples" / "c2net.toml")

    async def steps(app, pilot):
        assert app.overview.period is None
        assert app.row_counts() == {"members": 16, "projects": 19, "pools": 17, "ledger": 72}
        for name in ("members", "projects", "pools"):
            assert "no allocation recorded yet" in str(app.table(name).query_one(".status").render())
        member = app.table("members").data_table.get_row("pcl")
        # the contribution is known without a run; the rest is the allocation's
        assert str(member[2]) != "-" and [str(c) for c in member[1:2] + member[3:7]] == ["-"] * 5
        project = app.table("projects").data_table.get_row("pengcheng-mind-2")
        assert str(project[1]) == "5.00M" and str(project[2]) == "-" and "pcl 70%" in str(project[5])
        pool = app.table("pools").data_table.get_row("pcl-cloudbrain-2")
        assert str(pool[3]) == "2.95M" and [str(c) for c in pool[4:6]] == ["-", "-"]
        # a run recorded: the allocation's figures, without the note
        await pilot.press("6")
        await pilot.press("enter")
        await _settle(app, pilot)
        await pilot.click("#alloc-commit")
        await pilot.press(*"first run", "enter")
        await _settle(app, pilot)
        assert app.overview.period == "2026-11"
        assert "no allocation" not in str(app.table("members").query_one(".status").render())
        assert str(app.table("members").data_table.get_row("pcl")[4]) != "-"

    drive(_app("l.db"), steps)


def test_on_an_empty_ledger_the_period_picker_says_what_to_do(tmp_path, monkeypatch):
    """Review: on an empty ledger the picker said "press 6 to allocate a period", and allocating
    then failed with "nothing to allocate"."""
    from textual.widgets import Static

    from tui.screens import PeriodScreen

    monkeypatch.chdir(tmp_path)
    registry.init(_ctx("empty.db"))

    async def steps(app, pilot):
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, PeriodScreen)
        words = " ".join(str(s.render()) for s in app.screen.query(Static))
        assert "press 6" not in words and "pooler apply MANIFEST" in words

    drive(_app("empty.db"), steps)


# --- the dashboard's rough edges (keyboard, footer, ledger line, statements) ----------------------------


def _screen_lines(app) -> list[str]:
    """The screen as drawn, line by line (plain text)."""
    update = app.screen._compositor.render_update(full=True)
    return ["".join(segment.text for segment in strip) for strip in update.strips]


def test_the_overview_scrolls_with_the_keyboard(ledger):
    """Review: at 100x30 the Overview's last lines (the accelerator panel, the hint) could be reached
    only with the mouse: nothing on it took the arrows or PgDn. The pane holds the focus while the
    Overview is shown, and the view keys still switch."""
    from textual.widgets import TabbedContent

    async def steps(app, pilot):
        pane = app.query_one("#overview-pane")
        assert pane.max_scroll_y > 0  # there is something below the fold
        assert app.focused is pane  # at once, on opening
        await pilot.press("pagedown")
        await pilot.pause()
        assert pane.scroll_y > 0
        await pilot.press("end")
        await pilot.pause()
        assert pane.scroll_y == pane.max_scroll_y
        assert any(line.strip() == "the keys." for line in _screen_lines(app)), _screen_lines(app)
        await pilot.press("home", "down")
        await pilot.pause()
        assert pane.scroll_y == 1
        await pilot.press("2")  # the view keys still switch, and come back to a pane that scrolls
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "members"
        await pilot.press("1")
        await _until(pilot, lambda: app.focused is pane)
        assert app.focused is pane
        await pilot.press("pagedown")
        await pilot.pause()
        assert pane.scroll_y > 1

    drive(_app(ledger), steps, size=(100, 30))


def test_the_footer_reads_at_60_and_80_columns_with_pages_and_keeps_quit(ledger):
    """Review: below 80 columns, with a Ledger of more than one page, the compact footer read
    "[ ] Pagep Period" and, at 60, dropped "q Quit"; resized, it kept the command palette's key of
    the width before ("? Ke▏^p palette" at 60). Keys give way to "? Keys" and "q Quit", which stay."""
    async def steps(app, pilot):
        await pilot.press("5")
        app.table("ledger").model.page_size = 30
        app.table("ledger").render_page()
        for view in ("5", "2"):
            await pilot.press(view)
            for width in (60, 70, 79, 80, 90, 100, 120, 60):
                await pilot.resize_terminal(width, 24)
                await _settle(app, pilot)
                await pilot.pause(0.1)
                line = _screen_lines(app)[-1]
                assert line.rstrip().endswith("q Quit") or "q Quit ▏^p palette" in " ".join(line.split()), \
                    (view, width, line)
                assert "? Keys" in line and "Pagep" not in line, (view, width, line)
                if view == "5":
                    assert "[ ] Page " in line, (width, line)
                # the command palette's key where the others fit beside it
                assert ("^p palette" in line) <= (width >= 80) and ("^p palette" in line) >= (width >= 100), \
                    (width, line)
                if width >= 80:
                    assert all(k in line for k in ("/ Filter", "s Sort", "p Period", "r Refresh", "v Verify"))

    drive(_app(ledger), steps)


def test_the_footer_lists_only_keys_that_act_in_a_text_field(ledger):
    """Review: in the Allocate view's Period field, `/`, `q` and `?` were typed into it while the
    footer said "/ Filter ... q Quit". In a text field the footer lists what acts there: Enter, and
    Esc to leave it; out of it, the keys again. The same in a table's filter box."""
    from textual.widgets._footer import FooterKey

    def footer(app) -> str:
        """The footer's keys as "key Description", by the keys' names (enter, not ⏎)."""
        return "  ".join(f"{k.key} {k.description}" for k in app.query(FooterKey))

    async def steps(app, pilot):
        await pilot.press("6")
        await pilot.pause(0.2)
        line = footer(app)
        for gone in ("slash Filter", "q Quit", "question_mark Keys", "s Sort", "r Refresh"):
            assert gone not in line, line
        assert "enter Preview" in line and "escape Leave the field" in line, line
        await pilot.press("escape")
        await pilot.pause(0.2)
        line = footer(app)
        assert "q Quit" in line and "question_mark Keys" in line and "Leave the field" not in line, line
        # a table's filter box: the same
        await pilot.press("2", "slash")
        await pilot.pause(0.2)
        line = footer(app)
        assert "q Quit" not in line and "slash Filter" not in line, line
        assert "enter Keep the filter" in line and "escape Clear the filter" in line, line
        await pilot.press(*"pcl", "enter")
        await pilot.pause(0.2)
        line = footer(app)
        assert "q Quit" in line and "escape Clear the filter" in line, line  # (Esc clears a kept filter)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert "Clear the filter" not in footer(app)

    drive(_app(ledger), steps)


def test_a_ledger_that_fails_verification_keeps_its_path_and_head(ledger, tmp_path):
    """Review: on a ledger that does not verify, the Overview's ledger line cut the path to "….db"
    and dropped the head, to make room for the problem. The problem goes on lines of its own,
    whole; the path keeps as much as its line holds."""
    folder = tmp_path / "pooler-demo-k3x9q2ab"
    folder.mkdir()
    bad = folder / "pooler.db"
    shutil.copy(ledger, bad)
    con = sqlite3.connect(bad)
    for (name,) in con.execute("select name from sqlite_master where type = 'trigger' and tbl_name = 'alloc_grant'"):
        con.execute(f'drop trigger "{name}"')
    con.execute("update alloc_grant set device_hours = device_hours + 1 where line = 1")
    con.commit()
    con.close()

    async def steps(app, pilot):
        assert not app.verification["ok"]
        problem = app.verification["problem"]
        for width in (160, 100, 80):
            await pilot.resize_terminal(width, 30)
            await _settle(app, pilot)
            lines = _text(app.query_one("#ov-ledger"))
            assert lines[0].startswith("Ledger ") and "pooler-demo-k3x9q2ab/pooler.db" in lines[0], (width, lines)
            assert f"head #{app.overview.head_seq}" in lines[0], (width, lines)
            words = " ".join(" ".join(lines[1:]).split())
            assert words.startswith("✗ DOES NOT VERIFY") and " ".join(problem.split()) in words, (width, lines)

    drive(_app(str(bad)), steps, size=(100, 30))


def test_before_any_run_members_show_their_contributions_and_open_a_statement(tmp_path, monkeypatch):
    """Review: before any run, Enter on a member opened nothing, and "contrib." said "-" though a
    member's contribution (its pools' capacity at their rates, and its credits) is known from the
    registry. The column shows it, and Enter opens what is known: the member's pools and projects."""
    from textual.widgets import Static

    from pooler.core.contrib import contributions
    from tui.format import compact
    from tui.screens import MemberScreen

    monkeypatch.chdir(tmp_path)
    ctx = _ctx("l.db")
    registry.init(ctx)
    registry.apply(ctx, ROOT / "examples" / "c2net.toml")
    known = contributions(registry.snapshot(ctx))

    async def steps(app, pilot):
        assert app.overview.period is None
        table = app.table("members").data_table
        for member, k in known.items():
            assert str(table.get_row(member)[2]) == compact(k), member
        assert str(table.get_row("pcl")[1]) == "-"  # the share is the run's
        await pilot.press("2")
        await _until(pilot, lambda: app.focused is table)
        first = shown(app, "members")[0]  # (by share, unknown for all: by id)
        await pilot.press(*["down"] * shown(app, "members").index("pcl"), "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MemberScreen), screen
        s = screen.statement
        assert first != "pcl" and s["member"] == "pcl" and "no allocation recorded yet" in s["title"]
        assert s["statement"][0]["contributed"] == known["pcl"]
        assert {p["pool"] for p in s["pools"]} == {p["id"] for p in registry.list_records(ctx, "pool")
                                                   if p["member"] == "pcl"}
        assert any(p["project"] == "pengcheng-mind-2" for p in s["projects"])
        words = "\n".join("\n".join(_text(w)) for w in screen.query(Static))
        assert f"contributed  {known['pcl']:,.0f}" in words
        assert "allocated    -" in words and "used         -" in words
        await pilot.press("escape", "3", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, MemberScreen)  # a project has nothing to open before a run:
        assert any("no allocation" in str(n.message).lower() for n in app._notifications)  # it says so

    drive(_app("l.db"), steps)


def test_a_statement_before_usage_says_used_is_not_known(tmp_path, monkeypatch):
    """Review: after a run without usage, the Members table said used "-" and balance "-" (not known
    yet), while the member's statement said "used 0", "lent 0", "balance 0". Not known is "-" there
    too; once usage is imported, its figures (0 where known to be zero)."""
    from textual.widgets import Static

    from tui.screens import MemberScreen

    monkeypatch.chdir(tmp_path)
    ctx = _ctx("l.db")
    registry.init(ctx)
    registry.apply(ctx, ROOT / "examples" / "c2net.toml")
    alloc.run(ctx, "2026-11")

    async def steps(app, pilot):
        assert not app.details.has_usage
        await pilot.press("2")
        await _until(pilot, lambda: app.focused is app.table("members").data_table)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MemberScreen)
        words = "\n".join("\n".join(_text(w)) for w in app.screen.query(Static))
        for figure in ("used", "lent", "borrowed", "balance"):
            assert any(line.split() == [figure, "-"] for line in words.splitlines()), (figure, words)
        assert "no usage is imported for 2026-11 yet" in " ".join(words.lower().split())

    drive(_app("l.db"), steps)
