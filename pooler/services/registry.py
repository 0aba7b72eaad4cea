"""The registry: creating a ledger, applying manifests, adding, listing and retiring records.

Every write reads the current state inside its own write transaction, checks the whole resulting
state with the manifest rules, and records one journal entry per change, all in that transaction:
either everything lands or nothing does.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from pooler.core.model import COLLECTIONS, RECORD_TYPES, Snapshot, dec_str
from pooler.core.period import PeriodError, parse_period, period_of
from pooler.errors import NotFound, PoolerError, UsageError
from pooler.services.context import Context
from pooler.services.files import input_file

if TYPE_CHECKING:
    from pooler.core.plan import Change, Plan
    from pooler.store import Ledger

# The store (SQLAlchemy), the manifest reader and the planner are imported by the functions that use
# them: `list_records` reads through `pooler.store.readonly` and must start without them (issue #6).

KINDS = tuple(COLLECTIONS)


class RegistryError(PoolerError):
    """A change that the ledger's current state does not allow."""


def init(ctx: Context) -> None:
    """Create a new, empty ledger at `ctx.db` (refused when one exists)."""
    from pooler.store import Ledger

    Ledger.init(ctx.url, actor=ctx.actor, clock=ctx.clock).close()


@contextmanager
def open_ledger(ctx: Context, *, read_only: bool = False) -> Iterator[Ledger]:
    """The ledger at `ctx.db`, closed again on leaving the block.

    Closing matters: SQLite folds its write-ahead log into the main file when the last connection
    closes, and a ledger left open would do that at some later, arbitrary moment.

    `read_only` for every call that only reads: the ledger is opened read-only (nothing written, not
    migrated), so that an auditor's copy in a folder pooler may not write to can be read
    (`Ledger.open`).
    """
    from pooler.store import Ledger

    ledger = Ledger.open(ctx.url, clock=ctx.clock, actor=ctx.actor, read_only=read_only)
    try:
        yield ledger
    finally:
        ledger.close()


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    recorded: tuple[int, ...]  # journal seqs written (empty on a dry run or an empty plan)
    dry_run: bool


def _rates_from(ctx: Context, snapshot: Snapshot, requested: str | None) -> str:
    """The period from which rate changes apply: the one asked for, else the current period.
    Earlier periods keep their rates."""
    kind = snapshot.consortium.period
    if requested is None:
        return period_of(ctx.clock(), kind).label
    try:
        return parse_period(requested, kind).label
    except PeriodError as exc:
        raise UsageError(f"--rates-from: {exc}") from None


def _check_retired_ids(writer: Any, plan: Plan, source: str) -> None:
    """A manifest that adds an id retired before is refused, naming the file, table, id and key
    (review: the error named neither the file nor the table)."""
    from pooler.io.manifest import ManifestError, Problem

    problems = [
        Problem(source, table=COLLECTIONS[change.kind], id=change.id, key="id",
                message="was retired; ids are never reused (choose a new id)")
        for change in plan.changes
        if change.action == "add" and change.id in writer.retired_ids(change.kind)
    ]
    if problems:
        raise ManifestError(problems)


def _check_speed_tables(plan: Plan, desired: Snapshot, source: str) -> None:
    """A project added, or whose speed table changes, must run somewhere: a table with no type above
    speed 0 is refused (review: `speed = {}` was taken, and listed like no table at all). A ledger
    that holds such a project from before is not refused for it on other changes."""
    from pooler.io.manifest import NOWHERE_SPEED, ManifestError, Problem, runs_nowhere_by_speed

    projects = desired.by_id("project")
    problems = [
        Problem(source, table="projects", id=change.id, key="speed", message=NOWHERE_SPEED)
        for change in plan.changes
        if change.kind == "project" and change.id in projects
        and (change.action == "add" or (change.action == "change" and "speed" in change.changed_keys))
        and runs_nowhere_by_speed(projects[change.id])
    ]
    if problems:
        raise ManifestError(problems)


def _check_result(state: Snapshot, source: str) -> None:
    from pooler.io.manifest import ManifestError, check_state

    problems = check_state(state, source)
    if problems:
        raise ManifestError(problems)


