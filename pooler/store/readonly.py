"""A read-only path to the projection tables on the bare Python DB-API, for listings that must start
fast (`pooler member list` and the other `list` commands; issue #6).

Importing SQLAlchemy takes longer than such a command may take in all, so this path reads the same
rows with the driver alone: the standard library's `sqlite3` for an SQLite file, and for a
`postgresql+psycopg://` URL the libpq beneath psycopg, through `ctypes` (`pooler.store.libpq`:
importing psycopg itself takes longer than such a command may take). Where that cannot connect (no
libpq to load, no connection, a client encoding other than UTF8, GSSAPI in use), psycopg connects
instead. It answers only when it can answer exactly as `Ledger` would:

- the ledger's `schema_version` is exactly this code's `SCHEMA_VERSION` (an older ledger needs a
  migration, a newer one is refused: both are the store's business);
- every projection table is read in one read transaction (one snapshot, as `Ledger.reader` reads),
  ordered by its primary key as `projection.read_rows` orders it, and turned into a state by the
  same `rowstate.state_from_rows`.

Otherwise it returns None and the caller goes the ordinary way, through `Ledger`, which says what is
wrong in its own words: no such file, a URL this path does not read exactly as SQLAlchemy would
(query strings with a repeated key, percent-escapes, other drivers), a missing `meta` table, another
schema version, any driver error while reading, a column type `libpq` does not convert exactly as
psycopg would. Two exceptions, where trying again through SQLAlchemy would make the user wait twice:
a PostgreSQL server that cannot be reached, and a ledger that stays locked past the busy timeout.
Those are reported here, in the words `Ledger` uses (tests/test_startup.py compares them for the
server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pooler.store.migrations import SCHEMA_VERSION, VERSION_KEY
from pooler.store.reducer import LedgerState
from pooler.store.rowstate import PROJECTION_KEYS, RECORD_TABLE_NAMES, Rows, state_from_rows

BUSY_TIMEOUT_SECONDS = 30  # as `db.BUSY_TIMEOUT_SECONDS` (not imported from there: db.py imports SQLAlchemy)

_SQLITE_SCHEMES = ("sqlite:///", "sqlite+pysqlite:///")
_PSYCOPG_SCHEME = "postgresql+psycopg://"


@dataclass
class _Connection:
    connection: Any
    error: type[Exception]  # the driver's base error
    mark: str  # its parameter placeholder
    begin: Callable[[Any], None]  # starts the read transaction
    url: str  # the ledger as `Ledger.open` is given it (`Context.url`), for error messages


# The tables a kind's records are made of, beside its own (`rowstate.rows_to_state` reads them).
_PART_TABLES = {"project": ("project_sponsor",), "accelerator": ("accelerator_rate",)}


def read_state(db: str | os.PathLike[str], kind: str | None = None) -> LedgerState | None:
    """The registry state held in the projection tables of the ledger at `db` (a path or a URL, as
    `--db` takes it), or None when this path cannot answer (see the module's docstring). With
    `kind`, only that kind's records are read (and the tables they are made of): the state then
    holds nothing else, which is all a listing of that kind needs (a ledger of 10,000 projects
    lists its 200 members without building the projects)."""
    tables = None if kind is None else {RECORD_TABLE_NAMES[kind], *_PART_TABLES.get(kind, ())}
    opened = _connect(os.fspath(db))
    if opened is None:
        return None
    try:
        try:
            rows = _read(opened, tables)
        except opened.error as exc:
            if _busy(str(exc)):
                raise _unavailable(opened.url, str(exc)) from None
            return None
    finally:
        try:
            opened.connection.close()
        except opened.error:
            pass
    return state_from_rows(rows) if rows is not None else None


def _connect(db: str) -> _Connection | None:
    if "://" not in db:
        return _sqlite(Path(db).expanduser().resolve())  # the file `Context.url` names
    if db.startswith(_SQLITE_SCHEMES):
        database = db.split(":///", 1)[1]
        # A plain file path only: query strings, escapes, URIs and memory databases are SQLAlchemy's.
        if not database or database == ":memory:" or database.startswith("file:") or any(
                c in database for c in "?%#"):
            return None
        return _sqlite(Path(database))
    if db.startswith(_PSYCOPG_SCHEME):
        rest = db[len(_PSYCOPG_SCHEME):]
        query = rest.partition("?")[2]
        keys = [item.partition("=")[0] for item in query.split("&") if item]
        # libpq reads the same URL as SQLAlchemy does, except that SQLAlchemy unquotes only some parts
        # and turns a repeated key into a list (several hosts): leave those to it.
        # A "/" or "?" in the user part (an unescaped password) SQLAlchemy reads as written and libpq
        # does not (review: `member list` failed to resolve host 'dave' where `member show` worked).
        userinfo = rest.rpartition("@")[0]
        if "%" in db or "#" in db or len(keys) != len(set(keys)) or any(c in userinfo for c in "/?"):
            return None
        return _postgresql(db, "postgresql://" + rest)
    return None


def _busy(detail: str) -> bool:
    return "locked" in detail or "busy" in detail


def _sqlite(path: Path) -> _Connection | None:
    import sqlite3

    if not path.is_file():
        return None  # `Ledger.open` explains
    try:
        # mode=rw: never creates the file, whatever happens to it meanwhile.
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_SECONDS,
                                     isolation_level=None)
    except sqlite3.Error:
        return None

    def begin(conn: Any) -> None:
        conn.execute("BEGIN")  # deferred: a read transaction, one snapshot for every table

    return _Connection(connection, sqlite3.Error, "?", begin, f"sqlite:///{path}")


def _postgresql(url: str, conninfo: str) -> _Connection | None:
    quick = _libpq(url, conninfo)
    if quick is not None:
        return quick
    return _psycopg(url, conninfo)


def _libpq(url: str, conninfo: str) -> _Connection | None:
    """The connection through `pooler.store.libpq`, or None when psycopg must connect instead.

    psycopg reports a server it cannot reach in its own words (`_unavailable` quotes them), so a
    failed connection here is not reported but tried again through psycopg. A refused connection
    then costs two quick attempts; a host that never answers costs the two connection timeouts:
    the URL's `connect_timeout` (or PGCONNECT_TIMEOUT) twice, else `libpq.DEFAULT_CONNECT_TIMEOUT`
    (5 s) before psycopg's own wait (130 s)."""
    from pooler.store import libpq

    try:
        connection = libpq.connect(conninfo)
    except libpq.Error:
        return None

    def begin(conn: Any) -> None:
        conn.begin_repeatable_read()  # as the psycopg connection below begins

    return _Connection(connection, libpq.Error, "$1", begin, url)


def _psycopg(url: str, conninfo: str) -> _Connection | None:
    try:
        import psycopg
    except ImportError:
        return None
    try:
        connection = psycopg.connect(conninfo, client_encoding="utf8")  # as `open_engine` does
    except psycopg.OperationalError as exc:
        raise _unavailable(url, str(exc)) from None
    except psycopg.Error:
        return None

    def begin(conn: Any) -> None:
        # As `PostgreSQLBackend.reader_options`: one snapshot for the whole read.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    return _Connection(connection, psycopg.Error, "%s", begin, url)


def _unavailable(url: str, detail: str) -> Exception:
    """The error `Ledger` raises when it cannot connect (`Ledger._explain`)."""
    from pooler.store.db import connection_hint, database_url, describe
    from pooler.store.errors import StoreUnavailable

    name = describe(database_url(url))
    if _busy(detail):
        return StoreUnavailable(f"the ledger {name} stayed busy for more than {BUSY_TIMEOUT_SECONDS} s "
                                "(another pooler is writing to it); try again")
    return StoreUnavailable(f"cannot use the ledger {name}: {detail}{connection_hint(detail)}")


def _read(opened: _Connection, tables: set[str] | None = None) -> Rows | None:
    connection = opened.connection
    opened.begin(connection)
    cursor = connection.cursor()
    cursor.execute(f"SELECT value FROM meta WHERE key = {opened.mark}", (VERSION_KEY,))
    found = cursor.fetchone()
    if found is None or found[0] != str(SCHEMA_VERSION):
        connection.rollback()
        return None
    rows: Rows = {}
    for table, key in PROJECTION_KEYS.items():
        if tables is not None and table not in tables:
            rows[table] = []
            continue
        order = ", ".join(f'"{column}"' for column in key)
        cursor.execute(f'SELECT * FROM "{table}" ORDER BY {order}')
        names = [d[0] for d in cursor.description]
        rows[table] = [dict(zip(names, r)) for r in cursor.fetchall()]
    connection.rollback()  # read only: nothing to keep
    return rows
