"""Crash safety: `pooler` killed with SIGKILL at random moments during `apply`, `alloc run` and
`usage import` leaves a ledger that verifies and holds exactly the state before the command or exactly
the state after it, on SQLite and on PostgreSQL.

Each command runs once to the end on a copy of a prepared ledger (the "after"); then, for each kill
point, on a fresh copy it is started as a real process and killed after a random delay drawn over the
command's whole run (startup included, so some kills land before the write, some inside it and some
after the commit). The copy must then verify and equal the "before" row for row, or match the
"after" in everything a repeated run reproduces (times, hashes and solver seconds differ by nature).

POOLER_CRASH_POINTS sets the kill points per command: the suite uses 6 on SQLite and 4 on PostgreSQL
to stay quick; run it by hand with dozens (README.md records such a run):

    POOLER_CRASH_POINTS=36 python3 -m pytest -n 0 -s tests/test_crash.py
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.backends import POSTGRES, db_digest, need_postgres, query

POINTS = {"sqlite": 6, "postgresql": 4}
PERIOD = "2026-11"


def manifest(n_members: int = 40, n_pools: int = 400, n_projects: int = 1200) -> str:
    """A consortium large enough that `apply` writes for a while (about 1,650 entries)."""
    rnd = random.Random(11)
    out = ['[consortium]\nname = "Crash test"\n', '[policy]\ncontribution_weight = 0.9\n']
    for t, rate in (("a800", "1.2"), ("h800", "2.0"), ("ascend-910b", "1.0")):
        out.append(f'[[accelerators]]\nid = "{t}"\nrate = {rate}\n')
    for m in range(n_members):
        out.append(f'[[members]]\nid = "m{m:03d}"\nname = "Member {m}"\nregion = "r{m % 4}"\n')
    for p in range(n_pools):
        acc = ("a800", "h800", "ascend-910b")[p % 3]
        out.append(f'[[pools]]\nid = "q{p:04d}"\nmember = "m{rnd.randrange(n_members):03d}"\n'
                   f'accelerator = "{acc}"\ncapacity = {rnd.randrange(100, 5000)}\n')
    for j in range(n_projects):
        out.append(f'[[projects]]\nid = "j{j:05d}"\nsponsors = {{ m{rnd.randrange(n_members):03d} = 1 }}\n'
                   f'demand = {rnd.randrange(100, 20000)}\n')
    return "\n".join(out)


def usage_csv(path: Path, lines: int = 100000) -> Path:
    """Usage lines over a few projects and pools (the import's summary stays short)."""
    rnd = random.Random(5)
    with path.open("w") as f:
        f.write("project,pool,device_hours,start,end\n")
        for i in range(lines):
            f.write(f"j{rnd.randrange(40):05d},q{rnd.randrange(20):04d},{rnd.randrange(1, 100)}.5,"
                    f"2026-11-{1 + i % 28:02d}T00:00:00Z,2026-11-{1 + i % 28:02d}T06:00:00Z\n")
    return path


# -- ledgers to copy ---------------------------------------------------------------------------------

class Store:
    """Copies of a base ledger: SQLite files, or PostgreSQL databases made from a template."""

    def __init__(self, backend: str, folder: Path):
        self.backend, self.folder, self.made = backend, folder, []
        if backend == "postgresql":
            from sqlalchemy import create_engine

            self.admin = create_engine(need_postgres(), isolation_level="AUTOCOMMIT")

    def new(self, name: str) -> str:
        if self.backend == "sqlite":
            return str(self.folder / f"{name}.db")
        from sqlalchemy.engine import make_url

        db = f"pooler_crash_{os.getpid()}_{name}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {db}")
        self.made.append(db)
        return make_url(POSTGRES).set(database=db).render_as_string(hide_password=False)

    def copy(self, base: str, name: str) -> str:
        if self.backend == "sqlite":
            target = self.folder / f"{name}.db"
            shutil.copyfile(base, target)  # the base is closed and checkpointed: one file holds it all
            return str(target)
        from sqlalchemy.engine import make_url

        db = f"pooler_crash_{os.getpid()}_{name}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {db} TEMPLATE {make_url(base).database}")
        self.made.append(db)
        return make_url(POSTGRES).set(database=db).render_as_string(hide_password=False)

    def close(self):
        if self.backend == "postgresql":
            with self.admin.connect() as conn:
                for db in self.made:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            self.admin.dispose()


