"""Start-up (issue #6) and the dashboard's first screen (issue #5): what the quick paths import, and
that they give exactly what the ordinary paths give.

- `pooler --help` and the `list` commands import none of SQLAlchemy, pydantic, NumPy, SciPy or
  Textual (checked in a fresh interpreter, through `sys.modules`), and when their quick paths
  (`pooler.cli.fast`) serve them, no Typer either (nor Rich, for the help);
- what the quick paths print is what the Typer app prints, byte for byte, in fresh processes: the
  pre-rendered root help at every width it has, each `list` form, errors included; and where they
  must stand aside (forced colours, another width, another program name, a changed command table,
  an encoding that is not UTF, any other command line) the Typer app answers; the root help in a
  terminal (a real pseudo-terminal, in each of Rich's colour cases) included;
- the root help, listed from `COMMANDS` without importing the command files, is the help the
  command files themselves give;
- the DB-API listing path (`pooler.store.readonly`) gives the records `Ledger` gives, on SQLite and
  PostgreSQL, and stands aside (None) whenever it could not answer exactly as `Ledger` would;
- the tables, plain SQLAlchemy since issue #6, still create version 1's schema exactly as the
  SQLModel classes did;
- the dashboard's early Overview read (`tui.start`) is the Overview the app reads itself.

No timings here: `benchmarks/startup.py` and `benchmarks/tui_open.py` measure those.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pooler.services import registry
from pooler.services.context import Context
from tests.backends import as_target, tamper
from tests.conftest import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "numpy", "scipy", "highspy", "textual", "yaml", "cryptography")


def _example(db) -> Context:
    """The example consortium at `db`, with a retired project and an accelerator whose rate changed,
    so that listings have retired rows and rate versions to get right."""
    ctx = Context(db=str(db), actor="tester@test")
    registry.init(ctx)
    registry.apply(ctx, EXAMPLES / "c2net.toml")
    state = registry.snapshot(ctx)
    registry.retire(ctx, "project", state.projects[-1].id)
    registry.add(ctx, "member", {"id": "late-joiner", "name": "Late Joiner [x]", "region": "guizhou"})
    return ctx


@pytest.fixture(scope="module")
def example_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("startup") / "pooler.db"
    _example(db)
    return db


# --- what the quick commands import ----------------------------------------------------------------

PROBE = """
import json, sys
sys.argv = ["pooler", *json.loads(sys.argv[1])]
from pooler.cli.main import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stdout.flush()
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without the variables that change what pooler or Rich print, plus `extra`."""
    from pooler.cli.fast import RENDERING_VARIABLES

    drop = {"POOLER_DB", "COLUMNS", "LINES", "NO_COLOR", "TERM", "COLORTERM", *RENDERING_VARIABLES}
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def _imports(*args: str) -> tuple[int, set[str], set[str]]:
    """(exit code, heavy top-level packages imported, pooler.cli modules imported) of one run."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True,
                          text=True, cwd=ROOT, env=_clean_env(COLUMNS="100"))
    report = json.loads(done.stderr.strip().splitlines()[-1])
    modules = set(report["modules"])
    heavy = {m.split(".")[0] for m in modules} & set(HEAVY)
    return report["code"], heavy, {m for m in modules if m.startswith("pooler.cli.")} | (
        {m for m in ("typer", "rich") if m in modules})


@pytest.mark.parametrize("args", [["--help"], ["-h"], [], ["member", "--help"], ["tui", "--help"]],
                         ids=["help", "h", "no-args", "member-help", "tui-help"])
def test_help_imports_no_heavy_library(args):
    code, heavy, cli = _imports(*args)
    assert code == (2 if not args else 0)  # Click: the help, as a usage error, when no command is given
    assert not heavy, f"pooler {' '.join(args)} imported {sorted(heavy)}"
    if args in (["--help"], ["-h"]):  # served pre-rendered: no Typer, no Rich, no command file
        assert cli <= {"pooler.cli.main", "pooler.cli.commands", "pooler.cli.fast", "pooler.cli.helppages"}, \
            f"the root help imported {sorted(cli)}"
    if not args:  # the Typer app's root help: still no command file
        assert cli <= {"pooler.cli.main", "pooler.cli.commands", "pooler.cli.fast", "pooler.cli.app",
                       "pooler.cli.lazy", "typer", "rich"}, f"the root help imported {sorted(cli)}"


@pytest.mark.parametrize("args", [["member", "list"], ["project", "list", "--all", "--json"],
                                  ["accelerator", "list"]], ids=" ".join)
def test_listing_imports_no_heavy_library(example_db, args):
    code, heavy, cli = _imports("--db", str(example_db), *args)
    assert code == 0
    assert not heavy, f"pooler {' '.join(args)} imported {sorted(heavy)}"
    # served without Typer (and JSON without Rich)
    assert cli <= {"pooler.cli.main", "pooler.cli.commands", "pooler.cli.fast", "pooler.cli.listing",
                   "pooler.cli.output", *([] if "--json" in args else ["rich"])}, sorted(cli)


# --- the lazy root help ----------------------------------------------------------------------------


def _root_help(monkeypatch, width: int) -> str:
    from typer.testing import CliRunner

    from pooler.cli.main import app

    monkeypatch.setenv("COLUMNS", str(width))
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    return result.stdout


@pytest.mark.parametrize("width", [200, 80, 50])
def test_root_help_without_imports_is_the_help_of_the_commands_themselves(monkeypatch, width):
    from pooler.cli.lazy import LazyCommands

    lazy = _root_help(monkeypatch, width)
    # The same listing with every command file imported and every command built.
    monkeypatch.setattr(LazyCommands, "listing", lambda self: {name: self[name] for name in self})
    assert lazy == _root_help(monkeypatch, width)


def test_command_table_matches_the_command_files():
    import typer

    from pooler.cli.main import COMMANDS, load_command

    by_module: dict[str, list[str]] = {}
    for name, entry in COMMANDS.items():
        by_module.setdefault(entry.module, []).append(name)
    for module, names in by_module.items():
        holder = typer.Typer()
        __import__(module, fromlist=["register"]).register(holder)
        registered = [c.name or typer.main.get_command_name(c.callback.__name__) for c in holder.registered_commands]
        registered += [g.name for g in holder.registered_groups]
        assert sorted(registered) == sorted(names), f"{module} registers {registered}, COMMANDS says {names}"
    kinds = []
    for name, entry in COMMANDS.items():
        command = load_command(name, entry.module)
        kinds.append(isinstance(command, typer.core.TyperGroup))
        first = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ").strip()
        assert entry.summary == first, f"COMMANDS[{name!r}] says {entry.summary!r}; its help says {first!r}"
        assert command.short_help is None and not command.hidden and not command.deprecated
        assert not getattr(command, "rich_help_panel", None)
    # Typer lists a group's commands before its sub-groups; COMMANDS keeps that order.
    assert kinds == sorted(kinds)


def test_plain_coercion_returns_the_value_and_leaves_the_rest_to_typer():
    import typer

    from pooler.cli.lazy import _Plain, plain_text_params

    app = typer.Typer()

    @app.command()
    def f(name: str = typer.Option("x"), flag: bool = typer.Option(False), count: int = typer.Option(1)) -> None:
        """A command."""

    command = plain_text_params(typer.main.get_command(app), ["--help"])
    params = {p.name: p for p in command.params}
    assert isinstance(params["name"]._runtime_param, _Plain)
    assert isinstance(params["flag"]._runtime_param, _Plain)
    assert params["count"]._runtime_param is None  # built by Typer when needed
    assert isinstance(command.get_help_option(SimpleNamespace(help_option_names=["--help"]))._runtime_param, _Plain)
    text = params["name"]._runtime_param
    assert text._coerce_value("a b", params["name"], None) == "a b"
    assert text._coerce_value(b"bytes", params["name"], None) == "bytes"  # Typer's own coercion


# --- the quick paths (pooler.cli.fast) -------------------------------------------------------------

RUN = """
import json, sys
how, args, prog, patch = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.argv = [prog, *args]
if patch:  # a changed command table, on both paths
    from pooler.cli import commands
    commands.COMMANDS["init"] = commands.Lazy("pooler.cli.setup", patch)
if how == "quick":
    from pooler.cli.main import main as run
else:
    from pooler.cli.app import app as run
try:
    run()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stdout.flush()
sys.stderr.write("\\n" + json.dumps({"code": code, "typer": "typer" in sys.modules, "rich": "rich" in sys.modules}))
"""


def _pty(width: int, rows: int = 40) -> tuple[int, int]:
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, width, 0, 0))
    return master, slave


