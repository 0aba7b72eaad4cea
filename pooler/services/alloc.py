"""Allocation runs: solving a manifest, recording a period's run, showing, explaining and comparing runs.

A run is one `alloc.run` journal entry whose attached rows hold every member's, project's and pool's
figures and every grant, so that `ledger verify` covers them and `alloc show` never recomputes. The
entry also records the journal position of the state it was solved from (`state_seq`) and a digest of
that state, so an auditor can rebuild the inputs and solve again.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from pooler.core.contrib import allowed_regions, effective_rate, pool_capacity
from pooler.core.model import Snapshot
from pooler.core.period import PeriodError, parse_period, period_of
from pooler.errors import NotFound, PoolerError, UsageError
from pooler.io.manifest import dump_manifest, load_manifest
from pooler.services.context import Context
from pooler.services.files import input_file
from pooler.services.registry import open_ledger
from pooler.store import Entry, LedgerState

RUN_KIND = "alloc.run"


class AllocError(PoolerError):
    """An allocation that cannot be run or recorded as asked."""


def _exact(value: float) -> Decimal:
    """A solver float as exact decimal text: the shortest repr that reads back to the same float."""
    return Decimal(repr(float(value)))


def inputs_digest(snapshot: Snapshot) -> str:
    """SHA-256 of the canonical manifest of the solver's inputs (JSON form)."""
    return hashlib.sha256(dump_manifest(snapshot, "json").encode("utf-8")).hexdigest()


_BANNER_SILENCED = False


def _silence_solver_banner() -> None:
    """HiGHS prints a banner on the C-level stdout when the first solver object of a process is made,
    which would corrupt `--json` output. Make that first object with fd 1 pointed at /dev/null; later
    ones print nothing."""
    global _BANNER_SILENCED
    if _BANNER_SILENCED:
        return
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    _BANNER_SILENCED = True


def _allocate(snapshot: Snapshot, progress=None):
    """`allocate`, with its rare refusals (the LP solver losing feasibility that exact arithmetic
    keeps; a reference the validation should have caught) as one `Error:` line, not a traceback.
    `progress` is handed to `allocate` (see there)."""
    from pooler.core.alloc import AllocationError, allocate  # NumPy and the LP solver load only when allocating

    _silence_solver_banner()
    try:
        return allocate(snapshot, progress=progress)
    except AllocationError as exc:
        raise PoolerError(f"the allocation could not be computed ({exc}); no allocation was recorded. "
                          f"This is a fault in pooler, not in the input: please report it with the "
                          f"manifest or the ledger") from None


_STEPS = {"members": "step 1, members' totals", "projects": "step 2, projects",
          "placement": "step 3, placing the grants"}


def progress_text(p: Any) -> str:
    """A solve's `Progress` in words, as the CLI and the dashboard show it:
    'step 2, projects: 5 of 10 settled · 17 LPs', after 'solving again (the ledger changed
    meanwhile), attempt 2 of 3: ' when `alloc run` solves again."""
    what = _STEPS.get(p.step, p.step)
    if p.step != "placement":
        what += f": {p.settled:,} of {p.total:,} settled"
    again = (f"solving again (the ledger changed meanwhile), attempt {p.attempt} of {SOLVE_ATTEMPTS}: "
             if getattr(p, "attempt", 1) > 1 else "")
    return f"{again}{what} · {p.lp_solves:,} LPs"


# --- stateless solve ------------------------------------------------------------------------------


def solve_file(path: Path, period: str | None = None, *, progress=None) -> dict[str, Any]:
    """`alloc solve`: a manifest (with its optional `[usage]`) in, the DESIGN section-4 result out."""
    snapshot = load_manifest(input_file(path, "manifest file"), allow_usage=True, standalone=True)
    if period is not None:
        period_option(period, snapshot.consortium.period)
    result = _allocate(snapshot, progress)
    return result.to_json_dict(period, snapshot.consortium.unit)


def period_option(period: str, kind: str | None = None, what: str = "--period"):
    """The period `period` names (of `kind`, when given); else a usage error about `what` (the option
    or argument that gave it)."""
    try:
        return parse_period(period, kind)
    except PeriodError as exc:
        raise UsageError(f"{what}: {exc}") from None


# --- recorded runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    result: dict[str, Any]
    period: str
    seq: int | None  # the recorded entry; None on a dry run
    supersedes: int | None
    previous: "RunView | None" = None
    run: dict[str, Any] | None = None  # the recorded run as `alloc show --json` names it; None on a dry run


