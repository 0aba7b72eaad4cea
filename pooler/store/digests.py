"""Attachment digests computed beside `Ledger.verify`'s replay of the journal.

`verify` replays the journal in Python while checking, table by table, that each entry's attached
rows still have the count and digest the entry declares. On SQLite that check is mostly SQLite's own
work (it writes each row's JSON, see `ledger._sqlite_digest`), and the sqlite3 module lets go of the
interpreter lock while SQLite works: so the digests are computed here, in a thread with its own
connection and its own read transaction, while the replay runs. On a ledger with a million usage
lines that takes a second or two off `ledger verify` when a second core is free.

The thread's transaction is not the replay's. Its digests are used only when both saw the same
journal head: attachments are written in their entry's transaction and never changed (the guards
refuse it), so the same head means the same rows. Otherwise, or when anything goes wrong here, the
verification computes every digest in its own transaction as before.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine


class DigestsBeside:
    """Start with `start(engine)`; `result(head_seq)` waits and gives {(table, seq): (rows, digest)}
    for the head `head_seq`, or {} when the thread saw another head or failed."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._head: int | None = None
        self._digests: dict[tuple[str, int], tuple[int | None, str | None]] = {}
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="pooler-verify-digests", daemon=True)

    @classmethod
    def start(cls, engine: Engine) -> "DigestsBeside | None":
        """Only for an SQLite file: another connection to an in-memory database sees another database."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") \
                or "memory" in str(url.query.get("mode", "")):
            return None
        beside = cls(engine)
        beside._thread.start()
        return beside

    def _run(self) -> None:
        from pooler.store.attachments import attachment_tables
        from pooler.store.ledger import _JOURNAL, _sqlite_digest

        try:
            with self._engine.connect() as conn, conn.begin():
                quote = conn.dialect.identifier_preparer.quote
                self._head = conn.exec_driver_sql(
                    f"SELECT max({quote('seq')}) FROM {quote(_JOURNAL.name)}").scalar() or 0
                for spec in attachment_tables():
                    table = quote(spec.table.name)
                    seqs = [s for (s,) in conn.exec_driver_sql(f"SELECT DISTINCT seq FROM {table}")]
                    for seq in seqs:
                        self._digests[(spec.name, seq)] = _sqlite_digest(conn, spec, seq)
        except Exception:  # noqa: BLE001 - anything at all: the verification does it the usual way
            self._failed = True

    def result(self, head_seq: int) -> dict[tuple[str, int], tuple[Any, Any]]:
        self._thread.join()
        if self._failed or self._head != head_seq:
            return {}
        return self._digests
