"""The libpq listing path (`pooler.store.libpq`, issue #6): on PostgreSQL the `list` commands read the
projection tables through libpq and `ctypes`, without importing psycopg, and must give exactly what
psycopg gives, and what `Ledger` gives.

- the libpq and psycopg paths of `readonly` read equal rows (values and their types) and states, on a
  ledger with hostile ids and names, NULLs and retired records, and on rows written behind pooler's
  back (control characters, very long ids);
- the `list` commands print the same through libpq, through psycopg and through `Ledger`, and the
  quick path (a fresh `pooler` process) prints what the Typer app prints;
- `pooler member list` on PostgreSQL imports neither psycopg nor SQLAlchemy;
- where libpq cannot answer exactly, it stands aside: no library to load or a client encoding
  other than UTF8 (psycopg reads instead), a column type it does not convert, another schema
  version (None: `Ledger` reads), a server that cannot be reached (reported in psycopg's words, as
  before);
- every PGresult is cleared and every PGconn finished, errors included.

Runs on the PostgreSQL server named by POOLER_TEST_POSTGRES, skipped without one.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pooler.services import registry
from pooler.services.context import Context
from tests.backends import need_postgres, postgres_database, tamper
from tests.test_startup import PROBE, ROOT, _clean_env, _example, _same

pytest.importorskip("psycopg")

KINDS = ("member", "accelerator", "pool", "dataset", "model", "project")
# Accepted by pooler as ids and names (see tests/test_hostile.py; control characters, invisible format
# characters, text not in NFC and ids longer than 200 characters are refused there, and written
# behind its back below).
HOSTILE = [
    "x'); DROP TABLE journal; --", "Robert'); DELETE FROM member WHERE ('1'='1", '"quoted"', "back\\slash",
    "a\\'b", "$1", "%s%s%n", "{0}{1}", "[bold red]markup[/bold red]", "[/]", "עברית right-to-left",
    "\u00a0no-break space", "鹏城实验室", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u00e9", "🚀" * 5, "\U0001F468\U0001F469\U0001F467",
    "NaN", "-0", "1e999999", "../../etc/passwd", "i" * 200,
]


def _conninfo(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _hostile(url: str) -> Context:
    """The example consortium plus members, datasets and a project with hostile ids, NULL columns, and
    some of them retired."""
    ctx = _example(url)
    for i, text in enumerate(HOSTILE):
        fields = {"id": text, "name": text}
        if i % 2:
            fields["region"] = text  # else NULL, as `kind` always is here
        registry.add(ctx, "member", fields)
    registry.add(ctx, "dataset", {"id": HOSTILE[0], "member": HOSTILE[1], "access": HOSTILE[2:6],
                                  "residency": HOSTILE[6:9], "credit": 12})
    registry.add(ctx, "dataset", {"id": HOSTILE[12], "member": HOSTILE[13], "access": "open", "credit": 0})
    registry.add(ctx, "project", {"id": HOSTILE[15], "sponsors": {HOSTILE[3]: 0.25, HOSTILE[4]: 0.75},
                                  "demand": 1000, "datasets": [HOSTILE[0]]})
    for text in (HOSTILE[0], HOSTILE[10], HOSTILE[16], HOSTILE[21]):
        registry.retire(ctx, "member", text)
    registry.retire(ctx, "dataset", HOSTILE[12])
    return ctx


@pytest.fixture(scope="module")
def hostile_url() -> str:
    with postgres_database() as url:
        _hostile(url)
        yield url


def _both(url: str):
    """(rows through libpq, rows through psycopg) of the ledger at `url`."""
    from pooler.store import readonly

    found = []
    for connect in (readonly._libpq, readonly._psycopg):
        opened = connect(url, _conninfo(url))
        assert opened is not None, f"{connect.__name__} did not connect"
        try:
            found.append(readonly._read(opened))
        finally:
            opened.connection.close()
    return found


def _typed(rows) -> dict:
    return {table: [[(k, type(v).__name__, v) for k, v in row.items()] for row in items]
            for table, items in rows.items()}


def test_libpq_reads_what_psycopg_reads(hostile_url):
    from pooler.store import Ledger
    from pooler.store.readonly import read_state
    from pooler.store.rowstate import records_of, state_from_rows

    quick, slow = _both(hostile_url)
    assert quick is not None and slow is not None
    assert quick == slow
    assert _typed(quick) == _typed(slow)
    ids = {row["id"] for row in quick["member"]}
    assert set(HOSTILE) <= ids
    assert any(row["retired_seq"] is not None for row in quick["member"])
    assert any(row["kind"] is None for row in quick["member"])
    state = read_state(hostile_url)
    assert state == state_from_rows(quick) == state_from_rows(slow)
    with Ledger.open(hostile_url) as ledger:
        assert state == ledger.state()
        for kind in KINDS:
            for include_retired in (False, True):
                assert records_of(state, kind, include_retired) == ledger.records(kind, include_retired)


def test_rows_written_behind_poolers_back_read_alike():
    """Control characters, an id of 5,000 characters, NULL in every nullable column: what pooler
    never writes itself, read alike both ways."""
    from pooler.store.readonly import read_state
    from pooler.store.rowstate import state_from_rows

    with postgres_database() as url:
        _example(url)
        weird = ["\x01\x1f\x7f", "tab\there", "line\nbreak\r\n", "\x1b[31mred\x1b[0m", "z" * 5000, "é\x85\u2028"]
        statements = []
        for i, text in enumerate(weird):
            quoted = text.replace("'", "''")
            statements.append("INSERT INTO member (id, name, kind, region, added_seq, changed_seq, retired_seq) "
                              f"VALUES ('{quoted}', '{quoted}', NULL, NULL, {i + 1}, {i + 1}, "
                              f"{'NULL' if i % 2 else i + 2})")
        statements.append("UPDATE pool SET capacity = NULL, devices = NULL, hours = NULL, region = NULL")
        statements.append("UPDATE accelerator_rate SET from_period = NULL")
        tamper(url, *statements)
        quick, slow = _both(url)
        assert quick == slow and _typed(quick) == _typed(slow)
        assert set(weird) <= {row["id"] for row in quick["member"]}
        try:
            expected = state_from_rows(slow)
        except Exception as exc:  # damaged rows: the same error both ways
            with pytest.raises(type(exc)) as raised:
                read_state(url)
            assert str(raised.value) == str(exc)
        else:
            assert read_state(url) == expected


def test_values_convert_as_psycopg_converts_them():
    import psycopg

    from pooler.store import libpq

    url = need_postgres()
    sql = ("SELECT 1::int2 AS a, '-2147483648'::int4 AS b, 9223372036854775807::int8 AS c, 'x'::text AS d, "
           "'y'::varchar AS e, 'z'::char(3) AS f, 'pg'::name AS g, true AS h, false AS i, NULL::int4 AS j, "
           "NULL::text AS k, NULL::bool AS l, $1::text AS m, '' AS n")
    for text in HOSTILE + ["", " ", "\x01"]:
        quick = libpq.connect(_conninfo(url))
        try:
            cursor = quick.cursor()
            cursor.execute(sql, (text,))
            names = [d[0] for d in cursor.description]
            got = cursor.fetchall()
        finally:
            quick.close()
        with psycopg.connect(_conninfo(url)) as slow:
            cursor = slow.execute(sql.replace("$1", "%s"), (text,))
            expected_names = [d[0] for d in cursor.description]
            expected = cursor.fetchall()
        assert names == expected_names
        assert got == expected
        assert [[type(v) for v in row] for row in got] == [[type(v) for v in row] for row in expected]
        assert got[0][12] == text


@pytest.mark.parametrize("sql", ["SELECT 1.5::numeric", "SELECT 1.5::float8", "SELECT now()",
                                 "SELECT '{}'::json", "SELECT 'a'::bytea", "SELECT ARRAY[1]"])
def test_a_type_it_does_not_convert_is_refused(sql):
    from pooler.store import libpq

    quick = libpq.connect(_conninfo(need_postgres()))
    try:
        with pytest.raises(libpq.Unsupported):
            quick.cursor().execute(sql)
        with pytest.raises(libpq.Error):  # and a failed statement is an Error
            quick.cursor().execute("SELECT * FROM no_such_table")
    finally:
        quick.close()


# --- the list commands ------------------------------------------------------------------------------


def _invoke(url: str, args: list[str]):
    from typer.testing import CliRunner

    from pooler.cli.main import app

    result = CliRunner().invoke(app, ["--db", url, *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"pooler {args} raised {result.exception!r}") from result.exception
    return result.exit_code, result.stdout, result.stderr


LISTINGS = [["member", "list"], ["member", "list", "--all"], ["member", "list", "--json", "--all"],
            ["dataset", "list", "--all"], ["dataset", "list", "--json"], ["project", "list", "--all"],
            ["project", "list", "--json"], ["accelerator", "list", "--json"], ["pool", "list"], ["model", "list"]]


@pytest.mark.parametrize("args", LISTINGS, ids=" ".join)
def test_listing_is_the_same_through_libpq_psycopg_and_the_ledger(hostile_url, monkeypatch, args):
    from pooler.store import readonly

    monkeypatch.setenv("POOLER_ACTOR", "tester@test")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("POOLER_DB", raising=False)
    calls = []
    real = readonly._libpq
    monkeypatch.setattr(readonly, "_libpq", lambda *a: calls.append(a) or real(*a))
    through_libpq = _invoke(hostile_url, args)
    assert calls, "the libpq path was not asked"
    monkeypatch.setattr(readonly, "_libpq", lambda *a: None)
    through_psycopg = _invoke(hostile_url, args)
    monkeypatch.setattr(readonly, "read_state", lambda db, kind=None: None)
    through_ledger = _invoke(hostile_url, args)
    assert through_libpq == through_psycopg == through_ledger
    assert through_libpq[0] == 0 and through_libpq[1]


@pytest.mark.parametrize("args,columns", [(["member", "list"], "100"), (["member", "list", "--all"], "60"),
                                          (["project", "list", "--json", "--all"], "100"),
                                          (["dataset", "list", "--all"], "150")],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_listing_served_quick_is_typers(hostile_url, args, columns):
    out = _same(["--db", hostile_url, *args], _clean_env(COLUMNS=columns), served=True)
    assert b"DROP TABLE journal" in out or b"DELETE FROM member" in out


@pytest.mark.parametrize("args", [["member", "list"], ["project", "list", "--all", "--json"]], ids=" ".join)
def test_listing_on_postgresql_imports_no_psycopg(hostile_url, args):
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["--db", hostile_url, *args])],
                          capture_output=True, text=True, cwd=ROOT, env=_clean_env(COLUMNS="100"), timeout=120,
                          check=False)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    modules = set(report["modules"])
    assert report["code"] == 0
    assert "pooler.store.libpq" in modules
    assert not {m.split(".")[0] for m in modules} & {"psycopg", "psycopg_binary", "psycopg_c", "sqlalchemy"}
    # and it listed the ledger (the output is compared with the other paths' above)
    assert "DROP TABLE journal" in done.stdout or "DELETE FROM member" in done.stdout


# --- standing aside ---------------------------------------------------------------------------------


def test_no_libpq_to_load_leaves_it_to_psycopg(hostile_url, monkeypatch):
    from pooler.store import Ledger, libpq, readonly

    monkeypatch.setattr(libpq, "_lib", None)
    monkeypatch.setattr(libpq, "_library_paths", lambda: ["/nonexistent/libpq.so.5", "libpq-not-there.so"])
    with pytest.raises(libpq.Unavailable):
        libpq.connect(_conninfo(hostile_url))
    assert readonly._libpq(hostile_url, _conninfo(hostile_url)) is None
    state = readonly.read_state(hostile_url)
    assert state is not None
    with Ledger.open(hostile_url) as ledger:
        assert state == ledger.state()


def test_another_client_encoding_leaves_it_to_psycopg(monkeypatch):
    """psycopg decodes text in the connection's client encoding; libpq answers only in UTF8."""
    from pooler.store import Ledger, readonly

    with postgres_database() as url:
        _example(url)  # ASCII only: readable in LATIN1 too
        monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
        assert readonly._libpq(url, _conninfo(url)) is None
        state = readonly.read_state(url)
        assert state is not None
        monkeypatch.delenv("PGCLIENTENCODING")
        with Ledger.open(url) as ledger:
            assert state == ledger.state()


