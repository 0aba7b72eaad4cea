"""`pooler alloc solve|run|show|explain|diff|list`."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from pooler.cli.output import bar, message, number, out, print_json, show, table, when
from pooler.errors import UsageError


def _pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.1f}%" if whole > 0 else "-"


def _qty(value: float) -> str:
    from pooler.services.alloc import amount_text

    return amount_text(value)


def _served_bar(got: float, want: float):
    """The bar of what was served of a demand; none for a demand of nothing."""
    return bar(got / want, 10) if want > 0 else ""


def render_result(data: dict, *, title: str,
                  sections: tuple[str, ...] = ("members", "projects", "pools")) -> None:
    """Quotas by member, project and pool, with bars, from a section-4 result."""
    unit = data.get("unit") or "units"
    out.print(Text(title, style="bold"))
    if "members" in sections:
        _members(data, unit)
    if "projects" in sections:
        _projects(data, unit)
    if "pools" in sections:
        _pools(data)
    _metrics(data)
    for warning in (data.get("solver") or {}).get("warnings", ()):
        message(f"Warning: {warning}", style="yellow")


def _members(data: dict, unit: str) -> None:
    members = sorted(data["members"].items(), key=lambda kv: (-kv[1]["allocated"], kv[0]))
    show(table(
        f"Members ({unit})", ["member", "share", "demand", "allocated", "served", ""],
        [(m, f"{v['share'] * 100:.2f}%", _qty(v["demand"]),
          _qty(v["allocated"]), _pct(v["allocated"], v["demand"]), _served_bar(v["allocated"], v["demand"]))
         for m, v in members],
        numeric=["share", "demand", "allocated", "served"],
    ))


def _projects(data: dict, unit: str) -> None:
    projects = sorted(data["projects"].items(), key=lambda kv: kv[0])
    show(table(
        f"Projects ({unit})", ["project", "demand", "allocated", "served", "bottleneck", ""],
        [(p, _qty(v["demand"]), _qty(v["allocated"]), _pct(v["allocated"], v["demand"]),
          v["bottleneck"], _served_bar(v["allocated"], v["demand"]))
         for p, v in projects],
        numeric=["demand", "allocated", "served"],
    ))


def _pools(data: dict) -> None:
    pools = sorted(data["pools"].items(), key=lambda kv: kv[0])
    show(table(
        "Pools (device-hours)", ["pool", "capacity", "granted", "% granted", ""],
        [(p, _qty(v["capacity"]), _qty(v["granted"]), _pct(v["granted"], v["capacity"]),
          bar(v["granted"] / v["capacity"] if v["capacity"] > 0 else 0.0, 10))
         for p, v in pools],
        numeric=["capacity", "granted", "% granted"],
    ))


def _metrics(data: dict) -> None:
    m = data["metrics"]
    out.print(Text(
        f"Utilisation {m['utilisation'] * 100:.1f}% · Jain's index {m['jain_index']:.3f} · "
        f"{m['satisfied_projects']} of {len(data['projects'])} projects fully served · "
        f"{len(data['grants'])} grants · {data['solver']['lp_solves']} LP solves in "
        f"{data['solver']['seconds']:.2f} s"
    ))


def register(app: typer.Typer) -> None:
    from pooler.cli.main import context

    alloc_app = typer.Typer(help="Compute, record, show and explain fair-share allocations.",
                            no_args_is_help=True)
    app.add_typer(alloc_app, name="alloc")

    @alloc_app.command("solve")
    def solve_cmd(
        file: Path = typer.Argument(..., metavar="FILE",
                                    help="A manifest, TOML or JSON, with an optional [usage] table."),
        period: Optional[str] = typer.Option(None, "--period", help="Label the result with a period of the "
                                             "manifest's kind, e.g. 2026-11 (default: none, \"period\": null)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Allocate a manifest without any ledger: the manifest in, the allocation out.

        Example: pooler alloc solve examples/c2net.toml --json
        """
        from pooler.services import alloc

        with solving() as progress:
            data = alloc.solve_file(file, period, progress=progress)
        if as_json:
            print_json(data)
        else:
            render_result(data, title=f"Allocation of {file.name}" + (f" for {period}" if period else ""))

    @alloc_app.command("run")
    def run_cmd(
        ctx: typer.Context,
        period: Optional[str] = typer.Option(None, "--period", help="e.g. 2026-11 (default: the current period)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Solve and show; record nothing."),
        reason: Optional[str] = typer.Option(None, "--reason", help="Why a recorded period is run again."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Allocate a period from the ledger's current state and record it as one journal entry.

        A period that already has a run is run again only with --reason; the new run supersedes the
        old one and both stay in the journal.

        Example: pooler alloc run --period 2026-11
        """
        from pooler.services import alloc

        with solving() as progress:
            outcome = alloc.run(context(ctx), period, dry_run=dry_run, reason=reason, progress=progress)
        if as_json:
            print_json({**outcome.result, "recorded": outcome.seq, "supersedes": outcome.supersedes,
                        "run": outcome.run})
            return
        render_result(outcome.result, title=f"Allocation for {outcome.period}")
        if outcome.seq is None:
            message("Dry run: nothing recorded." + (
                f" {outcome.period} already has run #{outcome.supersedes}." if outcome.supersedes else ""))
        else:
            extra = f", superseding #{outcome.supersedes}" if outcome.supersedes else ""
            message(f"Recorded the {outcome.period} run as entry #{outcome.seq}{extra}.")

    @alloc_app.command("show")
    def show_cmd(
        ctx: typer.Context,
        period: Optional[str] = typer.Option(None, "--period", help="Default: the latest recorded period."),
        as_json: bool = typer.Option(False, "--json", help="Print the run as JSON."),
    ) -> None:
        """Show a recorded run: quotas by member, project and pool.

        Example: pooler alloc show --period 2026-11
        """
        from pooler.services import alloc

        view = alloc.show(context(ctx), period)
        data = view.to_json_dict()
        if as_json:
            print_json(data)
            return
        render_result(data, title=f"Allocation for {view.period} (entry #{view.entry.seq}, "
                                  f"{when(view.entry.time)} UTC, {view.entry.actor})")
        if view.earlier:
            message(f"Supersedes earlier runs: {', '.join(f'#{s}' for s in view.earlier)}.")

    @alloc_app.command("inputs")
    def inputs_cmd(
        ctx: typer.Context,
        period: Optional[str] = typer.Option(None, "--period", help="Default: the latest recorded period."),
        fmt: str = typer.Option("toml", "--format", "-f", metavar="toml|json", help="toml or json (json: the text the run's "
                                "inputs_digest is the SHA-256 of)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE, not stdout."),
    ) -> None:
        """Write what a recorded run was solved from, as a manifest for `pooler alloc solve`.

        The registry as of the run, the accelerator rates of its period and the decayed usage it
        used ([usage]), rebuilt from the journal and checked against the run's inputs_digest. Solving
        the file gives the run's allocation again, whatever the ledger holds since.

        Example: pooler alloc inputs --period 2026-11 -f json -o inputs.json
        """
        from pooler.services import alloc

        if fmt not in ("toml", "json"):
            raise UsageError(f"--format: {fmt!r} is not one of toml, json")
        inputs = alloc.run_inputs(context(ctx), period)
        text = inputs.manifest(fmt)
        if output is None:
            print(text, end="")
            return
        from pooler.services.files import write_atomic

        write_atomic(output, text)
        message(f"Wrote the inputs of run #{inputs.entry.seq} ({inputs.period}) to {output}")

    @alloc_app.command("list")
    def list_cmd(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """List every recorded run, oldest first, and which one counts for each period.

        Example: pooler alloc list
        """
        from pooler.services import alloc

        runs = alloc.periods(context(ctx))
        if as_json:
            print_json(runs)
            return
        if not runs:
            message("No allocation has been recorded yet (pooler alloc run --period P).")
            return
        show(table(None, ["period", "entry", "time (UTC)", "actor", "status", "reason"],
                        [(r["period"], f"#{r['seq']}", when(r["time"]), r["actor"],
                          "committed" if r["committed"] else "superseded", r["reason"] or "")
                         for r in runs], numeric=["time (UTC)"]))

    @alloc_app.command("explain")
    def explain_cmd(
        ctx: typer.Context,
        project: str = typer.Argument(..., metavar="PROJECT", help="The project's id."),
        period: Optional[str] = typer.Option(None, "--period", help="Default: the latest recorded period."),
        as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
        all_pools: bool = typer.Option(False, "--all", help="List every pool the project may use "
                                       "(of more than 20: those it holds and the 10 most contested)."),
    ) -> None:
        """Explain in words and numbers why a project got what it got in a recorded run.

        Example: pooler alloc explain pengcheng-mind-2 --period 2026-11
        """
        from pooler.services import alloc

        data = alloc.explain(context(ctx), project, period)
        if as_json:
            print_json(data)
            return
        for line in explanation(data, all_pools=all_pools):
            out.print(line)

    @alloc_app.command("diff")
    def diff_cmd(
        ctx: typer.Context,
        first: str = typer.Argument(..., metavar="P1", help="A period with a recorded run, e.g. 2026-10."),
        second: str = typer.Argument(..., metavar="P2", help="Another (or the same), e.g. 2026-11."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Compare the recorded allocations of two periods, member by member and project by project.

        The change is P2's allocation minus P1's; with --json each row has "first" (P1) and "second" (P2).

        Example: pooler alloc diff 2026-10 2026-11
        """
        from pooler.services import alloc

        data = alloc.diff(context(ctx), first, second)
        if as_json:
            print_json(data)
            return
        unit = data["unit"] or "units"
        names = [data["first"], data["second"]]
        for key, title in (("member", "Members"), ("project", "Projects")):
            rows = data[f"{key}s"]
            show(table(f"{title} ({unit})", [key, *names, "change"],
                            [(r[key], number(r["first"]), number(r["second"]), _signed(r["change"]))
                             for r in rows], numeric=[*names, "change"]))


def _signed(value: float) -> Text:
    if abs(value) < 0.5:
        return Text("0", style="dim")
    return Text(f"{value:+,.0f}", style="green" if value > 0 else "red")


@contextmanager
def solving(console=None, *, after: float = 0.5, clock=time.monotonic, tty: bool | None = None):
    """A line on standard error that follows a long solve (10 s at 10,000 projects, minutes at 50,000):
    the step, how many members or projects are settled, the LPs so far and the seconds (ticking
    between reports). Only when standard error is a terminal (`tty`: by default whether the console's
    file is one; FORCE_COLOR alone does not count, so logs and pipes never get it), from `after`
    seconds on, and gone when the solve ends; yields the callback for `allocate(progress=...)`, or
    None when there is nothing to show it on. A display that fails is dropped, never the solve."""
    from pooler.cli.output import err
    from pooler.services.alloc import progress_text

    console = err if console is None else console
    if tty is None:
        try:
            tty = console.is_terminal and console.file.isatty()
        except (AttributeError, ValueError, OSError):
            tty = False
    if not tty:
        yield None
        return
    from rich.live import Live

    start = clock()
    state: dict = {"live": None, "text": "", "failed": False}

    class Line:
        def __rich__(self) -> Text:  # drawn at every refresh, so the seconds go on between reports
            return Text(f"Solving the allocation · {state['text']} · {clock() - start:.0f} s", style="dim")

    def update(p) -> None:
        if state["failed"]:
            return
        try:
            state["text"] = progress_text(p)
            if state["live"] is None:
                if clock() - start < after:
                    return
                state["live"] = Live(Line(), console=console, transient=True, refresh_per_second=4,
                                     redirect_stdout=False, redirect_stderr=False)
                state["live"].start()
            state["live"].refresh()
        except Exception:  # noqa: BLE001 - a terminal gone away: no more progress, the solve goes on
            state["failed"] = True
            _stop(state["live"])

    try:
        yield update
    finally:
        _stop(state["live"])


def _stop(live) -> None:
    if live is not None:
        try:
            live.stop()
        except Exception:  # noqa: BLE001 - as above
            pass


def explanation(d: dict, *, all_pools: bool = False) -> list[Text]:
    """The explanation in sentences, then the numbers behind them."""
    from pooler.services.alloc import explanation_lines

    return [Text(text, style=style) for text, style in explanation_lines(d, all_pools=all_pools)]
