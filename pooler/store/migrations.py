"""Schema versions and the ordered migrations that bring any older ledger up to this code's version.

The database records its `schema_version` in the `meta` table. Opening a ledger runs, in one writer
transaction, every migration above that version (and records a `ledger.migrate` entry); a ledger whose
version is above `SCHEMA_VERSION` is refused with `SchemaTooNew`, since this code cannot know what a
newer release changed.

To change the schema: append one `Migration(N + 1, "what it does", function)` to `MIGRATIONS`, where
the function takes the connection and the `Backend` and issues its DDL (using `backend` for anything
dialect-specific, e.g. `backend.append_only_ddl("usage_line")` for a new attachment table). Never edit
a released migration: ledgers in the field were created by it. Version 1 builds the tables as
tables.py declares them, except those changed since, whose version 1 shape is frozen here (a plain
`sqlalchemy.Table` in `version_1_metadata`) so that version 1 keeps creating exactly what it created
when it was released; later migrations then change them as they changed ledgers in the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from pooler.store.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from pooler.store.db import Backend

# SQLAlchemy and the tables are imported by the functions that use them, so that `SCHEMA_VERSION` can
# be read without them (the DB-API read path of `readonly.py` checks it).

VERSION_KEY = "schema_version"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection, Backend], None]
    # True when this code reads a ledger that lacks this migration exactly as one that has it (the
    # migration changes nothing a reader reads: an index, a wider integer type, a dropped key). A
    # read-only open (`Ledger.open(read_only=True)`, for commands that only read) writes nothing and
    # so cannot migrate: it reads an older ledger as it is only when every migration it lacks says
    # True here, and otherwise asks for the ledger to be migrated first. When unsure, leave it False.
    readable_unmigrated: bool = False


# Version 1's tables, by name (their shapes are in tables.py).
_VERSION_1_TABLES = (
    "meta", "journal", "alloc_grant", "alloc_member", "alloc_pool", "alloc_project", "consortium", "policy",
    "accelerator", "accelerator_rate", "member", "pool", "dataset", "model", "project", "project_sponsor",
    "usage_line",
)


def version_1_metadata():  # noqa: ANN201 - a sqlalchemy.MetaData, imported lazily
    """The tables exactly as version 1 created them: tables.py's, with the shapes of the tables that
    later versions changed frozen here."""
    from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table

    from pooler.store.tables import metadata

    frozen = MetaData()
    for name in _VERSION_1_TABLES:
        if name != "usage_line":
            metadata.tables[name].to_metadata(frozen)
    # Changed by version 2: `start` and `end` were INTEGER, and `seq` referenced the journal.
    Table("usage_line", frozen,
          Column("seq", Integer(), ForeignKey("journal.seq"), primary_key=True, nullable=False, index=False,
                 unique=False),
          Column("line", Integer(), primary_key=True, nullable=False, index=False, unique=False),
          *[Column(name, String(), nullable=False, index=False, unique=False)
            for name in ("project", "pool", "period", "device_hours")],
          *[Column(name, Integer(), nullable=False, index=False, unique=False) for name in ("start", "end")],
          Column("job", String(), nullable=True, index=False, unique=False),
          sqlite_with_rowid=False)
    return frozen


def create_version_1(conn: Connection, backend: Backend) -> None:
    """The journal, the allocation attachment tables, the projections, and the append-only guards."""
    from sqlalchemy import text

    version_1_metadata().create_all(conn)
    for table in ("journal", "alloc_grant", "alloc_member", "alloc_pool", "alloc_project", "usage_line"):
        for statement in backend.append_only_ddl(table):
            # text() rather than exec_driver_sql: it escapes the "%" of PostgreSQL's RAISE for the driver.
            conn.execute(text(statement))


def widen_usage_times(conn: Connection, backend: Backend) -> None:
    """PostgreSQL: usage times as BIGINT (INTEGER ends in 2038) and no foreign key from `usage_line.seq`
    to the journal (a row-locking check per row: most of a million-line import). SQLite: nothing; its
    integers are 64-bit, and its check is cheap. The rows stay tied to their entry by its digest, and
    `ledger verify` reports rows of an entry that declares none."""
    from sqlalchemy import text

    if backend.name != "postgresql":
        return
    keys = conn.execute(text("SELECT conname FROM pg_constraint "
                             "WHERE conrelid = 'usage_line'::regclass AND contype = 'f'")).scalars().all()
    for name in keys:
        conn.execute(text('ALTER TABLE usage_line DROP CONSTRAINT "{}"'.format(name.replace('"', '""'))))
    conn.execute(text('ALTER TABLE usage_line ALTER COLUMN "start" TYPE BIGINT, ALTER COLUMN "end" TYPE BIGINT'))


def index_usage_jobs(conn: Connection, backend: Backend) -> None:
    """An index of the usage lines that name a job, by job and start: a Slurm import looks up whether
    the jobs of its file were recorded before (`Reader.usage_of_jobs`). Lines without a job (most CSV
    lines) are left out of it, so their imports maintain no index."""
    from sqlalchemy import text

    conn.execute(text('CREATE INDEX IF NOT EXISTS usage_line_job ON usage_line (job, "start") '
                      "WHERE job IS NOT NULL"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create the journal, the projections and the allocation tables", create_version_1),
    # readable unmigrated: 32-bit times read as the same numbers (none later than 2038 can be stored
    # in them), and the dropped foreign key only checked writes; nothing changes on SQLite
    Migration(2, "usage times as 64-bit integers and no per-row journal key for usage lines on PostgreSQL",
              widen_usage_times, readable_unmigrated=True),
    # readable unmigrated: an index changes how fast a query is answered, not its answer
    Migration(3, "an index of usage lines by job, for Slurm imports that skip the jobs recorded before",
              index_usage_jobs, readable_unmigrated=True),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def check_migrations(migrations: Sequence[Migration]) -> None:
    """A programming error, not a user's: versions must run 1, 2, 3... with no gap."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3...; got {versions}")


def read_version(conn: Connection) -> int | None:
    """The database's schema version, or None when it holds no pooler ledger."""
    from sqlalchemy import inspect, select

    from pooler.store.tables import MetaRow

    if not inspect(conn).has_table(MetaRow.__tablename__):
        return None
    meta = MetaRow.__table__
    value = conn.execute(select(meta.c.value).where(meta.c.key == VERSION_KEY)).scalar()
    if value is None:
        return None
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and int(value) >= 1):
        # (review: "2x" was a ValueError traceback from every command, `ledger verify` included, and
        # "-1" tried to create the schema again over the existing tables)
        raise StoreError(f"the ledger's schema version is damaged (meta {VERSION_KEY} = {value!r}, where "
                         f"a whole number from 1 up belongs): restore the ledger from a copy")
    return int(value)


def run_migrations(conn: Connection, backend: Backend, migrations: Sequence[Migration],
                   current: int) -> list[int]:
    """Apply every migration above `current` inside the caller's transaction; the versions applied."""
    from sqlalchemy import insert, update

    from pooler.store.tables import MetaRow

    check_migrations(migrations)
    applied = []
    for migration in migrations:
        if migration.version > current:
            migration.apply(conn, backend)
            applied.append(migration.version)
    if applied:
        meta = MetaRow.__table__
        target = str(applied[-1])
        if current == 0:
            conn.execute(insert(meta).values(key=VERSION_KEY, value=target))
        else:
            conn.execute(update(meta).where(meta.c.key == VERSION_KEY).values(value=target))
    return applied