def test_a_column_type_it_does_not_convert_leaves_it_to_the_ledger(monkeypatch):
    from pooler.store import libpq, readonly

    with postgres_database() as url:
        _example(url)
        tamper(url, "ALTER TABLE member ADD COLUMN note numeric DEFAULT 1.5")
        opened = readonly._libpq(url, _conninfo(url))
        try:
            with pytest.raises(libpq.Unsupported):
                readonly._read(opened)
        finally:
            opened.connection.close()
        assert readonly.read_state(url) is None
        monkeypatch.setenv("COLUMNS", "120")
        through_ledger = _invoke(url, ["member", "list"])
        monkeypatch.setattr(readonly, "_libpq", lambda *a: None)
        assert readonly.read_state(url) is not None  # psycopg reads numeric; it would have answered
        assert _invoke(url, ["member", "list"]) == through_ledger


def test_another_schema_version_leaves_it_to_the_ledger(monkeypatch):
    from pooler.store import readonly

    with postgres_database() as url:
        _example(url)
        tamper(url, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        calls = []
        real = readonly._libpq
        monkeypatch.setattr(readonly, "_libpq", lambda *a: calls.append(a) or real(*a))
        assert readonly.read_state(url) is None
        assert calls
        code, out, err = _invoke(url, ["member", "list"])
        assert code == 1 and out == ""
        assert "has schema version 99, newer than this pooler understands" in err


UNREACHABLE = "postgresql+psycopg://nouser:secret@127.0.0.1:1/nodb?connect_timeout=5"


def test_an_unreachable_server_is_reported_as_before(monkeypatch):
    from pooler.store import Ledger, StoreUnavailable, readonly

    with pytest.raises(StoreUnavailable) as quick:
        readonly.read_state(UNREACHABLE)
    monkeypatch.setattr(readonly, "_libpq", lambda *a: None)  # the path before libpq
    with pytest.raises(StoreUnavailable) as before:
        readonly.read_state(UNREACHABLE)
    with pytest.raises(StoreUnavailable) as ordinary:
        Ledger.open(UNREACHABLE)
    assert str(quick.value) == str(before.value) == str(ordinary.value)
    assert "secret" not in str(quick.value)
    code, out, err = _invoke(UNREACHABLE, ["member", "list"])
    assert (code, out) == (1, "")
    assert err.startswith("Error: cannot use the ledger postgresql+psycopg://nouser:***@127.0.0.1:1/nodb")


def test_an_unreachable_server_quick_is_typers():
    need_postgres()
    _same(["--db", UNREACHABLE, "member", "list"], _clean_env(COLUMNS="100"), served=True)


# --- every PGresult cleared, every PGconn finished ----------------------------------------------------


class _Counting:
    """The loaded libpq, counting what is made and what is freed."""

    def __init__(self, lib):
        self._lib = lib
        self.made = {"result": 0, "conn": 0}
        self.freed = {"result": 0, "conn": 0}

    def __getattr__(self, name):
        function = getattr(self._lib, name)
        kind = {"PQexecParams": ("made", "result"), "PQclear": ("freed", "result"),
                "PQconnectdbParams": ("made", "conn"), "PQfinish": ("freed", "conn")}.get(name)
        if kind is None:
            return function

        def counted(*args):
            value = function(*args)
            if kind[0] == "freed" or value:
                getattr(self, kind[0])[kind[1]] += 1
            return value
        return counted


def test_every_result_and_connection_is_freed(hostile_url, monkeypatch):
    from pooler.store import StoreUnavailable, libpq, readonly

    counting = _Counting(libpq._load())
    monkeypatch.setattr(libpq, "_lib", counting)
    assert readonly.read_state(hostile_url) is not None
    with pytest.raises(StoreUnavailable):
        readonly.read_state(UNREACHABLE)  # a connection that fails
    quick = libpq.connect(_conninfo(hostile_url))
    for sql in ("SELECT 1.5::numeric", "SELECT * FROM no_such_table", "SELECT 1"):
        try:
            quick.cursor().execute(sql)
        except libpq.Error:
            pass
    quick.close()
    quick.close()  # twice: finished once
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")  # refused after connecting
    with pytest.raises(libpq.Unavailable):
        libpq.connect(_conninfo(hostile_url))
    assert counting.made["conn"] == 4 and counting.made["result"] >= 15
    assert counting.made == counting.freed


def test_a_role_without_privileges_gets_one_error_line_that_says_so(hostile_url):
    """Review: `member list` as a role that may not read the ledger's tables was a traceback (the quick
    path handed over to the store, whose driver error nothing caught), and `member add` blamed the
    ledger ("may be damaged") for a missing privilege."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    role = f"nopriv_{uuid.uuid4().hex[:8]}"
    admin = create_engine(need_postgres(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'Sekr1tPW'")
    try:
        url = make_url(hostile_url).set(username=role, password="Sekr1tPW").render_as_string(hide_password=False)
        for args in (["member", "list"], ["project", "list", "--json"], ["member", "add", "x", "--name", "X"]):
            done = subprocess.run([sys.executable, "-m", "pooler.cli", "--db", url, *args], capture_output=True,
                                  text=True, cwd=ROOT, env=_clean_env(COLUMNS="100"), timeout=120, check=False)
            assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
            assert done.stderr.startswith("Error: the database refused a statement of pooler's: ")
            assert "permission denied" in done.stderr and "may not do this" in done.stderr
            assert "Sekr1tPW" not in done.stderr and done.stderr.count("\n") == 1
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()
