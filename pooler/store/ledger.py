"""The ledger: opening and creating it, one-transaction writers, consistent readers, and `verify`.

    ledger = Ledger.init("pooler.db", actor="ana@pcl")          # or Ledger.open(url)
    with ledger.writer("ana@pcl") as w:                          # one BEGIN IMMEDIATE transaction
        w.append("member.add", {"record": member.to_record()})
    ledger.snapshot("2026-11")                                   # active records, rates as of 2026-11
    ledger.verify()                                              # chain, attachments, projections

Every write goes through `Writer.append`, which hashes the entry onto the chain, stores its attached
rows, and writes the projection rows the reducer says changed, all in the writer's transaction: a crash
at any moment leaves the ledger as before or as after. Readers run in their own transaction and so see
one consistent snapshot even while writers commit.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pickle
import re
import sqlite3
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Decimal, InvalidOperation
from decimal import Context as DecimalContext
from itertools import chain
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import Connection, Engine, Integer, String, func, insert, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError, PendingRollbackError

from pooler.core.model import Consortium, Snapshot, dec
from pooler.store.attachments import RowChunks, attachment_table, attachment_tables, digest_stored_rows
from pooler.store.db import (
    BUSY_TIMEOUT_SECONDS, WRITE_OPTION, Backend, backend_for, connection_hint, database_url, describe, open_engine,
    sqlite_file,
)
from pooler.store.errors import (
    EntryRejected, LedgerExists, LedgerNotFound, SchemaTooNew, StoreError, StoreUnavailable,
)
from pooler.store.journal import (
    GENESIS_HASH, Clock, Entry, PayloadReader, canonical_json, canonical_json_of_parsed, check_kind, entry_hash,
    entry_hash_with_text, format_time, plain_json, utc_now,
)
from pooler.store.migrations import (
    MIGRATIONS, Migration, check_migrations, read_version, run_migrations,
)
from pooler.store.projection import compare_rows, load_state, read_rows, state_rows, write_changes
from pooler.store.reducer import (
    STATE_ENTRY_KINDS, LedgerState, RateVersion, RecordState, apply_entry, changes_state, normalize_payload,
    replay, replaying,
)
from pooler.store.digests import DigestsBeside
from pooler.store.rowstate import _row_record
from pooler.store.tables import RECORD_TABLES, JournalRow, metadata

_JOURNAL = JournalRow.__table__
# Rows per executemany of an attachment batch, and per spooled chunk: bounded memory, few round trips.
_ATTACHMENT_CHUNK = 20_000
_COLUMN_BLOCKS = 2048  # table blocks (8 KiB) read at once by `attachment_columns` (PostgreSQL)
_CURSORS = itertools.count(1)  # names of server-side cursors (PostgreSQL)
# Rows per multi-row INSERT on SQLite.
_ROWS_PER_INSERT = 500
# Entries per read transaction when `Ledger.entries` pages through a long journal.
_ENTRY_PAGE = 1000


def _whole_journal():
    # Streamed (a server-side cursor on PostgreSQL), so a long journal is never held in memory at once.
    return select(_JOURNAL).order_by(_JOURNAL.c.seq).execution_options(yield_per=_ENTRY_PAGE)


def _entry(row: Any) -> Entry:
    return Entry(row.seq, row.time, row.actor, row.kind, row.payload, row.prev_hash, row.hash)


# --- reports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyProblem:
    """One thing `verify` found wrong: the entry (when one is to blame), the table and key, and why."""

    seq: int | None
    reason: str
    table: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        return f"entry #{self.seq}: {self.reason}" if self.seq is not None else self.reason


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `Ledger.verify`: problems in journal order, entry problems before table ones."""

    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[VerifyProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        return self.problems[0].seq if self.problems else None

    @property
    def reason(self) -> str | None:
        return self.problems[0].reason if self.problems else None

    @property
    def problem(self) -> str | None:
        """The first problem as one line ("entry 7: hash mismatch: ..."), or None."""
        return str(self.problems[0]) if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "head_seq": self.head_seq, "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq, "reason": self.reason,
            "problems": [{"seq": p.seq, "reason": p.reason, "table": p.table, "key": p.key}
                         for p in self.problems],
        }


# --- readers and writers -------------------------------------------------------------------------