def _runs(reader, period: str | None = None) -> list[Entry]:
    runs = reader.entries_of_kind(RUN_KIND)
    return [e for e in runs if period is None or e.payload.get("period") == period]


def _rows(result) -> dict[str, list[dict[str, Any]]]:
    return {
        "alloc_member": [
            {"member": m.id, "share": _exact(m.share), "contributed": _exact(m.contributed),
             "demand": _exact(m.demand), "allocated": _exact(m.allocated)}
            for m in result.members.values()
        ],
        "alloc_project": [
            {"project": p.id, "weight": _exact(p.weight), "demand": _exact(p.demand),
             "allocated": _exact(p.allocated), "bottleneck": p.bottleneck,
             "level": None if p.level is None else _exact(p.level)}
            for p in result.projects.values()
        ],
        "alloc_pool": [
            {"pool": p.id, "capacity": _exact(p.capacity), "granted": _exact(p.granted)}
            for p in result.pools.values()
        ],
        "alloc_grant": [
            {"project": g.project, "pool": g.pool, "device_hours": int(g.device_hours),
             "units": _exact(g.units)}
            for g in result.grants
        ],
    }


# How many times `run` solves before it gives up on a ledger whose inputs keep changing meanwhile.
SOLVE_ATTEMPTS = 3


