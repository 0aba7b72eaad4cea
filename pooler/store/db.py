"""Engines and the dialect-specific parts of the store, kept together so the rest stays neutral SQL.

A `--db` value is either an SQLAlchemy URL (`sqlite:///x.db`, `postgresql+psycopg://...`) or a plain
path, which means an SQLite file. A `Backend` holds everything that differs between databases:

- SQLite: WAL (readers never wait for the writer and see one consistent snapshot per transaction), a
  busy timeout, foreign keys on, and writers start with `BEGIN IMMEDIATE`, so the write lock is taken
  before the head of the journal is read; two processes can then never both append "seq 7". This is
  the SQLAlchemy pysqlite recipe: the driver's own BEGIN is switched off and ours emitted instead.
- PostgreSQL: writers take a transaction-scoped advisory lock before reading the head; readers use
  REPEATABLE READ for a consistent snapshot; append-only guards are a trigger function that raises.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from pooler.store.errors import StoreUnavailable
from pooler.store.urls import shown_db

BUSY_TIMEOUT_SECONDS = 30
# Execution option set on a writer's connection; the `begin` hook reads it to choose BEGIN IMMEDIATE.
WRITE_OPTION = "pooler_write"


def database_url(target: str | os.PathLike[str] | URL) -> URL:
    """The URL for a `--db` value: a URL as given, or a path made absolute as an SQLite URL."""
    if isinstance(target, URL):
        return target
    value = os.fspath(target)
    if "://" in value:
        shown = shown_db(value)
        scheme, _, rest = value.partition("://")
        if not scheme.startswith("sqlite") and rest.partition("?")[0].count("@") > 1:
            # an unescaped "@" in the password (checked on the text: once parsed, part of the password
            # is the host, which the driver's message would then print; review)
            raise StoreUnavailable(f"{shown!r} is not a database URL that pooler can use: its password holds "
                                   "an '@'; write it as %40 (and ':' as %3A, '/' as %2F)")
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise StoreUnavailable(f"{shown!r} is not a database URL: {str(exc).replace(value, shown)}") from None
        except ValueError:  # (review: a port that is no number was a traceback, naming the password)
            raise StoreUnavailable(f"{shown!r} is not a database URL: its port is not a number") from None
        if url.drivername in ("postgresql", "postgres"):
            # no driver named: psycopg (version 3), the one pooler installs, not SQLAlchemy's default
            url = url.set(drivername="postgresql+psycopg")
        return url
    path = Path(value).expanduser().absolute()
    return URL.create("sqlite+pysqlite", database=str(path))


def sqlite_file(url: URL) -> Path | None:
    """The file behind an SQLite URL, or None (in-memory databases and other dialects)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def describe(url: URL) -> str:
    """How error messages name a ledger: its path, or its URL without the password (in the URL's
    user part or as a query parameter)."""
    path = sqlite_file(url)
    return str(path) if path is not None else shown_db(url.render_as_string(hide_password=True))


class Backend:
    """The dialect-specific behaviour; subclasses for SQLite and PostgreSQL."""

    name = "generic"

    def configure(self, engine: Engine) -> None:
        """Install connection hooks on a new engine."""

    def reader_options(self) -> dict[str, object]:
        """Execution options for a read-only transaction that must see one consistent snapshot."""
        return {}

    def lock_for_write(self, conn: Connection) -> None:
        """Called first thing in a writer's transaction: serialise writers before the head is read."""

    def append_only_ddl(self, table: str) -> list[str]:
        """Statements that make the database itself refuse UPDATE and DELETE on `table`."""
        raise NotImplementedError

    def guard_names(self, table: str) -> list[str]:
        """The names of the triggers `append_only_ddl` creates (checked by verify)."""
        raise NotImplementedError

    def existing_triggers(self, conn: Connection) -> set[str]:
        raise NotImplementedError


