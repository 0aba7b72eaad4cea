"""What the dashboard (`pooler tui`) reads, aggregated for the screen, in two steps.

- `overview`: a period's totals, and capacity, grants and use by region and by accelerator, plus the
  journal head. It reads the run entry with its pool and member rows, the period's usage, and replays
  only the settings, accelerators, members and pools up to the state the run was solved from; so it
  costs the same with 100 projects or 10,000.
- `details`: the period's audit report (members settled, projects, pools, lending) without the
  verification, which the dashboard runs on its own, in the background.

Nothing here allocates or settles: the figures are the recorded run's rows, and `details` calls the
same settlement and report builders as `pooler report audit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping

from pooler.core.contrib import contributions, pool_capacity, pool_region
from pooler.core.model import Snapshot
from pooler.core.period import period_of
from pooler.errors import NotFound
from pooler.services.context import Context
from pooler.services.registry import open_ledger
from pooler.store import LedgerState, replay

if TYPE_CHECKING:
    from pooler.services import alloc

# `alloc` and `report` (and the manifest reader and settlement below them) are imported by the
# functions that use them: the dashboard's first screen needs this module, its data classes and
# `current_period` before it needs any of them (see tui/start.py).

ZERO = Decimal(0)
# The registry kinds the overview needs: enough for pools with their owners, regions and rates.
_OVERVIEW_KINDS = tuple(
    [f"{k}.set" for k in ("consortium", "policy")]
    + [f"{k}.{verb}" for k in ("accelerator", "member", "pool") for verb in ("add", "change", "retire")]
)


@dataclass(frozen=True)
class Group:
    """Pools of one region or one accelerator type: capacity, granted and used, in units."""

    name: str
    pools: int
    capacity_units: Decimal
    granted_units: Decimal
    used_units: Decimal

    @property
    def granted_share(self) -> Decimal | None:
        return None if self.capacity_units <= 0 else self.granted_units / self.capacity_units

    @property
    def used_share(self) -> Decimal | None:
        return None if self.capacity_units <= 0 else self.used_units / self.capacity_units


@dataclass(frozen=True)
class Overview:
    """The first screen: the consortium, the period's run and totals, and the journal head."""

    ledger: str  # the ledger as messages name it
    consortium: str
    unit: str
    head_seq: int
    head_hash: str
    members: int
    pools: int
    period_kind: str = "month"  # the consortium's periods: month, week or quarter
    period: str | None = None  # None while no run is recorded (or none for the period asked)
    periods: tuple[str, ...] = ()  # periods with a recorded run, oldest first
    run: Mapping[str, Any] | None = None  # seq, time, actor, reason, supersedes
    projects: int = 0  # projects in the run
    capacity_device_hours: Decimal = ZERO
    capacity_units: Decimal = ZERO
    granted_units: Decimal = ZERO
    allocated_units: Decimal = ZERO  # the members' totals Y_m (units delivered at project speed)
    used_units: Decimal = ZERO  # device-hours used x the pool's rate
    used_device_hours: Decimal = ZERO
    has_usage: bool = False
    jain_index: float | None = None
    satisfied_projects: int | None = None
    utilisation: float | None = None
    by_region: tuple[Group, ...] = ()
    by_accelerator: tuple[Group, ...] = ()
    note: str | None = None  # why there are no figures, in words
    can_allocate: bool = True  # the ledger has members and projects (else `alloc run` has nothing to do)

    @property
    def idle_share(self) -> Decimal | None:
        """Capacity not used (or, before any usage is imported, not granted), in units."""
        if self.capacity_units <= 0 or self.period is None:
            return None
        delivered = self.used_units if self.has_usage else self.granted_units
        return max(ZERO, 1 - delivered / self.capacity_units)


@dataclass(frozen=True)
class Details:
    """Everything the tables and detail screens show for one run."""

    period: str
    report: Mapping[str, Any]  # the audit report of the run, unverified
    view: alloc.RunView
    state: LedgerState  # the registry the run was solved from
    snapshot: Snapshot
    grants: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)  # by project
    has_usage: bool = True  # usage is imported for the period (else used and balances are none yet)


