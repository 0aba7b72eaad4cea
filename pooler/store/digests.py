"""Attachment digests computed beside `Ledger.verify`'s replay of the journal.

`verify` replays the journal in Python while checking, table by table, that each entry's attached
rows still have the count and digest the entry declares. That check is mostly the database's own
work (it writes each row's JSON, see `ledger._sqlite_digest` and `ledger._postgres_digest`), and the
database drivers let go of the interpreter lock while the database works: so the digests are
computed here, in a thread with its own connection and its own read transaction, while the replay
runs. On a ledger with a million usage lines that takes a second or more off `ledger verify` when a
second core is free.

The thread's transaction is not the replay's. Its digests are used only when both saw the same
journal head: attachments are written in their entry's transaction and never changed (the guards
refuse it), so the same head means the same rows. Otherwise, or when anything goes wrong here, the
verification computes every digest in its own transaction as before.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

from sqlalchemy import Engine


class DigestsBeside:
    """Start with `start(engine)`; `result(head_seq)` waits and gives {(table, seq): (rows, digest)}
    for the head `head_seq`, or {} when the thread saw another head or failed."""

    def __init__(self, engine: Engine, options: Mapping[str, Any]) -> None:
        self._engine = engine
        self._options = dict(options)
        self._head: int | None = None
        self._digests: dict[tuple[str, int], tuple[int | None, str | None]] = {}
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="pooler-verify-digests", daemon=True)

    @classmethod
    def start(cls, engine: Engine, options: Mapping[str, Any] | None = None) -> "DigestsBeside | None":
        """For PostgreSQL and an SQLite file (another connection to an in-memory SQLite database sees
        another database); `options`: the execution options of a consistent read transaction."""
        url = engine.url
        backend = url.get_backend_name()
        if backend == "sqlite":
            if url.database in (None, "", ":memory:") or "memory" in str(url.query.get("mode", "")):
                return None
        elif backend != "postgresql":
            return None
        beside = cls(engine, options or {})
        beside._thread.start()
        return beside

    def _run(self) -> None:
        from pooler.store.ledger import _JOURNAL, _postgres_digest, _sqlite_digest

        try:
            with self._engine.connect() as conn:
                conn.execution_options(**self._options)
                digest_of = _postgres_digest if conn.dialect.name == "postgresql" else _sqlite_digest
                with conn.begin():
                    self._digest_all(conn, _JOURNAL, digest_of)
        except Exception:  # noqa: BLE001 - anything at all: the verification does it the usual way
            self._failed = True

    def _digest_all(self, conn, journal, digest_of) -> None:
        from pooler.store.attachments import attachment_tables

        quote = conn.dialect.identifier_preparer.quote
        self._head = conn.exec_driver_sql(
            f"SELECT max({quote('seq')}) FROM {quote(journal.name)}").scalar() or 0
        for spec in attachment_tables():
            table = quote(spec.table.name)
            for seq in [s for (s,) in conn.exec_driver_sql(f"SELECT DISTINCT seq FROM {table}")]:
                self._digests[(spec.name, seq)] = digest_of(conn, spec, seq)

    def result(self, head_seq: int) -> dict[tuple[str, int], tuple[Any, Any]]:
        self._thread.join()
        if self._failed or self._head != head_seq:
            return {}
        return self._digests
