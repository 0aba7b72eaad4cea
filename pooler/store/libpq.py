"""A minimal read-only PostgreSQL client on libpq through `ctypes`, for `readonly.read_state` (issue #6).

Importing psycopg takes most of the time a `list` command may take in all (it imports asyncio, ssl,
logging, email, ...), while the C library beneath it loads in a few milliseconds. This module talks
to that same library (the libpq psycopg itself uses, see `_library_paths`) and offers the little of
the DB-API that `readonly._read` uses: `connect`, `Connection.cursor`/`rollback`/`close`, and
`Cursor.execute` (with `$1`-style parameters)/`description`/`fetchone`/`fetchall`.

Values come back as psycopg returns them, and only where that is certain:

- the connection's client encoding must be UTF8 (psycopg decodes text in the client encoding, which
  it leaves to the server and the environment as libpq does; `connect` refuses any other);
- results are text, converted by column type: int2/int4/int8 -> int, text/varchar/bpchar/name ->
  str, bool -> bool, NULL -> None; a column of any other type raises `Unsupported`.

Every failure is an `Error` (`Unavailable` when the library cannot be loaded or the connection not
made, `Unsupported` for a type this module does not convert); the caller then reads another way.
Every PGresult is cleared and every PGconn finished, whatever happens.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

CONNECTION_OK = 0
PGRES_COMMAND_OK = 1
PGRES_TUPLES_OK = 2
TEXT_FORMAT = 0

# Column type OIDs (pg_type.dat) and how psycopg's text loaders read them.
_BOOL_OID = 16
_INT_OIDS = frozenset({20, 21, 23})  # int8, int2, int4
_STR_OIDS = frozenset({25, 1043, 1042, 19})  # text, varchar, bpchar, name

# How long the connection may take when neither the URL nor PGCONNECT_TIMEOUT says (libpq's default
# is to wait for the operating system, a couple of minutes for a host that never answers). Past it
# the caller connects again through psycopg, which then waits its own time and says what is wrong:
# this bounds what the second wait adds.
DEFAULT_CONNECT_TIMEOUT = "5"


class Error(Exception):
    """Anything that went wrong: the caller reads another way."""


class Unavailable(Error):
    """No libpq to load, or no connection to be had with it."""


class Unsupported(Error):
    """A result this module does not convert exactly as psycopg would."""


_lib: Any = None
_notice_processor: Any = None  # the ctypes callback, kept alive as long as the library


def _library_paths() -> list[str]:
    """Where the libpq psycopg uses is, best guess first: psycopg's "binary" implementation bundles
    its own (`psycopg_binary.libs/libpq-*.so*`, beside the package); "c" and "python" use the
    system's. Found without importing psycopg, and without `ctypes.util.find_library` (which runs
    subprocesses)."""
    impl = os.environ.get("PSYCOPG_IMPL", "").lower()
    paths: list[str] = []
    if impl in ("", "binary"):
        from importlib.util import find_spec

        try:
            c_impl = not impl and find_spec("psycopg_c") is not None  # psycopg prefers it
            spec = None if c_impl else find_spec("psycopg_binary")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            package = os.path.normpath(next(iter(spec.submodule_search_locations)))
            libs = package + ".libs"
            try:
                names = sorted(n for n in os.listdir(libs) if n.startswith("libpq-") and ".so" in n)
            except OSError:
                names = []
            paths += [os.path.join(libs, n) for n in names]
    return paths + ["libpq.so.5"]


def _load() -> Any:
    global _lib, _notice_processor
    if _lib is not None:
        return _lib
    lib = None
    for path in _library_paths():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError:
            continue
    if lib is None:
        raise Unavailable("libpq cannot be loaded")
    p, i, u, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p
    signatures = {
        "PQconnectdbParams": (p, [ctypes.POINTER(cs), ctypes.POINTER(cs), i]),
        "PQstatus": (i, [p]),
        "PQerrorMessage": (cs, [p]),
        "PQparameterStatus": (cs, [p, cs]),
        "PQsetNoticeProcessor": (p, [p, p, p]),
        "PQexecParams": (p, [p, cs, i, p, ctypes.POINTER(cs), p, p, i]),
        "PQresultStatus": (i, [p]),
        "PQresultErrorMessage": (cs, [p]),
        "PQntuples": (i, [p]),
        "PQnfields": (i, [p]),
        "PQfname": (cs, [p, i]),
        "PQftype": (u, [p, i]),
        "PQfformat": (i, [p, i]),
        "PQgetisnull": (i, [p, i, i]),
        "PQgetvalue": (cs, [p, i, i]),
        "PQclear": (None, [p]),
        "PQconnectionUsedGSSAPI": (i, [p]),
        "PQfinish": (None, [p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name, None)
        if function is None:
            if name == "PQconnectionUsedGSSAPI":  # libpq 16 on; psycopg asks only where it exists
                continue
            raise Unavailable(f"libpq lacks {name}")  # not a libpq, or too old a one
        function.restype, function.argtypes = restype, argtypes
    # psycopg drops notices unless the program asks for them; libpq's default prints them on stderr.
    _notice_processor = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)(lambda arg, message: None)
    _lib = lib
    return lib


def connect(conninfo: str) -> Connection:
    """A connection to `conninfo` (a URL or key=value string, as `psycopg.connect` takes it)."""
    lib = _load()
    # Array entries before the expanded `dbname` yield to the URL's own parameters.
    keywords: list[bytes | None] = []
    values: list[bytes | None] = []
    if "PGCONNECT_TIMEOUT" not in os.environ:
        keywords.append(b"connect_timeout")
        values.append(DEFAULT_CONNECT_TIMEOUT.encode())
    try:
        expanded = conninfo.encode()
    except UnicodeError:
        raise Unavailable("the connection string is not UTF-8") from None  # psycopg says what it says
    keywords += [b"dbname", None]
    values += [expanded, None]
    array = ctypes.c_char_p * len(keywords)
    conn = lib.PQconnectdbParams(array(*keywords), array(*values), 1)
    if not conn:
        raise Unavailable("libpq could not allocate a connection")
    try:
        if lib.PQstatus(conn) != CONNECTION_OK:
            raise Unavailable(_text(lib.PQerrorMessage(conn)))
        encoding = lib.PQparameterStatus(conn, b"client_encoding")
        if encoding != b"UTF8":
            raise Unavailable(f"client encoding {encoding!r}, not UTF8")
        used_gssapi = getattr(lib, "PQconnectionUsedGSSAPI", None)
        if used_gssapi is not None and used_gssapi(conn) == 1:
            # psycopg may warn about the encryption libpq chose by default: let it.
            raise Unavailable("the connection uses GSSAPI")
        lib.PQsetNoticeProcessor(conn, ctypes.cast(_notice_processor, ctypes.c_void_p), None)
    except BaseException:
        lib.PQfinish(conn)
        raise
    return Connection(lib, conn)


def _text(message: bytes | None) -> str:
    return (message or b"").decode("utf-8", "replace").strip()


class Connection:
    def __init__(self, lib: Any, conn: int) -> None:
        self._lib = lib
        self._conn: int | None = conn

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute(self, sql: str, params: Sequence[str] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows) of one statement, its parameters text."""
        if self._conn is None:
            raise Error("the connection is closed")
        lib = self._lib
        array = ctypes.c_char_p * max(len(params), 1)
        values = array(*(str(v).encode() for v in params))
        result = lib.PQexecParams(self._conn, sql.encode(), len(params), None, values, None, None, TEXT_FORMAT)
        if not result:
            raise Error(_text(lib.PQerrorMessage(self._conn)))
        try:
            status = lib.PQresultStatus(result)
            if status == PGRES_COMMAND_OK:
                return [], []
            if status != PGRES_TUPLES_OK:
                raise Error(_text(lib.PQresultErrorMessage(result)) or f"result status {status}")
            return _rows(lib, result)
        finally:
            lib.PQclear(result)

    def begin_repeatable_read(self) -> None:
        """As psycopg begins with `isolation_level = REPEATABLE_READ`: one snapshot for the whole read."""
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._lib.PQfinish(conn)