def _run(how: str, args: list[str], env: dict[str, str], *, prog: str = "pooler", patch: str = "",
         tty: int = 0, stdin_tty: int = 0, rows: int = 40) -> tuple[bytes, str, dict]:
    """(stdout, stderr, {code, typer, rich}) of one fresh process: `how` is "quick" (`main()`, as the
    `pooler` script) or "typer" (the Typer app itself). `tty`: stdout is a terminal that wide (and
    `rows` high); `stdin_tty`: stdin is (stdout a pipe)."""
    argv = [sys.executable, "-c", RUN, how, json.dumps(args), prog, patch]
    if not tty:
        master = slave = None
        stdin = subprocess.DEVNULL
        if stdin_tty:
            master, slave = _pty(stdin_tty)
            stdin = slave
        done = subprocess.run(argv, capture_output=True, cwd=ROOT, env=env, timeout=120, stdin=stdin)
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        out, err = done.stdout, done.stderr
    else:
        master, slave = _pty(tty, rows)
        child = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=ROOT,
                                 env=env)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        err = child.stderr.read()
        child.wait(timeout=120)
        os.close(master)
        out = b"".join(chunks)
    text, _, report = err.decode().rpartition("\n")
    return out, text, json.loads(report)


def _same(args: list[str], env: dict[str, str], *, served: bool, **how) -> bytes:
    """Run `args` both ways; they must print the same and exit alike, and the quick way must have
    served it without Typer (`served`) or handed it to Typer. The output."""
    quick = _run("quick", args, env, **how)
    typer = _run("typer", args, env, **how)
    assert quick[:2] == typer[:2], "the quick path printed something else than Typer"
    assert quick[2]["code"] == typer[2]["code"]
    assert typer[2]["typer"]
    assert quick[2]["typer"] is not served, "served by Typer" if served else "served without Typer"
    if served and args and args[0] in ("--help", "-h"):
        assert not quick[2]["rich"]
    return quick[0]


@pytest.mark.parametrize("width,flag", [(40, "--help"), (80, "--help"), (100, "-h"), (213, "--help"), (300, "-h")])
def test_root_help_served_pre_rendered_is_typers(width, flag):
    out = _same([flag], _clean_env(COLUMNS=str(width)), served=True)
    assert out.startswith(b" " * width + b"\n Usage: pooler [OPTIONS] COMMAND")


def test_root_help_width_comes_from_the_terminal_on_stdin():
    out = _same(["--help"], _clean_env(), served=True, stdin_tty=123)
    assert out.split(b"\n")[0] == b" " * 123


@pytest.mark.parametrize("extra", [{"NO_COLOR": "1"}, {"TERM": "dumb"}, {"POOLER_DB": "elsewhere.db"}],
                         ids=lambda e: next(iter(e)))
def test_root_help_served_whatever_else_is_set(extra):
    _same(["--help"], _clean_env(COLUMNS="90", **extra), served=True)


@pytest.mark.parametrize("case", ["narrower", "wider", "force-color", "py-colors", "terminal-width", "terminal",
                                  "another-name", "changed-table", "latin-1"])
def test_root_help_is_typers_when_the_pages_do_not_apply(case):
    env = _clean_env(COLUMNS="100")
    how: dict = {}
    if case == "narrower":
        env["COLUMNS"] = "39"
    elif case == "wider":
        env["COLUMNS"] = "301"
    elif case == "force-color":
        env["FORCE_COLOR"] = "1"
    elif case == "py-colors":
        env["PY_COLORS"] = "1"
    elif case == "terminal-width":
        env["TERMINAL_WIDTH"] = "90"
    elif case == "terminal":  # a terminal narrower than the narrowest page
        del env["COLUMNS"]
        env["TERM"] = "xterm-256color"
        how["tty"] = 39
    elif case == "latin-1":  # no box drawing characters
        env["PYTHONIOENCODING"] = "latin-1"
    elif case == "another-name":
        how["prog"] = "pooler-dev"
    elif case == "changed-table":
        how["patch"] = "Create an empty ledger, changed."
    out = _same(["--help"], env, served=False, **how)
    if case in ("force-color", "py-colors", "terminal"):
        assert b"\x1b[" in out
    if case == "another-name":
        assert b"Usage: pooler-dev" in out
    if case == "changed-table":
        assert b"changed." in out


