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
from dataclasses import dataclass
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
    read_only = False

    def open_read_only(self, url: URL) -> None:
        """Make every connection of the engines made after this read-only (before `open_engine`)."""
        self.read_only = True

    def check_unchanged(self, name: str) -> None:
        """After each transaction of a read-only open: raise if what was read may be torn."""

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


@dataclass(frozen=True)
class ReadOnlyFile:
    """How a read-only open reaches an SQLite file: the URI it connects to, and for an immutable
    open the file's stamp when it was chosen (see `read_only_file`)."""

    path: Path
    uri: str
    immutable: bool = False
    stamp: tuple[int, ...] | None = None
    # `mode=ro` chosen because it could read the file then, in a folder pooler may not write to: a WAL
    # ledger was readable through the -wal and -shm of a connection open elsewhere, which SQLite
    # removes when that connection closes; each new connection checks (`SQLiteBackend.connect`)
    recheck: bool = False


def _stamp(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _pending_journal(path: Path) -> Path | None:
    """A -wal or -journal file beside `path` that holds anything: changes not (yet) in the file."""
    for suffix in ("-wal", "-journal"):
        beside = Path(f"{path}{suffix}")
        try:
            if beside.stat().st_size > 0:
                return beside
        except FileNotFoundError:
            continue
    return None


def _writable(path: Path) -> bool:
    """Whether this process may write to the ledger file and create files in its folder."""
    return os.access(path, os.W_OK) and os.access(path.absolute().parent, os.W_OK | os.X_OK)


def _unreadable_here(exc: sqlite3.OperationalError) -> bool:
    """`mode=ro` cannot read the file where it is (no -shm and no right to make one, see below)."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    return code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))


def _connect_uri(uri: str) -> sqlite3.Connection:
    # As SQLAlchemy itself connects to a file: the pool may hand a connection to another thread.
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)


def read_only_file(path: Path) -> ReadOnlyFile:
    """How to open the ledger file `path` read-only.

    Where pooler may write to the file and its folder: as a writer opens it (`mode=rw`), each
    connection with `PRAGMA query_only` (`SQLiteBackend.configure`), so that SQLite removes its -wal
    and -shm files on closing as after any command. Elsewhere, `mode=ro` (SQLite reads, never
    writes, never creates the file) whenever that can read it: a
    ledger in WAL mode needs its -wal and -shm files, which SQLite creates beside it when the folder
    is writable, or which already exist there (SQLite 3.22 and later read a WAL database without
    write access then). In a folder pooler may not write to, without them, `mode=ro` cannot read
    at all (SQLITE_READONLY_DIRECTORY, or SQLITE_CANTOPEN with a -wal but no -shm). Then:

    - no -wal (or an empty one) and no rollback -journal: the file alone holds every committed
      entry, and `immutable=1` reads it without the -shm file and without locks. Immutable means
      SQLite assumes nobody changes the file; nobody has it open (an open WAL ledger has its -wal
      file), and the file's stamp (inode, size, times) is kept so that `check_unchanged` notices a
      writer that came meanwhile;
    - a -wal or -journal that holds anything: entries (or a half-done write) outside the file that
      SQLite cannot read here, and immutable reading would silently ignore: refused, saying so.
    """
    if _writable(path):
        # where pooler may write anyway (the usual case for an admin), the file is opened as a writer
        # would, with `PRAGMA query_only` (see `SQLiteBackend.configure`): SQLite then removes its
        # -wal and -shm files when the last connection closes, as before; a `mode=ro` connection
        # cannot, and left them beside the ledger after every command that reads
        return ReadOnlyFile(path, f"{path.absolute().as_uri()}?mode=rw")
    uri = f"{path.absolute().as_uri()}?mode=ro"
    try:
        probe = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    except sqlite3.Error:
        return ReadOnlyFile(path, uri)  # the ordinary connection says what is wrong
    try:
        probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return ReadOnlyFile(path, uri, recheck=True)
    except sqlite3.OperationalError as exc:
        if not _unreadable_here(exc):
            return ReadOnlyFile(path, uri)  # busy, locked...: reported the ordinary way
    except sqlite3.Error:
        return ReadOnlyFile(path, uri)  # not a database: reported the ordinary way
    finally:
        probe.close()
    stamp = _stamp(path)
    pending = _pending_journal(path)
    if pending is not None:
        if pending.name.endswith("-wal"):
            why = (f"its write-ahead log {pending} holds entries not yet in the file, which SQLite reads only "
                   f"with {path}-shm beside it or in a folder it may write to")
        else:
            why = (f"its rollback journal {pending} holds a write that never finished, which only an open "
                   "that may write undoes")
        raise StoreUnavailable(f"cannot read the ledger {path}: {why}; copy {path.name} with {pending.name} "
                               "into a folder pooler may write to, and read the copy")
    return ReadOnlyFile(path, f"{uri}&immutable=1", immutable=True, stamp=stamp)


class SQLiteBackend(Backend):
    name = "sqlite"
    file: ReadOnlyFile | None = None  # set by `open_read_only` for an SQLite file

    def open_read_only(self, url: URL) -> None:
        self.read_only = True
        path = sqlite_file(url)
        if path is not None:
            self.file = read_only_file(path)

    def connect(self) -> sqlite3.Connection:
        """A connection to the file as `open_read_only` chose to reach it.

        A `mode=ro` chosen while another connection held the ledger open (its -wal and -shm beside
        it) stops working when that connection closes: SQLite removes both files, and in a folder
        pooler may not write to a new connection cannot make the -shm (SQLITE_READONLY_DIRECTORY,
        "attempt to write a readonly database", seen from `ledger log` while a writer ran). Then the
        choice is made again: the file alone now holds every entry (immutable, with its stamp), or
        the ledger is open elsewhere again (`mode=ro`)."""
        file = self.file
        assert file is not None
        connection = _connect_uri(file.uri)
        if not file.recheck:
            return connection
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.OperationalError as exc:
            if not _unreadable_here(exc):
                return connection  # busy, locked...: the connect hook reports it the ordinary way
        except sqlite3.Error:
            return connection  # not a database: likewise
        connection.close()
        self.file = file = read_only_file(file.path)
        return _connect_uri(file.uri)

    def check_unchanged(self, name: str) -> None:
        file = self.file
        if file is None or not file.immutable:
            return
        try:
            changed = _stamp(file.path) != file.stamp or _pending_journal(file.path) is not None
        except OSError:
            changed = True
        if changed:
            raise StoreUnavailable(
                f"the ledger {name} changed while pooler read it: with no write-ahead log beside it, in a "
                "folder pooler may not write to, SQLite read it as immutable (without locks), and someone "
                "wrote to it meanwhile; try again, or read a copy nobody writes to")

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
                if self.read_only:
                    # No switch to WAL (a write); and no write through this connection even where
                    # the file was not opened with mode=ro (a `file:` URI given as --db).
                    cursor.execute("PRAGMA query_only = ON")
                    cursor.execute("SELECT count(*) FROM sqlite_master").fetchone()  # errors here, worded
                else:
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
        if self.read_only:  # the server itself refuses any write in such a transaction
            return {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
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
    creator = None
    if isinstance(backend, SQLiteBackend) and backend.file is not None:
        # The URI form, which SQLAlchemy's URL cannot carry for any path (percent-escapes); the
        # engine keeps the plain URL for names and for `DigestsBeside`.
        creator = backend.connect
    try:
        engine = create_engine(url, connect_args=connect_args, **({"creator": creator} if creator else {}))
    except (ArgumentError, ImportError) as exc:
        raise StoreUnavailable(f"cannot use {describe(url)}: {exc} (--db takes {_URL_FORMS})") from None
    backend.configure(engine)
    return engine