def _check(period: str | None) -> None:
    if period is not None:
        from pooler.services.alloc import period_option

        period_option(period)


def overview(ctx: Context, period: str | None = None) -> Overview:
    """The overview of `period` (default: the latest period with a recorded run).

    An empty ledger, or one without runs, gives an overview with a `note` and the capacity alone.
    """
    from pooler.services import alloc, report

    _check(period)
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        head_seq, head_hash = reader.head()
        runs = reader.entries_of_kind(alloc.RUN_KIND)
        periods = tuple(sorted({e.payload["period"] for e in runs}, key=alloc.period_order))
        entry = None
        if runs:
            entry, _ = alloc.pick_entry(reader, period)
        upto = entry.payload["state_seq"] if entry is not None else head_seq
        entries = sorted((e for kind in _OVERVIEW_KINDS for e in reader.entries_of_kind(kind)
                          if e.seq <= upto), key=lambda e: e.seq)
        state = replay(entries)
        label = entry.payload["period"] if entry is not None else None
        snapshot = state.snapshot(label)
        base = Overview(ledger=ledger.name, consortium=snapshot.consortium.name,
                        unit=snapshot.consortium.unit, head_seq=head_seq, head_hash=head_hash,
                        members=len(snapshot.members), pools=len(snapshot.pools), periods=periods,
                        period_kind=snapshot.consortium.period)
        if entry is None:
            # (projects are not among the kinds replayed above: the projection says whether any is)
            return _without_run(base, snapshot, reader, head_seq, reader.has_active("project"))
        pool_rows = reader.attachment_rows(entry.seq, "alloc_pool")
        member_rows = reader.attachment_rows(entry.seq, "alloc_member")
        projects = entry.payload.get("attachments", {}).get("alloc_project", {}).get("rows", 0)
        used = report.used_device_hours(reader, label)
    granted = {r["pool"]: Decimal(r["granted"]) for r in pool_rows}
    used_by_pool: dict[str, Decimal] = {}
    for (_, pool_id), dh in used.items():
        used_by_pool[pool_id] = used_by_pool.get(pool_id, ZERO) + dh
    rates = {a.id: a.rate for a in snapshot.accelerators}
    by_region: dict[str, list[Decimal]] = {}
    by_type: dict[str, list[Decimal]] = {}
    cap_dh = ZERO
    for pool in snapshot.pools:
        rate = rates.get(pool.accelerator, ZERO)
        capacity = pool_capacity(snapshot, pool)
        cap_dh += capacity
        figures = (Decimal(1), capacity * rate, granted.get(pool.id, ZERO) * rate,
                   used_by_pool.get(pool.id, ZERO) * rate)
        for groups, name in ((by_region, pool_region(snapshot, pool) or "(none)"), (by_type, pool.accelerator)):
            sums = groups.setdefault(name, [ZERO] * 4)
            for i, value in enumerate(figures):
                sums[i] += value

    def groups(table: dict[str, list[Decimal]]) -> tuple[Group, ...]:
        return tuple(Group(name, int(v[0]), v[1], v[2], v[3]) for name, v in sorted(table.items()))

    metrics = entry.payload.get("metrics", {})
    regions, types = groups(by_region), groups(by_type)
    return _replace(
        base, period=label, projects=projects,
        run={"seq": entry.seq, "time": entry.time, "actor": entry.actor,
             "reason": entry.payload.get("reason"), "supersedes": entry.payload.get("supersedes")},
        capacity_device_hours=cap_dh, capacity_units=sum((g.capacity_units for g in regions), ZERO),
        granted_units=sum((g.granted_units for g in regions), ZERO),
        allocated_units=sum((Decimal(m["allocated"]) for m in member_rows), ZERO),
        used_units=sum((g.used_units for g in regions), ZERO),
        used_device_hours=sum(used.values(), ZERO), has_usage=bool(used),
        jain_index=float(metrics["jain_index"]) if "jain_index" in metrics else None,
        satisfied_projects=metrics.get("satisfied_projects"),
        utilisation=float(metrics["utilisation"]) if "utilisation" in metrics else None,
        by_region=regions, by_accelerator=types,
    )