@dataclass(frozen=True)
class _Inputs:
    """What a run of `label` is solved from, as one read transaction saw it."""

    label: str
    snapshot: Snapshot
    used: dict[str, Any]
    previous: Entry | None
    state_seq: int
    digest: str  # `inputs_digest(snapshot)`, made once: at 10,000 projects it writes a big manifest

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal keys: the same solve, the same supersession."""
        return (self.label, self.digest, sorted(self.used.items()),
                self.previous.seq if self.previous else None)


def _inputs(reader, ctx: Context, period: str | None, reason: str | None, dry_run: bool) -> _Inputs:
    kind = reader.period_kind()
    try:
        label = period_option(period, kind).label if period is not None else period_of(ctx.clock(), kind).label
    except PeriodError as exc:  # the ledger's own kind is none (a damaged projection)
        raise AllocError(str(exc)) from None
    snapshot = reader.snapshot(label)
    # Decayed usage of the lines recorded before the period starts (DESIGN 3); none at half-life 0.
    from pooler.services.usage import with_usage

    snapshot, used = with_usage(reader, reader.state(), snapshot, label)
    if not snapshot.members or not snapshot.projects:
        raise AllocError("nothing to allocate: the ledger has no members or no projects yet "
                         "(pooler apply MANIFEST first)")
    earlier = _runs(reader, label)
    previous = earlier[-1] if earlier else None
    if previous is not None and reason is None and not dry_run:
        raise AllocError(
            f"{label} already has a recorded run (entry #{previous.seq}, {previous.time} by "
            f"{previous.actor}); pass --reason TEXT to supersede it"
        )
    return _Inputs(label, snapshot, used, previous, reader.head()[0], inputs_digest(snapshot))


def run(ctx: Context, period: str | None = None, *, dry_run: bool = False,
        reason: str | None = None, progress=None) -> RunOutcome:
    """Solve the period from the ledger's current state and record the run as one entry plus rows.

    A period with a recorded run is solved again only with a `reason`; the new run supersedes the
    old one and both stay in the journal.

    The solve runs in no transaction (about 10 s at 10,000 projects, minutes at 50,000, and other
    admins may write meanwhile). Then one write transaction reads the inputs again and records the
    run only if they are what was solved: the same period, solver inputs (`inputs_digest`), decayed
    usage and latest run of the period; the run names the head it was checked at (`state_seq`). If
    they changed, the period is solved again from the new state, up to `SOLVE_ATTEMPTS` times. So the
    run is exactly the state it names, runs of one period are serialised (a run recorded meanwhile
    is superseded only with a reason), and a failure leaves no trace. `progress` is handed to
    `allocate` for each solve.
    """
    if reason is not None and not reason.strip():
        raise UsageError("--reason: give a reason in words")
    with open_ledger(ctx, read_only=dry_run) as ledger:
        for attempt in range(1, SOLVE_ATTEMPTS + 1):
            with ledger.reader() as reader:
                solved = _inputs(reader, ctx, period, reason, dry_run)
                if dry_run:
                    previous_view = _view(reader, solved.previous) if solved.previous is not None else None
            told = progress
            if progress is not None and attempt > 1:
                def told(p, attempt=attempt):  # noqa: ANN001 - says which solve this is
                    progress(replace(p, attempt=attempt))
            result = _allocate(solved.snapshot, told)
            as_json = result.to_json_dict(solved.label, solved.snapshot.consortium.unit)
            if dry_run:
                return RunOutcome(as_json, solved.label, None, solved.previous.seq if solved.previous else None,
                                  previous_view)
            with ledger.writer(ctx.actor) as writer:
                now = _inputs(writer, ctx, period, reason, dry_run)
                if now.key != solved.key:
                    writer.rollback()
                    continue
                previous = now.previous
                previous_view = _view(writer, previous) if previous is not None else None
                metrics = result.metrics
                payload = {
                    "period": now.label,
                    "unit": now.snapshot.consortium.unit,
                    "state_seq": now.state_seq,
                    "inputs_digest": now.digest,
                    "reason": reason,
                    "supersedes": previous.seq if previous else None,
                    "usage": now.used,
                    "metrics": {"utilisation": _exact(metrics.utilisation),
                                "jain_index": _exact(metrics.jain_index),
                                "satisfied_projects": metrics.satisfied_projects},
                    "solver": {"lp_solves": result.solver.lp_solves,
                               "seconds": _exact(round(result.solver.seconds, 6)),
                               **({"warnings": list(result.solver.warnings)} if result.solver.warnings else {})},
                }
                entry = writer.append(RUN_KIND, payload, attachments=_rows(result))
            return RunOutcome(as_json, now.label, entry.seq, payload["supersedes"], previous_view,
                              _run_fields(entry))
    raise AllocError(f"the ledger's inputs for the period changed during each of {SOLVE_ATTEMPTS} solves "
                     "(other admins are writing to it); nothing recorded: run it again")


# --- reading runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunView:
    """A recorded run as stored: its entry, its rows, and the registry state it was solved from."""

    entry: Entry
    members: list[dict[str, Any]]
    projects: list[dict[str, Any]]
    pools: list[dict[str, Any]]
    grants: list[dict[str, Any]]
    superseded_by: int | None = None
    earlier: tuple[int, ...] = field(default=())

    @property
    def period(self) -> str:
        return self.entry.payload["period"]

    @property
    def payload(self) -> dict[str, Any]:
        return self.entry.payload

    def to_json_dict(self) -> dict[str, Any]:
        """The DESIGN section-4 shape, rebuilt from the stored rows, plus the run's provenance."""
        payload = self.payload
        return {
            "period": self.period,
            "unit": payload.get("unit"),
            "members": {m["member"]: {"share": float(m["share"]), "contributed": float(m["contributed"]),
                                      "demand": float(m["demand"]), "allocated": float(m["allocated"])}
                        for m in self.members},
            "projects": {p["project"]: {"weight": float(p["weight"]), "demand": float(p["demand"]),
                                        "allocated": float(p["allocated"]),
                                        "bottleneck": p["bottleneck"]}
                         for p in self.projects},
            "pools": {p["pool"]: {"capacity": float(p["capacity"]), "granted": float(p["granted"])}
                      for p in self.pools},
            "grants": [{"project": g["project"], "pool": g["pool"], "device_hours": g["device_hours"],
                        "units": float(g["units"])} for g in self.grants],
            "metrics": {"utilisation": float(payload["metrics"]["utilisation"]),
                        "jain_index": float(payload["metrics"]["jain_index"]),
                        "satisfied_projects": payload["metrics"]["satisfied_projects"]},
            "solver": {"seconds": float(payload["solver"]["seconds"]),
                       "lp_solves": payload["solver"]["lp_solves"],
                       **({"warnings": list(payload["solver"]["warnings"])}
                          if payload["solver"].get("warnings") else {})},
            "run": _run_fields(self.entry),
        }


def _run_fields(entry: Entry) -> dict[str, Any]:
    """A recorded run's entry as the JSON of `alloc show` and `alloc run` names it."""
    payload = entry.payload
    return {"seq": entry.seq, "time": entry.time, "actor": entry.actor,
            "reason": payload.get("reason"), "supersedes": payload.get("supersedes"),
            "state_seq": payload.get("state_seq"), "inputs_digest": payload.get("inputs_digest")}