class Reader:
    """Reads inside one transaction, so that everything read belongs to the same moment."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._cursors: list[Any] = []  # server-side cursors of streams still open (PostgreSQL)

    def _end(self) -> None:
        """Close the streams' server-side cursors before the transaction ends: closed later (a stream
        kept alive by a traceback), psycopg would send CLOSE inside whatever transaction the pooled
        connection is in by then, and fail it."""
        while self._cursors:
            self._cursors.pop().close()

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; (0, 64 zeros) for an empty journal."""
        row = self._conn.execute(
            select(_JOURNAL.c.seq, _JOURNAL.c.hash).order_by(_JOURNAL.c.seq.desc()).limit(1)
        ).first()
        return (row.seq, row.hash) if row is not None else (0, GENESIS_HASH)

    def state(self) -> LedgerState:
        """The registry as the projection tables hold it."""
        return load_state(self._conn)

    def snapshot(self, period: str | None = None) -> Snapshot:
        """Active records; accelerator rates as of `period` (the latest when None)."""
        return self.state().snapshot(period)

    def usage_view(self) -> tuple[str, frozenset[str], frozenset[str]]:
        """What a usage import checks its lines against: the consortium's period kind and the ids of
        every project and every pool (retired ones too), as `state()` holds them, read from those
        projection tables alone (building the whole state of a ledger of 10,000 projects takes half a
        second, and an import needs nothing else of it)."""
        ids = []
        for kind in ("project", "pool"):
            table = RECORD_TABLES[kind].__table__
            ids.append(frozenset(self._conn.execute(select(table.c.id)).scalars()))
        return self.period_kind(), ids[0], ids[1]

    def has_jobs(self) -> bool:
        """Whether any usage line names a job (one probe of the job index)."""
        t = attachment_table("usage_line").table
        return self._conn.execute(select(t.c.job).where(t.c.job.is_not(None)).limit(1)).first() is not None

    def usage_of_jobs(self, jobs: Sequence[str]) -> list[tuple[str, str, int, str]]:
        """(job, pool, start, device-hours as stored) of every usage line of these jobs, through the
        job index, a few hundred jobs a query."""
        t = attachment_table("usage_line").table
        out: list[tuple[str, str, int, str]] = []
        for i in range(0, len(jobs), _JOBS_PER_QUERY):
            part = list(jobs[i:i + _JOBS_PER_QUERY])
            query = select(t.c.job, t.c.pool, t.c.start, t.c.device_hours).where(t.c.job.is_not(None),
                                                                                  t.c.job.in_(part))
            out.extend(tuple(row) for row in self._conn.execute(query))
        return out

    def has_active(self, kind: str) -> bool:
        """Whether any record of `kind` is active (not retired), from its projection table alone."""
        table = RECORD_TABLES[kind].__table__
        query = select(table.c.id)
        if "retired_seq" in table.c:
            query = query.where(table.c.retired_seq.is_(None))
        return self._conn.execute(query.limit(1)).first() is not None

    def pool_accelerators(self) -> dict[str, str]:
        """Every pool's accelerator (retired pools too), from the pool projection alone."""
        table = RECORD_TABLES["pool"].__table__
        return dict(self._conn.execute(select(table.c.id, table.c.accelerator)).all())

    def period_kind(self) -> str:
        """The consortium's period kind (month, week or quarter), read from its projection row alone."""
        table = RECORD_TABLES["consortium"].__table__
        rows = [dict(row) for row in self._conn.execute(select(table)).mappings().all()]
        if not rows:
            return Consortium().period
        try:
            return _row_record("consortium", rows[0]).record.period  # type: ignore[attr-defined]
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError):
            return self.state().consortium.period  # reports the damage as `state()` does

    def record_states(self, kind: str, include_retired: bool = False) -> tuple[RecordState, ...]:
        """Records of `kind` (also "consortium" or "policy") with their seqs, sorted by id."""
        items = self.state().collection(kind)
        return tuple(items[i] for i in sorted(items) if include_retired or items[i].active)

    def records(self, kind: str, include_retired: bool = False) -> list[dict[str, Any]]:
        """Plain records of `kind` sorted by id; a retired one (listed with `include_retired`) also has
        `retired_seq`. Accelerators carry their latest rate. `record_states` gives every seq."""
        return [
            {**rs.record.to_record(), **({} if rs.active else {"retired_seq": rs.retired_seq})}
            for rs in self.record_states(kind, include_retired)
        ]

    def entries_for(self, kind: str, record_id: str) -> list[Entry]:
        """The entries that set, added, changed or retired one record, oldest first."""
        kinds = sorted(k for k in STATE_ENTRY_KINDS if k.split(".", 1)[0] == kind)
        query = select(_JOURNAL).where(_JOURNAL.c.kind.in_(kinds)).order_by(_JOURNAL.c.seq)
        found = []
        for entry in map(_entry, self._conn.execute(query)):
            payload = entry.payload
            target = payload.get("id") or (payload.get("record") or {}).get("id", kind)
            if target == record_id:
                found.append(entry)
        return found

    def retired_ids(self, kind: str) -> frozenset[str]:
        """Ids of `kind` that were retired; they can be neither added nor changed again."""
        return self.state().retired_ids(kind)

    def rates(self, accelerator: str | None = None) -> tuple[RateVersion, ...]:
        """Every rate version (of one accelerator, or all), in (accelerator, seq) order."""
        rates = self.state().rates
        names = [accelerator] if accelerator is not None else sorted(rates)
        return tuple(v for name in names for v in rates.get(name, ()))

    def entry(self, seq: int) -> Entry | None:
        row = self._conn.execute(select(_JOURNAL).where(_JOURNAL.c.seq == seq)).first()
        return _entry(row) if row is not None else None

    def entries(self, after: int = 0, before: int | None = None, limit: int | None = None,
                reverse: bool = False) -> list[Entry]:
        """Entries with after < seq (< before), oldest first or, with `reverse`, newest first."""
        query = select(_JOURNAL).where(_JOURNAL.c.seq > after)
        if before is not None:
            query = query.where(_JOURNAL.c.seq < before)
        query = query.order_by(_JOURNAL.c.seq.desc() if reverse else _JOURNAL.c.seq)
        if limit is not None:
            query = query.limit(limit)
        return [_entry(row) for row in self._conn.execute(query)]

    def entries_of_kind(self, kind: str) -> list[Entry]:
        """Every entry of one kind (e.g. "alloc.run"), oldest first."""
        query = select(_JOURNAL).where(_JOURNAL.c.kind == kind).order_by(_JOURNAL.c.seq)
        return [_entry(row) for row in self._conn.execute(query)]

    def state_at(self, seq: int) -> LedgerState:
        """The registry as it stood just after entry `seq`: the projections when no later entry
        changed the registry (usage imports and runs do not), else replayed from the journal."""
        later = self._conn.execute(
            select(_JOURNAL.c.seq).where(_JOURNAL.c.seq > seq, _JOURNAL.c.kind.in_(sorted(STATE_ENTRY_KINDS)))
            .limit(1)).first()
        if later is None:
            return self.state()
        query = _whole_journal().where(_JOURNAL.c.seq <= seq)
        return replay(_entry(row) for row in self._conn.execute(query))

    def attachment_rows(self, seq: int, table: str) -> list[dict[str, Any]]:
        """The rows attached to entry `seq` in `table`, in line order; decimals as `Decimal`."""
        spec = attachment_table(table)
        t = spec.table
        query = select(*[t.c[name] for name, _ in spec.columns]).where(t.c.seq == seq).order_by(t.c.line)
        decimals = [name for name, kind in spec.columns if kind == "decimal"]
        out = []
        for row in self._conn.execute(query).mappings().all():
            item = dict(row)
            for name in decimals:
                if item[name] is not None:
                    item[name] = dec(item[name])
            out.append(item)
        return out


    def attachment_stream(self, table: str, columns: Sequence[str], *, kind: str | None = None,
                          equal: Mapping[str, Any] | None = None,
                          at_most: Mapping[str, Any] | None = None) -> Iterator[tuple[Any, ...]]:
        """Rows of `table` as value tuples of `columns`, streamed in (seq, line) order (a few
        thousand rows in memory at a time); only rows of entries of `kind` when given, and only rows
        whose columns equal the values given in `equal` and are at most those in `at_most`. Decimals
        come as their stored text."""
        for rows in self.attachment_chunks(table, columns, kind=kind, equal=equal, at_most=at_most):
            yield from rows

    def attachment_chunks(self, table: str, columns: Sequence[str], *, kind: str | None = None,
                          equal: Mapping[str, Any] | None = None,
                          at_most: Mapping[str, Any] | None = None) -> Iterator[list[tuple[Any, ...]]]:
        """`attachment_stream`'s rows a list of a few thousand at a time (none empty)."""
        spec = attachment_table(table)
        t = spec.table
        query = select(*[t.c[name] for name in columns]).where(*self._filters(t, kind, equal, at_most))
        query = query.order_by(t.c.seq, t.c.line)
        plain = all(type(t.c[name].type) in (String, Integer) for name in columns)
        dialect = self._conn.dialect
        if dialect.name == "sqlite" and plain:
            # Straight from the driver's cursor, a chunk at a time: the rows are already plain tuples
            # of text and integers (those column types have no result processor on SQLite), and a
            # million of them cost a second less than through SQLAlchemy's rows.
            result = self._conn.execute(query)
            cursor = result.cursor
            try:
                while rows := cursor.fetchmany(_ATTACHMENT_CHUNK):
                    yield rows
            finally:
                result.close()
            return
        if dialect.name == "postgresql" and dialect.driver == "psycopg" and plain:
            # The same with psycopg: a server-side cursor of this transaction, read a chunk at a
            # time (psycopg makes text and integers itself); a third of the time of SQLAlchemy's rows.
            compiled = query.compile(dialect=dialect)
            cursor = self._conn.connection.dbapi_connection.cursor(name=f"pooler_rows_{next(_CURSORS)}")
            self._cursors.append(cursor)  # closed here, or by `_end` when the transaction ends first
            try:
                cursor.execute(str(compiled), compiled.params)
                while rows := cursor.fetchmany(_ATTACHMENT_CHUNK):
                    yield rows
            finally:
                if cursor in self._cursors:
                    self._cursors.remove(cursor)
                    cursor.close()
            return
        result = self._conn.execute(query.execution_options(yield_per=_ATTACHMENT_CHUNK))
        for rows in result.partitions():
            yield [tuple(row) for row in rows]

    def attachment_columns(self, table: str, columns: Sequence[str], *, kind: str | None = None,
                           equal: Mapping[str, Any] | None = None,
                           at_most: Mapping[str, Any] | None = None) -> Iterator[tuple[Sequence[Any], ...]]:
        """The rows of `attachment_chunks` some thousands at a time as columns (one sequence of
        values per column, none empty), in no promised order: for readers that only add up.

        On PostgreSQL (14 and later), when every column is text, the table is read in windows of
        `_COLUMN_BLOCKS` of its blocks (a TID range scan, the last window open-ended), and the server
        joins a window's rows' values with tabs into one text that is split here: a fifth of the
        client's time of a row at a time, and no sort. A window whose split does not give exactly one
        value per column and row (a value holding a tab) or that holds a NULL is read row by row.
        The windows are separate statements: they add up to the table only when they all see one
        snapshot, so this way is taken only in a REPEATABLE READ or SERIALIZABLE transaction (the
        readers' own), not on a connection in autocommit; otherwise the rows come from
        `attachment_chunks` (whose server-side cursor needs a transaction: in autocommit it fails
        rather than add up rows of several snapshots)."""
        spec = attachment_table(table)
        t = spec.table
        conn = self._conn
        if (conn.dialect.name != "postgresql" or not columns
                or not all(type(t.c[name].type) is String for name in columns)
                or (conn.dialect.server_version_info or (0,)) < (14,)
                or getattr(conn.connection.dbapi_connection, "autocommit", False)  # each statement its own
                or conn.exec_driver_sql("SELECT pg_catalog.current_setting('transaction_isolation')").scalar()
                not in ("repeatable read", "serializable")):
            for chunk in self.attachment_chunks(table, columns, kind=kind, equal=equal, at_most=at_most):
                yield tuple(zip(*chunk))
            return
        from sqlalchemy import and_, literal_column, or_, text as sql_text

        values = [t.c[name] for name in columns]
        tab = literal_column("E'\\t'")  # an E'' string reads the same whatever standard_conforming_strings
        joined = [values[0]]
        for value in values[1:]:
            joined += [tab, value]
        quote = conn.dialect.identifier_preparer.quote
        low = sql_text(f"{quote(t.name)}.ctid >= CAST(:low AS tid)")
        high = sql_text(f"{quote(t.name)}.ctid < CAST(:high AS tid)")
        filters = self._filters(t, kind, equal, at_most)
        aggregate = [func.count(), func.count().filter(or_(*[v.is_(None) for v in values])),
                     func.string_agg(func.concat(*joined), tab)]
        blocks = conn.exec_driver_sql(
            f"SELECT pg_relation_size(%(t)s) / current_setting('block_size')::int", {"t": t.name}).scalar()
        width = len(columns)
        for first in range(0, max(blocks, 1), _COLUMN_BLOCKS):
            params = {"low": f"({first},0)", "high": f"({first + _COLUMN_BLOCKS},0)"}
            where = [*filters, low]
            if first + _COLUMN_BLOCKS < blocks:  # the last window is open-ended: rows in blocks added since
                where.append(high)
            count, nulls, text = conn.execute(select(*aggregate).where(and_(*where)), params).one()
            if not count:
                continue
            pieces = text.split("\t") if not nulls else ()
            if len(pieces) == width * count:
                yield tuple(pieces[i::width] for i in range(width))
            else:
                yield tuple(zip(*conn.execute(select(*values).where(and_(*where)), params).all()))

    def attachment_sums(self, table: str, value: str, by: Sequence[str], *, kind: str | None = None,
                        equal: Mapping[str, Any] | None = None,
                        at_most: Mapping[str, Any] | None = None) -> Iterator[tuple[tuple[Any, ...], int, Decimal]]:
        """Exact sums of the decimal column `value` of `table`, grouped by the columns `by`, summed by
        the database: ((group values), rows, sum) in group order, streamed. Filters as for
        `attachment_stream`, plus `equal` (column -> value).

        Exact whatever the database: on SQLite each decimal text of up to nine decimals (and nine
        integer digits) is read as a whole number of 1e-9 units and summed as a 64-bit integer; any
        other text is handed back and added here as a Decimal; on an integer overflow the sums are
        made here from a stream of the rows. On PostgreSQL the text is summed as NUMERIC."""
        spec = attachment_table(table)
        if dict(spec.columns).get(value) != "decimal":
            raise StoreError(f"{table}.{value} is not a decimal column")
        t = spec.table
        filters = self._filters(t, kind, equal, at_most)
        keys = [t.c[name] for name in by]
        dialect = self._conn.dialect.name
        if dialect == "sqlite":
            try:
                yield from self._sqlite_sums(t, value, keys, filters)
                return
            except OperationalError as exc:
                if "integer overflow" not in str(exc.orig):
                    raise
        elif dialect == "postgresql":
            from sqlalchemy import Numeric, cast

            query = (select(*keys, func.count(), func.sum(cast(t.c[value], Numeric))).where(*filters)
                     .group_by(*keys).order_by(*keys).execution_options(yield_per=_ATTACHMENT_CHUNK))
            for row in self._conn.execute(query):
                yield tuple(row[:-2]), row[-2], dec(row[-1])
            return
        yield from self._python_sums(t, value, keys, filters)

    def _sqlite_sums(self, t: Any, value: str, keys: list[Any], filters: list[Any]):
        from sqlalchemy import literal_column

        quote = self._conn.dialect.identifier_preparer.quote
        v = f"{quote(t.name)}.{quote(value)}"
        dot = f"instr({v} || '.', '.')"
        nano_sql = (f"(CASE WHEN {v} GLOB '[0-9]*' AND NOT {v} GLOB '*[^0-9.]*' AND {dot} <= 10 "
                    f"AND length({v}) - {dot} <= 9 THEN CAST(substr({v}, 1, {dot} - 1) AS INTEGER) * 1000000000 "
                    f"+ CAST(substr(substr({v}, {dot} + 1) || '000000000', 1, 9) AS INTEGER) END)")
        nano = literal_column(nano_sql)
        other = func.group_concat(literal_column(f"CASE WHEN {nano_sql} IS NULL THEN {v} END"),
                                  literal_column("char(10)"))
        query = (select(*keys, func.count(), func.sum(nano), other).where(*filters)
                 .group_by(*keys).order_by(*keys).execution_options(yield_per=_ATTACHMENT_CHUNK))
        rows = self._conn.execute(query)
        for row in rows:
            total = _from_nano(row[-2] or 0)
            if row[-1] is not None:
                for text in row[-1].split("\n"):
                    total = _EXACT.add(total, stored_decimal(text))
            yield tuple(row[:-3]), row[-3], total

    def _python_sums(self, t: Any, value: str, keys: list[Any], filters: list[Any]):
        query = (select(*keys, t.c[value]).where(*filters).order_by(*keys)
                 .execution_options(yield_per=_ATTACHMENT_CHUNK))
        current: tuple[Any, ...] | None = None
        count, total = 0, Decimal(0)
        for row in self._conn.execute(query):
            key = tuple(row[:-1])
            if key != current:
                if current is not None:
                    yield current, count, total
                current, count, total = key, 0, Decimal(0)
            count += 1
            total = _EXACT.add(total, stored_decimal(row[-1]))
        if current is not None:
            yield current, count, total

    @staticmethod
    def _filters(t: Any, kind: str | None, equal: Mapping[str, Any] | None,
                 at_most: Mapping[str, Any] | None) -> list[Any]:
        filters = []
        if kind is not None:
            filters.append(t.c.seq.in_(select(_JOURNAL.c.seq).where(_JOURNAL.c.kind == kind)))
        for name, wanted in (equal or {}).items():
            filters.append(t.c[name] == wanted)
        for name, bound in (at_most or {}).items():
            filters.append(t.c[name] <= bound)
        return filters


