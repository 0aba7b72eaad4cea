"""The ledger's tables, as SQLAlchemy Core tables, each named by a `*Row` class (`Row.__table__`).

Three groups:

- `meta`: key/value facts about the database itself, chiefly `schema_version`.
- Append-only tables, guarded by triggers: `journal`, and the attachment tables whose rows hang off one
  entry (`alloc_grant`, `alloc_member`, `alloc_project`, `alloc_pool`, `usage_line`). Rows are only ever inserted.
- Projections: the current state (consortium, policy, accelerators and their versioned rates, members,
  pools, datasets, models, projects and their sponsors), rewritten in the same transaction as the entry
  that changes them, and always reproducible by replaying the journal (`verify` checks that they are).

Quantities are decimal text in canonical form (`dec_str`) or integers, never floats. List-valued
fields are canonical JSON text, except project sponsors, which get their own table so that SQL can
aggregate stakes per member. Retired records keep their rows, marked with `retired_seq`.

Changing a table here changes what a new ledger looks like: it needs a migration (migrations.py).

Until issue #6 these were SQLModel classes. The store only ever used their tables, and importing
SQLModel and pydantic and building seventeen models took longer than everything else a command does
to open a ledger, so they are plain SQLAlchemy tables now. The columns are declared the way SQLModel
declared them (`str` as VARCHAR, `int` as INTEGER, NOT NULL unless optional, `index=True` as an index
named `ix_<table>_<column>`), so a new ledger is created exactly as before; `tests/test_startup.py`
holds version 1's schema to the one SQLModel created.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, MetaData, String, Table, Text

# Every table the store owns, and nothing else.
metadata = MetaData()


class TableRow:
    """Names one table: `Row.__table__` is the SQLAlchemy `Table`, `Row.__tablename__` its name.

    Rows are read and written as mappings through the table (SQLAlchemy Core); there are no row
    objects."""

    __table__: ClassVar[Table]
    __tablename__: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__tablename__ = cls.__table__.name


def _table(name: str, *columns: Column, **kwargs: Any) -> Table:
    return Table(name, metadata, *columns, **kwargs)


# `index` and `unique` are always given, False or True, as SQLModel gave them.


def _key(name: str, type_: Any = String, *, foreign_key: str | None = None, index: bool = False,
         **kwargs: Any) -> Column:
    """A primary-key column."""
    args = [ForeignKey(foreign_key)] if foreign_key else []
    return Column(name, type_(), *args, primary_key=True, nullable=False, index=index, unique=False, **kwargs)


def _str(name: str, *, optional: bool = False, text: bool = False, index: bool = False) -> Column:
    """A text column: VARCHAR (TEXT with `text`), NOT NULL unless `optional`."""
    return Column(name, Text() if text else String(), nullable=optional, index=index, unique=False)


def _int(name: str, *, optional: bool = False, big: bool = False) -> Column:
    return Column(name, BigInteger() if big else Integer(), nullable=optional, index=False, unique=False)


def _seqs(*, retired: bool = True) -> list[Column]:
    """The entries that added a record, last changed it and (if it can be) retired it."""
    return [_int("added_seq"), _int("changed_seq")] + ([_int("retired_seq", optional=True)] if retired else [])


class MetaRow(TableRow):
    __table__ = _table("meta", _key("key"), _str("value"))


class JournalRow(TableRow):
    __table__ = _table(
        "journal",
        _key("seq", Integer, autoincrement=False),
        _str("time"), _str("actor"), _str("kind", index=True), _str("payload", text=True),
        _str("prev_hash"), _str("hash"),
    )


# --- attachment tables (append-only; each registered in attachments.py) ---------------------------


def _lines(name: str, *columns: Column, seq_key: bool = True, **kwargs: Any) -> Table:
    """An attachment table: rows keyed by (entry seq, line number), the seq a foreign key to the
    journal unless not `seq_key`."""
    seq = _key("seq", Integer, foreign_key="journal.seq" if seq_key else None)
    return _table(name, seq, _key("line", Integer), *columns, **kwargs)


class AllocGrantRow(TableRow):
    """Device-hours of one pool granted to one project, attached to the entry that records a run."""

    __table__ = _lines("alloc_grant", _str("project", index=True), _str("pool"), _int("device_hours"),
                       _str("units"))


class AllocMemberRow(TableRow):
    """One member's line of a recorded allocation run: share, contribution, demand and allocation.

    Figures are the solver's floats written as the shortest decimal text that reads back to the same
    float, so the run can be shown and audited exactly as it was computed.
    """

    __table__ = _lines("alloc_member", _str("member", index=True), _str("share"), _str("contributed"),
                       _str("demand"), _str("allocated"))


class AllocPoolRow(TableRow):
    """One pool's line of a recorded allocation run: its capacity then, and what was granted of it."""

    __table__ = _lines("alloc_pool", _str("pool", index=True), _str("capacity"), _str("granted"))