# Rich's colour cases of a terminal (`Console._detect_color_system`, `NO_COLOR`), by environment.
TERMINALS = {
    "xterm-256color": {"TERM": "xterm-256color"},
    "truecolor": {"TERM": "xterm", "COLORTERM": "truecolor"},
    "24bit": {"TERM": "xterm-kitty", "COLORTERM": "24bit"},
    "xterm": {"TERM": "xterm"},
    "kitty": {"TERM": "xterm-kitty"},
    "term-unset": {},
    "dumb": {"TERM": "dumb"},
    "no-color": {"TERM": "xterm-256color", "NO_COLOR": "1"},
    "no-color-truecolor": {"TERM": "xterm", "COLORTERM": "truecolor", "NO_COLOR": "1"},
    "empty-no-color": {"TERM": "xterm-256color", "NO_COLOR": ""},
}


@pytest.mark.parametrize("width", [40, 80, 100, 300])
@pytest.mark.parametrize("terminal", list(TERMINALS))
def test_root_help_in_a_terminal_is_typers(terminal, width):
    """In a real pseudo-terminal `width` wide (its size set with TIOCSWINSZ, no COLUMNS): the quick
    path serves the page, without Typer or Rich, byte for byte what the Typer app writes there."""
    out = _same(["--help"], _clean_env(**TERMINALS[terminal]), served=True, tty=width)
    first = out.split(b"\r\n")[0]  # the terminal's line discipline writes \n as \r\n
    if terminal == "dumb":  # Rich takes 80 columns and no colours in a dumb terminal
        assert b"\x1b" not in out and first == b" " * 80
    else:
        assert b"\x1b[" in out and first.startswith(b"\x1b[1m" + b" " * width + b"\x1b[0m")
        if terminal.startswith("no-color"):
            assert b"\x1b[1;33m" not in out and b"\x1b[1m" in out  # bold and dim kept, no colours
        else:
            assert b"\x1b[1;33mUsage: " in out


@pytest.mark.parametrize("case", ["columns", "dumb-columns", "dumb-columns-lines", "short", "24bit-dumb"])
def test_root_help_in_a_terminal_takes_richs_width(case):
    env = _clean_env(TERM="xterm-256color")
    how = {"tty": 120}
    expect = 120
    if case == "columns":
        env["COLUMNS"], expect = "90", 90
    elif case == "dumb-columns":  # a dumb terminal: COLUMNS alone does not count, 80
        env |= {"TERM": "dumb", "COLUMNS": "90"}
        expect = 80
    elif case == "dumb-columns-lines":
        env |= {"TERM": "dumb", "COLUMNS": "90", "LINES": "20"}
        expect = 90
    elif case == "short":  # a terminal three rows high: the same page
        how["rows"] = 3
    elif case == "24bit-dumb":  # dumb wins over COLORTERM
        env |= {"TERM": "unknown", "COLORTERM": "24bit"}
        expect = 80
    out = _same(["--help"], env, served=True, **how)
    first = out.split(b"\r\n")[0]
    assert first in (b" " * expect, b"\x1b[1m" + b" " * expect + b"\x1b[0m")


@pytest.mark.parametrize("case", ["narrower", "wider", "columns-wider", "dumb-narrower", "force-color", "latin-1",
                                  "tty-compatible"])
def test_root_help_in_a_terminal_is_typers_when_the_pages_do_not_apply(case):
    env = _clean_env(TERM="xterm-256color")
    width = 100
    if case == "narrower":
        width = 39
    elif case == "wider":
        width = 301
    elif case == "columns-wider":
        env["COLUMNS"] = "301"
    elif case == "dumb-narrower":
        env |= {"TERM": "dumb", "COLUMNS": "39", "LINES": "10"}
    elif case == "force-color":
        env["FORCE_COLOR"] = "1"
    elif case == "latin-1":
        env["PYTHONIOENCODING"] = "latin-1"
    elif case == "tty-compatible":
        env["TTY_COMPATIBLE"] = "0"
    _same(["--help"], env, served=False, tty=width)


