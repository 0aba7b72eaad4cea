"""The databases the tests run on: the PostgreSQL test server, fresh databases on it, and digests
that prove a refused command wrote nothing (see `conftest.db_target`)."""

from __future__ import annotations

import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES = os.environ.get("POOLER_TEST_POSTGRES")
REQUIRE_POSTGRES = os.environ.get("POOLER_REQUIRE_POSTGRES") == "1"
BACKENDS = ("sqlite", "postgresql")


def as_target(db) -> Path | str:
    """A ledger location as the helpers take it: a Path for an SQLite file, a str for a URL."""
    return db if isinstance(db, Path) or "://" in str(db) else Path(db)


def _engine(db):
    from sqlalchemy import create_engine

    db = as_target(db)
    return create_engine(f"sqlite:///{db}" if isinstance(db, Path) else db)


def need_postgres() -> str:
    """The server URL, or skip (fail under POOLER_REQUIRE_POSTGRES=1) when there is none."""
    if not POSTGRES:
        if REQUIRE_POSTGRES:
            pytest.fail("POOLER_REQUIRE_POSTGRES=1 but POOLER_TEST_POSTGRES is not set")
        pytest.skip("no PostgreSQL server: set POOLER_TEST_POSTGRES=postgresql+psycopg://user@host/postgres")
    return POSTGRES


@contextmanager
def postgres_database():
    """A fresh, empty database on the test server (its URL), dropped afterwards."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    server = need_postgres()
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"pooler_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


def db_digest(db) -> str:
    """A digest of everything a ledger holds, to prove that a refused command wrote nothing.

    SQLite: the file's bytes after folding the write-ahead log into it (in WAL mode committed pages
    may still sit in the -wal file; checkpointing first makes the bytes comparable). PostgreSQL:
    every row of every table in the public schema, in primary-key order, plus the sequences."""
    db = as_target(db)
    if isinstance(db, Path):
        import sqlite3

        if not db.exists():
            return "absent"
        con = sqlite3.connect(db)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        return hashlib.sha256(db.read_bytes()).hexdigest()
    from sqlalchemy import inspect, text

    engine = _engine(db)
    h = hashlib.sha256()
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            for table in sorted(insp.get_table_names()):
                cols = [c["name"] for c in insp.get_columns(table)]
                quoted = ", ".join(f'"{c}"' for c in cols)
                h.update(f"{table}({quoted})".encode())
                for row in conn.execute(text(f'SELECT {quoted} FROM "{table}" ORDER BY {quoted}')):
                    h.update(repr(tuple(row)).encode())
            for (seq,) in conn.execute(text("SELECT sequencename FROM pg_sequences ORDER BY 1")):
                last = conn.execute(text('SELECT last_value FROM "%s"' % seq)).scalar()
                h.update(f"{seq}={last}".encode())
    finally:
        engine.dispose()
    return h.hexdigest()


def table_names(db) -> list[str]:
    from sqlalchemy import inspect

    engine = _engine(db)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def tamper(db, *statements: str) -> None:
    """Run raw SQL behind pooler's back, past its append-only guards (then put the guards back).

    SQLite: the guard triggers are dropped and re-created around the statements. PostgreSQL: the
    statements run in a session with `session_replication_role = replica`, which skips ordinary
    triggers (the test server's user is a superuser)."""
    db = as_target(db)
    if isinstance(db, Path):
        import sqlite3

        con = sqlite3.connect(db)
        triggers = con.execute("select name, sql from sqlite_master where type = 'trigger'").fetchall()
        for name, _ in triggers:
            con.execute(f'drop trigger "{name}"')
        for sql in statements:
            con.execute(sql)
        for _, sql in triggers:
            con.execute(sql)
        con.commit()
        con.close()
        return
    from sqlalchemy import text

    engine = _engine(db)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for sql in statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def query(db, sql: str) -> list[tuple]:
    """Rows of a read-only query, straight from the database."""
    from sqlalchemy import text

    engine = _engine(db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()