_JOBS_PER_QUERY = 500  # job ids per `usage_of_jobs` query (SQLite takes up to 32,766 parameters)

# Sums of finite decimals in this context are exact: no precision limit is ever reached.
_EXACT = DecimalContext(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _from_nano(nano: int) -> Decimal:
    """Whole 1e-9 units as the exact Decimal of canonical text ("2.5", "3", never "3.000000000")."""
    whole, part = divmod(abs(nano), 1_000_000_000)
    text = f"{whole}.{part:09d}".rstrip("0") if part else str(whole)
    return Decimal("-" + text if nano < 0 and (whole or part) else text)


def stored_decimal(text: Any) -> Decimal:
    """A decimal quantity as the ledger stores it (text), checked: anything else is a StoreError."""
    try:
        number = dec(text)
    except (InvalidOperation, TypeError, ValueError):
        number = None
    if number is None or not number.is_finite():
        raise StoreError(f"the ledger holds {text!r} where a decimal quantity belongs; run `pooler ledger verify`")
    return number


def check_actor(actor: object) -> None:
    """Who writes an entry: one line of printable text, without spaces around it (review: a newline
    in POOLER_ACTOR was recorded, and broke every journal line that shows it)."""
    if not isinstance(actor, str) or not actor.strip():
        raise EntryRejected("every entry needs an actor (who is writing, e.g. ana@pcl)")
    if not actor.isprintable() or actor != actor.strip():
        raise EntryRejected(f"the actor {actor!r} is not one line of printable text without spaces "
                            "around it (POOLER_ACTOR sets it)")


class Writer(Reader):
    """One writer transaction. Appends are applied to the state in memory and written at once; the
    transaction commits when the `with` block ends and rolls back if it raises."""

    def __init__(self, conn: Connection, actor: str, clock: Clock) -> None:
        super().__init__(conn)
        check_actor(actor)
        self.actor = actor
        self._clock = clock
        self._head: tuple[int, str] | None = None
        self._state: LedgerState | None = None
        self._written: list[Entry] = []
        self._open = True
        self._broken = False
        self._deferred_fk = False

    def rollback(self) -> None:
        """Discard everything appended so far and end the transaction now (e.g. a dry run); the writer
        cannot be used afterwards, and leaving the `with` block then commits nothing."""
        self._open = False
        transaction = self._conn.get_transaction()
        if transaction is not None and transaction.is_active:
            transaction.rollback()

    @property
    def written(self) -> tuple[Entry, ...]:
        """The entries appended so far in this transaction."""
        return tuple(self._written)

    def head(self) -> tuple[int, str]:
        # The write lock is held for the whole transaction, so the head can only move by our appends.
        if self._head is None:
            self._head = super().head()
        return self._head

    def state(self) -> LedgerState:
        if self._state is None:
            self._state = super().state()
        return self._state

    def append(self, kind: str, payload: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
               attachments: Mapping[str, Iterable[Any]] | None = None) -> Entry:
        """Append one entry (and its attached rows) and update the projections.

        `payload` is a table of plain values (Decimals allowed, floats refused). For registry kinds it
        is checked and normalised by the reducer; an entry the reducer refuses raises `EntryRejected`
        and writes nothing. `attachments` maps a registered attachment table to its rows (mappings, or
        a `RowChunks` of value tuples); the payload then records
        `{"attachments": {table: {"rows": n, "digest": sha256}}}`.

        `payload` may also be a function, called once the attached rows have all been read: a batch
        read in one pass (a usage file) knows its totals only at the end. If it raises, the writer is
        spoiled and nothing of this transaction commits.

        On SQLite the rows are inserted as they are read, before the journal row (the foreign key to
        it is checked at commit, `PRAGMA defer_foreign_keys`); elsewhere they are spooled to a
        temporary file and inserted after it. Either way it is one transaction.
        """
        if not self._open:
            raise StoreError("this writer's transaction has ended; open a new `ledger.writer(...)`")
        check_kind(kind)
        deferred = callable(payload)
        if payload is not None and not deferred and not isinstance(payload, Mapping):
            raise EntryRejected(f"{kind}: the payload must be a table of named values")
        state_kind = changes_state(kind)
        body = None if deferred else self._body(kind, payload, state_kind)
        seq, prev_hash = self.head()
        batches = []
        sqlite = self._conn.dialect.name == "sqlite"
        # Rows inserted before the journal row sit inside a savepoint, so an append that fails
        # part-way (a bad row in the 40th chunk, a payload function that refuses) takes them back
        # and leaves the writer as it was, as a refused append always has.
        savepoint = None
        try:
            digests = {}
            for name in sorted(attachments or ()):
                spec = attachment_table(name)
                # SQLite checks the rows' key to the journal at commit (deferred); on PostgreSQL a
                # table with no such key (usage_line, schema version 2) takes its rows by COPY as
                # they are read; other tables there wait for the journal row (spooled meanwhile).
                insert_rows: Any = None
                if sqlite:
                    self._defer_foreign_keys()
                    insert_rows = _row_inserter(self._conn, spec)
                elif not _has_foreign_key(self._conn, spec.table.name):
                    insert_rows = _row_copier(self._conn, spec)
                if insert_rows is not None and savepoint is None:
                    savepoint = self._conn.begin_nested()
                spool = _Spool(spec, insert_rows)
                batches.append(spool)
                count, digest = spool.fill(attachments[name], seq + 1)  # type: ignore[index]
                digests[name] = {"rows": count, "digest": digest}
            if deferred:
                payload = payload()  # type: ignore[operator]
                if payload is not None and not isinstance(payload, Mapping):
                    raise EntryRejected(f"{kind}: the payload must be a table of named values")
                body = self._body(kind, payload, state_kind)
            assert body is not None
            if attachments:
                body["attachments"] = digests
            entry = Entry.create(seq=seq + 1, time=format_time(self._clock()), actor=self.actor, kind=kind,
                                 payload=body, prev_hash=prev_hash)
            if state_kind:
                old = self.state()
                new = apply_entry(old, entry)  # raises EntryRejected before anything is written
        except BaseException:
            for spool in batches:
                spool.close()
            if savepoint is not None:
                try:
                    savepoint.rollback()
                except BaseException:
                    self._broken = True
                    raise
            raise
        try:
            self._write(entry, batches, (old, new) if state_kind else None)
            if savepoint is not None:
                savepoint.commit()
        except BaseException:
            self._broken = True
            raise
        finally:
            for spool in batches:
                spool.close()
        self._head = (entry.seq, entry.hash)
        self._written.append(entry)
        return entry

    @staticmethod
    def _body(kind: str, payload: Mapping[str, Any] | None, state_kind: Any) -> dict[str, Any]:
        body = plain_json(dict(payload) if payload is not None else {}, "payload")
        if "attachments" in body:
            raise EntryRejected("the payload key 'attachments' is reserved for attached row digests")
        if state_kind:
            body = normalize_payload(kind, body)
        return body

    def _defer_foreign_keys(self) -> None:
        # Until this transaction ends (SQLite resets it at COMMIT and ROLLBACK): rows may name an
        # entry that is written after them; a row whose entry never comes fails the COMMIT.
        if not self._deferred_fk:
            self._conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            self._deferred_fk = True

    def _write(self, entry: Entry, batches: list["_Spool"], change: tuple[LedgerState, LedgerState] | None) -> None:
        try:
            self._conn.execute(insert(_JOURNAL).values(
                seq=entry.seq, time=entry.time, actor=entry.actor, kind=entry.kind,
                payload=entry.payload_json, prev_hash=entry.prev_hash, hash=entry.hash,
            ))
            for spool in batches:
                if spool.inserted:
                    continue
                insert_rows = _row_copier(self._conn, spool.spec) or _row_inserter(self._conn, spool.spec)
                for chunk in spool.chunks():
                    insert_rows(chunk)
                finish = getattr(insert_rows, "finish", None)
                if finish is not None:
                    finish()
            if change is not None:
                write_changes(self._conn, *change)
                self._state = change[1]
        except BaseException:
            # Part of the entry may be in the transaction; it must not commit even if the caller
            # swallows this exception.
            self._broken = True
            raise


class _Spool:
    """One attachment table's rows for an entry, in a single pass: each row is checked and made
    canonical, digested, and kept as an insert tuple (seq, line, *values), chunk by chunk. With an
    `insert` function each full chunk is inserted at once (SQLite); otherwise full chunks go to a
    temporary file, inserted once the journal row is written. Either way memory holds one chunk
    however many rows there are, and the digest is known when the pass ends, before the journal row
    (whose payload carries it) is written."""

    def __init__(self, spec: Any, insert: Callable[[list[tuple[Any, ...]]], None] | None = None) -> None:
        self.spec = spec
        self._insert = insert
        self._file: Any = None
        self._tail: list[tuple[Any, ...]] = []

    @property
    def inserted(self) -> bool:
        return self._insert is not None

    def fill(self, rows: Iterable[Any], seq: int) -> tuple[int, str]:
        digest = hashlib.sha256()
        texts: list[str] = []
        chunk: list[tuple[Any, ...]] = []
        line = 0
        if isinstance(rows, RowChunks):
            encode_rows = self.spec.rows_encoder()
            caches = self.spec.new_caches()
            for block in rows:
                line = encode_rows(block, seq, line, texts, chunk, caches)
                if len(chunk) >= _ATTACHMENT_CHUNK:
                    self._flush(digest, texts, chunk)
                    texts, chunk = [], []
        else:
            encode = self.spec.encoder()
            for line, row in enumerate(rows, start=1):
                text, values = encode(row, seq, line)
                texts.append(text)
                chunk.append(values)
                if len(chunk) >= _ATTACHMENT_CHUNK:
                    self._flush(digest, texts, chunk)
                    texts, chunk = [], []
        if texts:
            texts.append("")
            digest.update("\n".join(texts).encode("utf-8"))
        if self._insert is not None:
            if chunk:
                self._insert(chunk)
                chunk = []
            finish = getattr(self._insert, "finish", None)
            if finish is not None:
                finish()  # a COPY ends here, before the journal row is written on the connection
        self._tail = chunk
        return line, digest.hexdigest()

    def _flush(self, digest: Any, texts: list[str], chunk: list[tuple[Any, ...]]) -> None:
        texts.append("")
        digest.update("\n".join(texts).encode("utf-8"))
        if self._insert is not None:
            self._insert(chunk)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="pooler-rows-")
        pickle.dump(chunk, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        if self._file is not None:
            self._file.seek(0)
            while True:
                try:
                    yield pickle.load(self._file)
                except EOFError:
                    break
        if self._tail:
            yield self._tail

    def close(self) -> None:
        self._tail = []
        abort = getattr(self._insert, "abort", None)
        if abort is not None:
            abort()  # a COPY still open (the append failed part-way) is ended as failed
        if self._file is not None:
            self._file.close()
            self._file = None


def _row_inserter(conn: Connection, spec: Any):
    """`insert(chunk)` for a list of (seq, line, *values) tuples: the driver's executemany with a
    positional statement when the paramstyle allows, else SQLAlchemy's insert with mappings."""
    names = ["seq", "line", *(name for name, _ in spec.columns)]
    style = conn.dialect.paramstyle
    marks = {"qmark": lambda i: "?", "format": lambda i: "%s", "pyformat": lambda i: "%s",
             "numeric": lambda i: f":{i}", "numeric_dollar": lambda i: f"${i}"}.get(style)
    if marks is None:
        statement = insert(spec.table)

        def insert_mappings(chunk: list[tuple[Any, ...]]) -> None:
            conn.execute(statement, [dict(zip(names, values)) for values in chunk])
        return insert_mappings
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(spec.table.name)} ({', '.join(quote(n) for n in names)}) VALUES "
    sql = head + f"({', '.join(marks(i) for i in range(1, len(names) + 1))})"
    per_statement = _rows_per_statement(conn, len(names)) if style == "qmark" else 1
    if per_statement <= 1:
        def insert_tuples(chunk: list[tuple[Any, ...]]) -> None:
            conn.exec_driver_sql(sql, chunk)
        return insert_tuples
    # SQLite: many rows per INSERT ... VALUES (...), (...), bound as one flat parameter list. The
    # driver then steps once per few hundred rows instead of once per row, which roughly halves the
    # cost of a big batch.
    many_sql = head + ", ".join(["(" + ", ".join("?" * len(names)) + ")"] * per_statement)

    def insert_rows(chunk: list[tuple[Any, ...]]) -> None:
        whole = len(chunk) - len(chunk) % per_statement
        for start in range(0, whole, per_statement):
            conn.exec_driver_sql(many_sql, tuple(chain.from_iterable(chunk[start:start + per_statement])))
        if whole < len(chunk):
            conn.exec_driver_sql(sql, chunk[whole:])
    return insert_rows


def _has_foreign_key(conn: Connection, table: str) -> bool:
    """Whether `table` has a foreign key in this PostgreSQL database (as its schema version made it:
    usage_line has none from version 2 on; a writer may be on an older ledger in tests and tools)."""
    return conn.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%(t)s) AND contype = 'f')",
        {"t": table}).scalar() is not False


def _row_copier(conn: Connection, spec: Any) -> "_CopyRows | None":
    """PostgreSQL through psycopg: a `_CopyRows` that sends chunks of (seq, line, *values) tuples
    through one `COPY ... FROM STDIN` (text format) on the writer's own connection, so inside its
    transaction: a COPY that fails leaves the transaction failed, and the writer rolls it all back.
    Several times faster than batches of INSERTs (no statement per row, no reply per batch). None
    for other databases and drivers (they insert with `_row_inserter`)."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        return None
    driver = conn.connection.driver_connection
    if driver is None or not hasattr(driver, "cursor"):
        return None
    quote = conn.dialect.identifier_preparer.quote
    names = ["seq", "line", *(name for name, _ in spec.columns)]
    sql = f"COPY {quote(spec.table.name)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    nullable = [i + 2 for i, (name, _) in enumerate(spec.columns) if spec.nullable(name)]
    return _CopyRows(driver, sql, len(names), nullable)


# COPY's text format: a value is written as it is unless it holds one of these (escaped as below);
# NULL is \N. Other characters, control characters included, may stand as they are.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class _CopyRows:
    """One `COPY ... FROM STDIN`, opened by the first chunk: `copy(chunk)` per chunk, then `finish()`;
    `abort()` ends an open COPY as failed (the caller then rolls back). A driver error is raised as
    SQLAlchemy's matching exception (`DataError`, `OperationalError`...), as the same failure of an
    INSERT would be.

    Each chunk goes as one text: every row one f-string (`str` of each int, the text of each text,
    \\N for NULL), and one check of the whole text proves that no value needs escaping (the tabs and
    newlines are exactly the separators, no carriage return, and the only backslashes are the NULLs').
    Otherwise the chunk is written value by value with the escapes."""

    def __init__(self, driver: Any, sql: str, width: int, nullable: list[int]) -> None:
        self._driver, self._sql, self._width, self._nullable = driver, sql, width, nullable
        self._cursor: Any = None
        self._block: Any = None
        self._stream: Any = None
        fields = "\\t".join("{NULL if r[%d] is None else r[%d]}" % (i, i) if i in nullable else "{r[%d]}" % i
                             for i in range(width))
        self._lines = eval(f"lambda chunk: ''.join([f'{fields}\\n' for r in chunk])",  # noqa: S307 - our own text
                           {"NULL": "\\N"})

    def __call__(self, chunk: list[tuple[Any, ...]]) -> None:
        import psycopg
        from sqlalchemy.exc import DBAPIError

        try:
            if self._stream is None:
                self._cursor = self._driver.cursor()
                self._block = self._cursor.copy(self._sql)
                self._stream = self._block.__enter__()
            self._stream.write(self._text(chunk))
        except psycopg.Error as exc:
            raise DBAPIError.instance(self._sql, None, exc, psycopg.Error) from exc

    def _text(self, chunk: list[tuple[Any, ...]]) -> str:
        text = self._lines(chunk)
        nulls = sum([row[i] for row in chunk].count(None) for i in self._nullable)
        n = len(chunk)
        if (text.count("\t") == n * (self._width - 1) and text.count("\n") == n and "\r" not in text
                and text.count("\\") == nulls):
            return text
        return "".join("\t".join("\\N" if v is None else str(v).translate(_COPY_ESCAPES) for v in row) + "\n"
                       for row in chunk)

    def finish(self) -> None:
        """End the COPY: the rows are in (or its failure is raised)."""
        self._end(None)

    def abort(self) -> None:
        """End an open COPY as failed; the caller rolls the transaction back, whatever happens here."""
        try:
            self._end(RuntimeError("the append stopped"))
        except Exception:  # noqa: BLE001 - the COPY is over either way
            pass

    def _end(self, failure: Exception | None) -> None:
        import psycopg
        from sqlalchemy.exc import DBAPIError

        if self._stream is None:
            return
        block, cursor = self._block, self._cursor
        self._stream = self._block = self._cursor = None
        try:
            block.__exit__(type(failure) if failure else None, failure, None)
        except psycopg.Error as exc:
            raise DBAPIError.instance(self._sql, None, exc, psycopg.Error) from exc
        finally:
            cursor.close()


def _rows_per_statement(conn: Connection, columns: int) -> int:
    """How many rows one multi-row INSERT may carry on this SQLite connection (bound parameters
    are limited per statement: 32766 by default, 999 in old builds)."""
    try:
        limit = conn.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    except (AttributeError, sqlite3.Error):  # Python < 3.11 or another driver: stay safe
        limit = 999
    return max(1, min(_ROWS_PER_INSERT, limit // columns))


# --- the ledger ----------------------------------------------------------------------------------


def _refuse_memory(url: URL) -> None:
    """An in-memory SQLite database is gone when the process ends: no place for a ledger (review:
    `--db sqlite:// init` said "Created an empty ledger at sqlite://")."""
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and (database in ("", ":memory:") or (database.startswith("file:") and (
            ":memory:" in database or url.query.get("mode") == "memory"))):
        raise StoreUnavailable("an in-memory SQLite database (sqlite://) is gone when the command ends: "
                               "give --db a file path")


class Ledger:
    """A ledger database. Create one with `Ledger.init`, open one with `Ledger.open`; `close()` it (or
    use it as a context manager) when done. Not to be shared between processes: open it in each."""

    def __init__(self, url: URL, engine: Engine, backend: Backend, clock: Clock | None = None) -> None:
        self.url = url
        self._engine = engine
        self._backend = backend
        self._clock = clock or utc_now

    @property
    def read_only(self) -> bool:
        """Opened with `Ledger.open(..., read_only=True)`: nothing can be written through it."""
        return self._backend.read_only

    @property
    def name(self) -> str:
        """The ledger as error messages name it: its file path, or its URL without password."""
        return describe(self.url)

    # --- opening ---

    @classmethod
    def init(cls, target: str | os.PathLike[str] | URL, *, actor: str, clock: Clock | None = None,
             migrations: Sequence[Migration] = MIGRATIONS) -> "Ledger":
        """Create a new ledger at `target` (a path or an SQLAlchemy URL); its first entry is
        `ledger.init` with the schema version. `LedgerExists` if one is already there. `migrations`
        is for tests and tools (a ledger as an older release made it)."""
        check_migrations(migrations)
        check_actor(actor)  # before the file is created, so that a bad call leaves nothing behind
        url = database_url(target)
        backend = backend_for(url)
        path = sqlite_file(url)
        _refuse_memory(url)
        if path is not None:
            if path.is_dir():
                raise StoreUnavailable(f"cannot create a ledger at {path}: it is a directory")
            if not path.parent.is_dir():
                raise StoreUnavailable(f"cannot create a ledger at {path}: the directory {path.parent} does not exist")
        ledger = cls(url, open_engine(url, backend), backend, clock)
        try:
            with ledger._transaction(write=True) as conn:
                version = read_version(conn)
                if version is not None:
                    raise LedgerExists(
                        f"{ledger.name} already holds a pooler ledger (schema version {version}); "
                        "use it as it is, or choose another --db"
                    )
                # any table at all: a ledger is made in a database of its own, not beside another
                # program's tables (review: `init` of an unrelated SQLite file added pooler's tables
                # to it and said "Created an empty ledger")
                tables = sorted(inspect(conn).get_table_names())
                if tables:
                    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
                    raise StoreError(f"{ledger.name} is not empty (it has tables {shown}) "
                                     "and is not a pooler ledger; choose another --db")
                run_migrations(conn, backend, migrations, 0)
                Writer(conn, actor, ledger._clock).append("ledger.init", {"schema_version": migrations[-1].version})
        except BaseException:
            # The file stays even if this process created it: another `init` may have won the race
            # and filled it, and deleting it would lose that ledger.
            ledger.close()
            raise
        return ledger

    @classmethod
    def open(cls, target: str | os.PathLike[str] | URL, *, clock: Clock | None = None, actor: str = "pooler",
             migrations: Sequence[Migration] = MIGRATIONS, read_only: bool = False) -> "Ledger":
        """Open an existing ledger, migrating it first if it is older than this code (the migration
        is recorded as a `ledger.migrate` entry by `actor`). `LedgerNotFound` when there is none;
        `SchemaTooNew` when a newer pooler wrote it. `migrations` is for tests and tools.

        `read_only`: for commands that only read. Nothing is written, ever: an SQLite file is opened
        with `mode=ro` (or as immutable, `db.read_only_file`), not switched to WAL, and PostgreSQL
        transactions are READ ONLY; `writer()` is refused. An older ledger is not migrated: it is
        read as it is when every migration it lacks leaves what readers read unchanged
        (`Migration.readable_unmigrated`), else refused, saying that it must be migrated first."""
        check_migrations(migrations)
        url = database_url(target)
        backend = backend_for(url)
        path = sqlite_file(url)
        _refuse_memory(url)
        if path is not None and not path.exists():
            # Checked before connecting: SQLite would otherwise create an empty file.
            raise LedgerNotFound(
                f"no ledger at {path}: the file does not exist (create one with `pooler init`, "
                "or point --db or POOLER_DB at an existing ledger)"
            )
        if read_only:
            backend.open_read_only(url)
        ledger = cls(url, open_engine(url, backend), backend, clock)
        try:
            with ledger._transaction() as conn:
                version = read_version(conn)
            if version is None:
                raise LedgerNotFound(f"{ledger.name} is not a pooler ledger (it has no schema version); "
                                     "create one with `pooler init`")
            latest = migrations[-1].version
            if version > latest:
                raise SchemaTooNew(
                    f"{ledger.name} has schema version {version}, newer than this pooler understands "
                    f"({latest}); upgrade pooler to use it", found=version, supported=latest,
                )
            if version < latest and read_only:
                ledger._check_readable(version, migrations)
            elif version < latest:
                ledger._migrate(migrations, actor)
        except BaseException:
            ledger.close()
            raise
        return ledger

    def _check_readable(self, version: int, migrations: Sequence[Migration]) -> None:
        """A read-only open of a ledger older than this code: fine when every migration it lacks
        leaves what readers read as it was; else the one clear sentence of what to do."""
        needed = [m for m in migrations if m.version > version and not m.readable_unmigrated]
        if needed:
            latest = migrations[-1].version
            raise StoreError(
                f"the ledger {self.name} has schema version {version}, older than this pooler's ({latest}), "
                f"and this command only reads: it must first be migrated ({needed[0].description}), which "
                "writes to it; any pooler command that writes, run where it may write (on a copy, to keep "
                "this one as it is), migrates it")

    def _migrate(self, migrations: Sequence[Migration], actor: str) -> None:
        with self._transaction(write=True) as conn:
            current = read_version(conn) or 0  # another process may have migrated meanwhile
            applied = run_migrations(conn, self._backend, migrations, current)
            if applied:
                Writer(conn, actor, self._clock).append("ledger.migrate", {
                    "from_version": current,
                    "to_version": applied[-1],
                    "migrations": [m.description for m in migrations if m.version in applied],
                })

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ---

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        if write and self.read_only:
            raise StoreError(f"the ledger {self.name} was opened read-only: nothing can be written through it")
        try:
            with self._connected(write) as conn:
                yield conn
        except BaseException:
            self._backend.check_unchanged(self.name)  # a torn read's error is explained as such
            raise
        self._backend.check_unchanged(self.name)

    @contextmanager
    def _connected(self, write: bool) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{WRITE_OPTION: True})
                else:
                    conn.execution_options(**self._backend.reader_options())
                with conn.begin():
                    if write:
                        self._backend.lock_for_write(conn)
                    yield conn
        except OperationalError as exc:
            raise StoreUnavailable(self._explain(exc)) from exc
        except PendingRollbackError as exc:
            # a statement after the connection was lost, past a first error caught on the way
            # (review: `ledger verify` while the server stopped was a traceback)
            raise StoreUnavailable(f"cannot use the ledger {self.name}: the connection to the database "
                                   "was lost (did the server stop?); try again") from exc

    def _explain(self, exc: OperationalError) -> str:
        detail = str(exc.orig) if exc.orig is not None else str(exc)
        path = sqlite_file(self.url)
        if path is not None and "readonly database" in detail and not self.read_only:
            # (SQLITE_READONLY: the file, or the folder where WAL keeps its -wal and -shm files)
            return (f"cannot write to the ledger {self.name}: pooler may not write to it or to its folder "
                    f"{path.parent} (commands that only read, such as `ledger verify`, work)")
        if "locked" in detail or "busy" in detail:
            return (f"the ledger {self.name} stayed busy for more than {BUSY_TIMEOUT_SECONDS} s "
                    "(another pooler is writing to it); try again")
        if "connection is closed" in detail or "connection is lost" in detail or "terminating connection" in detail:
            return (f"cannot use the ledger {self.name}: the connection to the database was lost (did the "
                    f"server stop?): {detail.splitlines()[0]}")
        return f"cannot use the ledger {self.name}: {detail}{connection_hint(detail)}"

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """A read transaction: everything read through it belongs to one moment of the ledger."""
        with self._transaction() as conn:
            reader = Reader(conn)
            try:
                yield reader
            finally:
                reader._end()

    @contextmanager
    def writer(self, actor: str) -> Iterator[Writer]:
        """One write transaction (BEGIN IMMEDIATE on SQLite): commits at the end of the block, rolls
        back if it raises. Writers from several processes queue up; none is lost."""
        with self._transaction(write=True) as conn:
            writer = Writer(conn, actor, self._clock)
            try:
                yield writer
                if writer._broken:
                    raise StoreError("a write failed part-way, so the whole transaction was rolled back "
                                     "and nothing was recorded")
            finally:
                writer._open = False
                writer._end()

    # --- reading (each call is its own read transaction) ---

    def schema_version(self) -> int:
        with self._transaction() as conn:
            return read_version(conn) or 0

    def head(self) -> tuple[int, str]:
        with self.reader() as r:
            return r.head()

    def state(self) -> LedgerState:
        with self.reader() as r:
            return r.state()

    def snapshot(self, period: str | None = None) -> Snapshot:
        with self.reader() as r:
            return r.snapshot(period)

    def records(self, kind: str, include_retired: bool = False) -> list[dict[str, Any]]:
        with self.reader() as r:
            return r.records(kind, include_retired)

    def record_states(self, kind: str, include_retired: bool = False) -> tuple[RecordState, ...]:
        with self.reader() as r:
            return r.record_states(kind, include_retired)

    def entries_for(self, kind: str, record_id: str) -> list[Entry]:
        with self.reader() as r:
            return r.entries_for(kind, record_id)

    def rates(self, accelerator: str | None = None) -> tuple[RateVersion, ...]:
        with self.reader() as r:
            return r.rates(accelerator)

    def entry(self, seq: int) -> Entry | None:
        with self.reader() as r:
            return r.entry(seq)

    def attachment_rows(self, seq: int, table: str) -> list[dict[str, Any]]:
        with self.reader() as r:
            return r.attachment_rows(seq, table)

    def usage_of_jobs(self, jobs: Sequence[str]) -> list[tuple[str, str, int, str]]:
        with self.reader() as r:
            return r.usage_of_jobs(jobs)

    def entries(self, after: int = 0, limit: int | None = None, reverse: bool = False,
                before: int | None = None) -> Iterator[Entry]:
        """Entries with seq > `after` (and < `before`), oldest first or newest first with `reverse`.

        Read a page at a time, each page in its own short transaction, so a long iteration never holds
        the database; the journal is append-only, so pages cannot disagree with each other."""
        remaining = limit
        low, high = after, before
        while remaining is None or remaining > 0:
            size = _ENTRY_PAGE if remaining is None else min(_ENTRY_PAGE, remaining)
            with self.reader() as r:
                page = r.entries(after=low, before=high, limit=size, reverse=reverse)
            yield from page
            if len(page) < size:
                return
            if remaining is not None:
                remaining -= len(page)
            if reverse:
                high = page[-1].seq
            else:
                low = page[-1].seq

    def rebuild_state(self) -> LedgerState:
        """The registry state replayed from the journal alone (the projections are not read)."""
        with self._transaction() as conn:
            return replay(_entry(row) for row in conn.execute(_whole_journal()))

    # --- verification ---

    def verify(self, checkpoint: tuple[int, str] | None = None) -> VerifyReport:
        """Check the whole ledger in one read transaction and report every problem found:

        - the chain: seqs 1, 2, 3... with no gap, each prev_hash the previous hash, each hash recomputed;
        - attachments: each table's rows match the count and digest their entry declares;
        - the append-only guards are all in place;
        - the projections equal a replay of the journal (the table and id of each difference).

        Deleting the last entries leaves a shorter chain that is still valid: only a `checkpoint`
        (a (seq, hash) the caller kept from an earlier `head()`, e.g. in a report) reveals that.
        """
        problems: list[VerifyProblem] = []
        # the database's share of the work, beside the replay
        digests = DigestsBeside.start(self._engine, self._backend.reader_options())
        with self._transaction() as conn:
            pin_search_path(conn)
            state = LedgerState()
            prev_hash, expected, count = GENESIS_HASH, 1, 0
            head = (0, GENESIS_HASH)
            declared: list[tuple[int, Any]] = []
            checkpoint_seen = False
            reader = PayloadReader()  # each payload parsed once, for the hash and for the replay
            plains: dict[int, Any] = {}  # the records' plain forms, made by the replay, for `state_rows`
            with replaying() as freeze:  # in place: a journal of 10,000 records replays in linear time
                for row in conn.execute(_whole_journal()):
                    entry = _entry(row)
                    count += 1
                    payload, parsed_plain = reader.read(entry)
                    problems.extend(self._check_entry(entry, expected, prev_hash, payload, parsed_plain))
                    if checkpoint is not None and entry.seq == checkpoint[0]:
                        checkpoint_seen = True
                        if entry.hash != checkpoint[1]:
                            problems.append(VerifyProblem(entry.seq, "the entry's hash differs from the checkpoint"))
                    if isinstance(payload, dict) and "attachments" in payload:
                        declared.append((entry.seq, payload["attachments"]))
                    try:  # the payload parsed once: `apply_entry` only reads it
                        state = apply_entry(state, entry, payload, plains)
                    except (EntryRejected, ValueError) as exc:
                        problems.append(VerifyProblem(entry.seq, f"the entry cannot be replayed: {exc}"))
                    prev_hash, expected, head = entry.hash, entry.seq + 1, (entry.seq, entry.hash)
                state = freeze(state)
            if checkpoint is not None and not checkpoint_seen and checkpoint[0] > 0:
                problems.append(VerifyProblem(
                    None, f"the checkpoint names entry {checkpoint[0]}, which is no longer in the journal "
                          f"(it ends at {head[0]}): entries were removed"))
            computed = {} if digests is None else digests.result(head[0])
            problems.extend(self._check_attachments(conn, declared, computed))
            problems.extend(self._check_guards(conn))
            for table, key, what in compare_rows(state_rows(state, plains), read_rows(conn)):
                problems.append(VerifyProblem(
                    None, f"projection differs from the journal replay: table {table}, id {key!r}: {what}",
                    table=table, key=key))
        problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
        return VerifyReport(entries=count, head_seq=head[0], head_hash=head[1], problems=tuple(problems))

    @staticmethod
    def _check_entry(entry: Entry, expected: int, prev_hash: str, payload: Any,
                     parsed_plain: bool = False) -> list[VerifyProblem]:
        """`parsed_plain`: the payload is JSON parsed to no float (`PayloadReader`), plain as it is."""
        found = []
        if entry.seq != expected:
            missing = f"entry {expected}" if entry.seq == expected + 1 else f"entries {expected} to {entry.seq - 1}"
            found.append(VerifyProblem(entry.seq, f"gap in seq: {missing} missing (a row was deleted)"))
        if entry.prev_hash != prev_hash:
            found.append(VerifyProblem(entry.seq, "broken prev link: prev_hash is not the hash of the entry before"))
        if payload is None:
            found.append(VerifyProblem(entry.seq, "hash mismatch: the payload is not valid JSON"))
            return found
        try:
            text = canonical_json_of_parsed(payload) if parsed_plain else canonical_json(payload)
            try:  # fields of the plain types (text, an int seq): the body written out directly
                computed = entry_hash_with_text(entry.prev_hash, entry.seq, entry.time, entry.actor, entry.kind, text)
            except TypeError:
                computed = _hash_with_payload(entry, text)
        except EntryRejected:
            text = computed = None
        if computed != entry.hash:
            found.append(VerifyProblem(entry.seq, "hash mismatch: the entry was changed after it was written"))
        elif text != entry.payload_json:
            found.append(VerifyProblem(entry.seq, "the payload text is not in canonical form"))
        if entry.seq == 1 and entry.kind != "ledger.init":
            found.append(VerifyProblem(entry.seq, f"the first entry is {entry.kind}, not ledger.init"))
        return found

    @staticmethod
    def _check_attachments(conn: Connection, declared: list[tuple[int, Any]],
                           computed: Mapping[tuple[str, int], tuple[Any, Any]] | None = None) -> list[VerifyProblem]:
        """`computed`: SQLite digests already made for this journal head (see `DigestsBeside`)."""
        found = []
        claimed: dict[str, set[int]] = {}
        for seq, tables in declared:
            if not isinstance(tables, dict):
                found.append(VerifyProblem(seq, "bad attachment digest: the attachments entry is malformed"))
                continue
            for name, summary in sorted(tables.items()):
                claimed.setdefault(name, set()).add(seq)
                try:
                    spec = attachment_table(name)
                except EntryRejected:
                    found.append(VerifyProblem(seq, f"bad attachment digest: unknown attachment table {name!r}",
                                               table=name))
                    continue
                summary = summary if isinstance(summary, dict) else {}
                count = digest = None
                if computed and (name, seq) in computed:
                    count, digest = computed[(name, seq)]
                elif conn.dialect.name == "sqlite":
                    count, digest = _sqlite_digest(conn, spec, seq)
                elif conn.dialect.name == "postgresql":
                    count, digest = _postgres_digest(conn, spec, seq)
                if count != summary.get("rows") or digest != summary.get("digest"):
                    # The exact way, value by value in Python: the judge whenever the fast way
                    # (absent, or not matching) does not already prove the rows intact.
                    t = spec.table
                    rows = conn.execute(
                        select(*[t.c[c] for c, _ in spec.columns]).where(t.c.seq == seq).order_by(t.c.line)
                        .execution_options(yield_per=_ATTACHMENT_CHUNK)
                    )
                    count, digest = digest_stored_rows(spec, rows)
                if count != summary.get("rows") or digest != summary.get("digest"):
                    found.append(VerifyProblem(
                        seq, f"bad attachment digest: {name} holds {count} row(s) for this entry, "
                             f"which declares {summary.get('rows')} with another digest", table=name))
        for spec in attachment_tables():
            t = spec.table
            for seq, count in conn.execute(select(t.c.seq, func.count()).group_by(t.c.seq).order_by(t.c.seq)):
                if seq not in claimed.get(spec.name, set()):
                    found.append(VerifyProblem(
                        seq, f"bad attachment digest: {spec.name} holds {count} row(s) for entry {seq}, "
                             "which declares none", table=spec.name))
        return found

    def _check_guards(self, conn: Connection) -> list[VerifyProblem]:
        existing = self._backend.existing_triggers(conn)
        found = []
        for table in ("journal", *(spec.name for spec in attachment_tables())):
            for name in self._backend.guard_names(table):
                if name not in existing:
                    found.append(VerifyProblem(
                        None, f"the append-only guard {name} on table {table} is missing, so rows can be "
                              "edited or deleted", table=table))
        return found


@dataclass(frozen=True)
class DigestPlan:
    """How the database digests one entry's rows (`_sqlite_digest`, `_postgres_digest`): `count`
    rows, joined a window of lines (low, high] at a time by `window(conn, low, high)` on any
    connection to the database; `windows` is None when the line numbers lie far apart (rows were
    tampered with: the exact way). `DigestsBeside` runs the windows on several connections at once."""

    count: int
    windows: tuple[tuple[int, int], ...] | None
    window: Callable[[Connection, int, int], str | bytes | None]  # bytes: the text in UTF-8


def _sqlite_digest(conn: Connection, spec: Any, seq: int) -> tuple[int | None, str | None]:
    """`digest_stored_rows` of one entry's rows with SQLite writing each row's JSON itself
    (`json_object` with the keys in sorted order), which is several times faster than Python.

    Used only as a proof that the rows are intact: when its digest equals the declared one, the text
    hashed was, row for row, a JSON object with the declared keys whose values are exactly the stored
    ones (text as JSON strings, integers as numbers, NULL as null), i.e. the canonical text of the
    rows. When it differs (tampering, or a value SQLite writes differently from Python, such as a
    control character), `verify` recomputes the digest the exact way before it says anything.
    (None, None) when SQLite cannot do it (no JSON functions, a BLOB value)."""
    try:
        plan = _sqlite_digest_plan(conn, spec, seq)
        return plan.count, _plan_digest(plan, conn)
    except (OperationalError, TypeError, UnicodeEncodeError):
        return None, None


def _sqlite_digest_plan(conn: Connection, spec: Any, seq: int) -> DigestPlan:
    quote = conn.dialect.identifier_preparer.quote
    names = sorted(name for name, _ in spec.columns)
    columns = ", ".join(f"'{name}', {quote(name)}" for name in names)
    table, seq_c, line_c = quote(spec.table.name), quote("seq"), quote("line")
    # A window of lines per statement, joined by SQLite itself: Python sees one string per window.
    sql = (f"SELECT group_concat(j, char(10)) FROM (SELECT json_object({columns}) AS j FROM {table} "
           f"WHERE {seq_c} = ? AND {line_c} > ? AND {line_c} <= ? ORDER BY {line_c})")
    count, last, first = conn.exec_driver_sql(
        f"SELECT count(*), max({line_c}), min({line_c}) FROM {table} WHERE {seq_c} = ?", (seq,)).one()
    return DigestPlan(count, _windows(count, min(0, first or 0), last),
                      lambda c, a, b: c.exec_driver_sql(sql, (seq, a, b)).scalar())


# Lines per window of a digest the database computes (one statement, one string to Python each).
_DIGEST_WINDOW = 20_000


def _windows(count: int, low: int, last: int | None) -> tuple[tuple[int, int], ...] | None:
    """The windows (low, low + _DIGEST_WINDOW] up to line `last`; None when the line numbers lie
    far apart (rows were tampered with: the exact way)."""
    if last is None:
        return ()
    if last - low > 2 * count + _DIGEST_WINDOW:
        return None
    return tuple((a, a + _DIGEST_WINDOW) for a in range(low, last, _DIGEST_WINDOW))


def digest_of_windows(texts: Iterable[str | bytes | None]) -> str:
    """The digest of the rows' texts, given as windows of rows joined by newlines (None: an empty
    window; bytes: the text in UTF-8): each row's text followed by a newline, hashed."""
    digest = hashlib.sha256()
    for text in texts:
        if text is not None:
            digest.update(text if isinstance(text, bytes) else text.encode("utf-8"))
            digest.update(b"\n")
    return digest.hexdigest()


def _plan_digest(plan: DigestPlan, conn: Connection) -> str | None:
    """The digest of `plan`'s windows, one after the other on `conn`."""
    if plan.windows is None:
        return None
    return digest_of_windows(plan.window(conn, a, b) for a, b in plan.windows)


def _postgres_digest(conn: Connection, spec: Any, seq: int) -> tuple[int | None, str | None]:
    """`_sqlite_digest` on PostgreSQL: the server writes each row's canonical JSON with `row_to_json`
    of the declared columns in sorted order (compact, each value as `to_json` writes it, NULL as
    null) and joins a window of lines, taken from a subquery sorted by line (PostgreSQL aggregates a
    sorted subquery's rows in its order, though SQL does not promise it); where no text of the
    window holds a character JSON escapes, the same text is put together more quickly from the
    values themselves (`_postgres_quick_sql`). Only a proof, as there: a digest
    that differs from the declared one (rows joined in another order, a value PostgreSQL writes
    otherwise than Python would, or tampering) sends `verify` to the exact way."""
    try:
        # in a savepoint: a statement that fails would otherwise leave the whole read transaction
        # failed, and the exact way could not run after it
        with conn.begin_nested():
            plan = _postgres_digest_plan(conn, spec, seq)
            return plan.count, _plan_digest(plan, conn)
    except (DBAPIError, TypeError, UnicodeEncodeError):
        return None, None


