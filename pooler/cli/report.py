"""`pooler report audit|member`: a period's audit and member statements in six forms."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from pooler.cli.output import message, out, show, table
from pooler.errors import UsageError

FORMAT_HELP = "table (terminal), md, json, csv or html."


def _emit(report: dict, fmt: str, output: Optional[Path]) -> None:
    """Print or write the report; of a ledger that does not verify, then say so and exit 1 (the
    report, which says so as well, is still given: it shows what the damaged ledger holds)."""
    from pooler.services import report as service

    if fmt == "table":
        if output is not None:
            raise UsageError("-o: the table format is for the terminal; choose md, json, csv or html")
        _print_tables(report, service.display_sections(report))
    else:
        text = service.render(report, fmt)
        if output is None:
            typer.echo(text, nl=False)
        else:
            from pooler.services.files import write_atomic

            write_atomic(output, text)
            message(f"Wrote the {fmt} report for {report['period']} to {output}.")
    ledger = (report.get("ledger") or [{}])[0]
    if ledger.get("verified") is False:
        message(f"Error: the ledger does not verify ({ledger['problems']}): the report's figures cannot "
                "be trusted; see pooler ledger verify", style="red")
        raise typer.Exit(1)


def _print_tables(report: dict, sections: list[dict]) -> None:
    out.print(Text(report["title"], style="bold"))
    notes = list(report.get("notes", []))
    if notes and (report.get("ledger") or [{}])[0].get("verified") is False:
        message(notes[0], style="bold red")  # on stderr too, before the figures it puts in doubt
    for s in sections:
        if not s["rows"]:
            out.print(Text(f"{s['title']}: none", style="bold"))
            continue
        rows = [tuple(Text(c, style="bold red") if c == "IDLE" else c for c in row) for row in s["rows"]]
        show(table(s["title"], s["columns"], rows, numeric=s["numeric"]))
    # The notes are part of the report (which projects were settled how, what was not settled): on
    # stdout with the tables, so that `report audit > FILE` keeps them.
    if notes:
        out.print(Text("Notes", style="bold"))
        for note in notes:
            out.print(Text(f"- {note}", style="yellow"), soft_wrap=True)  # an id is never cut in two


def _check_format(fmt: str, allowed: tuple[str, ...]) -> str:
    if fmt not in allowed:
        raise UsageError(f"--format: {fmt!r} is not one of {', '.join(allowed)}")
    return fmt


def register(app: typer.Typer) -> None:
    """Add the `report` commands to the root app."""
    from pooler.cli.main import context

    report_app = typer.Typer(help="Audit reports and member statements of a period's allocation and usage.",
                             no_args_is_help=True)
    app.add_typer(report_app, name="report")

    from pooler.cli.usage import fairshare_cmd

    report_app.command("fairshare")(fairshare_cmd)  # the same command as `pooler usage fairshare`

    @report_app.command("audit")
    def audit_cmd(
        ctx: typer.Context,
        period: Optional[str] = typer.Option(None, "--period", help="Default: the latest recorded period."),
        fmt: str = typer.Option("table", "--format", "-f", metavar="FORMAT", help=FORMAT_HELP),
        output: Optional[Path] = typer.Option(None, "-o", "--output",
                                              help="Write to FILE (atomically) instead of stdout."),
    ) -> None:
        """The consortium's audit of a period: capacity, allocation, use, settlement and the ledger.

        Shows capacity by region and accelerator, member statements (contributed, entitled,
        allocated, used, lent, borrowed, balance), projects, pool utilisation with pools idle over
        30% flagged, lending between members, and the ledger head hash with the verify result.

        Example: pooler report audit --period 2026-11 --format html -o audit-2026-11.html
        """
        from pooler.services import report as service

        _check_format(fmt, ("table", "md", "json", "csv", "html"))
        _emit(service.audit(context(ctx), period), fmt, output)

    @report_app.command("member")
    def member_cmd(
        ctx: typer.Context,
        member: str = typer.Argument(..., metavar="MEMBER"),
        period: Optional[str] = typer.Option(None, "--period", help="Default: the latest recorded period."),
        fmt: str = typer.Option("table", "--format", "-f", metavar="FORMAT", help=FORMAT_HELP),
        output: Optional[Path] = typer.Option(None, "-o", "--output",
                                              help="Write to FILE (atomically) instead of stdout."),
    ) -> None:
        """One member's statement for a period: its figures, projects, pools and counterparties.

        Example: pooler report member pcl --period 2026-11 --format md
        """
        from pooler.services import report as service

        _check_format(fmt, ("table", "md", "json", "csv", "html"))
        _emit(service.member(context(ctx), member, period), fmt, output)