def _replace(base: Overview, **changes: Any) -> Overview:
    from dataclasses import replace

    return replace(base, **changes)


def _without_run(base: Overview, snapshot: Snapshot, reader, head_seq: int, has_projects: bool) -> Overview:
    can_allocate = bool(snapshot.members) and has_projects
    if head_seq <= 1 or (not snapshot.members and not snapshot.pools):
        note = ("The ledger is empty: record the consortium with `pooler apply MANIFEST` "
                "(or try `pooler demo`).")
    elif not can_allocate:
        note = ("No allocation is recorded yet, and there is nothing to allocate: the ledger has no "
                f"{'members' if not snapshot.members else 'projects'} yet (`pooler apply MANIFEST`).")
    else:
        note = "No allocation is recorded yet: press 6 (Allocate) to preview and commit one."
    rates = {a.id: a.rate for a in snapshot.accelerators}
    by_region: dict[str, list[Decimal]] = {}
    for pool in snapshot.pools:
        sums = by_region.setdefault(pool_region(snapshot, pool) or "(none)", [ZERO, ZERO])
        sums[0] += 1
        sums[1] += pool_capacity(snapshot, pool) * rates.get(pool.accelerator, ZERO)
    regions = tuple(Group(n, int(v[0]), v[1], ZERO, ZERO) for n, v in sorted(by_region.items()))
    return _replace(base, note=note, by_region=regions, can_allocate=can_allocate,
                    capacity_units=sum((g.capacity_units for g in regions), ZERO),
                    capacity_device_hours=sum((pool_capacity(snapshot, p) for p in snapshot.pools), ZERO))


def details(ctx: Context, period: str | None = None) -> Details:
    """The members, projects and pools of `period`'s run (default: the latest), for the tables."""
    from pooler.services import alloc, report

    _check(period)
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        view = alloc.pick_run(reader, period)
        state = reader.state_at(view.payload["state_seq"])
        snapshot = state.snapshot(view.period)
        used = report.used_device_hours(reader, view.period)
        outside, outside_pools = report.outside_records(reader, snapshot, used)
        head = reader.head()
    audit = report.audit_of(view, snapshot, used, head, outside=outside, outside_pools=outside_pools)
    grants: dict[str, list[Mapping[str, Any]]] = {}
    for g in view.grants:
        grants.setdefault(g["project"], []).append(g)
    return Details(view.period, audit, view, state, snapshot,
                   {p: tuple(sorted(rows, key=lambda g: (-g["device_hours"], g["pool"])))
                    for p, rows in grants.items()}, has_usage=bool(used))


def registered(ctx: Context) -> dict[str, Any]:
    """The members, projects and pools registered now, shaped as the audit report's rows with the
    allocation's figures None: what the tables show before any run is recorded. A member's
    contribution (its pools' capacity at their rates, and its credits) is known without a run;
    its share is the run's (it weighs the usage history of the period allocated)."""
    from pooler.services.registry import snapshot as registry_snapshot

    snapshot = registry_snapshot(ctx)
    contributed = contributions(snapshot)
    members = [{"member": m.id, "name": m.name, "share": None, "contributed": contributed[m.id],
                "entitled": None, "allocated": None, "used": None, "own_use": None, "lent": None,
                "borrowed": None, "balance": None} for m in snapshot.members]
    projects = [{"project": p.id, "demand": p.demand, "allocated": None, "served": None, "bottleneck": "",
                 "sponsors": ", ".join(f"{m} {s * 100:.0f}%" for m, s in sorted(p.stakes().items())),
                 "stakes": p.stakes()}
                for p in snapshot.projects]
    pools = [{"pool": p.id, "member": p.member, "accelerator": p.accelerator,
              "region": pool_region(snapshot, p), "capacity": pool_capacity(snapshot, p), "granted": None,
              "used": None, "idle_share": None, "flagged": False} for p in snapshot.pools]
    return {"members": members, "projects": projects, "pools": pools, "unit": snapshot.consortium.unit}