def _postgres_digest_plan(conn: Connection, spec: Any, seq: int) -> DigestPlan:
    """Each window is joined the quick way when it can be (`_postgres_quick_sql`), else by
    `row_to_json`, which writes every value itself."""
    quote = conn.dialect.identifier_preparer.quote
    names = sorted(name for name, _ in spec.columns)
    table, seq_c, line_c = quote(spec.table.name), quote("seq"), quote("line")
    rows = (f"FROM {table} WHERE {seq_c} OPERATOR(pg_catalog.=) %(seq)s AND {line_c} OPERATOR(pg_catalog.>) "
            f"%(low)s AND {line_c} OPERATOR(pg_catalog.<=) %(high)s ORDER BY {line_c}")
    exact = f"SELECT pg_catalog.string_agg(pg_catalog.row_to_json(r)::text, E'\\n') FROM (SELECT {', '.join(map(quote, names))} {rows}) AS r"
    count, last, first, types = conn.exec_driver_sql(
        f"SELECT pg_catalog.count(*), pg_catalog.max({line_c}), pg_catalog.min({line_c}), (SELECT "
        f"pg_catalog.json_object_agg(attname, pg_catalog.format_type(atttypid, atttypmod)) FROM pg_catalog.pg_attribute WHERE attrelid OPERATOR(pg_catalog.=) %(table)s::regclass "
        f"AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped) FROM {table} WHERE {seq_c} OPERATOR(pg_catalog.=) %(seq)s",
        {"seq": seq, "table": spec.table.name}).one()
    quick = _postgres_quick_sql(spec, quote, rows, types or {})

    def window(c: Connection, low: int, high: int) -> str | bytes | None:
        params = {"seq": seq, "low": low, "high": high}
        if quick is not None:
            sql, quotes_per_row = quick
            text, count, nulls, nullable_texts = c.exec_driver_sql(sql, params).one()
            if not count:
                return None
            if not nulls:
                data = text.encode("utf-8")
                if _plain_join(data, count, count * quotes_per_row + 2 * nullable_texts):
                    return data
        return c.exec_driver_sql(exact, params).scalar()

    return DigestPlan(count, _windows(count, min(0, first or 0), last), window)


