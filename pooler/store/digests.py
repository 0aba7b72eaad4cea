"""Attachment digests computed beside `Ledger.verify`'s replay of the journal.

`verify` replays the journal in Python while checking, table by table, that each entry's attached
rows still have the count and digest the entry declares. That check is mostly the database's own
work (it writes each row's JSON, see `ledger._sqlite_digest` and `ledger._postgres_digest`), and the
database drivers let go of the interpreter lock while the database works: so the digests are
computed here, in a thread with its own connection and its own read transaction, while the replay
runs. The rows are joined a window of lines at a time (`ledger.DigestPlan`), and the windows are
run on two more connections at once, each in a read transaction of its own, while this thread
hashes them in order: on PostgreSQL that is two server processes instead of one. On the load
ledger (a million usage lines) the digests alone took 4.3-5.3 s on PostgreSQL with one connection
and 2.3-2.6 s with two (SQLite: about 2 s either way); the replay takes about 1.5 s.

The threads' transactions are not the replay's. Their digests are used only when the replay saw the
same journal head as this thread: attachments are written in their entry's transaction and never
changed (the guards refuse it), so the same head means the same rows, whichever transaction reads
them. Otherwise, or when anything goes wrong here, the verification computes every digest in its
own transaction as before.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from itertools import count, islice
from typing import Any, Iterator, Mapping

from sqlalchemy import Engine


# Connections joining windows of rows at once, and the most windows joined ahead of the hashing.
_WORKERS = 2
_AHEAD = 4


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

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A connection of its own in a read transaction like the verification's."""
        from pooler.store.ledger import pin_search_path

        with self._engine.connect() as conn:
            conn.execution_options(**self._options)
            with conn.begin():
                pin_search_path(conn)
                yield conn

    def _run(self) -> None:
        from pooler.store.ledger import _JOURNAL, digest_plan_of

        try:
            with self._reading() as conn:
                self._digest_all(conn, _JOURNAL, digest_plan_of(conn))
        except Exception:  # noqa: BLE001 - anything at all: the verification does it the usual way
            self._failed = True

    def _digest_all(self, conn, journal, plan_of) -> None:
        from pooler.store.attachments import attachment_tables
        from pooler.store.ledger import digest_of_windows

        quote = conn.dialect.identifier_preparer.quote
        self._head = conn.exec_driver_sql(
            f"SELECT max({quote('seq')}) FROM {quote(journal.name)}").scalar() or 0
        plans = []
        for spec in attachment_tables():
            table = quote(spec.table.name)
            for seq in [s for (s,) in conn.exec_driver_sql(f"SELECT DISTINCT seq FROM {table}")]:
                plans.append(((spec.name, seq), plan_of(conn, spec, seq)))
        texts = self._windows([(plan.window, low, high) for _, plan in plans for low, high in plan.windows or ()])
        try:
            for key, plan in plans:
                digest = None if plan.windows is None else digest_of_windows(islice(texts, len(plan.windows)))
                self._digests[key] = (plan.count, digest)
        finally:
            texts.close()

    def _windows(self, jobs: list[tuple[Any, int, int]]) -> Iterator[str | bytes | None]:
        """The texts of `jobs` (window, low, high), in order, each job run on one of `_WORKERS`
        connections of their own: the database joins windows on several cores at once while this
        thread hashes them in order. At most `_AHEAD` texts wait to be hashed."""
        results: dict[int, str | bytes | None] = {}
        failed: list[BaseException] = []
        taken = count()
        hashed = 0
        cond = threading.Condition()

        def work() -> None:
            try:
                with self._reading() as conn:
                    while True:
                        with cond:
                            i = next(taken)
                            while i < len(jobs) and i - hashed >= _AHEAD and not failed:
                                cond.wait()
                            if i >= len(jobs) or failed:
                                return
                        window, low, high = jobs[i]
                        text = window(conn, low, high)
                        with cond:
                            results[i] = text
                            cond.notify_all()
            except BaseException as exc:  # noqa: BLE001 - handed to the hashing thread
                with cond:
                    failed.append(exc)
                    cond.notify_all()

        workers = [threading.Thread(target=work, name=f"pooler-verify-window-{k}", daemon=True)
                   for k in range(min(_WORKERS, len(jobs)))]
        for worker in workers:
            worker.start()
        try:
            for i in range(len(jobs)):
                with cond:
                    while i not in results and not failed:
                        cond.wait()
                    if failed:
                        raise failed[0]
                    text = results.pop(i)
                    hashed = i + 1
                    cond.notify_all()
                yield text
        finally:
            with cond:  # left before the end: the workers stop at their next window
                if hashed < len(jobs):
                    failed.append(RuntimeError("the hashing stopped"))
                cond.notify_all()
            for worker in workers:
                worker.join()

    def result(self, head_seq: int) -> dict[tuple[str, int], tuple[Any, Any]]:
        self._thread.join()
        if self._failed or self._head != head_seq:
            return {}
        return self._digests