def _view(reader, entry: Entry, superseded_by: int | None = None) -> RunView:
    return RunView(
        entry,
        reader.attachment_rows(entry.seq, "alloc_member"),
        reader.attachment_rows(entry.seq, "alloc_project"),
        reader.attachment_rows(entry.seq, "alloc_pool"),
        reader.attachment_rows(entry.seq, "alloc_grant"),
        superseded_by,
    )


def period_order(label: str) -> tuple:
    """A sort key of recorded period labels by when the period starts, whatever its kind (a
    consortium that moved from months to weeks: "2026-W40" is not after "2026-12", as text has it)."""
    try:
        return (0, parse_period(label).start, label)
    except PeriodError:  # not a label this code reads: after every period it does, by text
        return (1, label, label)


def pick_entry(reader, period: str | None, what: str = "--period") -> tuple[Entry, tuple[int, ...]]:
    """The committed run entry of `period` (the latest recorded one for it), or of the latest period,
    with the seqs of the earlier runs it supersedes; its rows are not read. A label of a recorded
    run is taken whatever the consortium's period kind is now (it may have changed since); any other
    that names no period of the consortium's kind is a usage error about `what`."""
    runs = _runs(reader)
    if period is not None:
        period = period.strip()
        if not any(e.payload["period"] == period for e in runs):
            period = period_option(period, reader.period_kind(), what).label
    if not runs:
        raise NotFound("no allocation has been recorded yet (pooler alloc run --period P)")
    if period is None:
        period = max((e.payload["period"] for e in runs), key=period_order)
    chosen = [e for e in runs if e.payload["period"] == period]
    if not chosen:
        recorded = sorted({e.payload["period"] for e in runs}, key=period_order)
        raise NotFound(f"no recorded run for {period} (recorded: {', '.join(recorded)})")
    return chosen[-1], tuple(e.seq for e in chosen[:-1])


def pick_run(reader, period: str | None, what: str = "--period") -> RunView:
    """The committed run of `period` (the latest recorded one for it), or of the latest period."""
    entry, earlier = pick_entry(reader, period, what)
    view = _view(reader, entry)
    return RunView(view.entry, view.members, view.projects, view.pools, view.grants, None, earlier)


def show(ctx: Context, period: str | None = None) -> RunView:
    """The committed (latest) run of `period`, or of the latest period with a run."""
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        return pick_run(reader, period)


@dataclass(frozen=True)
class RunInputs:
    """What a recorded run was solved from, rebuilt from the journal: the registry as of the run's
    `state_seq`, the accelerator rates of its period, and the decayed usage it recorded."""

    entry: Entry
    snapshot: Snapshot

    @property
    def period(self) -> str:
        return self.entry.payload["period"]

    def manifest(self, fmt: str) -> str:
        """The inputs as a manifest for `alloc solve`; the JSON form is the text `inputs_digest` hashes."""
        return dump_manifest(self.snapshot, fmt)


def run_inputs(ctx: Context, period: str | None = None) -> RunInputs:
    """The inputs of the committed run of `period` (default: the latest period with a run), checked
    against the digest the run recorded: an `AllocError` when they do not hash to it (the journal
    would then not hold what the run was solved from)."""
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        entry, _ = pick_entry(reader, period)
        payload = entry.payload
        snapshot = reader.state_at(payload["state_seq"]).snapshot(payload["period"])
    used = payload.get("usage") or {}
    snapshot = snapshot.replace(usage=tuple((m, Decimal(str(u))) for m, u in used.items()))
    digest = inputs_digest(snapshot)
    if digest != payload.get("inputs_digest"):
        raise AllocError(
            f"the inputs of run #{entry.seq} ({payload['period']}) rebuilt from the journal hash to "
            f"{digest[:16]}…, not to the {str(payload.get('inputs_digest'))[:16]}… the run recorded: "
            "run `pooler ledger verify`")
    return RunInputs(entry, snapshot)


def periods(ctx: Context) -> list[dict[str, Any]]:
    """Every recorded run, oldest first: period, seq, time, actor, reason, superseded or not."""
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        runs = _runs(reader)
    latest = {e.payload["period"]: e.seq for e in runs}
    return [{"period": e.payload["period"], "seq": e.seq, "time": e.time, "actor": e.actor,
             "reason": e.payload.get("reason"), "committed": latest[e.payload["period"]] == e.seq}
            for e in runs]


# --- explain ----------------------------------------------------------------------------------------


