"""The `pooler` command as a Typer app: the root app, the global `--db` option and error translation.

Commands live one group per file; each is a thin wrapper around one service call. Expected failures
are `PoolerError`s: they become one `Error:` line on stderr and exit code 1 (2 for usage errors),
never a traceback.

The command files are imported only when one of their commands runs (or shows its help): `COMMANDS`
(commands.py) names each command's file and the first paragraph of its help, which is what `pooler
--help` lists (see lazy.py). A new command needs its line there; tests/test_startup.py says so when
one is missing. `pooler.cli.main.main` is the entry point: it serves the root help and the `list`
commands without this module when it can (fast.py), and hands everything else to `app`.
"""

from __future__ import annotations

import sys
from importlib import import_module

import typer
from typer import _click as click

from pooler import __version__
from pooler.cli.commands import (
    COMMANDS, DB_ENVVAR, DB_HELP, DB_METAVAR, HELP_OPTION_NAMES, ROOT_HELP, VERSION_HELP, Lazy,
)
from pooler.cli.lazy import LazyCommands, LazyGroup, plain_text_params
from pooler.errors import PoolerError
from pooler.services.context import DEFAULT_DB, Context

__all__ = ["COMMANDS", "HELP_OPTION_NAMES", "Lazy", "PoolerGroup", "app", "context", "load_command"]


def load_command(name: str, module_name: str) -> click.Command:
    """Command `name` of a command file, built by Typer as it would be on the root app (only that
    one: a file may register several, such as the six registry groups)."""
    holder = typer.Typer(rich_markup_mode=app.rich_markup_mode, pretty_exceptions_enable=False,
                         add_completion=False)
    import_module(module_name).register(holder)
    command: click.Command | None = None
    for info in holder.registered_commands:
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == name:
            command = typer.main.get_command_from_info(
                info, pretty_exceptions_short=holder.pretty_exceptions_short,
                rich_markup_mode=holder.rich_markup_mode)
    for group_info in holder.registered_groups:
        if group_info.name == name:
            command = typer.main.get_group_from_info(
                group_info, pretty_exceptions_short=holder.pretty_exceptions_short,
                rich_markup_mode=holder.rich_markup_mode, suggest_commands=holder.suggest_commands)
    if command is None:
        raise LookupError(f"{module_name} registers no command {name!r} (see COMMANDS in {__name__})")
    return plain_text_params(command, HELP_OPTION_NAMES)


class PoolerGroup(LazyGroup):
    """The root group: its commands are imported when used (`COMMANDS`), and domain errors raised
    anywhere below it become `Error:` and an exit code."""

    def __init__(self, **attrs) -> None:  # noqa: ANN003 - Typer's keywords
        super().__init__(**attrs)
        self.commands = LazyCommands(COMMANDS, load_command)
        plain_text_params(self, HELP_OPTION_NAMES)

    def invoke(self, ctx):  # noqa: ANN001 - Click's signature
        try:
            return super().invoke(ctx)
        except PoolerError as exc:
            from pooler.cli.output import message

            message(f"Error: {exc}", style="red")
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            from pooler.cli.output import database_refusal, message

            refused = database_refusal(exc)
            if refused is None:
                raise

            message(f"Error: {refused}", style="red")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=PoolerGroup,
    name="pooler",
    help=ROOT_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Markdown: docstrings wrap as paragraphs, so a hard-wrapped line in the source is not a line break.
    rich_markup_mode="markdown",
    context_settings={"help_option_names": HELP_OPTION_NAMES},
)


def _version(value: bool) -> None:
    if value:
        print(f"pooler {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: str = typer.Option(
        DEFAULT_DB, "--db", envvar=DB_ENVVAR, metavar=DB_METAVAR, help=DB_HELP,
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help=VERSION_HELP
    ),
) -> None:
    ctx.obj = Context(db=db)


def context(ctx: typer.Context) -> Context:
    """The service context set by the root callback."""
    found = ctx.find_root().obj
    return found if isinstance(found, Context) else Context()