_PG_TEXT_TYPES = ("text", "character varying")
_PG_INT_TYPES = ("bigint", "integer", "smallint")
_CAT = "OPERATOR(pg_catalog.||)"  # PostgreSQL's own, whatever the search path holds
_NUMPY_FROM = 1 << 20  # bytes of a window from which NumPy counts its characters
_CONTROL_BUT_NEWLINE = re.compile(rb"[\x00-\x09\x0b-\x1f]").search


def _pg_type_name(declared: str) -> str:
    """A PostgreSQL type as `format_type` writes it, without a length: 'character varying(64)' is
    'character varying', while an array ('character varying(64)[]') stays what it is."""
    match = re.fullmatch(r"(.+?)(?:\(\d+\))?", declared)
    return match.group(1) if match else declared


def _plain_join(data: bytes, rows: int, quotes: int) -> bool:
    """Whether `data`, `rows` rows' JSON put together by `_postgres_quick_sql` and joined by
    newlines, has no backslash, no control character but the rows' newlines and exactly `quotes`
    quotes (those of the keys and around the values): then no value holds a character JSON escapes."""
    if len(data) < _NUMPY_FROM:
        return (b"\\" not in data and data.count(b"\n") == rows - 1 and data.count(b'"') == quotes
                and not _CONTROL_BUT_NEWLINE(data))
    import numpy as np

    a = np.frombuffer(data, dtype=np.uint8)  # UTF-8: a byte below 0x80 is that ASCII character
    return bool(np.count_nonzero(a == 0x5C) == 0 and np.count_nonzero(a < 0x20) == rows - 1
                and np.count_nonzero(a == 0x0A) == rows - 1 and np.count_nonzero(a == 0x22) == quotes)