def apply(ctx: Context, path: Path, *, dry_run: bool = False, prune: bool = False,
          rates_from: str | None = None) -> ApplyResult:
    """Plan the changes that `path` asks for and, unless `dry_run`, record them in one transaction.

    Accelerator rate changes apply from `rates_from` (default: the current period) on.
    """
    from pooler.core.plan import make_plan, merge
    from pooler.io.manifest import load_manifest

    desired = load_manifest(input_file(path, "manifest file"), allow_usage=False)
    # a dry run only reads: it works on a ledger pooler may not write to (an auditor's copy)
    with open_ledger(ctx, read_only=dry_run) as ledger, \
            (ledger.reader() if dry_run else ledger.writer(ctx.actor)) as writer:
        current = writer.snapshot()
        given = settings_given(path)
        if "consortium" not in given:
            desired = desired.replace(consortium=current.consortium)
        if "policy" not in given:
            desired = desired.replace(policy=current.policy)
        # in the periods of the consortium as it will be (the ledger's, unless the file sets it):
        # a weekly consortium's rate change from a file without [consortium] was dated by months
        start = _rates_from(ctx, desired, rates_from)
        plan = make_plan(current, desired, prune=prune)
        _check_retired_ids(writer, plan, str(path))
        _check_speed_tables(plan, desired, str(path))
        _check_result(merge(current, desired, prune=prune), str(path))
        if dry_run:
            return ApplyResult(plan, (), dry_run)
        if plan.empty:
            writer.rollback()
            return ApplyResult(plan, (), dry_run)
        seqs = tuple(writer.append(*change.entry(start)).seq for change in plan.changes)
    return ApplyResult(plan, seqs, dry_run)


def settings_given(path: Path) -> set[str]:
    """Which of `consortium` and `policy` the manifest names at all.

    A manifest without `[consortium]` leaves the ledger's consortium settings as they are, and one
    without `[policy]` its policy, instead of resetting them to the defaults (a file with only
    `[policy]` used to turn a weekly consortium into a monthly one). Keys left out of a table that is
    given take their defaults, as everywhere in a manifest.
    """
    from pooler.io.manifest import manifest_tables

    return {"consortium", "policy"} & manifest_tables(path)


def add(ctx: Context, kind: str, fields: dict[str, Any]) -> Change:
    """Add one record of `kind` (built from CLI fields); refused if the id exists or existed."""
    from pooler.core.plan import Change, Plan

    cls = RECORD_TYPES[kind]
    record = cls.from_record({k: v for k, v in fields.items() if v is not None})
    with open_ledger(ctx) as ledger, ledger.writer(ctx.actor) as writer:
        current = writer.snapshot()
        if record.id in current.by_id(kind):
            raise RegistryError(f'{kind} "{record.id}" already exists (use `pooler apply` to change it)')
        change = Change("add", kind, record.id, None, record.to_record())
        _check_retired_ids(writer, Plan((change,)), f"pooler {kind} add")
        _check_speed_tables(Plan((change,)), current.replace(**{COLLECTIONS[kind]: (record,)}),
                            f"pooler {kind} add")
        from pooler.io.manifest import ManifestError, check_added

        problems = check_added(current, COLLECTIONS[kind], record, f"pooler {kind} add")
        if problems:
            raise ManifestError(problems)
        writer.append(*change.entry())
    return change


def retire(ctx: Context, kind: str, record_id: str) -> Change:
    """Retire one record; refused while live records still refer to it."""
    from pooler.core.plan import Change

    with open_ledger(ctx) as ledger, ledger.writer(ctx.actor) as writer:
        current = writer.snapshot()
        record = current.by_id(kind).get(record_id)
        if record is None:
            raise NotFound(_missing(kind, record_id, writer.retired_ids(kind)))
        users = referrers(current, kind, record_id)
        if users:
            listed = ", ".join(f'{k} "{i}"' for k, i in users[:5])
            more = f" and {len(users) - 5} more" if len(users) > 5 else ""
            raise RegistryError(
                f'{kind} "{record_id}" is still used by {listed}{more}; retire those first'
            )
        change = Change("retire", kind, record_id, record.to_record(), None)
        writer.append(*change.entry())
    return change


