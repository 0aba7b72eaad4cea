"""Shared fixtures: a fresh ledger file, and a CLI runner that refuses tracebacks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

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


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Call `cli(*args)` to run pooler on a ledger in tmp_path; asserts there is no traceback."""
    from pooler.cli.main import app

    monkeypatch.setenv("POOLER_ACTOR", "tester@test")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("POOLER_DB", raising=False)
    runner = CliRunner()
    db = tmp_path / "ledger.db"

    def run(*args: str, db_path: Path | None = db, input: str | None = None) -> Run:
        argv = (["--db", str(db_path)] if db_path is not None else []) + [str(a) for a in args]
        result = runner.invoke(app, argv, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"pooler {' '.join(argv)} raised {result.exception!r}") from result.exception
        assert "Traceback" not in result.stdout + result.stderr
        return Run(result.exit_code, result.stdout, result.stderr)

    run.db = db  # type: ignore[attr-defined]
    return run
