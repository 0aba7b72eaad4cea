"""Storage: SQLAlchemy tables, the hash-chained journal, projections and migrations.

The public surface is re-exported here; services import from `pooler.store` only. The names are
imported when first used (PEP 562), so that importing `pooler.store` (or `pooler.store.readonly`, the
DB-API path of fast listings) does not import SQLAlchemy: only what a command touches is loaded.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(("AttachmentTable", "RowChunks", "attachment_table", "digest_rows", "register_attachment"),
                    "pooler.store.attachments"),
    **dict.fromkeys(("EntryRejected", "LedgerExists", "LedgerNotFound", "SchemaTooNew", "StoreError",
                     "StoreUnavailable"), "pooler.store.errors"),
    **dict.fromkeys(("GENESIS_HASH", "Entry", "canonical_json", "entry_hash"), "pooler.store.journal"),
    **dict.fromkeys(("Ledger", "Reader", "VerifyProblem", "VerifyReport", "Writer"), "pooler.store.ledger"),
    **dict.fromkeys(("MIGRATIONS", "SCHEMA_VERSION", "Migration"), "pooler.store.migrations"),
    **dict.fromkeys(("LedgerState", "RateVersion", "RecordState", "apply_entry", "replay"), "pooler.store.reducer"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from pooler.store.attachments import (  # noqa: F401 - the names __getattr__ gives
        AttachmentTable, RowChunks, attachment_table, digest_rows, register_attachment,
    )
    from pooler.store.errors import (  # noqa: F401
        EntryRejected, LedgerExists, LedgerNotFound, SchemaTooNew, StoreError, StoreUnavailable,
    )
    from pooler.store.journal import GENESIS_HASH, Entry, canonical_json, entry_hash  # noqa: F401
    from pooler.store.ledger import Ledger, Reader, VerifyProblem, VerifyReport, Writer  # noqa: F401
    from pooler.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration  # noqa: F401
    from pooler.store.reducer import LedgerState, RateVersion, RecordState, apply_entry, replay  # noqa: F401