def explain(ctx: Context, project_id: str, period: str | None = None) -> dict[str, Any]:
    """Why `project_id` got what it got in a recorded run: in numbers, for `alloc explain` to word."""
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        view = pick_run(reader, period)
        state: LedgerState = reader.state_at(view.payload["state_seq"])
    return explain_run(view, state, project_id)


def explain_run(view: RunView, state: LedgerState, project_id: str) -> dict[str, Any]:
    """`explain` for a run already read, with the registry `state` it was solved from."""
    snapshot = state.snapshot(view.period)
    projects = {p["project"]: p for p in view.projects}
    if project_id not in projects:
        raise NotFound(f'no project "{project_id}" in the {view.period} run')
    row = projects[project_id]
    project = snapshot.by_id("project")[project_id]
    members = {m["member"]: m for m in view.members}
    stakes = project.stakes()
    sponsors = [
        {"member": m, "stake": float(s), "share": float(members[m]["share"]),
         "member_allocated": float(members[m]["allocated"]), "member_demand": float(members[m]["demand"]),
         "member_level": (float(members[m]["allocated"]) / float(members[m]["share"])
                          if float(members[m]["share"]) > 0 else None)}
        for m, s in sorted(stakes.items())
    ]
    allowed = allowed_regions(snapshot, project)
    granted_by_pool: dict[str, list[dict[str, Any]]] = {}
    for g in view.grants:
        granted_by_pool.setdefault(g["pool"], []).append(g)
    pools_rows = {p["pool"]: p for p in view.pools}
    # every holder's level, those at their demand too (allocated / weight; none for weight 0)
    levels = {p["project"]: float(p["allocated"]) / float(p["weight"]) if float(p["weight"]) > 0 else None
              for p in view.projects}
    # the owners that keep a reserve for projects of their own (an owner that sponsors none keeps
    # it for nobody: the reserve only lowers the pool's capacity, as the allocation treats it)
    keepers = {m for p in snapshot.projects for m, s in p.stakes().items() if s > 0}
    usable = []
    for pool in snapshot.pools:
        rate = effective_rate(snapshot, project, pool, allowed)
        if rate <= 0:
            continue
        holders = sorted(granted_by_pool.get(pool.id, ()), key=lambda g: (-g["device_hours"], g["project"]))
        usable.append({
            "pool": pool.id, "owner": pool.member, "accelerator": pool.accelerator,
            "effective_rate": float(rate), "capacity": float(pool_capacity(snapshot, pool)),
            "reserve": float(pool.reserve), "own_pool": pool.member in stakes,
            "owner_keeps": pool.reserve > 0 and pool.member in keepers,
            "granted": float(pools_rows[pool.id]["granted"]) if pool.id in pools_rows else 0.0,
            "to_this_project": sum(g["device_hours"] for g in holders if g["project"] == project_id),
            "holders": [{"project": g["project"], "device_hours": g["device_hours"],
                         "level": levels.get(g["project"])} for g in holders],
        })
    limit = None
    if row["bottleneck"] == "fairness":
        from pooler.core.why import fairness_limit

        _silence_solver_banner()
        found = fairness_limit(snapshot, project_id,
                               {p["project"]: float(p["allocated"]) for p in view.projects},
                               {p["project"]: float(p["weight"]) for p in view.projects},
                               {m["member"]: float(m["allocated"]) for m in view.members})
        if found is not None:
            limit = {"kind": found.kind, "gain": found.gain, "step": found.step,
                     "losers": [{"id": i, "amount": a, "level": levels.get(i)} for i, a in found.losers]}
    return {
        "period": view.period, "run": view.entry.seq, "project": project_id, "limit": limit,
        "weight": float(row["weight"]), "raw_weight": float(project.weight),
        "demand": float(row["demand"]), "allocated": float(row["allocated"]),
        "bottleneck": row["bottleneck"], "level": None if row["level"] is None else float(row["level"]),
        "sponsors": sponsors, "regions": sorted(allowed) if allowed is not None else None,
        "speed": {a: float(s) for a, s in project.speed} if project.speed is not None else None,
        "pools": usable, "unit": view.payload.get("unit"),
    }


# --- diff -------------------------------------------------------------------------------------------


def diff(ctx: Context, first: str, second: str) -> dict[str, Any]:
    """Member and project allocations of two recorded periods side by side, with the change: rows
    with the id, "first" and "second" (the allocations) and "change" (second - first)."""
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        a, b = pick_run(reader, first, "P1"), pick_run(reader, second, "P2")
    return {"first": a.period, "second": b.period, "unit": b.payload.get("unit"),
            "members": changes(a.members, b.members, "member", "first", "second"),
            "projects": changes(a.projects, b.projects, "project", "first", "second")}


