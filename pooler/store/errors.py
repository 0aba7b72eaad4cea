"""The store's typed errors.

Every error the store raises on purpose is a `StoreError` whose `str()` is a complete sentence for a
person; being a `PoolerError`, the CLI prints it as `Error: <message>` and exits 1. Anything else
escaping the store is a bug.
"""

from __future__ import annotations

from pooler.errors import PoolerError


class StoreError(PoolerError):
    """Base of the store's expected failures; the message is meant to be shown as is."""


class LedgerNotFound(StoreError):
    """No ledger where one was expected: a missing file, or a database without pooler's tables."""


class LedgerExists(StoreError):
    """`init` on a database that already holds a ledger."""


class SchemaTooNew(StoreError):
    """The ledger was written by a newer pooler whose schema this code does not know."""

    def __init__(self, message: str, *, found: int, supported: int) -> None:
        super().__init__(message)
        self.found = found
        self.supported = supported


class EntryRejected(StoreError):
    """An entry refused before it is written: bad kind, bad payload, or one that contradicts the state
    (adding an id that exists, changing or retiring one that does not)."""


class StoreUnavailable(StoreError):
    """The database cannot be opened or stayed busy beyond the busy timeout."""