def test_every_pre_rendered_page_is_what_typer_renders():
    """The plain pages at every width; the terminal pages in truecolor at every width and in every
    colour case at some (`python -m pooler.cli.helpgen --check` renders every case at every width
    and compares the whole file)."""
    from rich.console import _TERM_COLORS

    from pooler.cli import helpgen, helppages
    from pooler.cli.commands import root_source

    assert helppages.SOURCE == root_source(), "the command table changed: run python -m pooler.cli.helpgen"
    found = helpgen.render(helppages.WIDTHS)
    assert (helppages.TYPER, helppages.RICH) == (found["typer"], found["rich"]), "run python -m pooler.cli.helpgen"
    for width in helppages.WIDTHS:
        assert helppages.page(width) == found["pages"][width], f"width {width}: run python -m pooler.cli.helpgen"
    systems = {"STANDARD": "standard", "EIGHT_BIT": "256", "TRUECOLOR": "truecolor"}
    assert helppages.TERM_COLOURS == {k: systems[v.name] for k, v in _TERM_COLORS.items()}
    assert helppages.CASES == tuple(name for name, _ in helpgen.COLOUR_CASES)
    colours = dict(helpgen.COLOUR_CASES)
    cases = [("truecolor", w) for w in helppages.WIDTHS]
    cases += [(name, w) for name in helppages.CASES if name != "truecolor" for w in (40, 41, 80, 100, 213, 300)]
    cases += [(None, w) for w in (40, 80, 300)]
    written = helpgen.render_in_terminal(
        [(colours[name] if name else {**helpgen.DUMB, "COLUMNS": str(w), "LINES": "25"}, w) for name, w in cases])
    for (name, width), page in zip(cases, written, strict=True):
        expected = helppages.terminal_page(width, name) if name else helppages.page(width)
        assert page.decode() == expected, f"{name}, width {width}: run python -m pooler.cli.helpgen"


def test_a_change_to_the_apps_files_hands_the_root_help_to_typer(tmp_path, monkeypatch):
    from pooler.cli import commands

    before = commands.root_source()
    for name in commands.ROOT_FILES:
        copy = tmp_path / name
        copy.write_bytes((Path(commands.__file__).parent / name).read_bytes() + b"# changed\n")
    monkeypatch.setattr(commands, "__file__", str(tmp_path / "commands.py"))
    assert commands.root_source() != before
    for name in commands.ROOT_FILES:  # each file counts
        (tmp_path / name).write_bytes((Path(__file__).parents[1] / "pooler" / "cli" / name).read_bytes())
    assert commands.root_source() == before
    (tmp_path / "lazy.py").write_bytes(b"")
    assert commands.root_source() != before


def test_output_makes_its_consoles_once():
    from pooler.cli import output

    first = output.err
    output.message("a message")
    assert output.err is first
    assert output.out is output.out


@pytest.mark.parametrize("columns", [None, "120", "0", "abc", "007", "-5"])
def test_width_is_the_width_rich_takes(columns):
    import io

    from rich.console import Console

    from pooler.cli.fast import rich_width

    env = {} if columns is None else {"COLUMNS": columns}
    assert rich_width(env) == Console(file=io.StringIO(), _environ=env).width


def test_root_source_says_what_the_app_is_made_from():
    from pooler.cli.app import app
    from pooler.cli.commands import COMMANDS, ROOT_HELP
    from pooler.cli.fast import LIST_KINDS

    assert app.info.help == ROOT_HELP
    assert LIST_KINDS == {"member", "accelerator", "pool", "dataset", "model", "project"}
    assert set(COMMANDS) >= LIST_KINDS


def test_list_arguments_are_read_as_click_reads_them():
    from pooler.cli.fast import list_arguments

    env = {"POOLER_DB": "env.db"}
    assert list_arguments(["member", "list"], env) == ("member", "env.db", False, False)
    assert list_arguments(["member", "list"], {"POOLER_DB": ""}) == ("member", "./pooler.db", False, False)
    assert list_arguments(["member", "list"], {}) == ("member", "./pooler.db", False, False)
    assert list_arguments(["--db", "x.db", "pool", "list", "--json", "--all"], env) == ("pool", "x.db", True, True)
    assert list_arguments(["--db=", "pool", "list", "--all"], env) == ("pool", "", True, False)
    for other in (["member", "list", "--help"], ["member", "list", "-h"], ["member", "list", "--all", "--all"],
                  ["member", "list", "x"], ["member", "list", "--"], ["--db", "--json", "member", "list"],
                  ["--db", "a", "--db", "b", "member", "list"], ["member", "show", "x"], ["usage", "list"],
                  ["member"], ["--db"], [], ["--version"], ["members", "list"], ["member", "--all", "list"]):
        assert list_arguments(other, env) is None, other