def changes(rows_a, rows_b, key: str, first: str, second: str) -> list[dict[str, Any]]:
    """Rows (with `key` and `allocated`) of two runs side by side, by id: both values, under the
    names `first` and `second`, and the change; a value is None where the id is missing from that run."""
    left = {r[key]: r for r in rows_a}
    right = {r[key]: r for r in rows_b}
    out = []
    for name in sorted(set(left) | set(right)):
        va = float(left[name]["allocated"]) if name in left else None
        vb = float(right[name]["allocated"]) if name in right else None
        out.append({key: name, first: va, second: vb, "change": (vb or 0.0) - (va or 0.0)})
    return out


def preview_changes(outcome: RunOutcome, committed: RunView | None) -> dict[str, Any]:
    """A dry run's member and project allocations against a committed run (by default the one it
    would supersede), as `diff` gives them: columns "committed" and "preview"."""
    base = committed if committed is not None else outcome.previous
    result = outcome.result
    members = [{"member": m, "allocated": v["allocated"]} for m, v in result["members"].items()]
    projects = [{"project": p, "allocated": v["allocated"]} for p, v in result["projects"].items()]
    return {"first": "committed", "second": "preview", "unit": result.get("unit"),
            "against": None if base is None else {"period": base.period, "seq": base.entry.seq},
            "members": changes(base.members if base else [], members, "member", "committed", "preview"),
            "projects": changes(base.projects if base else [], projects, "project", "committed", "preview")}


# --- explanations in words --------------------------------------------------------------------------


def amount_text(value: float) -> str:
    """An amount in words and tables: whole numbers with thousands separators, small fractional ones
    to three significant digits (a demand of 2.6 is not "3"; a consortium may count in units)."""
    if value >= 100 or value == round(value) or value <= 0:
        return f"{value:,.0f}"
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


def _percent(fraction: float) -> str:
    """A fraction as a percentage that does not round a small one to nothing (0.0001%, not 0%)."""
    value = fraction * 100
    return f"{value:.0f}%" if value >= 1 or value == 0 else f"{value:.2g}%"


def _lowest_holder_level(d: dict[str, Any]) -> float | None:
    """The lowest level among the other projects holding pools `d`'s project can use (None when a
    holder has no level, such as a project of weight 0, or nobody holds them)."""
    levels = [h.get("level") for p in d["pools"] for h in p["holders"] if h["project"] != d["project"]]
    if not levels or any(v is None for v in levels):
        return None
    return min(levels)


# A "tie" whose losers all stand higher than the project: in exact arithmetic they would give way,
# so what stops it is the solver's tolerance (README, Known problems), not a tie (review: a project
# at level 0.2 was called "level with" one at 2,000, through stakes of 1000:0.001)
_TOLERANCE_TIE = ("It stopped where the solver's tolerance leaves it{}: the check finds that more for "
                  "it would come only from projects that stand higher than it, which in exact "
                  "arithmetic would give way (README, Known problems).")


def _only_higher(limit: dict[str, Any], d: dict[str, Any]) -> bool:
    """Whether every project the check names as giving way stands clearly above `d`'s project."""
    own = d.get("level")
    levels = [x.get("level") for x in limit["losers"]]
    return (own is not None and bool(levels) and all(v is not None for v in levels)
            and min(levels) > own * (1 + 1e-6) + 1e-9)


def _stake_ratio_words(d: dict[str, Any]) -> str:
    """", amplified by ..." when the project's stakes are very unequal (the usual cause), else ""."""
    stakes = [s["stake"] for s in d["sponsors"] if s["stake"] > 0]
    if len(stakes) > 1 and max(stakes) >= 1000 * min(stakes):
        return f", amplified by its sponsors' very unequal stakes (one {max(stakes) / min(stakes):,.0f} times another)"
    return ""


