"""Quick paths for the commands that must start fast (issue #6): the root help and the `list` commands.

Importing Typer, Click and Rich's help rendering costs several times the interpreter's own start-up,
so `serve` answers two kinds of command line without them, and only when it gives byte for byte what
the Typer app (`pooler.cli.app`) would; for anything else it returns and the app runs as ever.

- `pooler --help` / `pooler -h`: the page Typer prints, pre-rendered (`pooler.cli.helppages`,
  written by `python -m pooler.cli.helpgen`), one page per width in `helppages.WIDTHS`, for output
  that is not a terminal and for a terminal (the same text with Rich's colour codes, kept as style
  spans over it). Served only when Rich would render exactly that: stdout's encoding a UTF one, the
  width Rich would take one of the pages', none of the variables by which Typer or Rich force a
  terminal, colours or a width set, not inside IPython (nor IDLE), the program name `pooler` (as
  Click would name it), the same Typer and Rich versions as the pages were rendered with, and the
  command table and texts (`pooler.cli.commands.root_source()`) the same as theirs. The width is
  Rich's (`Console.size`): `COLUMNS` when it is all digits, else the size of the first of stdin,
  stdout and stderr that is a terminal, else 80; in a dumb terminal (`TERM` dumb or unknown) 80
  unless `COLUMNS` and `LINES` are both set. In a terminal the colours are Rich's
  (`Console._detect_color_system`): none in a dumb terminal (the plain page), else truecolor when
  `COLORTERM` is truecolor or 24bit, else by the end of `TERM` (`...-256color`: 256 colours, ...),
  else the standard 16; and without colours (bold and dim kept) when `NO_COLOR` is set and not empty.
- `pooler [--db PATH|URL] KIND list [--all] [--json]`: the same service call and the same output
  functions (`pooler.cli.listing`, `pooler.cli.output`) as the Typer command, with `--db` read as
  Click reads it (the option, else a non-empty `POOLER_DB`, else the default) and domain errors
  reported as `PoolerGroup` reports them. Any other form (another option, a repeated one, `--help`,
  `--`, a `--db` value that starts with `-`) goes to Typer, and so does every command line while a
  shell-completion variable (`_POOLER_COMPLETE`) is set.

tests/test_startup.py compares every served page with Typer's at every width, and each quick path
with the Typer app in fresh processes, including the cases where it must stand aside.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, NoReturn

from pooler.cli.commands import COMMANDS, DB_ENVVAR, HELP_OPTION_NAMES

# Environment variables by which Typer or Rich change how the help is rendered (a forced terminal or
# colours, a fixed width, shell completion, Jupyter): with any of them set, Typer renders it.
RENDERING_VARIABLES = ("FORCE_COLOR", "PY_COLORS", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "GITHUB_ACTIONS",
                       "TERMINAL_WIDTH", "_TYPER_FORCE_DISABLE_TERMINAL", "TYPER_USE_RICH",
                       "_POOLER_COMPLETE", "JUPYTER_COLUMNS", "JUPYTER_LINES", "DATABRICKS_RUNTIME_VERSION")

LIST_KINDS = frozenset(name for name, entry in COMMANDS.items() if entry.module == "pooler.cli.registry")
LIST_FLAGS = frozenset({"--all", "--json"})


def serve(argv: list[str]) -> None:
    """Serve `argv` (the arguments after `pooler`) and exit, or return when the Typer app must."""
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ):
        return  # Click's shell completion (`_POOLER_COMPLETE`, whatever the program's name)
    if len(argv) == 1 and argv[0] in HELP_OPTION_NAMES:
        page = root_help_page()
        if page is not None:
            _finish(lambda: sys.stdout.write(page), 0)
        return
    listing = list_arguments(argv, os.environ)
    if listing is not None:
        _list(*listing)


# --- the root help ---------------------------------------------------------------------------------


def program_name() -> str:
    """The name Click gives the program in its usage line (`click.utils._detect_program_name`), for
    the cases where it is a file's name; "" when Python ran a module (`python -m ...`)."""
    main = sys.modules.get("__main__")
    if getattr(main, "__package__", None) not in (None, ""):
        return ""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""


def rich_width(environ: Mapping[str, str]) -> int:
    """The width Rich's `Console` takes but in a dumb terminal (`Console.size`): `COLUMNS`
    when it is all digits, else the size of the first of stdin, stdout and stderr that is a terminal,
    else 80."""
    columns = environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns)
    width = 0
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    return width or 80


def _output() -> str | None:
    """How Rich would write to stdout (`Console.is_terminal`, `Console.encoding`): "file" (no
    terminal, so no colour), "terminal", or None when the pages cannot say (stdout's encoding not a
    UTF one, so no box drawing characters; its `isatty` failing; IDLE)."""
    stdout = sys.stdout
    isatty = getattr(stdout, "isatty", None)
    try:
        terminal = isatty is not None and bool(isatty())
    except ValueError:
        return None
    encoding = (getattr(stdout, "encoding", None) or "utf-8").lower()
    if not encoding.startswith("utf"):
        return None
    if terminal:
        stdin = sys.stdin
        if hasattr(stdin, "__module__") and str(stdin.__module__).startswith("idlelib"):
            return None  # Rich takes IDLE for no terminal, whatever isatty says
        return "terminal"
    return "file"


