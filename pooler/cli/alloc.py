"""`pooler alloc solve|run|show|explain|diff|list`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from pooler.cli.output import bar, message, number, out, print_json, table


def _pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.1f}%" if whole > 0 else "-"


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


def _members(data: dict, unit: str) -> None:
    members = sorted(data["members"].items(), key=lambda kv: (-kv[1]["allocated"], kv[0]))
    out.print(table(
        f"Members ({unit})", ["member", "share", "demand", "allocated", "served", ""],
        [(m, f"{v['share'] * 100:.2f}%", number(v["demand"]),
          number(v["allocated"]), _pct(v["allocated"], v["demand"]),
          bar(v["allocated"] / v["demand"] if v["demand"] > 0 else 0.0, 10))
         for m, v in members],
        numeric=["share", "demand", "allocated", "served"],
    ))


def _projects(data: dict, unit: str) -> None:
    projects = sorted(data["projects"].items(), key=lambda kv: kv[0])
    out.print(table(
        f"Projects ({unit})", ["project", "demand", "allocated", "served", "bottleneck", ""],
        [(p, number(v["demand"]), number(v["allocated"]), _pct(v["allocated"], v["demand"]),
          v["bottleneck"], bar(v["allocated"] / v["demand"] if v["demand"] > 0 else 1.0, 10))
         for p, v in projects],
        numeric=["demand", "allocated", "served"],
    ))


def _pools(data: dict) -> None:
    pools = sorted(data["pools"].items(), key=lambda kv: kv[0])
    out.print(table(
        "Pools (device-hours)", ["pool", "capacity", "granted", "used", ""],
        [(p, number(v["capacity"]), number(v["granted"]), _pct(v["granted"], v["capacity"]),
          bar(v["granted"] / v["capacity"] if v["capacity"] > 0 else 0.0, 10))
         for p, v in pools],
        numeric=["capacity", "granted", "used"],
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
        file: Path = typer.Argument(..., metavar="FILE", exists=True, dir_okay=False,
                                    help="A manifest, TOML or JSON, with an optional [usage] table."),
        period: Optional[str] = typer.Option(None, "--period", help="Label for the result."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Allocate a manifest without any ledger: the manifest in, the allocation out.

        Example: pooler alloc solve examples/c2net.toml --json
        """
        from pooler.services import alloc

        data = alloc.solve_file(file, period)
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

        outcome = alloc.run(context(ctx), period, dry_run=dry_run, reason=reason)
        if as_json:
            print_json({**outcome.result, "recorded": outcome.seq, "supersedes": outcome.supersedes})
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
                                  f"{view.entry.time}, {view.entry.actor})")
        if view.earlier:
            message(f"Supersedes earlier runs: {', '.join(f'#{s}' for s in view.earlier)}.")

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
        out.print(table(None, ["period", "entry", "time", "actor", "status", "reason"],
                        [(r["period"], f"#{r['seq']}", r["time"], r["actor"],
                          "committed" if r["committed"] else "superseded", r["reason"] or "")
                         for r in runs]))

    @alloc_app.command("explain")
    def explain_cmd(
        ctx: typer.Context,
        project: str = typer.Argument(..., metavar="PROJECT"),
        period: Optional[str] = typer.Option(None, "--period", help="Default: the latest recorded period."),
        as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
    ) -> None:
        """Explain in words and numbers why a project got what it got in a recorded run.

        Example: pooler alloc explain pengcheng-mind-2 --period 2026-11
        """
        from pooler.services import alloc

        data = alloc.explain(context(ctx), project, period)
        if as_json:
            print_json(data)
            return
        for line in explanation(data):
            out.print(line)

    @alloc_app.command("diff")
    def diff_cmd(
        ctx: typer.Context,
        first: str = typer.Argument(..., metavar="P1"),
        second: str = typer.Argument(..., metavar="P2"),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Compare the recorded allocations of two periods, member by member and project by project.

        Example: pooler alloc diff 2026-10 2026-11
        """
        from pooler.services import alloc

        data = alloc.diff(context(ctx), first, second)
        if as_json:
            print_json(data)
            return
        unit = data["unit"] or "units"
        for key, title in (("member", "Members"), ("project", "Projects")):
            rows = data[f"{key}s"]
            out.print(table(f"{title} ({unit})", [key, first, second, "change"],
                            [(r[key], number(r[first]), number(r[second]), _signed(r["change"]))
                             for r in rows], numeric=[first, second, "change"]))


def _signed(value: float) -> Text:
    if abs(value) < 0.5:
        return Text("0", style="dim")
    return Text(f"{value:+,.0f}", style="green" if value > 0 else "red")


def explanation(d: dict) -> list[Text]:
    """The explanation in sentences, then the numbers behind them."""
    unit = d.get("unit") or "units"
    served = d["allocated"] / d["demand"] if d["demand"] > 0 else 1.0
    lines = [Text(f"{d['project']} in {d['period']} (run #{d['run']})", style="bold")]
    lines.append(Text(
        f"It asked for {d['demand']:,.0f} {unit} and got {d['allocated']:,.0f} ({served * 100:.1f}%)."
    ))
    sponsors = ", ".join(
        f"{s['member']} (stake {s['stake']:.0%}, share {s['share'] * 100:.2f}%)" for s in d["sponsors"]
    )
    lines.append(Text(f"Its sponsors are {sponsors}; with its own weight {d['raw_weight']:g} that gives "
                      f"it a fair-share weight of {d['weight']:.6f}."))
    reason = {
        "demand": "It stopped at its demand: it got everything it asked for.",
        "capacity": "It stopped because the pools it can use are exhausted: every device-hour it could "
                    "run on is granted, and taking any back would lower a project or member that "
                    "stands no higher than it.",
        "fairness": "It stopped at its fair level: the rest of the capacity it could use is held by "
                    "projects and members with an equal or lower claim per unit of share.",
    }[d["bottleneck"]]
    if d["level"] is not None:
        reason += f" Its level (allocated / weight) is {d['level']:,.0f}."
    lines.append(Text(reason))
    for s in d["sponsors"]:
        level = f"{s['member_level']:,.0f}" if s["member_level"] is not None else "-"
        lines.append(Text(f"  {s['member']}: received {s['member_allocated']:,.0f} of "
                          f"{s['member_demand']:,.0f} {unit} demanded over its projects; "
                          f"level per unit of share {level}."))
    where = "any region" if d["regions"] is None else ", ".join(d["regions"]) or "no region"
    lines.append(Text(f"It may run in {where}" + (
        "" if d["speed"] is None else " on " + ", ".join(f"{a} (speed {s:g})" for a, s in d["speed"].items())
    ) + f"; {len(d['pools'])} pools qualify."))
    if not d["pools"]:
        lines.append(Text("No pool qualifies, so it can get nothing: check its speed table, regions "
                          "and the residency of its datasets and models.", style="red"))
        return lines
    lines.append(Text("Pools it can use (device-hours):", style="bold"))
    for p in sorted(d["pools"], key=lambda p: (-p["to_this_project"], p["pool"])):
        others = [h for h in p["holders"] if h["project"] != d["project"]]
        held = ", ".join(f"{h['project']} {h['device_hours']:,}" for h in others[:3])
        if len(others) > 3:
            held += f" and {len(others) - 3} more"
        owner = p["owner"] + (", a sponsor" if p["own_pool"] else "")
        lines.append(Text(
            f"  {p['pool']} ({owner}; {p['accelerator']} at {p['effective_rate']:g} {unit}/device-hour): "
            f"{p['to_this_project']:,} of {p['capacity']:,.0f} to it"
            + (f"; also held by {held}" if held else "")
        ))
    return lines
