"""Shared fixtures: a fresh ledger on each database pooler supports, and a CLI runner that refuses
tracebacks.

`db_target` is the one parametrised fixture behind every ledger the CLI tests use: an SQLite file in
the test's folder, and a fresh database on the PostgreSQL server named by POOLER_TEST_POSTGRES
(`.ci/run` starts one; see README.md). Without that variable the PostgreSQL cases are skipped, unless
POOLER_REQUIRE_POSTGRES=1 (set by `.ci/run`), which turns the skip into a failure. Tests about the
SQLite file itself carry the `sqlite_only` mark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.backends import BACKENDS, db_digest, postgres_database

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared"


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture(params=BACKENDS)
def db_target(request, tmp_path):
    """Where a test's ledger lives: a Path (SQLite file) or a PostgreSQL URL (str)."""
    if request.param == "sqlite":
        yield tmp_path / "ledger.db"
        return
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("about the SQLite file itself")
    with postgres_database() as url:
        yield url


@pytest.fixture
def cli(db_target, monkeypatch):
    """Call `cli(*args)` to run pooler on a fresh ledger (each backend); asserts there is no traceback."""
    from pooler.cli.main import app

    monkeypatch.setenv("POOLER_ACTOR", "tester@test")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("POOLER_DB", raising=False)
    runner = CliRunner()
    db = db_target

    def run(*args: str, db_path: Path | None = db, input: str | None = None) -> Run:
        argv = (["--db", str(db_path)] if db_path is not None else []) + [str(a) for a in args]
        result = runner.invoke(app, argv, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"pooler {' '.join(argv)} raised {result.exception!r}") from result.exception
        assert "Traceback" not in result.stdout + result.stderr
        return Run(result.exit_code, result.stdout, result.stderr)

    run.db = db  # type: ignore[attr-defined]
    run.digest = lambda: db_digest(db)  # type: ignore[attr-defined]
    return run
