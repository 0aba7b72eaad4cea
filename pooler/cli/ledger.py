"""`pooler ledger log|verify|export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from pooler.cli.output import message, out, print_json, table
from pooler.errors import PoolerError, UsageError


class VerificationFailed(PoolerError):
    """`ledger verify` found an entry or a row that does not match: exit code 1."""


def register(app: typer.Typer) -> None:
    from pooler.cli.main import context

    ledger_app = typer.Typer(help="Read, verify and export the journal.", no_args_is_help=True)
    app.add_typer(ledger_app, name="ledger")

    @ledger_app.command("log")
    def log_cmd(
        ctx: typer.Context,
        limit: int = typer.Option(50, "--limit", "-n", min=1, help="Entries to show, newest first."),
        show_all: bool = typer.Option(False, "--all", help="Show every entry."),
        as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
    ) -> None:
        """Show the journal, newest first: seq, time, actor, kind, subject and hash.

        Example: pooler ledger log --limit 10
        """
        from pooler.services import ledger as service

        entries = service.log(context(ctx), limit=None if show_all else limit)
        if as_json:
            print_json([e.to_dict() for e in entries])
            return
        out.print(table(
            None, ["seq", "time", "actor", "kind", "subject", "hash"],
            [(e.seq, e.time, e.actor, e.kind, service.subject(e), e.hash[:12]) for e in entries],
            numeric=["seq"],
        ))

    @ledger_app.command("verify")
    def verify_cmd(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Recompute the hash chain, every attached row and every projection.

        Exits 1 and names the first entry that does not match.

        Example: pooler ledger verify
        """
        from pooler.services import ledger as service

        report = service.verify(context(ctx))
        if as_json:
            print_json(report.to_dict())
        if not report.ok:
            raise VerificationFailed(f"verification failed: {report.problem}")
        if not as_json:
            out.print(Text(f"OK: {report.entries} entries verified; head {report.head_hash}",
                           style="green"))

    @ledger_app.command("export")
    def export_cmd(
        ctx: typer.Context,
        fmt: str = typer.Option("toml", "--format", "-f", help="toml (current state) or jsonl (journal)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE, not stdout."),
    ) -> None:
        """Export the current state as a manifest (toml) or the whole journal (jsonl).

        `pooler apply` of the TOML export into a new ledger gives the same state.

        Example: pooler ledger export --format toml -o state.toml
        """
        from pooler.services import ledger as service

        if fmt not in ("toml", "json", "jsonl"):
            raise UsageError(f"--format: {fmt!r} is not one of toml, json, jsonl")
        c = context(ctx)
        if output is None:
            for chunk in service.export(c, fmt):
                print(chunk, end="")
            return
        tmp = output.with_name(output.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for chunk in service.export(c, fmt):
                fh.write(chunk)
        tmp.replace(output)
        message(f"Wrote {output}")
