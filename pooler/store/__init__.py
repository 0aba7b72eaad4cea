"""Storage: SQLModel tables, the hash-chained journal, projections and migrations.

The public surface is re-exported here; services import from `pooler.store` only.
"""

from pooler.store.attachments import AttachmentTable, RowChunks, attachment_table, digest_rows, register_attachment
from pooler.store.errors import (
    EntryRejected, LedgerExists, LedgerNotFound, SchemaTooNew, StoreError, StoreUnavailable,
)
from pooler.store.journal import GENESIS_HASH, Entry, canonical_json, entry_hash
from pooler.store.ledger import Ledger, Reader, VerifyProblem, VerifyReport, Writer
from pooler.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from pooler.store.reducer import LedgerState, RateVersion, RecordState, apply_entry, replay

__all__ = [
    "AttachmentTable", "EntryRejected", "RowChunks", "Entry", "GENESIS_HASH", "Ledger", "LedgerExists", "LedgerNotFound",
    "LedgerState", "MIGRATIONS", "Migration", "RateVersion", "Reader", "RecordState", "SCHEMA_VERSION",
    "SchemaTooNew", "StoreError", "StoreUnavailable", "VerifyProblem", "VerifyReport", "Writer",
    "apply_entry", "attachment_table", "canonical_json", "digest_rows", "entry_hash", "register_attachment",
    "replay",
]
