"""`pooler init`, `pooler apply` and `pooler demo`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.text import Text

from pooler.cli.output import err, message, out, print_json, show, table
from pooler.core.plan import Plan

_SYMBOL = {"add": ("+", "green"), "change": ("~", "yellow"), "set": ("~", "yellow"),
           "retire": ("-", "red")}


def _value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def render_plan(plan: Plan) -> None:
    """The plan like `terraform plan`: one line per change, changed keys with before and after."""
    if plan.empty:
        message("No changes: the ledger already matches the manifest.")
        return
    for change in plan.changes:
        symbol, style = _SYMBOL[change.action]
        line = Text(f"  {symbol} {change.kind} ", style=style)
        line.append(change.id, style="bold")
        out.print(line)
        if change.action == "change" or change.action == "set":
            before, after = change.before or {}, change.after or {}
            for key in change.changed_keys:
                out.print(Text(
                    f"      {key}: {_value(before.get(key, '(unset)'))} -> "
                    f"{_value(after.get(key, '(unset)'))}"
                ))
    out.print(Text(f"Plan: {plan.summary()}.", style="bold"))


def _plan_json(plan: Plan, recorded: tuple[int, ...], dry_run: bool) -> dict:
    return {
        "dry_run": dry_run,
        "summary": {"add": plan.count("add"), "change": plan.count("change") + plan.count("set"),
                    "retire": plan.count("retire")},
        "changes": [
            {"action": c.action, "kind": c.kind, "id": c.id, "keys": list(c.changed_keys),
             "before": c.before, "after": c.after}
            for c in plan.changes
        ],
        "recorded": list(recorded),
    }


def register(app: typer.Typer) -> None:
    from pooler.cli.main import context

    @app.command("init")
    def init_cmd(ctx: typer.Context) -> None:
        """Create an empty ledger (a SQLite file by default).

        Example: pooler --db consortium.db init
        """
        from pooler.services import registry

        c = context(ctx)
        registry.init(c)
        # (a URL whose password is hidden cannot be pasted back: the next step names it in words)
        db = c.shown_db if c.shown_db == c.db else "THE-SAME-URL"
        message(f"Created an empty ledger at {c.shown_db}. Next: pooler --db {db} apply MANIFEST.toml")

    @app.command("apply")
    def apply_cmd(
        ctx: typer.Context,
        file: Path = typer.Argument(
            ..., metavar="FILE", help="A manifest, TOML or JSON."
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; record nothing."),
        prune: bool = typer.Option(
            False, "--prune", help="Retire records that the manifest no longer lists."
        ),
        rates_from: str = typer.Option(
            None, "--rates-from", metavar="PERIOD",
            help="First period of changed accelerator rates (default: the current period).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    ) -> None:
        """Make the ledger match a manifest: show the plan, then record it.

        Every change becomes one journal entry, all in one transaction. Applying the same file twice
        records nothing. Records missing from the file are kept unless --prune is given.

        Example: pooler apply examples/c2net.toml --dry-run
        """
        from pooler.services import registry

        result = registry.apply(context(ctx), file, dry_run=dry_run, prune=prune, rates_from=rates_from)
        if as_json:
            print_json(_plan_json(result.plan, result.recorded, dry_run))
            return
        render_plan(result.plan)
        if dry_run and not result.plan.empty:
            message("Dry run: nothing recorded.")
        elif result.recorded:
            n = len(result.recorded)
            message(f"Recorded {n} journal entries (#{result.recorded[0]} to #{result.recorded[-1]})." if n > 1
                    else f"Recorded 1 journal entry (#{result.recorded[0]}).")

    @app.command("demo")
    def demo_cmd(
        ctx: typer.Context,
        directory: Path = typer.Option(
            None, "--dir", help="Folder for the demo ledger (default: a new temporary folder)."
        ),
        manifest: Path = typer.Option(
            None, "--manifest", help="Manifest to load (default: examples/c2net.toml)."
        ),
    ) -> None:
        """Build a ledger from the example consortium in a fresh folder and show what it holds.

        Example: pooler demo
        """
        from pooler.services import demo

        result = demo.run(context(ctx), directory=directory, manifest=manifest)
        state = result.snapshot
        unit = state.consortium.unit
        out.print(Text(f"{state.consortium.name}", style="bold"))
        out.print(Text(
            f"{len(state.members)} members, {len(state.accelerators)} accelerator types, "
            f"{len(state.pools)} pools in {len(result.regions)} regions, {len(state.datasets)} "
            f"datasets, {len(state.models)} models, {len(state.projects)} projects; "
            f"{result.entries} journal entries, chain verified."
        ))
        show(table(
            f"Contributions ({unit} per {state.consortium.period})",
            ["member", "pools", "compute", "data+models", "total", "of all"],
            result.member_rows,
            numeric=["pools", "compute", "data+models", "total", "of all"],
        ))
        show(table(
            "Capacity by region", ["region", "device-hours by accelerator", unit],
            result.region_rows, numeric=[unit],
        ))
        if result.allocation is not None:
            from pooler.cli.alloc import render_result

            render_result(result.allocation, title=f"Fair-share allocation for {result.period}",
                          sections=("projects",))
        db = result.db
        err.print(Text(f"\nThe demo ledger is at {db}", style="bold"))
        err.print(Text("Try next:"))
        for command in (
            f"pooler --db {db} tui",
            f"pooler --db {db} alloc show",
            f"pooler --db {db} alloc explain {state.projects[0].id}" if state.projects else "",
            f"pooler --db {db} member list",
            f"pooler --db {db} ledger log --limit 10",
            f"pooler --db {db} ledger verify",
            f"pooler --db {db} ledger export --format toml",
            f"pooler --db {db} report audit --format html -o audit.html",
            f"pooler --db {db} apply {result.manifest} --dry-run",
        ):
            if command:
                # soft_wrap: a command wrapped at the terminal's edge would not paste back.
                err.print(Text(f"  {command}"), soft_wrap=True)