def referrers(state: Snapshot, kind: str, record_id: str) -> list[tuple[str, str]]:
    """Live records that refer to (kind, id), as (kind, id) pairs sorted by kind then id."""
    found: list[tuple[str, str]] = []
    for pool in state.pools:
        if (kind == "member" and pool.member == record_id) or (
            kind == "accelerator" and pool.accelerator == record_id
        ):
            found.append(("pool", pool.id))
    if kind == "member":
        # owners, and members named in an access list (retiring one would leave the list naming a
        # member that no longer exists: a state no manifest could write)
        found += [("dataset", d.id) for d in state.datasets if d.member == record_id or _grants_access(d, record_id)]
        found += [("model", m.id) for m in state.models if m.member == record_id or _grants_access(m, record_id)]
    for project in state.projects:
        uses = (
            (kind == "member" and record_id in dict(project.sponsors))
            or (kind == "dataset" and record_id in project.datasets)
            or (kind == "model" and record_id in project.models)
            or (kind == "accelerator" and record_id in dict(project.speed or ()))
        )
        if uses:
            found.append(("project", project.id))
    return found


def _grants_access(asset: Any, member: str) -> bool:
    return not isinstance(asset.access, str) and member in asset.access


def _missing(kind: str, record_id: str, retired: set[str] | frozenset[str]) -> str:
    if record_id in retired:
        return f'{kind} "{record_id}" was retired'
    return f'no {kind} "{record_id}" in this ledger'


def list_records(ctx: Context, kind: str, *, include_retired: bool = False) -> list[dict[str, Any]]:
    """Plain records of `kind` sorted by id; retired ones (with `retired_seq`) on request.

    Read through the DB-API path (`pooler.store.readonly`) when it can answer, which spares importing
    SQLAlchemy; else, and for every error, through `Ledger` as any other read. Both give the same
    records (tests/test_startup.py compares them on SQLite and PostgreSQL)."""
    if kind not in COLLECTIONS:
        raise UsageError(f"unknown record kind {kind!r}")
    from pooler.store.readonly import read_state
    from pooler.store.rowstate import records_of

    state = read_state(ctx.db, kind)
    if state is not None:
        return records_of(state, kind, include_retired)
    with open_ledger(ctx, read_only=True) as ledger:
        return ledger.records(kind, include_retired=include_retired)


def show(ctx: Context, kind: str, record_id: str) -> dict[str, Any]:
    """One record with its history: the journal entries that added, changed or retired it."""
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        for record in reader.records(kind, include_retired=True):
            if record["id"] == record_id:
                history = [
                    {"seq": e.seq, "time": e.time, "actor": e.actor, "kind": e.kind}
                    for e in reader.entries_for(kind, record_id)
                ]
                if kind == "accelerator":
                    # `rate` is the latest decision; which rate applies to which period is here
                    # (review: a rate decided from a later period read as today's)
                    record = {**record, "rates": [
                        {"from": v.from_period, "rate": dec_str(v.rate), "seq": v.seq}
                        for v in reader.rates(record_id)]}
                return {**record, "history": history}
    raise NotFound(f'no {kind} "{record_id}" in this ledger')


def rate_histories(ctx: Context) -> dict[str, list[Any]]:
    """The accelerators whose rate changes over time (more than one rate version), with the versions
    in the order they were decided: what a manifest, which holds one rate each, cannot carry."""
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        state = reader.state()
        active = {a.id for a in state.snapshot().accelerators}
        out: dict[str, list[Any]] = {}
        for version in reader.rates():
            if version.accelerator in active:
                out.setdefault(version.accelerator, []).append(version)
        varying = {}
        for name, versions in out.items():
            first = [v for v in versions if v.from_period is None]
            rates = {max(first, key=lambda v: v.seq).rate} if first else set()
            rates |= {state.rate_as_of(name, v.from_period) for v in versions if v.from_period is not None}
            if len(rates) > 1:  # (a correction from the start alone changes no period's rate)
                varying[name] = versions
    return varying


def snapshot(ctx: Context, period: str | None = None) -> Snapshot:
    with open_ledger(ctx, read_only=True) as ledger:
        return ledger.snapshot(period)
