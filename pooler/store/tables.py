"""The ledger's tables, as SQLModel classes (`*Row`).

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
"""

from __future__ import annotations

from sqlalchemy import Text
from sqlmodel import Field, SQLModel

# Every table the store owns lives here, apart from any other SQLModel metadata in the process.
metadata = SQLModel.metadata


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"

    key: str = Field(primary_key=True)
    value: str


class JournalRow(SQLModel, table=True):
    __tablename__ = "journal"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    time: str
    actor: str
    kind: str = Field(index=True)
    payload: str = Field(sa_type=Text)
    prev_hash: str
    hash: str


# --- attachment tables (append-only; each registered in attachments.py) ---------------------------


class AllocGrantRow(SQLModel, table=True):
    """Device-hours of one pool granted to one project, attached to the entry that records a run."""

    __tablename__ = "alloc_grant"

    seq: int = Field(primary_key=True, foreign_key="journal.seq")
    line: int = Field(primary_key=True)
    project: str = Field(index=True)
    pool: str
    device_hours: int
    units: str


class AllocMemberRow(SQLModel, table=True):
    """One member's line of a recorded allocation run: share, contribution, demand and allocation.

    Figures are the solver's floats written as the shortest decimal text that reads back to the same
    float, so the run can be shown and audited exactly as it was computed.
    """

    __tablename__ = "alloc_member"

    seq: int = Field(primary_key=True, foreign_key="journal.seq")
    line: int = Field(primary_key=True)
    member: str = Field(index=True)
    share: str
    contributed: str
    demand: str
    allocated: str


class AllocPoolRow(SQLModel, table=True):
    """One pool's line of a recorded allocation run: its capacity then, and what was granted of it."""

    __tablename__ = "alloc_pool"

    seq: int = Field(primary_key=True, foreign_key="journal.seq")
    line: int = Field(primary_key=True)
    pool: str = Field(index=True)
    capacity: str
    granted: str


class AllocProjectRow(SQLModel, table=True):
    """One project's line of a recorded allocation run."""

    __tablename__ = "alloc_project"

    seq: int = Field(primary_key=True, foreign_key="journal.seq")
    line: int = Field(primary_key=True)
    project: str = Field(index=True)
    weight: str
    demand: str
    allocated: str
    bottleneck: str
    level: str | None = Field(default=None, nullable=True)


class UsageLineRow(SQLModel, table=True):
    """One line of a usage import: device-hours a project consumed on a pool between two moments.

    `start` and `end` are epoch seconds (UTC); `period` is the consortium period the line is charged
    to (the one containing `end`, or the period the import named); `job` is the scheduler's job id
    when the line came from one.
    """

    __tablename__ = "usage_line"
    # A million lines per import: on SQLite the rows live in the primary key's own b-tree (no rowid
    # b-tree beside it) and no secondary index is kept, so an insert touches one b-tree. Readers
    # aggregate by entry (`seq`) or scan the table once.
    __table_args__ = {"sqlite_with_rowid": False}

    seq: int = Field(primary_key=True, foreign_key="journal.seq")
    line: int = Field(primary_key=True)
    project: str
    pool: str
    period: str
    device_hours: str
    start: int
    end: int
    job: str | None = Field(default=None, nullable=True)


# --- projections -------------------------------------------------------------------------------


class ConsortiumRow(SQLModel, table=True):
    __tablename__ = "consortium"

    id: str = Field(primary_key=True)
    name: str
    unit: str
    period: str
    period_hours: str | None = None
    added_seq: int
    changed_seq: int


class PolicyRow(SQLModel, table=True):
    __tablename__ = "policy"

    id: str = Field(primary_key=True)
    entitlement: str
    contribution_weight: str
    usage_half_life_days: str
    added_seq: int
    changed_seq: int


class AcceleratorRow(SQLModel, table=True):
    """An accelerator type; `rate` is its latest rate (the versions are in `accelerator_rate`)."""

    __tablename__ = "accelerator"

    id: str = Field(primary_key=True)
    rate: str
    name: str | None = None
    added_seq: int
    changed_seq: int
    retired_seq: int | None = None


class AcceleratorRateRow(SQLModel, table=True):
    """A rate decided by entry `seq`, applying from `from_period` on (NULL: from the start)."""

    __tablename__ = "accelerator_rate"

    accelerator: str = Field(primary_key=True, foreign_key="accelerator.id")
    seq: int = Field(primary_key=True)
    from_period: str | None = None
    rate: str


class MemberRow(SQLModel, table=True):
    __tablename__ = "member"

    id: str = Field(primary_key=True)
    name: str
    kind: str | None = None
    region: str | None = None
    added_seq: int
    changed_seq: int
    retired_seq: int | None = None


class PoolRow(SQLModel, table=True):
    __tablename__ = "pool"

    id: str = Field(primary_key=True)
    member: str = Field(index=True)
    accelerator: str
    capacity: str | None = None
    devices: str | None = None
    hours: str | None = None
    region: str | None = None
    reserve: str
    cost: str
    added_seq: int
    changed_seq: int
    retired_seq: int | None = None


class _AssetColumns(SQLModel):
    """The columns datasets and models share. `access` is "open", "consortium", or a JSON list of
    member ids."""

    id: str = Field(primary_key=True)
    member: str = Field(index=True)
    access: str = Field(sa_type=Text)
    residency: str | None = Field(default=None, sa_type=Text)
    credit: str
    added_seq: int
    changed_seq: int
    retired_seq: int | None = None


class DatasetRow(_AssetColumns, table=True):
    __tablename__ = "dataset"


class ModelRow(_AssetColumns, table=True):
    __tablename__ = "model"


class ProjectRow(SQLModel, table=True):
    """A project; its sponsors are rows of `project_sponsor`."""

    __tablename__ = "project"

    id: str = Field(primary_key=True)
    demand: str
    weight: str
    speed: str | None = Field(default=None, sa_type=Text)
    regions: str | None = Field(default=None, sa_type=Text)
    datasets: str = Field(sa_type=Text)
    models: str = Field(sa_type=Text)
    added_seq: int
    changed_seq: int
    retired_seq: int | None = None


class ProjectSponsorRow(SQLModel, table=True):
    """A sponsor's stake as written (not normalised), for aggregation in SQL."""

    __tablename__ = "project_sponsor"

    project: str = Field(primary_key=True, foreign_key="project.id")
    member: str = Field(primary_key=True, index=True)
    stake: str


# Record kind -> its projection table.
RECORD_TABLES: dict[str, type[SQLModel]] = {
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
PROJECTION_TABLES: tuple[type[SQLModel], ...] = (
    *RECORD_TABLES.values(),
    AcceleratorRateRow,
    ProjectSponsorRow,
)
