"""`pooler tui`: the quota dashboard (Textual). Textual is imported only when the command runs, so
`pooler --help` and every other command start without it; `tui.start` begins reading the Overview
before it imports Textual."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from pooler.cli.main import context

    @app.command("tui")
    def tui_cmd(
        ctx: typer.Context,
        period: Optional[str] = typer.Option(None, "--period", help="Period to show (default: the latest recorded)."),
    ) -> None:
        """Open the quota dashboard: overview, members, projects, pools, the ledger, and allocation.

        Number keys 1-6 switch views, / filters, s sorts, Enter opens a row, ? lists the keys, q quits.
        Problems with the ledger (none there, empty, not verifying) are shown in the dashboard.

        Example: pooler --db consortium.db tui --period 2026-11
        """
        if period is not None:
            from pooler.core.period import PeriodError, parse_period
            from pooler.errors import UsageError

            # (`services.alloc.period_option` says the same, but importing it costs 80 ms before
            # the screen; the dashboard checks the label against the ledger's kind itself)
            try:  # a label that is no period at all is refused here (exit 2), before the screen
                parse_period(period)
            except PeriodError as exc:
                raise UsageError(f"--period: {exc}") from None
        from tui.start import run

        raise typer.Exit(run(context(ctx).db, period=period, ctx=context(ctx)))