def pooler(db: str, *args, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "POOLER_ACTOR": "crash@test", "POOLER_DB": db}
    proc = subprocess.run([sys.executable, "-m", "pooler.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def settle(db: str) -> str:
    """Open the ledger once (SQLite recovers its WAL) and fold the WAL in, so digests compare."""
    from pooler.store import Ledger

    with Ledger.open(db) as ledger:
        report = ledger.verify()
    assert report.ok, report.problems
    return db_digest(db)


def head(db: str) -> int:
    return query(db, "select max(seq) from journal")[0][0]


def reproducible(db: str) -> list:
    """What a repeated run reproduces: the entries' kinds, the records and every attached row."""
    out = [query(db, "select seq, kind, actor from journal order by seq")]
    for table in ("member", "pool", "project", "alloc_grant", "usage_line"):
        rows = query(db, f'select * from "{table}"')
        out.append(sorted(map(repr, rows)))
    return out


# -- the harness -------------------------------------------------------------------------------------

def crash_points(backend: str, folder: Path, prepare, command, tag: str):
    store = Store(backend, folder)
    try:
        base = store.new(f"{tag}_base")
        prepare(base)
        before = settle(base)
        before_head = head(base)
        after_db = store.copy(base, f"{tag}_after")
        started = time.monotonic()
        pooler(after_db, *command)
        duration = time.monotonic() - started
        settle(after_db)
        after = reproducible(after_db)
        assert head(after_db) > before_head

        n = int(os.environ.get("POOLER_CRASH_POINTS", POINTS[backend]))
        rnd = random.Random(f"{tag}-{backend}")
        # Mostly over the later part of the run, where the writing is (startup and parsing come first),
        # and past its end: two copies run at once, each a little slower than the measured run.
        delays = sorted(rnd.uniform(0.3, 1.6) * duration for _ in range(n))

        def one(k: int) -> str:
            db = store.copy(base, f"{tag}_{k}")
            env = {**os.environ, "POOLER_ACTOR": "crash@test", "POOLER_DB": db}
            proc = subprocess.Popen([sys.executable, "-m", "pooler.cli", *map(str, command)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                proc.wait(timeout=delays[k])
                finished = True
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                finished = False
            stderr = proc.stderr.read()
            proc.stderr.close()
            assert "Traceback" not in stderr
            digest = settle(db)  # verify passes, whatever the moment of the kill
            if digest == before:
                assert not finished, "the command finished but left no trace"
                return "before"
            assert reproducible(db) == after, f"kill after {delays[k]:.2f} s left a state that is neither"
            return "after"

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(one, range(n)))
        print(f"{tag} on {backend}: the command took {duration:.2f} s; kills at",
              ", ".join(f"{d:.2f} s: {o}" for d, o in zip(delays, outcomes)))
    finally:
        store.close()
    # with dozens of points the kills must have covered the command: some before its commit, some after
    if n >= 12:
        assert "before" in outcomes and "after" in outcomes, outcomes
    return outcomes


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    if request.param == "postgresql":
        need_postgres()
    return request.param


@pytest.mark.slow
def test_apply_killed_anywhere_is_before_or_after(backend, tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(manifest())
    crash_points(backend, tmp_path, lambda db: pooler(db, "init"), ["apply", path], "apply")


@pytest.mark.slow
def test_alloc_run_killed_anywhere_is_before_or_after(backend, tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(manifest(20, 100, 300))

    def prepare(db):
        pooler(db, "init")
        pooler(db, "apply", path)

    crash_points(backend, tmp_path, prepare, ["alloc", "run", "--period", PERIOD], "alloc")


@pytest.mark.slow
def test_usage_import_killed_anywhere_is_before_or_after(backend, tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(manifest(20, 100, 300))
    usage = usage_csv(tmp_path / "usage.csv")

    def prepare(db):
        pooler(db, "init")
        pooler(db, "apply", path)

    crash_points(backend, tmp_path, prepare, ["usage", "import", usage, "--format", "csv", "--period", PERIOD],
                 "usage")