def terminal_case(environ: Mapping[str, str], term_colours: Mapping[str, str]) -> tuple[str | None, int]:
    """(colour case, width) Rich takes for a terminal (`Console._detect_color_system`,
    `Console.no_color`, `Console.size`): the case None for a dumb terminal (no colours), else one of
    `helppages.CASES`; `term_colours` is Rich's table of `TERM` endings (`helppages.TERM_COLOURS`)."""
    term = environ.get("TERM", "")
    if term.lower() in ("dumb", "unknown"):
        columns, lines = environ.get("COLUMNS"), environ.get("LINES")
        if columns is not None and columns.isdigit() and lines is not None and lines.isdigit():
            return None, int(columns)
        return None, 80
    if environ.get("COLORTERM", "").strip().lower() in ("truecolor", "24bit"):
        system = "truecolor"
    else:
        system = term_colours.get(term.strip().lower().rpartition("-")[2], "standard")
    if environ.get("NO_COLOR", "") != "":
        system += " no-color"
    return system, rich_width(environ)


def _dist_version(package: str, version: str) -> bool:
    """Whether `package` is imported from where `version` of it is installed (its dist-info beside
    it), without importing it or `importlib.metadata`."""
    from importlib.util import find_spec

    try:
        spec = find_spec(package)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = os.path.dirname(os.path.normpath(list(spec.submodule_search_locations)[0]))
    return os.path.isdir(os.path.join(folder, f"{package}-{version}.dist-info"))


def root_help_page() -> str | None:
    """The root help page as Typer would print it now, or None when it cannot be served (see the
    module's docstring)."""
    if os.name != "posix" or program_name() != "pooler":
        return None
    environ = os.environ
    if any(name in environ for name in RENDERING_VARIABLES):
        return None
    import builtins

    output = _output()
    if hasattr(builtins, "get_ipython") or output is None:
        return None
    try:
        from pooler.cli import helppages
    except ImportError:
        return None
    from pooler.cli.commands import root_source

    if helppages.SOURCE != root_source():
        return None
    case = None
    if output == "terminal":
        case, width = terminal_case(environ, helppages.TERM_COLOURS)
        if case is not None and case not in helppages.CASES:
            return None
    else:
        width = rich_width(environ)
    if width not in helppages.WIDTHS:
        return None
    if not (_dist_version("typer", helppages.TYPER) and _dist_version("rich", helppages.RICH)):
        return None
    return helppages.page(width) if case is None else helppages.terminal_page(width, case)


# --- the list commands -----------------------------------------------------------------------------


def list_arguments(argv: list[str], environ: Mapping[str, str]) -> tuple[str, str, bool, bool] | None:
    """(kind, --db, --all, --json) of `pooler [--db X | --db=X] KIND list [--all] [--json]`, the
    flags in either order; None for any other command line."""
    db: str | None = None
    rest = argv
    if argv[:1] == ["--db"] and len(argv) >= 2:
        db, rest = argv[1], argv[2:]
    elif argv[:1] and argv[0].startswith("--db="):
        db, rest = argv[0][len("--db="):], argv[1:]
    if db is not None and db.startswith("-"):
        return None  # Click would take it as the value; keep such lines to Click
    if len(rest) < 2 or rest[0] not in LIST_KINDS or rest[1] != "list":
        return None
    flags = rest[2:]
    if len(set(flags)) != len(flags) or not set(flags) <= LIST_FLAGS:
        return None
    if db is None:
        from pooler.services.context import DEFAULT_DB

        db = environ.get(DB_ENVVAR) or DEFAULT_DB  # Click: an empty variable counts as unset
    return rest[0], db, "--all" in flags, "--json" in flags


def _list(kind: str, db: str, include_retired: bool, as_json: bool) -> NoReturn:
    from pooler.errors import PoolerError
    from pooler.services import registry
    from pooler.services.context import Context

    def run() -> None:
        records = registry.list_records(Context(db=db), kind, include_retired=include_retired)
        if as_json:
            from pooler.cli.output import print_json

            print_json(records)
        else:
            from pooler.cli.listing import render_list

            render_list(kind, records, include_retired)

    try:
        _finish(run, 0)
    except PoolerError as exc:  # as `PoolerGroup.invoke`
        from pooler.cli.output import message

        message(f"Error: {exc}", style="red")
        sys.exit(exc.exit_code)
    except Exception as exc:  # a driver's error the store did not word, as `PoolerGroup.invoke`
        from pooler.cli.output import database_refusal, message

        refused = database_refusal(exc)
        if refused is None:
            raise
        message(f"Error: {refused}", style="red")
        sys.exit(1)


def _finish(run, code: int) -> NoReturn:  # noqa: ANN001
    """Run the command and exit with `code`; a closed pipe on stdout exits 1 quietly, as Click's
    standalone mode does."""
    import errno

    try:
        run()
        sys.stdout.flush()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        from typer._click.utils import PacifyFlushWrapper

        sys.stdout = PacifyFlushWrapper(sys.stdout)  # type: ignore[assignment]
        sys.stderr = PacifyFlushWrapper(sys.stderr)  # type: ignore[assignment]
        sys.exit(1)
    sys.exit(code)
