"""Start-up (issue #6) and the dashboard's first screen (issue #5): what the quick paths import, and
that they give exactly what the ordinary paths give.

- `pooler --help` and the `list` commands import none of SQLAlchemy, pydantic, NumPy, SciPy or
  Textual (checked in a fresh interpreter, through `sys.modules`);
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
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _imports(*args: str) -> tuple[int, set[str], set[str]]:
    """(exit code, heavy top-level packages imported, pooler.cli modules imported) of one run."""
    env = {k: v for k, v in os.environ.items() if k != "POOLER_DB"} | {"COLUMNS": "100"}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True,
                          text=True, cwd=ROOT, env=env)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    modules = set(report["modules"])
    heavy = {m.split(".")[0] for m in modules} & set(HEAVY)
    return report["code"], heavy, {m for m in modules if m.startswith("pooler.cli.")}


@pytest.mark.parametrize("args", [["--help"], [], ["member", "--help"], ["tui", "--help"]],
                         ids=["help", "no-args", "member-help", "tui-help"])
def test_help_imports_no_heavy_library(args):
    code, heavy, cli = _imports(*args)
    assert code == (2 if not args else 0)  # Click: the help, as a usage error, when no command is given
    assert not heavy, f"pooler {' '.join(args)} imported {sorted(heavy)}"
    if args in (["--help"], []):
        assert cli <= {"pooler.cli.main", "pooler.cli.lazy"}, f"the root help imported {sorted(cli)}"


@pytest.mark.parametrize("args", [["member", "list"], ["project", "list", "--all", "--json"],
                                  ["accelerator", "list"]], ids=" ".join)
def test_listing_imports_no_heavy_library(example_db, args):
    code, heavy, cli = _imports("--db", str(example_db), *args)
    assert code == 0
    assert not heavy, f"pooler {' '.join(args)} imported {sorted(heavy)}"
    assert cli <= {"pooler.cli.main", "pooler.cli.lazy", "pooler.cli.registry", "pooler.cli.output"}


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
            for include_retired in (False, True):
                assert records_of(state, kind, include_retired) == ledger.records(kind, include_retired)
        assert state == ledger.state()


@pytest.mark.parametrize("args", [["member", "list"], ["project", "list", "--all"], ["project", "list", "--json"],
                                  ["accelerator", "list", "--json"], ["pool", "list"], ["dataset", "list", "--all"]],
                         ids=" ".join)
def test_listing_output_is_the_same_on_both_paths(cli, monkeypatch, args):
    from pooler.store import readonly

    _example(as_target(cli.db))
    quick = cli(*args)
    monkeypatch.setattr(readonly, "read_state", lambda db: None)
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
    from pooler.store.tables import metadata

    for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())):
        ddl = _ddl(metadata, dialect)
        assert hashlib.sha256(ddl.encode()).hexdigest() == VERSION_1_DDL[name], f"{name} DDL changed:\n{ddl}"
    Ledger.init(tmp_path / "l.db", actor="t@t").close()
    con = sqlite3.connect(tmp_path / "l.db")
    rows = [list(r) for r in con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")]
    con.close()
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