def _set_wal(cursor) -> None:
    """Switch the file to WAL, waiting out other connections.

    Switching a new file's journal mode needs an exclusive lock, and SQLite answers "database is
    locked" at once, without its busy handler, when two connections would otherwise deadlock (two
    `pooler init` racing on one new file). Retry for up to the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _begin_immediate(conn: Connection) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock up to the busy timeout by trying again every few
    milliseconds.

    SQLite's own busy handler sleeps longer and longer between tries (up to 100 ms), and a process
    that has just committed takes the lock again at once for its next write: under contention a
    waiter can miss every short moment the lock is free and wait out the whole timeout while the
    others write hundreds of entries (seen with 8 processes x 200 writes on a loaded machine).
    Trying every 1-4 ms (at random, so that waiters do not move in step) gives each its turn."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    conn.exec_driver_sql("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(random.uniform(0.001, 0.004))
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")


class SQLiteBackend(Backend):
    name = "sqlite"

    def configure(self, engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            # Take transaction control away from the sqlite3 module (it would emit a deferred BEGIN
            # of its own, and COMMIT before DDL); the `begin` hook below emits ours.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
                cursor.execute("PRAGMA foreign_keys = ON")
                # Persistent in the file once set; repeating it on an already-WAL file is a no-op.
                # synchronous stays FULL (the default): a committed entry survives a power cut.
                _set_wal(cursor)
            except sqlite3.OperationalError:
                raise  # "locked", "unable to open": the ledger's `_explain` words them
            except sqlite3.DatabaseError as exc:
                # A file that is not an SQLite database at all ("file is not a database"): one clear
                # error, as for a file that cannot be opened, rather than SQLAlchemy's traceback.
                raise StoreUnavailable(f"cannot use the ledger {describe(engine.url)}: {exc}") from None
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A deferred BEGIN would take the write lock only at the first write, after the head was
            # read, and in WAL mode that upgrade fails at once with SQLITE_BUSY_SNAPSHOT instead of
            # waiting. IMMEDIATE waits (busy_timeout) for the lock up front.
            if conn.get_execution_options().get(WRITE_OPTION):
                _begin_immediate(conn)
            else:
                conn.exec_driver_sql("BEGIN")

    def append_only_ddl(self, table: str) -> list[str]:
        return [
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END",
        ]

    def guard_names(self, table: str) -> list[str]:
        return [f"{table}_no_update", f"{table}_no_delete"]

    def existing_triggers(self, conn: Connection) -> set[str]:
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        return {name for (name,) in rows}


class PostgreSQLBackend(Backend):
    """PostgreSQL (psycopg); `.ci/run` runs the whole suite against a throw-away server as well."""

    name = "postgresql"
    # Any constant will do; it only has to be the same for every pooler writer on the database.
    _WRITE_LOCK_KEY = 0x706F6F6C  # "pool"

    def configure(self, engine: Engine) -> None:
        import logging

        # psycopg logs what it ignores while cleaning up after a lost connection ("error ignored
        # terminating <psycopg.Copy>"); with no handler, Python printed it beside pooler's own Error
        # line (review: two lines when the server stopped during an import)
        log = logging.getLogger("psycopg")
        if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
            log.addHandler(logging.NullHandler())

    def reader_options(self) -> dict[str, object]:
        return {"isolation_level": "REPEATABLE READ"}

    def lock_for_write(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._WRITE_LOCK_KEY})

    def append_only_ddl(self, table: str) -> list[str]:
        return [
            "CREATE OR REPLACE FUNCTION pooler_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION pooler_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION pooler_append_only()",
        ]

    def guard_names(self, table: str) -> list[str]:
        return [f"{table}_append_only", f"{table}_no_truncate"]

    def existing_triggers(self, conn: Connection) -> set[str]:
        rows = conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
        return {name for (name,) in rows}


# what to write instead, for the URLs an admin gets wrong (review: "Can't load plugin ...psycopq",
# "No module named 'psycopg2'", and `postgres://` "is not SQLite or PostgreSQL")
_URL_FORMS = "a file path, sqlite:///PATH, or postgresql+psycopg://USER@HOST/DBNAME"


def connection_hint(detail: str) -> str:
    """What to do about a connection the server refused, when it is plain (else "")."""
    if re.search(r'database "[^"]*" does not exist', detail):
        # `init` makes the tables, not the database (README, PostgreSQL)
        return " (create the database first, e.g. `createdb DBNAME`, then `pooler init`)"
    return ""


def backend_for(url: URL) -> Backend:
    name = url.get_backend_name()
    if name == "sqlite":
        return SQLiteBackend()
    if name in ("postgresql", "postgres"):
        if url.drivername != "postgresql+psycopg":  # (read as text: loading another dialect may fail)
            raise StoreUnavailable(f"{describe(url)!r}: pooler reaches PostgreSQL through psycopg (version 3): "
                                   "write postgresql+psycopg://USER@HOST/DBNAME")
        return PostgreSQLBackend()
    raise StoreUnavailable(f"pooler cannot keep a ledger in a {name} database: --db takes {_URL_FORMS}")


def open_engine(url: URL, backend: Backend) -> Engine:
    connect_args: dict[str, object] = {}
    if backend.name == "sqlite":
        # The driver's own busy wait, so that even the connect-time PRAGMAs wait for a busy file.
        connect_args["timeout"] = BUSY_TIMEOUT_SECONDS
    elif backend.name == "postgresql":
        # UTF-8 whatever the database's or role's default: pooler reads texts as UTF-8, and another
        # client encoding can map two stored characters to one (SJIS turns U+00A5 into a backslash),
        # which would let `verify` read a changed row as its declared text (found by review).
        connect_args["client_encoding"] = "utf8"
    try:
        engine = create_engine(url, connect_args=connect_args)
    except (ArgumentError, ImportError) as exc:
        raise StoreUnavailable(f"cannot use {describe(url)}: {exc} (--db takes {_URL_FORMS})") from None
    backend.configure(engine)
    return engine