def _postgres_quick_sql(spec: Any, quote: Callable[[str], str], rows: str,
                        types: Mapping[str, str]) -> tuple[str, int] | None:
    """A statement joining a window's rows as `row_to_json` would write them, in about half the
    server's time of the way before it (200,000 usage lines: 0.23-0.25 s against 0.46 s, measured
    with `EXPLAIN ANALYZE`; `row_to_json` takes about as long as the way before): each row's JSON put
    together from the values themselves (a text between quotes, an integer in digits, NULL as null
    in a nullable column), which is the very text `row_to_json` writes as long as no text holds a
    character JSON escapes. With the text it gives the window's rows, its rows with a NULL where
    pooler's table has none, and the non-NULL texts of the nullable text columns; and the number of
    quotes each row's JSON holds apart from those texts (keys and the other texts): (statement,
    quotes per row).

    The caller takes the text only if no row has such a NULL (with `||` that row would be missing),
    the text holds no backslash, one newline fewer than rows, and exactly the quotes the keys and
    values put there: then no value holds a quote, a backslash or a newline, so the text splits into
    the rows and their values in one way only, and it equals the canonical text of the declared rows
    only if the rows are those (a control character other than a newline in a value makes a text
    canonical JSON never is: a digest mismatch, and `verify` goes the exact way). Otherwise the window
    is joined by `row_to_json`. Only for columns of the types pooler made (another type, say an integer
    column turned into text behind pooler's back, would be written otherwise by `row_to_json`): None
    otherwise."""
    t = spec.table
    pieces: list[tuple[bool, str]] = []  # (a literal?, its text or an SQL expression), in order
    not_null, nullable_texts = [], []
    quotes = 0
    for i, (name, kind) in enumerate(sorted(spec.columns)):
        declared = _pg_type_name(str(types.get(name, "")))
        column = quote(name)
        nullable = t.c[name].nullable
        pieces.append((True, ("{" if i == 0 else ",") + json.dumps(name) + ":"))
        quotes += 2
        if kind == "int" and declared in _PG_INT_TYPES:
            pieces.append((False, f"coalesce({column}::text, 'null')" if nullable else f"{column}::text"))
        elif kind != "int" and declared in _PG_TEXT_TYPES:
            if nullable:
                pieces.append((False, f"""coalesce('"' {_CAT} {column} {_CAT} '"', 'null')"""))
                nullable_texts.append(f"pg_catalog.count({column})")
            else:
                pieces += [(True, '"'), (False, column), (True, '"')]
                quotes += 2
        else:
            return None
        if not nullable:
            not_null.append(f"{column} IS NULL")
    pieces.append((True, "}"))
    joined: list[str] = []
    for literal, group in itertools.groupby(pieces, key=lambda piece: piece[0]):
        texts = [text for _, text in group]
        if literal:  # adjacent literals as one (pooler's column names: no quote, no backslash)
            joined.append("'" + "".join(texts) + "'")
        else:
            joined += texts
    nulls = f"pg_catalog.count(*) FILTER (WHERE {' OR '.join(not_null)})" if not_null else "0"
    sql = (f"SELECT pg_catalog.string_agg({f' {_CAT} '.join(joined)}, E'\\n'), pg_catalog.count(*), {nulls}, "
           f"{' + '.join(nullable_texts) or '0'} FROM (SELECT * {rows}) AS r")
    return sql, quotes


def pin_search_path(conn: Connection) -> None:
    """On PostgreSQL, for the rest of the transaction: pg_catalog first on the search path, then
    the schema of pooler's tables only, so that no function or operator of another schema (one a
    database owner put on the database's search path) stands in for PostgreSQL's own in what the
    verification asks the server (its digest statements also name pg_catalog's outright)."""
    if conn.dialect.name != "postgresql":
        return
    # the schema of the journal the search path finds (the one pooler reads), which need not be the
    # first schema on the path: with "$user" first and a schema of the user's name beside pooler's
    # tables in public, current_schema() names the user's schema
    schema = conn.exec_driver_sql(
        "SELECT coalesce((SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass('journal')), "
        "pg_catalog.current_schema())").scalar()
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql(f"SET LOCAL search_path = pg_catalog, {quote(schema)}" if schema
                         else "SET LOCAL search_path = pg_catalog")


def digest_plan_of(conn: Connection) -> Callable[[Connection, Any, int], DigestPlan]:
    """The `DigestPlan` maker of `conn`'s database (SQLite or PostgreSQL)."""
    return _postgres_digest_plan if conn.dialect.name == "postgresql" else _sqlite_digest_plan


# The canonical JSON of an entry's hashed fields with a stand-in payload; the keys are sorted, so the
# payload's text goes where this marker is (a quote inside a text value is escaped: no false match).
_PAYLOAD_MARK = ',"payload":0,"seq":'


def _hash_with_payload(entry: Entry, payload_text: str) -> str:
    """`entry.computed_hash()`, given the canonical text of its payload (`verify` has it anyway):
    the other fields' canonical JSON with the payload's text put in its place, instead of the whole
    entry written out again. Same text, same hash."""
    if not (isinstance(entry.actor, str) and isinstance(entry.kind, str) and isinstance(entry.time, str)
            and type(entry.seq) is int):  # fields of unexpected types: the plain way
        return entry_hash(entry.prev_hash, entry.seq, entry.time, entry.actor, entry.kind, json.loads(payload_text))
    body = canonical_json({"seq": entry.seq, "time": entry.time, "actor": entry.actor, "kind": entry.kind,
                           "payload": 0})
    head, _, tail = body.partition(_PAYLOAD_MARK)
    body = head + ',"payload":' + payload_text + ',"seq":' + tail
    return hashlib.sha256((entry.prev_hash + body).encode("utf-8")).hexdigest()