def test_listing_columns_are_the_registry_commands():
    from pooler.cli import listing, registry

    assert registry.render_list is listing.render_list and registry.LIST_COLUMNS is listing.LIST_COLUMNS


@pytest.mark.parametrize("args,columns", [
    (["member", "list"], "100"), (["member", "list"], "50"), (["project", "list", "--all"], "200"),
    (["project", "list", "--json", "--all"], "100"), (["accelerator", "list", "--json"], "80"),
    (["pool", "list"], "120"), (["dataset", "list", "--all"], "100"), (["model", "list"], "100"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_listing_served_quick_is_typers(example_db, args, columns):
    out = _same(["--db", str(example_db), *args], _clean_env(COLUMNS=columns), served=True)
    assert out


def test_listing_served_quick_reads_db_as_click_does(example_db):
    _same([f"--db={example_db}", "member", "list", "--all"], _clean_env(COLUMNS="100"), served=True)
    _same(["member", "list"], _clean_env(COLUMNS="100", POOLER_DB=str(example_db)), served=True)
    _same(["member", "list", "--json"], _clean_env(POOLER_DB=str(example_db)), served=True, tty=90)


def test_listing_errors_quick_are_typers(example_db, tmp_path):
    _same(["--db", str(tmp_path / "missing.db"), "member", "list"], _clean_env(COLUMNS="100"), served=True)
    bad = tmp_path / "bad.db"
    bad.write_text("not a database\n", encoding="utf-8")
    _same(["--db", str(bad), "pool", "list", "--json"], _clean_env(COLUMNS="100"), served=True)
    # in colour (Rich as on a terminal): the error line's style too
    _same(["--db", str(tmp_path / "missing.db"), "member", "list"], _clean_env(FORCE_COLOR="1"), served=True)


def test_an_empty_db_option_quick_is_typers():
    _same(["--db", "", "member", "list"], _clean_env(COLUMNS="100"), served=True)
    _same(["--db=", "member", "list", "--json"], _clean_env(COLUMNS="100"), served=True)


@pytest.mark.parametrize("args", [["--help"], ["member", "list"]], ids=" ".join)
def test_shell_completion_goes_to_typer(example_db, args):
    env = _clean_env(COLUMNS="100", POOLER_DB=str(example_db), _POOLER_COMPLETE="bash_complete",
                     COMP_WORDS="pooler member l", COMP_CWORD="2")
    _same(args, env, served=False)


def test_listing_in_colour_quick_is_typers(example_db):
    out = _same(["--db", str(example_db), "project", "list", "--all"], _clean_env(FORCE_COLOR="1", COLUMNS="150"),
                served=True)
    assert b"\x1b[" in out


@pytest.mark.parametrize("args", [["member", "list", "--help"], ["member", "list", "--all", "--all"],
                                  ["--db", "--json", "member", "list"], ["member", "list", "extra"]], ids=" ".join)
def test_other_listing_lines_go_to_typer(example_db, args):
    _same(args, _clean_env(COLUMNS="100", POOLER_DB=str(example_db)), served=False)


# --- the DB-API listing path -----------------------------------------------------------------------


@pytest.fixture
def example(db_target) -> Context:
    return _example(db_target)


def test_readonly_lists_what_the_ledger_lists(example):
    from pooler.store import Ledger
    from pooler.store.readonly import read_state
    from pooler.store.rowstate import records_of

    state = read_state(example.db)
    if "://" not in example.db or ("%" not in example.db and "+psycopg" in example.db):
        assert state is not None, "the DB-API path should have answered"
    if state is None:
        pytest.skip(f"the DB-API path does not read {example.db}")
    with Ledger.open(example.url) as ledger:
        for kind in ("member", "accelerator", "pool", "dataset", "model", "project"):
            alone = read_state(example.db, kind)  # only the tables of that kind, as `KIND list` reads
            for include_retired in (False, True):
                assert records_of(state, kind, include_retired) == ledger.records(kind, include_retired)
                assert records_of(alone, kind, include_retired) == ledger.records(kind, include_retired)
            assert alone.collection(kind) and all(not alone.collection(other) for other in
                                                  ("member", "pool", "project") if other != kind)
        assert state == ledger.state()


@pytest.mark.parametrize("args", [["member", "list"], ["project", "list", "--all"], ["project", "list", "--json"],
                                  ["accelerator", "list", "--json"], ["pool", "list"], ["dataset", "list", "--all"]],
                         ids=" ".join)
def test_listing_output_is_the_same_on_both_paths(cli, monkeypatch, args):
    from pooler.store import readonly

    _example(as_target(cli.db))
    quick = cli(*args)
    monkeypatch.setattr(readonly, "read_state", lambda db, kind=None: None)
    ordinary = cli(*args)
    assert quick.exit_code == ordinary.exit_code == 0
    assert quick.stdout == ordinary.stdout and quick.stderr == ordinary.stderr


@pytest.mark.sqlite_only
def test_readonly_stands_aside_unless_it_can_answer_exactly(example, tmp_path, monkeypatch):
    from pooler.store.readonly import read_state

    db = Path(example.db)
    assert read_state(db) is not None
    assert read_state(f"sqlite:///{db}") is not None
    monkeypatch.chdir(db.parent)
    assert read_state(f"sqlite:///{db.name}") is not None  # relative to the working folder, as SQLAlchemy reads it
    assert read_state(tmp_path / "missing.db") is None
    assert read_state(tmp_path) is None  # a directory
    assert read_state(f"sqlite:///{db}?mode=ro") is None
    assert read_state("mysql://user@host/db") is None
    assert read_state("postgresql://user@host/db") is None  # SQLAlchemy's default driver: not ours
    assert read_state("postgresql+psycopg://user@host/db?host=a&host=b") is None
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args", [["member", "list"], ["init"], ["ledger", "verify"]], ids=" ".join)
def test_a_file_that_is_no_database_is_one_clear_error(cli, args):
    Path(cli.db).write_text("not a database\n", encoding="utf-8")
    result = cli(*args)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: cannot use the ledger {Path(cli.db).resolve()}: file is not a database"
    assert Path(cli.db).read_text(encoding="utf-8") == "not a database\n"


@pytest.mark.sqlite_only
def test_a_newer_schema_is_refused_with_the_stores_words(cli):
    from pooler.store.readonly import read_state

    _example(as_target(cli.db))
    tamper(cli.db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    assert read_state(cli.db) is None
    result = cli("member", "list")
    assert result.exit_code == 1
    assert "has schema version 99, newer than this pooler understands" in result.stderr
    assert result.stdout == ""


def test_an_unreachable_server_is_reported_once_in_the_stores_words():
    pytest.importorskip("psycopg")
    from pooler.store import Ledger, StoreUnavailable
    from pooler.store.readonly import read_state

    url = "postgresql+psycopg://nouser:secret@127.0.0.1:1/nodb?connect_timeout=5"
    with pytest.raises(StoreUnavailable) as quick:
        read_state(url)
    with pytest.raises(StoreUnavailable) as ordinary:
        Ledger.open(url)
    assert str(quick.value) == str(ordinary.value)
    assert "secret" not in str(quick.value)


# --- the tables ------------------------------------------------------------------------------------

# Computed from the SQLModel tables of commit e030aae (before issue #6): the rows of sqlite_master of
# a new ledger, and the DDL SQLAlchemy compiles from the tables for each database.
VERSION_1_SQLITE_MASTER = "cb3df839c239bea51481c2d363cfa37c9c94afccdbe6695e45c0e5a1ae5645e3"
VERSION_1_DDL = {
    "sqlite": "e10cfa3219d76c852e27784a9510e2ab9c35ec30d11611f7ff56f9ee626572ea",
    "postgresql": "c17eaef22acaa243018e62f3220f75a170571f803da761e2192ed475ea6d8517",
}


def _ddl(metadata, dialect) -> str:
    from sqlalchemy.schema import CreateIndex, CreateTable

    out = []
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        out.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        out += [str(CreateIndex(ix).compile(dialect=dialect)).strip() for ix in sorted(table.indexes, key=lambda i: i.name)]
    return "\n".join(out)


def test_version_1_creates_the_schema_sqlmodel_created(tmp_path):
    from sqlalchemy.dialects import postgresql, sqlite

    from pooler.store import Ledger
    from pooler.store.migrations import version_1_metadata

    # Version 1 as released; a new SQLite ledger is still exactly that (version 2 changes no SQLite table),
    # plus version 3's index of the usage lines by job.
    for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())):
        ddl = _ddl(version_1_metadata(), dialect)
        assert hashlib.sha256(ddl.encode()).hexdigest() == VERSION_1_DDL[name], f"{name} DDL changed:\n{ddl}"
    Ledger.init(tmp_path / "l.db", actor="t@t").close()
    con = sqlite3.connect(tmp_path / "l.db")
    rows = [list(r) for r in con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")]
    con.close()
    assert ["index", "usage_line_job", "usage_line",
            'CREATE INDEX usage_line_job ON usage_line (job, "start") WHERE job IS NOT NULL'] in rows
    rows = [r for r in rows if r[1] != "usage_line_job"]
    assert hashlib.sha256(json.dumps(rows).encode()).hexdigest() == VERSION_1_SQLITE_MASTER, rows


def test_projection_names_for_the_dbapi_path_are_the_tables():
    from pooler.store.rowstate import PROJECTION_KEYS, RECORD_TABLE_NAMES
    from pooler.store.tables import PROJECTION_TABLES, RECORD_TABLES

    assert list(PROJECTION_KEYS.items()) == [
        (t.__tablename__, tuple(c.name for c in t.__table__.primary_key.columns)) for t in PROJECTION_TABLES
    ]
    assert RECORD_TABLE_NAMES == {kind: t.__tablename__ for kind, t in RECORD_TABLES.items()}


def test_the_store_package_imports_sqlalchemy_only_when_used():
    code = ("import sys, pooler.store, pooler.store.readonly; from pooler.store import LedgerState, Entry; "
            "assert 'sqlalchemy' not in sys.modules; from pooler.store import Ledger; "
            "assert 'sqlalchemy' in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "ok", done.stderr


# --- the dashboard's early Overview ----------------------------------------------------------------


def test_early_overview_in_a_thread_is_the_overview(example_db):
    from pooler.services import dashboard
    from tui.start import EarlyOverview

    ctx = Context(db=str(example_db))
    early = EarlyOverview(ctx, None, fork=False)
    assert not early.forked
    assert early.result() == dashboard.overview(ctx)


FORKED = """
import sys
from pooler.services import dashboard
from pooler.services.context import Context
from tui.start import EarlyOverview, EarlyFailure
ctx = Context(db=sys.argv[1])
early = EarlyOverview(ctx, None)
assert early.forked, "a single-threaded process on Linux forks"
assert early.result() == dashboard.overview(ctx)
missing = Context(db=sys.argv[1] + ".missing")
try:
    EarlyOverview(missing, None).result()
except EarlyFailure as exc:
    try:
        dashboard.overview(missing)
    except Exception as direct:
        assert str(exc) == str(direct), (str(exc), str(direct))
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the early read forks on Linux only")
def test_early_overview_in_a_child_process_is_the_overview(example_db):
    done = subprocess.run([sys.executable, "-c", FORKED, str(example_db)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_early_failure_says_what_the_app_would_say(tmp_path):
    from pooler.services import dashboard
    from tui.app import _error_text
    from tui.start import EarlyOverview

    ctx = Context(db=str(tmp_path / "none.db"))
    with pytest.raises(Exception) as early:
        EarlyOverview(ctx, None, fork=False).result()
    with pytest.raises(Exception) as direct:
        dashboard.overview(ctx)
    assert _error_text(early.value) == _error_text(direct.value)
    with pytest.raises(Exception) as bad_period:
        EarlyOverview(Context(db=str(tmp_path / "none.db")), "not-a-period", fork=False).result()
    with pytest.raises(Exception) as direct_period:
        dashboard.overview(ctx, "not-a-period")
    assert _error_text(bad_period.value) == _error_text(direct_period.value)


def test_app_shows_the_early_overview_as_its_own(example_db):
    import asyncio

    from tui.app import PoolerApp
    from tui.start import EarlyOverview

    def opened(early: bool):
        ctx = Context(db=str(example_db))
        app = PoolerApp(ctx=ctx, verify_on_open=False,
                        early=EarlyOverview(ctx, None, fork=False) if early else None)

        async def main():
            async with app.run_test(size=(110, 32)) as pilot:
                for _ in range(400):
                    if app.loaded and app.tables_loaded:
                        break
                    await pilot.pause(0.05)
                await pilot.pause()
                screen = app.export_screenshot()
                await pilot.press("q")
            return app.overview, screen
        return asyncio.run(main())

    assert opened(True) == opened(False)