def member_statement(d: Details, member_id: str) -> dict[str, Any]:
    """One member's statement (pools, projects, lending by counterparty) from the loaded details.
    `has_usage` says whether usage is imported for the period: before it is, the statement's used,
    lent, borrowed and balance are not known (the Members table's "-"), not zero as the audit's
    settlement counts them, and its note says so in those words."""
    from pooler.services import report

    statement = report.member_of(d.report, member_id, d.snapshot)
    statement["has_usage"] = d.has_usage
    if not d.has_usage:
        # (the audit's note: "No usage is recorded for P: used figures are zero and idle shares ...")
        others = [n for n in statement["notes"] if not n.startswith("No usage is recorded for ")]
        statement["notes"] = [f"No usage is imported for {d.period} yet: used, lent, borrowed and balance "
                              "are not known (-). Idle shares are computed from the grants (what was "
                              "offered), not from use."] + others
    return statement


def registered_statement(records: Mapping[str, Any], member_id: str) -> dict[str, Any]:
    """What is known of a member before any run, from `registered`'s records, shaped as
    `member_statement`: its contribution, the pools it contributes and the projects it sponsors;
    the allocation's figures None."""
    rows = [m for m in records["members"] if m["member"] == member_id]
    if not rows:
        raise NotFound(f'no member "{member_id}" in the ledger')
    projects = [{"project": p["project"], "stake": p["stakes"][member_id], "demand": p["demand"],
                 "allocated": None, "member_part": None, "bottleneck": "", "used_units": None,
                 "member_used": None}
                for p in records["projects"] if member_id in p["stakes"]]
    return {
        "report": "member", "title": f"{rows[0]['name'] or member_id}: no allocation recorded yet",
        "member": member_id, "period": None, "unit": records.get("unit"), "statement": rows,
        "projects": projects, "pools": [p for p in records["pools"] if p["member"] == member_id],
        "counterparties": [], "has_usage": False,
        "notes": ["No allocation is recorded yet: the share, entitlement and allocation come with the "
                  "first run (6 allocates one); used, lent, borrowed and balance with usage."],
    }


def project_detail(d: Details, project_id: str) -> dict[str, Any]:
    """A project's grants by pool and the explanation `pooler alloc explain` gives, in words."""
    from pooler.services import alloc

    if project_id not in {p["project"] for p in d.view.projects}:
        raise NotFound(f'no project "{project_id}" in the {d.period} run')
    explained = alloc.explain_run(d.view, d.state, project_id)
    return {"project": project_id, "grants": list(d.grants.get(project_id, ())),
            "explanation": explained, "lines": alloc.explanation_lines(explained, all_pools=True)}


def commit_changes(preview: alloc.RunOutcome, recorded: alloc.RunOutcome) -> dict[str, Any]:
    """What a commit recorded against the preview it was asked from, as `alloc.preview_changes`
    gives changes ("first": the preview, "second": the recorded run). A commit solves again from the
    ledger as it is then, so the two differ when the ledger changed meanwhile (a project added)."""
    from pooler.services import alloc

    def rows(outcome: alloc.RunOutcome, key: str) -> list[dict[str, Any]]:
        return [{key: k, "allocated": v["allocated"]} for k, v in outcome.result[f"{key}s"].items()]

    return {"first": "preview", "second": "recorded", "unit": recorded.result.get("unit"),
            "against": {"period": recorded.period, "seq": recorded.seq},
            **{f"{key}s": alloc.changes(rows(preview, key), rows(recorded, key), key, "preview", "recorded")
               for key in ("member", "project")}}


def moved(changes: Mapping[str, Any], key: str) -> int:
    """How many of `changes`' members or projects (`key`) moved by half a unit or more, or are in
    only one of the two runs."""
    first, second = changes.get("first", "committed"), changes.get("second", "preview")
    return sum(1 for r in changes[f"{key}s"]
               if abs(r["change"]) >= 0.5 or (r[first] is None) != (r[second] is None))


def current_period(ctx: Context, kind: str = "month") -> str:
    """The period the clock is in: what the Allocate view offers first."""
    return period_of(ctx.clock(), kind).label


def verify(ctx: Context):
    """The full verification (`pooler ledger verify`)."""
    from pooler.services import ledger

    return ledger.verify(ctx)
