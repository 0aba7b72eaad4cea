"""`pooler ledger log|verify|checkpoint|keygen|export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from pooler.cli.output import message, out, print_json, show, table, when
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
        show(table(
            None, ["seq", "time (UTC)", "actor", "kind", "subject", "hash"],
            [(e.seq, when(e.time), e.actor, e.kind, service.subject(e), e.hash[:12]) for e in entries],
            numeric=["seq", "time (UTC)"],  # (a time is never wrapped)
        ))

    @ledger_app.command("verify")
    def verify_cmd(
        ctx: typer.Context,
        checkpoint: Optional[Path] = typer.Option(
            None, "--checkpoint", metavar="FILE",
            help="Also prove the journal still extends this checkpoint (and check its signature).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Recompute the hash chain, every attached row and every projection.

        Exits 1 and names the first entry that does not match. With --checkpoint (from `pooler ledger
        checkpoint`), also fails when the entry it names is gone or differs, or its signature is bad.

        Example: pooler ledger verify --checkpoint head.json
        """
        from pooler.services import ledger as service

        kept = None
        if checkpoint is None:
            report = service.verify(context(ctx))
            data = report.to_dict()
        else:
            from pooler.services import checkpoint as checkpoints

            checked = checkpoints.verify(context(ctx), checkpoint)
            report, data = checked.report, checked.to_dict()
            kept = data["checkpoint"]
        if as_json:
            print_json(data)
        if not report.ok:
            raise VerificationFailed(f"verification failed: {report.problem}")
        if not as_json:
            # soft_wrap: the line goes out whole (a hash copied from it is never broken by a newline)
            out.print(Text(f"OK: {report.entries} entries verified; head {report.head_hash}",
                           style="green"), soft_wrap=True)
            if kept is not None:
                # the signature covers seq and hash only: the key is proven, the name beside it is
                # whatever the file says (review: an edited signer read "signed by mallory")
                named = f" (the file names the signer {kept['signer']!r})" if kept["signer"] else ""
                signed = (f"; signed with key {kept['public_key']}{named}" if kept["signed"]
                          else "; unsigned")
                out.print(Text(f"The journal extends the checkpoint at entry #{kept['seq']}{signed}.",
                               style="green"), soft_wrap=True)

    @ledger_app.command("checkpoint")
    def checkpoint_cmd(
        ctx: typer.Context,
        sign: Optional[Path] = typer.Option(None, "--sign", metavar="KEYFILE",
                                            help="Sign with this Ed25519 private key (PEM)."),
        signer: Optional[str] = typer.Option(None, "--signer", help="Who signs (default: the actor)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE, not stdout."),
    ) -> None:
        """Print the ledger's head as a JSON checkpoint to keep elsewhere, optionally signed.

        `pooler ledger verify --checkpoint FILE` later proves no entry up to it was removed or rewritten.

        Example: pooler ledger checkpoint --sign admin.pem -o head-2026-11.json
        """
        from pooler.services import checkpoint as checkpoints
        from pooler.services.export import write_text

        c = context(ctx)
        data = checkpoints.make(c, sign, (signer or c.actor) if sign is not None else None)
        if output is None:
            print(checkpoints.dumps(data), end="")
            return
        write_text(output, checkpoints.dumps(data))
        message(f"Wrote {output} (entry #{data['seq']}{', signed' if sign is not None else ''})")

    @ledger_app.command("keygen")
    def keygen_cmd(
        output: Path = typer.Option(..., "--output", "-o", metavar="KEYFILE",
                                    help="Where to write the new private key (must not exist)."),
    ) -> None:
        """Write a new Ed25519 private key (PEM, owner-only) for signing checkpoints; print its public key.

        Example: pooler ledger keygen -o admin.pem
        """
        from pooler.services import checkpoint as checkpoints

        public = checkpoints.keygen(output)
        message(f"Wrote the private key to {output}; keep it secret. Public key (base64):")
        print(public)

    @ledger_app.command("export")
    def export_cmd(
        ctx: typer.Context,
        fmt: str = typer.Option("toml", "--format", "-f", metavar="toml|json|jsonl", help="toml or json (the current state, as a manifest) or jsonl (the journal)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE, not stdout."),
        rows: bool = typer.Option(False, "--rows", help="With jsonl: each entry's attached rows (grants, "
                                  "usage lines) after it, so that an auditor can recompute every digest."),
    ) -> None:
        """Export the current state as a manifest (toml) or the whole journal (jsonl).

        `pooler apply` of the TOML export into a new ledger gives the same state, except rates that
        change over time (a manifest holds one rate each: export warns, naming them). The jsonl export
        with --rows holds all that the hash chain covers: README (The ledger) says how to check it.

        Example: pooler ledger export --format toml -o state.toml
        """
        from pooler.services import ledger as service

        if fmt not in ("toml", "json", "jsonl"):
            raise UsageError(f"--format: {fmt!r} is not one of toml, json, jsonl")
        if rows and fmt != "jsonl":
            raise UsageError("--rows: the attached rows go with the journal: --format jsonl")
        c = context(ctx)
        if fmt != "jsonl":
            from pooler.cli.registry import rate_versions
            from pooler.core.model import dec_str
            from pooler.services import registry

            for name, versions in registry.rate_histories(c).items():
                message(f"Warning: accelerator {name!r} has rates that change over time ("
                        + rate_versions([{"rate": dec_str(v.rate), "from": v.from_period, "seq": v.seq}
                                         for v in versions])
                        + f"); a manifest holds one rate, the latest decided ({dec_str(versions[-1].rate)}"
                        "), and a ledger made from it has that rate in every period: apply the others "
                        "to it with `pooler apply FILE --rates-from PERIOD`", style="yellow")
        if output is None:
            for chunk in service.export(c, fmt, rows=rows):
                print(chunk, end="")
            return
        from pooler.services.files import write_atomic

        write_atomic(output, service.export(c, fmt, rows=rows))
        message(f"Wrote {output}")