def _rows(lib: Any, result: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    nfields = lib.PQnfields(result)
    names = [lib.PQfname(result, c).decode("utf-8") for c in range(nfields)]
    converters = []
    for c in range(nfields):
        oid = lib.PQftype(result, c)
        if lib.PQfformat(result, c) != TEXT_FORMAT:
            raise Unsupported(f"column {names[c]!r} is not in text format")
        if oid in _INT_OIDS:
            converters.append(int)
        elif oid in _STR_OIDS:
            converters.append(_decode)
        elif oid == _BOOL_OID:
            converters.append(_bool)
        else:
            raise Unsupported(f"column {names[c]!r} has type OID {oid}")
    isnull, getvalue = lib.PQgetisnull, lib.PQgetvalue
    rows = []
    try:
        for r in range(lib.PQntuples(result)):
            # PQgetvalue as a C string is the whole value: no type read here holds a NUL byte (text
            # cannot, in any server encoding).
            rows.append(tuple(None if isnull(result, r, c) else convert(getvalue(result, r, c))
                              for c, convert in enumerate(converters)))
    except ValueError as exc:  # not UTF-8, not a number: not what psycopg would have made of it
        raise Unsupported(str(exc)) from None
    return names, rows


def _decode(value: bytes) -> str:
    return value.decode("utf-8")  # strict, as psycopg's text loader


def _bool(value: bytes) -> bool:
    if value == b"t":
        return True
    if value == b"f":
        return False
    raise Unsupported(f"boolean {value!r}")


class Cursor:
    """What `readonly._read` uses of a DB-API cursor."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.description: list[tuple[str, None, None, None, None, None, None]] | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Sequence[str] = ()) -> None:
        names, self._rows = self._connection.execute(sql, params)
        self.description = [(n, None, None, None, None, None, None) for n in names] if names else None

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows
