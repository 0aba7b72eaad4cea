"""Commands imported when they run (issue #6), and text options read without pydantic.

`pooler --help` lists every command with the first paragraph of its help, but imports none of the
command modules: the root group holds a `LazyCommands` table (name -> module, and that paragraph),
and a command's module is imported, and its Typer commands built, only when that command is looked
up to run or to show its own help. `tests/test_startup.py` holds the table to the modules (the
names each registers, each with the paragraph its own help starts with) and the listing to the one
the built commands give, so `pooler --help` prints what it printed when every module was imported
up front.

Typer 0.29 coerces parameters through pydantic `TypeAdapter`s, built when a parameter is first
processed, given or not: every command paid a pydantic import (about 0.1 s), `--db` and `--json`
included. For a plain `str` parameter given a string, and a `bool` one given a bool, that adapter
returns the value unchanged, so `plain_text_params` gives such parameters a coercion that returns
those values as they are, without pydantic; any other value still goes to Typer's own coercion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from typer import _click
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
from typer.core import TyperCommand, TyperGroup, _TyperParameter

from pooler.cli.commands import Lazy  # noqa: F401 - defined there, without Typer; re-exported


class LazyCommands(MutableMapping[str, _click.Command]):
    """A group's commands by name, in listing order; a command's module is imported when the command
    is first looked up. `load(name, module)` imports the module and builds that one command."""

    def __init__(self, table: dict[str, Lazy], load: Callable[[str, str], _click.Command]) -> None:
        self._table = dict(table)
        self._load = load
        self._loaded: dict[str, _click.Command] = {}

    def __getitem__(self, name: str) -> _click.Command:
        if name not in self._loaded:
            entry = self._table[name]  # KeyError: no such command
            self._loaded[name] = self._load(name, entry.module)
        return self._loaded[name]

    def __setitem__(self, name: str, command: _click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._table and name not in self._loaded:
            raise KeyError(name)
        self._table.pop(name, None)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._table
        yield from (name for name in self._loaded if name not in self._table)

    def __len__(self) -> int:
        return len(self._table) + sum(1 for name in self._loaded if name not in self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table or name in self._loaded

    def listing(self) -> dict[str, _click.Command]:
        """Every command for a help listing, imported or not: a command not imported yet is stood
        for by a bare command with its name and its help's first paragraph, which is all a listing
        shows of it."""
        return {name: self._loaded[name] if name in self._loaded
                else TyperCommand(name=name, help=self._table[name].summary) for name in self}


class LazyGroup(TyperGroup):
    """A Typer group whose `commands` is a `LazyCommands`."""

    commands: LazyCommands  # type: ignore[assignment]

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(self.commands)  # the names only: listing them imports nothing

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        listing = object.__new__(type(self))
        listing.__dict__.update(self.__dict__)
        listing.commands = self.commands.listing()  # type: ignore[assignment]
        return TyperGroup.format_help(listing, ctx, formatter)


_PLAIN = (str, bool)


@dataclass(frozen=True)
class _Plain(RuntimeParam):
    """Typer's coercion of a `str` or `bool` parameter, for a value of exactly that type: the value
    itself, which is what pydantic's adapter returns for it. Anything else goes through Typer's own
    coercion, built when first needed. (None never gets here: `RuntimeParam.coerce` keeps it.)"""

    descriptor: TypeDescriptor | None = None

    def _coerce_value(self, value: Any, param: Any, ctx: _click.Context) -> Any:
        if type(value) is self.annotation:
            return value
        assert self.descriptor is not None
        return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)


def _is_plain(param: _click.Parameter) -> bool:
    if not isinstance(param, _TyperParameter) or getattr(param, "_runtime_param", None) is not None:
        return False
    descriptor = param.type_descriptor
    return (descriptor.annotation in _PLAIN and descriptor.parameter_info.parser is None
            and not descriptor.is_file and not descriptor.is_choice and not param.multiple
            and param.nargs == 1)


# What an option's value is, shown beside it in help where the option itself names no metavar. Typer
# 0.29 shows the annotation instead (`--period <str>`) and `<bool>` beside every flag, which reads as
# if `--dry-run` took a value.
METAVARS = {
    "--period": "PERIOD", "--output": "FILE", "-o": "FILE", "--manifest": "FILE", "--dir": "DIR",
    "--member": "ID", "--accelerator": "ID", "--dataset": "ID", "--model": "ID", "--region": "REGION",
    "--residency": "REGION", "--name": "TEXT", "--kind": "TEXT", "--reason": "TEXT", "--signer": "TEXT",
    "--access": "WHO", "--limit": "N",
}


def help_metavars(param: _click.Parameter) -> None:
    """Give `param` the metavar its help shows: none for a flag (it takes no value), `METAVARS` for
    an option without one of its own; an argument with a metavar shows no type beside it (its
    metavar says what it is)."""
    if param.param_type_name == "option":
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = next((METAVARS[o] for o in param.opts if o in METAVARS), None)
    elif param.param_type_name == "argument" and param.metavar is not None:
        param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]


@dataclass(frozen=True)
class _HelpNames:
    """What `Command.get_help_option` reads of a context: the help option's names."""

    help_option_names: list[str]


def plain_text_params(command: _click.Command, help_names: list[str]) -> _click.Command:
    """Give the plain `str` and `bool` parameters of `command` (and of its sub-commands) the
    pydantic-free coercion, and every parameter the metavar its help shows (`help_metavars`); the
    command, for chaining.

    `--help` counts: Click makes that option when a context first asks for it and keeps it, so it is
    made here, with the names every context below the root has (`help_names`, inherited from the
    root's context settings unless a command sets its own)."""
    names = (command.context_settings or {}).get("help_option_names", help_names)
    help_option = command.get_help_option(_HelpNames(list(names)))  # type: ignore[arg-type]
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        help_metavars(param)
        if _is_plain(param):
            descriptor = param.type_descriptor  # type: ignore[attr-defined]
            param._runtime_param = _Plain(  # type: ignore[attr-defined]
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation,
                descriptor=descriptor)
    if isinstance(command, TyperGroup) and not isinstance(command.commands, LazyCommands):
        for sub in command.commands.values():
            plain_text_params(sub, names)
    return command
