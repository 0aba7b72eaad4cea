"""The `pooler` command: the root app, the global `--db` option and error translation.

Commands live one group per file; each is a thin wrapper around one service call. Expected failures
are `PoolerError`s: they become one `Error:` line on stderr and exit code 1 (2 for usage errors),
never a traceback.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from pooler import __version__
from pooler.errors import PoolerError
from pooler.services.context import DEFAULT_DB, Context


class PoolerGroup(TyperGroup):
    """The root group: turns domain errors raised anywhere below it into `Error:` and an exit code."""

    def invoke(self, ctx):  # noqa: ANN001 - Click's signature
        try:
            return super().invoke(ctx)
        except PoolerError as exc:
            from pooler.cli.output import message

            message(f"Error: {exc}", style="red")
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=PoolerGroup,
    name="pooler",
    help=(
        "Pool compute, datasets and models across a consortium, and share them fairly.\n\n"
        "A ledger records who contributes what; each period an exact fair-share allocation "
        "decides who gets which device-hours.\n\n"
        "Example: pooler demo"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Markdown: docstrings wrap as paragraphs, so a hard-wrapped line in the source is not a line break.
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"pooler {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: str = typer.Option(
        DEFAULT_DB, "--db", envvar="POOLER_DB", metavar="PATH|URL",
        help="The ledger: a SQLite file path or an SQLAlchemy URL.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = Context(db=db)


def context(ctx: typer.Context) -> Context:
    """The service context set by the root callback."""
    found = ctx.find_root().obj
    return found if isinstance(found, Context) else Context()


def _register() -> None:
    from pooler.cli import alloc, export, ledger, registry, report, setup, tui, usage

    setup.register(app)
    registry.register(app)
    alloc.register(app)
    usage.register(app)
    report.register(app)
    ledger.register(app)
    export.register(app)
    tui.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