def _limit_reason(limit: dict[str, Any], unit: str) -> tuple[str, str]:
    """What the counterfactual LPs found stops a fairness-stopped project (`pooler.core.why`), as
    (what stops it, who gives way and at least how much for a little more for it)."""
    def amount(x: float) -> str:
        return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"

    losers = limit["losers"]
    total = sum(x["amount"] for x in losers)
    named = ", ".join(f"{x['id']} {amount(x['amount'])}" for x in losers[:3])
    if len(losers) > 3:
        named += f" and {len(losers) - 3} more"
    named = f" (for instance: {named})" if losers else ""
    more = f"{amount(limit['step'])} more {unit} for it"
    total = amount(total) if losers else f"some (each under {amount(limit['step'] / 1000)})"
    if limit["kind"] == "tie":
        return ("It stopped at its fair level, level with others: more for it would have to come from "
                "projects whose claim is as strong as its own.",
                f"{more} would take at least {total} {unit} from them{named}.")
    if limit["kind"] == "members":
        return ("It stopped at its fair level within the members' totals: more for it would lower "
                "members' totals (its own sponsors' among them, where their other projects would give "
                "way), which step 1 settles before projects are compared.",
                f"{more} would take at least {total} {unit} off them{named}.")
    return ("It stopped at its fair level: more for it would need more of a pool than its owner "
            "lends (the owner keeps a reserve for its own projects).",
            f"{more} would need at least {total} device-hours beyond what is lent{named}.")


# `explain` lists every pool a project may use up to this many; beyond, the pools it holds and the
# `_OTHER_POOLS` where the others holding them stand lowest, then a line saying how many are left out
_ALL_POOLS_UP_TO = 20
_OTHER_POOLS = 10


