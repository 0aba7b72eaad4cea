"""`pooler usage`: import consumed device-hours (CSV or Slurm sacct), and show fair-share figures."""

from __future__ import annotations

import heapq
import sys
from decimal import Decimal
from pathlib import Path
from typing import Optional

import typer

from pooler.cli.output import message, number, print_json, show, table


def _progress_bar(path: Path):
    """A Rich progress bar on stderr when stderr is a terminal; else (None, None)."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from pooler.cli.output import err

    progress = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                        TimeRemainingColumn(), console=err, transient=True)
    task = progress.add_task(f"Reading {path.name}", total=path.stat().st_size)
    return progress, lambda done: progress.update(task, completed=done)


def _hours(value: float) -> str:
    return f"{value:,.6f}".rstrip("0").rstrip(".") if value else "0"


def register(app: typer.Typer) -> None:
    """Add the `usage` commands to the root app."""
    from pooler.cli.main import context

    usage_app = typer.Typer(help="Import usage (device-hours consumed) and show fair-share figures.",
                            no_args_is_help=True)
    app.add_typer(usage_app, name="usage")

    @usage_app.command("import")
    def import_cmd(
        ctx: typer.Context,
        file: Path = typer.Argument(..., metavar="FILE",
                                    help="A CSV file (project,pool,device_hours,start,end) or sacct -P output."),
        fmt: str = typer.Option(..., "--format", metavar="csv|sacct", help="The file's format."),
        period: Optional[str] = typer.Option(None, "--period",
                                             help="Charge every line to this period (default: the period "
                                                  "holding each line's end)."),
        map_file: Optional[Path] = typer.Option(None, "--map", metavar="MAP.toml",
                                                help="Slurm accounts -> projects, cluster/partition/type -> pools."),
        include_running: bool = typer.Option(False, "--include-running",
                                             help="Count unfinished Slurm jobs for the time elapsed so far."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Record the good lines and list the bad ones."),
        tz: Optional[str] = typer.Option(None, "--tz", metavar="ZONE",
                                         help="The time zone of times written without one (sacct prints "
                                              "the cluster's local time): an IANA name such as "
                                              "Asia/Shanghai, or +08:00. Default: UTC."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Import a usage file as one journal entry; every line is checked, and nothing is recorded
        while any line is bad (unless --skip-bad). The same file is never imported twice.

        Example: pooler usage import sacct.txt --format sacct --map slurm-map.toml
        """
        from pooler.services import usage

        progress, callback = _progress_bar(file) if file.is_file() else (None, None)
        try:
            if progress is not None:
                progress.start()
            outcome = usage.import_usage(context(ctx), file, fmt.lower(), period=period, map_path=map_file,
                                         include_running=include_running, skip_bad=skip_bad, tz=tz,
                                         progress=callback)
        finally:
            if progress is not None:
                progress.stop()
        if as_json:
            print_json(outcome.to_json_dict())
        else:
            # A big file touches thousands of (project, pool) pairs (a million over a big consortium):
            # the terminal gets the largest, found without making every pair's figure.
            pairs = outcome.by_project_pool
            largest = getattr(pairs, "largest", None)
            top = largest(_SHOWN) if largest is not None else heapq.nsmallest(
                _SHOWN, pairs.items(), key=lambda kv: (-kv[1], kv[0]))
            rows = [(project, pool, _hours(float(hours))) for (project, pool), hours in top]
            if len(pairs) > _SHOWN:  # the rest, exactly: the total less what is shown
                rest = outcome.device_hours - sum((hours for _, hours in top), Decimal(0))
                rows.append((f"... {len(pairs) - _SHOWN} more pairs (--json lists all)", "", _hours(float(rest))))
            rows.append(("total", "", _hours(float(outcome.device_hours))))
            show(table(f"Usage in {file.name}", ["project", "pool", "device-hours"], rows,
                            numeric=["device-hours"]))
            for p in outcome.skipped[:_SHOWN]:
                message(f"Skipped line {p.line}: {p.reason}", style="yellow")
            if len(outcome.skipped) > _SHOWN:
                message(f"... and {len(outcome.skipped) - _SHOWN} more skipped lines (--json lists all)",
                        style="yellow")
        for w in outcome.type_warnings:
            message(f"Warning: {w['lines']:,} job line(s) with GPUs of type {w['gpu_type']!r} were charged to "
                    f"pool {w['pool']!r}, whose accelerator is {w['accelerator']!r} (found by the {w['via']}); "
                    "if they ran on another pool, map CLUSTER/PARTITION/TYPE to it", style="yellow")
        ignored = "".join(f"; {n} {what} ignored" for what, n in sorted(outcome.ignored.items()))
        if outcome.topped_up:
            ignored += (f"; {outcome.topped_up} job(s) recorded before while running: only the rest of "
                        "their use recorded")
        periods = ", ".join(sorted(outcome.periods))
        if outcome.seq is None:
            message(f"Read {outcome.lines} line(s){ignored}; nothing to record.")
        else:
            message(f"Recorded {outcome.recorded} usage line(s) of {outcome.lines} read as entry #{outcome.seq}"
                    f" (periods {periods}){ignored}"
                    + (f"; {len(outcome.skipped)} bad line(s) skipped" if outcome.skipped else "") + ".")

    usage_app.command("fairshare")(fairshare_cmd)


_SHOWN = 20  # rows of a usage summary shown on a terminal


# Registered as `pooler usage fairshare` and, by the report group, as `pooler report fairshare`.
def fairshare_cmd(
    ctx: typer.Context,
    period: Optional[str] = typer.Option(None, "--period",
                                         help="The period being allocated (default: the current one)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Fair-share figures per member, like Slurm's sshare: contribution (raw shares), normalised
    share, raw and effective (decayed, normalised) usage, and the fair-share factor
    2^(-effective usage / share) that allocating the period applies.

    Example: pooler usage fairshare --period 2026-12
    """
    from pooler.cli.main import context
    from pooler.services import usage

    data = usage.fairshare(context(ctx), period).to_json_dict()
    if as_json:
        print_json(data)
        return
    show(table(
        f"Fair share for {data['period']} ({data['unit']}; half-life {data['half_life_days']:g} days)",
        ["member", "raw shares", "norm shares", "raw usage", "effective usage", "fairshare"],
        [(m["member"], number(m["raw_shares"]), f"{m['norm_shares']:.6f}", number(m["raw_usage"], 2),
          f"{m['effective_usage']:.6f}", f"{m['fairshare']:.6f}") for m in data["members"]],
        numeric=["raw shares", "norm shares", "raw usage", "effective usage", "fairshare"],
    ))