class AllocProjectRow(TableRow):
    """One project's line of a recorded allocation run."""

    __table__ = _lines("alloc_project", _str("project", index=True), _str("weight"), _str("demand"),
                       _str("allocated"), _str("bottleneck"), _str("level", optional=True))


class UsageLineRow(TableRow):
    """One line of a usage import: device-hours a project consumed on a pool between two moments.

    `start` and `end` are epoch seconds (UTC); `period` is the consortium period the line is charged
    to (the one containing `end`, or the period the import named); `job` is the scheduler's job id
    when the line came from one.
    """

    # A million lines per import: on SQLite the rows live in the primary key's own b-tree (no rowid
    # b-tree beside it) and no secondary index is kept, so an insert touches one b-tree. Readers
    # aggregate by entry (`seq`) or scan the table once.
    #
    # Schema version 2 (migrations.py) made `start` and `end` 64-bit and dropped the foreign key from
    # `seq` to the journal on PostgreSQL, where it was a row-locking check per row that took most of
    # a million-line import; `ledger verify` reports rows of an entry that declares none. SQLite's
    # integers were 64-bit already, and its check (a b-tree probe at commit) stays: on SQLite the
    # table keeps version 1's shape (`migrations.version_1_usage_line`).
    __table__ = _lines("usage_line", _str("project"), _str("pool"), _str("period"), _str("device_hours"),
                       _int("start", big=True), _int("end", big=True), _str("job", optional=True),
                       seq_key=False, sqlite_with_rowid=False)


# --- projections -------------------------------------------------------------------------------


class ConsortiumRow(TableRow):
    __table__ = _table("consortium", _key("id"), _str("name"), _str("unit"), _str("period"),
                       _str("period_hours", optional=True), *_seqs(retired=False))


class PolicyRow(TableRow):
    __table__ = _table("policy", _key("id"), _str("entitlement"), _str("contribution_weight"),
                       _str("usage_half_life_days"), *_seqs(retired=False))


class AcceleratorRow(TableRow):
    """An accelerator type; `rate` is its latest rate (the versions are in `accelerator_rate`)."""

    __table__ = _table("accelerator", _key("id"), _str("rate"), _str("name", optional=True), *_seqs())


class AcceleratorRateRow(TableRow):
    """A rate decided by entry `seq`, applying from `from_period` on (NULL: from the start)."""

    __table__ = _table("accelerator_rate", _key("accelerator", foreign_key="accelerator.id"),
                       _key("seq", Integer), _str("from_period", optional=True), _str("rate"))


class MemberRow(TableRow):
    __table__ = _table("member", _key("id"), _str("name"), _str("kind", optional=True),
                       _str("region", optional=True), *_seqs())


class PoolRow(TableRow):
    __table__ = _table(
        "pool", _key("id"), _str("member", index=True), _str("accelerator"),
        _str("capacity", optional=True), _str("devices", optional=True), _str("hours", optional=True),
        _str("region", optional=True), _str("reserve"), _str("cost"), *_seqs(),
    )


def _asset(name: str) -> Table:
    """Datasets and models share their columns. `access` is "open", "consortium", or a JSON list of
    member ids."""
    return _table(name, _key("id"), _str("member", index=True), _str("access", text=True),
                  _str("residency", optional=True, text=True), _str("credit"), *_seqs())


class DatasetRow(TableRow):
    __table__ = _asset("dataset")


class ModelRow(TableRow):
    __table__ = _asset("model")


class ProjectRow(TableRow):
    """A project; its sponsors are rows of `project_sponsor`."""

    __table__ = _table(
        "project", _key("id"), _str("demand"), _str("weight"), _str("speed", optional=True, text=True),
        _str("regions", optional=True, text=True), _str("datasets", text=True), _str("models", text=True),
        *_seqs(),
    )


class ProjectSponsorRow(TableRow):
    """A sponsor's stake as written (not normalised), for aggregation in SQL."""

    __table__ = _table("project_sponsor", _key("project", foreign_key="project.id"),
                       _key("member", index=True), _str("stake"))


# Record kind -> its projection table.
RECORD_TABLES: dict[str, type[TableRow]] = {
    "consortium": ConsortiumRow,
    "policy": PolicyRow,
    "accelerator": AcceleratorRow,
    "member": MemberRow,
    "pool": PoolRow,
    "dataset": DatasetRow,
    "model": ModelRow,
    "project": ProjectRow,
}
# Every projection table, parents before children (the order rows are written and compared in).
PROJECTION_TABLES: tuple[type[TableRow], ...] = (
    *RECORD_TABLES.values(),
    AcceleratorRateRow,
    ProjectSponsorRow,
)