def explanation_lines(d: dict[str, Any], *, all_pools: bool = False) -> list[tuple[str, str]]:
    """`explain`'s figures in sentences, then the numbers behind them: (text, style) pairs, the style
    a Rich style name ("" for plain) so that the CLI and the dashboard word them the same way.

    Of more than `_ALL_POOLS_UP_TO` pools (a consortium of hundreds) only the pools the project holds
    (all of them) and the `_OTHER_POOLS` where the lowest other holder stands lowest are listed (the
    contested ones), unless `all_pools` (the dashboard's scrolling panel lists them all); the JSON
    has them all."""
    unit = d.get("unit") or "units"
    served = d["allocated"] / d["demand"] if d["demand"] > 0 else 1.0
    lines = [(f"{d['project']} in {d['period']} (run #{d['run']})", "bold")]
    lines.append((f"It asked for {amount_text(d['demand'])} {unit} and got {amount_text(d['allocated'])} "
                  f"({served * 100:.1f}%).", ""))
    sponsors = ", ".join(
        f"{s['member']} (stake {_percent(s['stake'])}, share {s['share'] * 100:.2f}%)" for s in d["sponsors"]
    )
    lines.append((f"Its sponsors are {sponsors}; with its own weight {d['raw_weight']:g} that gives "
                  f"it a fair-share weight of {d['weight']:.6f}.", ""))
    reason = {
        "demand": "It stopped at its demand: it got everything it asked for.",
        "capacity": "It stopped because the pools it can use are exhausted: every device-hour it could "
                    "run on is granted, and taking any back would lower a project or member that "
                    "stands no higher than it.",
    }.get(d["bottleneck"], "")
    # a pool it may borrow from whose owner keeps a reserve: lending stops there, whoever stands where
    reserved = any(p["owner_keeps"] and not p["own_pool"] for p in d["pools"])
    zero = d["weight"] <= 0
    if d["bottleneck"] == "capacity" and zero:
        reason = ("It stopped because the pools it can use are exhausted: its fair-share weight counts "
                  "as 0, so it is served only from what the projects with a weight leave (step 2 serves "
                  "weight-0 projects last), and they, or weight-0 projects with no more than it, hold "
                  "every device-hour it could run on.")
    if d["bottleneck"] == "capacity" and not d["pools"]:
        reason = "It got nothing: no pool qualifies for it (below)."
    if d["bottleneck"] == "capacity" and reserved:
        reason += (" Where a pool's owner keeps a reserve for its own projects, only the part the owner "
                   "lends is open to it; what the owner's projects hold there is theirs, whatever their level.")
    if d["bottleneck"] == "fairness" and zero:
        reason = ("It stopped where the projects with a weight leave off: its fair-share weight counts "
                  "as 0, so it is served only from what they leave (step 2 serves weight-0 projects "
                  "last), and more for it would lower one of them, another weight-0 project with no "
                  "more than it, or a member's total.")
    elif d["bottleneck"] == "fairness":
        reason = ("It stopped at its fair level: more for it would lower a project that stands no "
                  "higher than it, directly or through a chain of moves between pools, or a "
                  "member's total, which step 1 settles before projects are compared"
                  + (", or would need more of a pool than its owner lends (the owner keeps a reserve "
                     "for its own projects)." if reserved else "."))
    limit = d.get("limit") if d["bottleneck"] == "fairness" else None
    found = limit is not None and limit["kind"] != "none"
    if found:
        # a weight-0 project keeps its sentence (why it is served last); the figures follow it
        headline, figures = _limit_reason(limit, unit)
        if limit["kind"] == "tie" and _only_higher(limit, d):
            headline = _TOLERANCE_TIE.format(_stake_ratio_words(d))
        reason = f"{reason} {figures}" if zero else f"{headline} {figures}"
    if d["level"] is not None and not zero:
        reason += f" Its level (allocated / weight) is {amount_text(d['level'])}."
        lowest = _lowest_holder_level(d)
        if (d["bottleneck"] == "fairness" and not found and lowest is not None
                and lowest > d["level"] * (1 + 1e-6)):
            reason += (f" The projects holding its pools all stand higher (the lowest at level {lowest:,.0f}), "
                       "so the limit lies further on: in what they would need instead, "
                       + ("in their members' totals, or in the reserves the pools' owners keep."
                          if reserved else "or in their members' totals."))
    lines.append((reason, ""))
    for s in d["sponsors"]:
        level = (f"level per unit of share {s['member_level']:,.0f}" if s["member_level"] is not None
                 else "a share of 0: served from what the members with a share leave")
        lines.append((f"  {s['member']}: received {amount_text(s['member_allocated'])} of "
                      f"{amount_text(s['member_demand'])} {unit} demanded over its projects; {level}.", ""))
    where = "any region" if d["regions"] is None else ", ".join(d["regions"]) or "no region"
    lines.append((f"It may run in {where}" + (
        "" if d["speed"] is None else " on " + ", ".join(f"{a} (speed {s:g})" for a, s in d["speed"].items())
    ) + (f"; {len(d['pools'])} pools qualify." if len(d["pools"]) != 1 else "; 1 pool qualifies."), ""))
    if not d["pools"]:
        lines.append(("No pool qualifies, so it can get nothing: check its speed table, regions "
                      "and the residency of its datasets and models.", "red"))
        return lines
    lines.append(("Pools it can use (device-hours):", "bold"))
    pools = sorted(d["pools"], key=lambda p: (-p["to_this_project"], p["pool"]))
    left_out = 0
    if not all_pools and len(pools) > _ALL_POOLS_UP_TO:
        held = [p for p in pools if p["to_this_project"] > 0]
        others = sorted((p for p in pools if p["to_this_project"] <= 0),
                        key=lambda p: (*_contested(p, d), p["pool"]))
        shown = held + others[:_OTHER_POOLS]
        left_out = len(pools) - len(shown)
        pools = shown
    for p in pools:
        others = [h for h in p["holders"] if h["project"] != d["project"]]
        held = ", ".join(f"{h['project']} {h['device_hours']:,}" for h in others[:3])
        if len(others) > 3:
            held += f" and {len(others) - 3} more"
        owner = p["owner"] + (", a sponsor" if p["own_pool"] else "")
        if p["owner_keeps"] and not p["own_pool"]:
            owner += f", who keeps {p['reserve']:.0%} for its own projects"
        lines.append((
            f"  {p['pool']} ({owner}; {p['accelerator']} at {p['effective_rate']:g} {unit}/device-hour): "
            f"{p['to_this_project']:,} of {p['capacity']:,.0f} to it"
            + (f"; also held by {held}" if held else ""), ""
        ))
    if left_out:
        lines.append((f"  and {left_out} more pools it may use, none granted to it (listed above: the "
                      f"pools it holds, then the {_OTHER_POOLS} whose other holders stand lowest; --all "
                      "lists every pool, --json gives them all).", "dim"))
    return lines


def _contested(pool: dict[str, Any], d: dict[str, Any]) -> tuple[int, float]:
    """How contested `pool` is for `d`'s project, lowest first: a pool others hold before one nobody
    else holds, then by the lowest level among those others; first of all a pool held by a project
    of weight 0 (no level): served after all others, it is the first a project would take from, so
    why it did not is worth showing."""
    levels = [h.get("level") for h in pool["holders"] if h["project"] != d["project"]]
    if not levels:
        return (1, 0.0)
    return (0, min(-math.inf if v is None else v for v in levels))
