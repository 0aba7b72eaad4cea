"""The allocation: a pure function from a `Snapshot` to an immutable `AllocationResult`.

This module implements DESIGN section 3 end to end: contributions, shares (alpha blend, usage factor,
the 1e-6 rules), project weights and effective rates; it aggregates what is interchangeable, hands the
two fairness steps to `alloc_fair` and the placement to `alloc_place`, rounds the grants and computes
the metrics. Nothing here reads a clock (except `perf_counter` for the solver statistic), a database
or the terminal.

Aggregation, all exact for the fairness steps:
* pools of one accelerator type in one region form one *class*; a pool whose owner sponsors projects
  and keeps a reserve forms a class with the owner's other such pools of that type and region
  (lending limits add up); a reserve whose owner sponsors nothing only shrinks the pool;
* projects with the same sponsors and stakes, the same effective rates everywhere and the same
  zero-or-positive weight form one *group*: for members they are one demand, and in step 2 they
  stand at one level (a group's need at level t is sum_j min(d_j, w_j t));
* classes that are one and the same to the groups that reach them meet in *hubs*: a region's classes
  for projects without speed tables (and one hub above the regions for those without region
  limits); one accelerator type's classes in every region for projects with speed tables and no
  region limits. A group then needs an edge per hub, not one per class (about 4x fewer columns at
  1,000 projects).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pooler.core.alloc_fair import FairNetwork, NumericalFailure, Progress, solve_fair
from pooler.core.alloc_place import PlaceNetwork, largest_remainder, place, transport
from pooler.core.contrib import contributions
from pooler.core.model import Policy, Snapshot
from pooler.core.usage import shares

_SMALL = 1e-6  # shares and weights below this fraction of the largest count as zero (DESIGN 3)
_MET_RTOL = 1e-9  # a project within this fraction of its demand is satisfied (see `_met`)
_MET_NOISE = 1e-8  # ... or within the LPs' resolution, this fraction of the largest pool class,
_MET_NOISE_CAP = 1e-6  # as long as that is no more than this fraction of its own demand


class AllocationError(ValueError):
    """The snapshot cannot be allocated (an unknown reference the validation should have caught)."""


# -- result records ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemberAllocation:
    id: str
    share: float  # S_m after usage and the 1e-6 rule, normalised to sum 1
    contributed: float  # K_m in normalised units
    demand: float  # sum of stake * demand over the member's projects
    allocated: float  # Y_m


@dataclass(frozen=True)
class ProjectAllocation:
    id: str
    weight: float  # w(j)
    demand: float
    allocated: float  # y(j)
    bottleneck: str  # "demand", "capacity" or "fairness"
    level: float | None  # y / w at which it stopped (y for zero-weight projects); None when demand-met


@dataclass(frozen=True)
class PoolAllocation:
    id: str
    capacity: float  # device-hours
    granted: float  # device-hours granted (rounded when grants are integral)


@dataclass(frozen=True)
class Grant:
    project: str
    pool: str
    device_hours: int | float
    units: float  # delivered normalised units: device_hours * rate * speed


@dataclass(frozen=True)
class AllocationMetrics:
    utilisation: float
    jain_index: float
    satisfied_projects: int


@dataclass(frozen=True)
class SolverStats:
    seconds: float
    lp_solves: int
    # what the result cannot vouch for (see `_resolution_warnings`); in `--json` only when there is any
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AllocationResult:
    members: Mapping[str, MemberAllocation]
    projects: Mapping[str, ProjectAllocation]
    pools: Mapping[str, PoolAllocation]
    grants: tuple[Grant, ...]
    metrics: AllocationMetrics
    solver: SolverStats

    def to_json_dict(self, period: str | None, unit: str) -> dict[str, Any]:
        """The `alloc solve --json` document of DESIGN section 4."""
        return {
            "period": period,
            "unit": unit,
            "members": {m.id: {"share": m.share, "contributed": m.contributed, "demand": m.demand,
                               "allocated": m.allocated} for m in self.members.values()},
            "projects": {p.id: {"weight": p.weight, "demand": p.demand, "allocated": p.allocated,
                                "bottleneck": p.bottleneck} for p in self.projects.values()},
            "pools": {p.id: {"capacity": p.capacity, "granted": p.granted} for p in self.pools.values()},
            "grants": [{"project": g.project, "pool": g.pool, "device_hours": g.device_hours, "units": g.units}
                       for g in self.grants],
            "metrics": {"utilisation": self.metrics.utilisation, "jain_index": self.metrics.jain_index,
                        "satisfied_projects": self.metrics.satisfied_projects},
            "solver": {"seconds": self.solver.seconds, "lp_solves": self.solver.lp_solves,
                       **({"warnings": list(self.solver.warnings)} if self.solver.warnings else {})},
        }


# -- the allocation ---------------------------------------------------------------------------------

def allocate(snapshot: Snapshot, *, integer_grants: bool = True,
             progress: Callable[[Progress], None] | None = None) -> AllocationResult:
    """Allocate the snapshot's pools to its projects (DESIGN section 3).

    `progress`, when given, is called with a `Progress` as the solve goes: after every round of
    steps 1 and 2 (how many members, then projects, are settled) and when placement starts and
    ends. It is for showing progress only; the result does not depend on it."""
    started = time.perf_counter()
    inp = _Inputs(snapshot)
    try:
        fair_value, level, lp_solves = _fair(inp, progress)
        if progress is not None:
            progress(Progress("placement", 0, 1, lp_solves))
        grants_p, grants_pool, grants_dh = _placement(inp, fair_value)
        if progress is not None:
            progress(Progress("placement", 1, 1, lp_solves + grants_p[1]))
    except NumericalFailure as exc:  # the solver lost what exact arithmetic keeps: no allocation
        raise AllocationError(f"numerical failure: {exc}") from exc
    lp_solves += grants_p[1]
    return _result(inp, fair_value, level, grants_p[0], grants_pool, grants_dh, integer_grants,
                   lp_solves, started)


def member_shares(member_ids: Sequence[str], contributed: Sequence[Decimal], policy: Policy,
                  usage: Mapping[str, Decimal]) -> np.ndarray:
    """S_m of DESIGN section 3, in `member_ids` order: the alpha blend, the usage-history factor (when
    `usage` sums to more than 0 and the policy's half-life is not 0), the 1e-6 rule, normalised to 1."""
    M = len(member_ids)
    # The alpha blend is the one the fair-share report shows (exact, in `core.usage`).
    blend = shares(dict(zip(member_ids, contributed)), policy.alpha)
    share = np.array([float(blend[m]) for m in member_ids])
    if policy.usage_half_life_days != 0 and M:
        u = np.array([float(usage.get(m, 0)) for m in member_ids])
        if u.sum() > 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.exp2(-(u / u.sum()) / share)
            share = np.where(share > 0, share * factor, 0.0)  # a share of 0 stays 0
    if M and share.max() > 0:
        share = np.where(share < _SMALL * share.max(), 0.0, share)
        share = share / share.sum()
    return share


def entitlement(snapshot: Snapshot) -> dict[str, float]:
    """Each member's share before usage history: S_m of DESIGN section 3 with no usage (the alpha
    blend of contributions, the 1e-6 rule, normalised). What a scheduler that weighs usage itself
    (Slurm's Fairshare, Kueue's fair sharing) should be given, so that usage is not counted twice."""
    ids = [m.id for m in snapshot.members]
    k = contributions(snapshot)
    return dict(zip(ids, (float(s) for s in member_shares(ids, [k[m] for m in ids], snapshot.policy, {}))))


class _Inputs:
    """The snapshot as float arrays: shares, weights, capacities, eligibility."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        members = snap.members
        self.member_ids = [m.id for m in members]
        m_index = {m: i for i, m in enumerate(self.member_ids)}
        self.m_index = m_index
        M = len(members)
        rates = {a.id: a.rate for a in snap.accelerators}
        hours = snap.consortium.hours
        region_of = {m.id: m.region for m in members}

        # pools
        pools = snap.pools
        self.pool_ids = [p.id for p in pools]
        P = len(pools)
        self.pool_owner = np.empty(P, dtype=np.int64)
        self.pool_dh = np.zeros(P)
        self.pool_rate = np.zeros(P)
        self.pool_reserve = np.zeros(P)
        self.pool_cost = np.zeros(P)
        self.pool_type: list[str] = []
        self.pool_region: list[str | None] = []
        contributed = [Decimal(0)] * M
        for i, p in enumerate(pools):
            if p.member not in m_index:
                raise AllocationError(f"pool {p.id!r}: unknown member {p.member!r}")
            if p.accelerator not in rates:
                raise AllocationError(f"pool {p.id!r}: unknown accelerator {p.accelerator!r}")
            dh = p.device_hours(hours)
            o = m_index[p.member]
            contributed[o] += rates[p.accelerator] * dh
            self.pool_owner[i] = o
            self.pool_dh[i] = float(dh)
            self.pool_rate[i] = float(rates[p.accelerator])
            self.pool_reserve[i] = float(p.reserve)
            self.pool_cost[i] = float(p.cost)
            self.pool_type.append(p.accelerator)
            # a pool without a region is in its owner's region, or in none
            self.pool_region.append(p.region if p.region is not None else region_of[p.member])
        assets = {}
        for d in tuple(snap.datasets) + tuple(snap.models):
            if d.member not in m_index:
                raise AllocationError(f"{d.record_kind} {d.id!r}: unknown member {d.member!r}")
            contributed[m_index[d.member]] += d.credit
            assets[(d.record_kind, d.id)] = d
        self.contributed = np.array([float(k) for k in contributed])

        self.share = share = member_shares(self.member_ids, contributed, snap.policy, dict(snap.usage))

        # projects: stakes, demand, weight, where they may run
        projects = snap.projects
        self.project_ids = [p.id for p in projects]
        J = len(projects)
        self.demand = np.array([float(p.demand) for p in projects])
        raw_weight = np.array([float(p.weight) for p in projects])
        st_proj, st_mem, st_val = [], [], []
        self.stakes: list[tuple[tuple[int, float], ...]] = []
        for j, p in enumerate(projects):
            entry = []
            for m, s in sorted(p.stakes().items()):
                if m not in m_index:
                    raise AllocationError(f"project {p.id!r}: unknown sponsor {m!r}")
                if s > 0:
                    entry.append((m_index[m], float(s)))
            self.stakes.append(tuple(entry))
            for m, s in entry:
                st_proj.append(j)
                st_mem.append(m)
                st_val.append(s)
        self.st_proj = np.array(st_proj, dtype=np.int64)
        self.st_mem = np.array(st_mem, dtype=np.int64)
        self.st_val = np.array(st_val, dtype=float)
        # w(j) = sum_m stake(j,m) S_m weight(j) / sum_{k of m} stake(k,m) weight(k)
        sw = self.st_val * raw_weight[self.st_proj]
        denom = np.bincount(self.st_mem, weights=sw, minlength=M)
        with np.errstate(divide="ignore", invalid="ignore"):
            part = np.where(denom[self.st_mem] > 0, sw * share[self.st_mem] / denom[self.st_mem], 0.0)
        weight = np.bincount(self.st_proj, weights=part, minlength=J)
        if J and weight.max() > 0:
            weight = np.where(weight < _SMALL * weight.max(), 0.0, weight)  # tiny weights count as zero
        self.weight = weight
        self.member_demand = np.bincount(self.st_mem, weights=self.st_val * self.demand[self.st_proj],
                                         minlength=M)

        types = sorted(set(self.pool_type))
        self.types = types
        t_index = {t: i for i, t in enumerate(types)}
        self.pool_t = np.array([t_index[t] for t in self.pool_type], dtype=np.int64)
        self.type_rate = np.zeros(len(types))
        self.type_rate[self.pool_t] = self.pool_rate
        self.speed: list[tuple[float, ...] | None] = []  # per type; None: no table (speed 1 everywhere)
        self.allowed: list[frozenset | None] = []  # regions it may run in; None: no restriction
        for p in projects:
            if p.speed is None:
                self.speed.append(None)
            else:
                sp = tuple(float(p.speed_on(t)) for t in types)
                self.speed.append(None if all(s == 1.0 for s in sp) else sp)
            allowed = None if p.regions is None else set(p.regions)
            for kind, ids in (("dataset", p.datasets), ("model", p.models)):
                for a in ids:
                    if (kind, a) not in assets:
                        raise AllocationError(f"project {p.id!r}: unknown {kind} {a!r}")
                    res = assets[(kind, a)].residency
                    if res is not None:
                        allowed = set(res) if allowed is None else allowed & set(res)
            self.allowed.append(None if allowed is None else frozenset(allowed))
        self.sponsors_any = np.zeros(M, dtype=bool)
        self.sponsors_any[self.st_mem] = True


@dataclass
class _Net:
    fair: FairNetwork
    place: PlaceNetwork
    live: np.ndarray  # projects in the network, in item order
    scale: float  # scaled units per normalised unit
    w_scale: float
    class_pools: list  # pools of each class
    class_owner: np.ndarray  # owner of each reserve class (its pools' owner keeps a reserve), else -1
    sub_pools: list  # pools of each subclass
    sub_owner: np.ndarray
    group_of: np.ndarray  # group of each project (-1: can run nowhere)
    group_classes: list  # eligible classes of each group


def _usable(inp: _Inputs, amounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whether each pool's owner keeps a reserve for its own projects, the part of `amounts` that
    projects may use): all of a pool whose owner keeps its reserve (the owner's projects may use
    it) or that has none; the lent part of one whose owner sponsors nothing (the reserve only
    shrinks it)."""
    owner_keeps = (inp.pool_reserve > 0) & inp.sponsors_any[inp.pool_owner]
    return owner_keeps, np.where(owner_keeps | (inp.pool_reserve <= 0), amounts, amounts * (1 - inp.pool_reserve))


def _build(inp: _Inputs) -> _Net:
    M, P = len(inp.member_ids), len(inp.pool_ids)
    # pool classes: (type, region) open classes; (type, region, owner) reserve classes
    units = inp.pool_rate * inp.pool_dh
    owner_keeps, usable = _usable(inp, units)
    class_key, class_pools = {}, []
    pool_class = np.full(P, -1)
    for i in range(P):
        if usable[i] <= 0:  # empty pools and rate-0 accelerators serve no one
            continue
        key = (inp.pool_t[i], inp.pool_region[i] or "", inp.pool_region[i] is None,
               int(inp.pool_owner[i]) if owner_keeps[i] else -1)
        if key not in class_key:
            class_key[key] = len(class_pools)
            class_pools.append([])
        pool_class[i] = class_key[key]
        class_pools[class_key[key]].append(i)
    keys = list(class_key)
    C = len(keys)
    class_cap = np.bincount(pool_class[pool_class >= 0], weights=usable[pool_class >= 0], minlength=C)
    lendable = np.where(owner_keeps, units * (1 - inp.pool_reserve), np.inf)
    class_lend = np.full(C, np.inf)
    for c, k in enumerate(keys):
        if k[3] >= 0:
            class_lend[c] = lendable[class_pools[c]].sum()
    class_type = np.array([k[0] for k in keys], dtype=np.int64)
    class_owner = np.array([k[3] for k in keys], dtype=np.int64)
    region_keys = sorted({(k[2], k[1]) for k in keys})  # (no region?, region)
    region_index = {rk: r for r, rk in enumerate(region_keys)}
    n_regions = len(region_keys)
    class_region = np.array([region_index[(k[2], k[1])] for k in keys], dtype=np.int64)
    scale = 1.0 / class_cap.max() if C else 1.0

    # project groups
    J = len(inp.project_ids)
    w_max = inp.weight.max() if J and inp.weight.max() > 0 else 1.0
    group_key, group_first = {}, []
    group_of = np.full(J, -1)
    for j in range(J):
        if inp.demand[j] <= 0 or not inp.stakes[j]:
            continue
        key = (inp.stakes[j], inp.speed[j], inp.allowed[j], inp.weight[j] > 0)
        g = group_key.get(key)
        if g is None:
            g = group_key[key] = len(group_first)
            group_first.append(j)
        group_of[j] = g
    gkeys = list(group_key)
    G0 = len(gkeys)
    # region permission per group and region; a group without region limits may use every region
    allowed = np.zeros((G0, n_regions), dtype=bool)
    unlimited = np.array([k[2] is None for k in gkeys], dtype=bool)
    for g, k in enumerate(gkeys):
        regions = k[2]
        for (no_region, name), r in region_index.items():
            allowed[g, r] = regions is None or (not no_region and name in regions)
    is_speed = np.array([k[1] is not None for k in gkeys], dtype=bool)
    sponsor_pairs = np.unique(np.array([g * max(M, 1) + m for g, k in enumerate(gkeys) for m, _ in k[0]],
                                       dtype=np.int64))
    hubs = _Hubs()
    # region hubs (every class of the region, any type: pure flow) and, when several groups without
    # region limits would otherwise each need an edge per region, one hub above them all
    region_hub = np.array([hubs.add([], classes=np.flatnonzero(class_region == r)) for r in range(n_regions)],
                          dtype=np.int64)
    pg = np.flatnonzero(~is_speed)
    all_hub = -1
    if n_regions > 1 and int(unlimited[pg].sum()) > 1:
        all_hub = hubs.add(region_hub.tolist(), classes=np.empty(0, np.int64))
    # type hubs: every class of one accelerator type, for speed groups without region limits
    sg = np.flatnonzero(is_speed)
    sp_all = (np.array([gkeys[g][1] for g in sg]) if sg.size and inp.types
              else np.zeros((sg.size, len(inp.types))))  # (speed groups, types)
    type_hub = np.full(len(inp.types), -1)
    for t in range(len(inp.types)):
        cls = np.flatnonzero(class_type == t)
        if cls.size > 1 and int(((sp_all[:, t] > 0) & unlimited[sg]).sum()) > 1:
            type_hub[t] = hubs.add([], classes=cls)
    e_group, e_target, e_hub, e_coef, e_lend = [], [], [], [], []

    def edges(g, target, is_hub, coef, lend):
        e_group.append(np.asarray(g, dtype=np.int64))
        e_target.append(np.asarray(target, dtype=np.int64))
        e_hub.append(np.broadcast_to(is_hub, np.shape(g)))
        e_coef.append(np.broadcast_to(np.asarray(coef, dtype=float), np.shape(g)))
        e_lend.append(np.broadcast_to(lend, np.shape(g)))

    # speed groups (the speed as gain): through the type hub when there is one and the group may use
    # every region, straight to the class otherwise; straight into their own sponsors' reserve classes
    if sg.size and C:
        sp = sp_all[:, class_type]  # (speed groups, classes)
        ok = (sp > 0) & allowed[sg][:, class_region]
        via_hub = unlimited[sg][:, None] & (type_hub[class_type] >= 0)[None, :]
        own = class_owner >= 0
        owned = np.isin(sg[:, None] * max(M, 1) + class_owner[None, :], sponsor_pairs) & own[None, :]
        gi, ci = np.nonzero(ok & (~via_hub | owned))
        lend = own[ci] & ~owned[gi, ci]
        edges(sg[gi], ci, False, sp[gi, ci], lend)
        hub_t = np.flatnonzero(type_hub >= 0)
        if hub_t.size:
            gi, ti = np.nonzero((sp_all[:, hub_t] > 0) & unlimited[sg][:, None])
            edges(sg[gi], type_hub[hub_t[ti]], True, sp_all[gi, hub_t[ti]], False)
    # pure groups: into the hub above every region, or into the hubs of their regions, and straight
    # into their sponsors' reserve classes
    if pg.size and n_regions:
        top = unlimited[pg] & (all_hub >= 0)
        edges(pg[top], np.full(int(top.sum()), all_hub), True, 1.0, False)
        gi, ri = np.nonzero(allowed[pg[~top]])
        edges(pg[~top][gi], region_hub[ri], True, 1.0, False)
    pure_of_member: dict[int, list[int]] = {}
    for g in pg:
        for m, _ in gkeys[g][0]:
            pure_of_member.setdefault(m, []).append(g)
    for c in np.flatnonzero(class_owner >= 0):
        gs = np.array(pure_of_member.get(int(class_owner[c]), []), dtype=np.int64)
        gs = gs[allowed[gs, class_region[c]]] if gs.size else gs
        edges(gs, np.full(gs.size, c), False, 1.0, False)
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.empty(0, dt))
    e_group, e_target = cat(e_group, np.int64), cat(e_target, np.int64)
    e_hub, e_coef, e_lend = cat(e_hub, bool), cat(e_coef, float), cat(e_lend, bool)
    H = hubs.count
    arc_hub, arc_target, arc_to_hub = hubs.arcs()
    # every hub leads to at least one class (hubs are made from classes); groups with no edge can run nowhere: they leave the network
    has_edge = np.zeros(G0, dtype=bool)
    has_edge[e_group] = True
    remap = np.full(G0, -1)
    remap[has_edge] = np.arange(int(has_edge.sum()))
    e_group = remap[e_group]
    group_of = np.where(group_of >= 0, np.append(remap, -1)[group_of], -1)
    gkeys = [k for g, k in enumerate(gkeys) if has_edge[g]]
    G = len(gkeys)
    live = np.flatnonzero(group_of >= 0)
    live = live[np.argsort(group_of[live], kind="stable")]  # items grouped, ids in order within
    st_g, st_m, st_v = [], [], []
    for g, k in enumerate(gkeys):
        for m, s in k[0]:
            st_g.append(g)
            st_m.append(m)
            st_v.append(s)
    item_demand = inp.demand[live] * scale
    group_demand = np.bincount(group_of[live], weights=item_demand, minlength=G)
    share = inp.share / inp.share.max() if M and inp.share.max() > 0 else np.zeros(M)
    fair = FairNetwork(
        n_members=M, n_groups=G, n_hubs=H, class_cap=class_cap * scale, class_lend=class_lend * scale,
        arc_hub=arc_hub, arc_target=arc_target, arc_to_hub=arc_to_hub, edge_group=e_group, edge_target=e_target, edge_is_hub=e_hub,
        edge_coef=e_coef, edge_lend=e_lend, stake_group=np.array(st_g, dtype=np.int64),
        stake_member=np.array(st_m, dtype=np.int64), stake_value=np.array(st_v, dtype=float),
        group_demand=group_demand, group_zero=np.array([not k[3] for k in gkeys], dtype=bool),
        item_group=group_of[live], item_weight=inp.weight[live] / w_max, item_demand=item_demand,
        member_share=share,
    )
    # eligible classes per group (for the bottleneck): direct edges, and the classes behind its hubs
    hub_classes = hubs.reach
    group_classes: list = [[] for _ in range(G)]
    for g, t, h in zip(e_group.tolist(), e_target.tolist(), e_hub.tolist()):
        group_classes[g].append(hub_classes[t] if h else np.array([t]))
    group_classes = [np.unique(np.concatenate(x)) if x else np.empty(0, np.int64) for x in group_classes]

    # placement: subclasses of one class, cost and owner, in (class, cost, first pool id) order
    sub_key, sub_pools = {}, []
    for c in range(C):
        for i in class_pools[c]:
            k = (c, inp.pool_cost[i], int(inp.pool_owner[i]))
            if k not in sub_key:
                sub_key[k] = len(sub_pools)
                sub_pools.append([])
            sub_pools[sub_key[k]].append(i)
    sk = list(sub_key)
    order = sorted(range(len(sk)), key=lambda b: (sk[b][0], sk[b][1], inp.pool_ids[sub_pools[b][0]]))
    sk = [sk[b] for b in order]
    sub_pools = [sub_pools[b] for b in order]
    B = len(sk)
    sub_class = np.array([k[0] for k in sk], dtype=np.int64)
    sub_owner = np.array([k[2] for k in sk], dtype=np.int64)
    sub_cap = np.array([usable[ps].sum() for ps in sub_pools]) * scale
    sub_lend = np.array([lendable[ps].sum() if class_owner[k[0]] >= 0 else np.inf
                         for k, ps in zip(sk, sub_pools)]) * scale
    rate_sub = inp.pool_rate[[ps[0] for ps in sub_pools]] if B else np.zeros(0)
    sub_cost = np.array([k[1] for k in sk]) / np.maximum(rate_sub, 1e-300) / scale if B else np.zeros(0)
    # own edges: a group to its sponsors' subclasses in classes it can use
    subs_of_owner: dict[int, list[int]] = {}
    for b in range(B):
        subs_of_owner.setdefault(int(sub_owner[b]), []).append(b)
    o_g, o_b, o_c = [], [], []
    for g, k in enumerate(gkeys):
        cls = group_classes[g]
        if not cls.size:
            continue
        for m, _ in k[0]:
            bs = np.array(subs_of_owner.get(m, []), dtype=np.int64)
            if not bs.size:
                continue
            bs = bs[np.isin(sub_class[bs], cls)]
            if not bs.size:
                continue
            coef = (np.ones(bs.size) if k[1] is None else np.array(k[1])[class_type[sub_class[bs]]])
            o_g.append(np.full(bs.size, g))
            o_b.append(bs)
            o_c.append(coef)
    own_g, own_b, own_c = cat(o_g, np.int64), cat(o_b, np.int64), cat(o_c, float)
    # the fairness network's straight edges into the groups' own sponsors' reserve classes are
    # replaced, in placement, by the own edges into the subclasses
    keep = e_hub | e_lend | (class_owner[np.where(e_hub, 0, e_target)] < 0)
    # each subclass ranked by its first pool id: placement's last tie-break
    id_rank = {q: r for r, q in enumerate(sorted(inp.pool_ids))}
    sub_rank = np.array([min(id_rank[inp.pool_ids[i]] for i in ps) for ps in sub_pools], dtype=float)
    # and each edge by the first pool id it leads to: which group takes which pools, among equals
    class_rank = np.array([min(id_rank[inp.pool_ids[i]] for i in ps) for ps in class_pools], dtype=float)
    hub_rank = np.array([class_rank[r].min() for r in hub_classes], dtype=float)
    edge_rank = np.where(e_hub, hub_rank[np.where(e_hub, e_target, 0)] if H else 0.0,
                         class_rank[np.where(e_hub, 0, e_target)] if C else 0.0)
    # and each hub's arc by what it leads to and what the hub gathers (both by pool ids), so that
    # which hub feeds a class, where several could, is decided by ids too (see `place`)
    hub_key = [tuple(sorted(class_rank[r].tolist())) for r in hub_classes]
    arc_key = [(hub_key[t] if th else (class_rank[t],), hub_key[h])
               for h, t, th in zip(arc_hub.tolist(), arc_target.tolist(), arc_to_hub.tolist())]
    arc_rank = np.empty(len(arc_key))
    arc_rank[sorted(range(len(arc_key)), key=arc_key.__getitem__)] = np.arange(len(arc_key))
    placen = PlaceNetwork(
        n_groups=G, n_hubs=H, n_classes=C, arc_hub=arc_hub, arc_target=arc_target, arc_to_hub=arc_to_hub, edge_group=e_group[keep], edge_target=e_target[keep],
        edge_is_hub=e_hub[keep], edge_coef=e_coef[keep], sub_class=sub_class, sub_cap=sub_cap,
        sub_lend=sub_lend, sub_cost=sub_cost, sub_rank=sub_rank, edge_rank=edge_rank[keep], arc_rank=arc_rank,
        own_group=own_g, own_sub=own_b,
        own_coef=own_c, group_target=np.zeros(G),
    )
    return _Net(fair, placen, live, scale, w_max, class_pools, class_owner, sub_pools, sub_owner, group_of,
                group_classes)


class _Hubs:
    """The hubs of the fairness network: nodes where flows of interchangeable capacity meet.

    A hub feeds classes and other hubs by arcs (pure flow, coefficient 1); hubs are added children
    first, so a hub's arcs only lead to hubs added before it."""

    def __init__(self) -> None:
        self.count = 0
        self._arcs: list[tuple[int, int, bool]] = []
        self.reach: list[np.ndarray] = []  # the classes each hub leads to

    def add(self, child_hubs: list[int], classes: np.ndarray) -> int:
        h = self.count
        self.count += 1
        self._arcs += [(h, int(c), True) for c in child_hubs] + [(h, int(c), False) for c in classes]
        parts = [self.reach[c] for c in child_hubs] + [np.asarray(classes, dtype=np.int64)]
        self.reach.append(np.unique(np.concatenate(parts)))
        return h

    def arcs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hub, target, target is a hub) of every arc."""
        if not self._arcs:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool)
        a = np.array(self._arcs, dtype=np.int64)
        return a[:, 0], a[:, 1], a[:, 2].astype(bool)


def _fair(inp: _Inputs, progress=None):
    net = _build(inp)
    inp.net = net
    if progress is not None:
        # step 2 counts the projects the LPs see; the others (no demand, nowhere to run) are
        # settled from the start, so the count runs to every project
        outside = len(inp.project_ids) - int(net.live.size)
        report = progress

        def progress(p: Progress) -> None:
            if p.step == "projects":
                p = Progress(p.step, p.settled + outside, p.total + outside, p.lp_solves)
            report(p)
    res = solve_fair(net.fair, progress)
    J = len(inp.project_ids)
    value = np.zeros(J)
    level = np.full(J, np.nan)
    value[net.live] = res.item_value / net.scale
    level[net.live] = res.item_level
    return value, level, res.lp_solves


def _placement(inp: _Inputs, value: np.ndarray):
    """Grants as (project, pool, exact device-hours), and the LP solves used."""
    net: _Net = inp.net
    G = net.fair.n_groups
    target = np.bincount(net.fair.item_group, weights=value[net.live] * net.scale, minlength=G)
    if not G or not target.any():
        return (np.empty(0, np.int64), 0), np.empty(0, np.int64), np.empty(0)
    pn = net.place
    pn = PlaceNetwork(**{**pn.__dict__, "group_target": target})
    pl = place(pn)
    # subclass pieces -> pools: lending-limited flows first into each pool's lending room, then own
    # flows into what is left; pools in id order
    piece_pool, piece_group, piece_units, piece_deliv = [], [], [], []
    by_sub = np.argsort(pl.sub, kind="stable")
    subs = pl.sub[by_sub]
    bounds = np.searchsorted(subs, np.arange(len(net.sub_pools) + 1))
    units_all = inp.pool_rate * inp.pool_dh
    owner_keeps = (inp.pool_reserve > 0) & inp.sponsors_any[inp.pool_owner]
    usable = np.where(owner_keeps | (inp.pool_reserve <= 0), units_all, units_all * (1 - inp.pool_reserve))
    lend = np.where(owner_keeps, units_all * (1 - inp.pool_reserve), usable)
    for b, pools in enumerate(net.sub_pools):
        idx = by_sub[bounds[b]:bounds[b + 1]]
        if not idx.size:
            continue
        pools = np.array(sorted(pools, key=lambda i: inp.pool_ids[i]), dtype=np.int64)
        cap = usable[pools] * net.scale
        room = lend[pools] * net.scale
        for own_flag in (False, True):
            part = idx[pl.own[idx] == own_flag]
            if not part.size:
                continue
            part = part[np.argsort(pl.group[part], kind="stable")]
            fill = room if not own_flag else cap
            si, di, amt = _fill_in_order(pl.units[part], np.maximum(fill, 0.0))
            piece_pool.append(pools[di])
            piece_group.append(pl.group[part][si])
            piece_units.append(amt)
            piece_deliv.append(amt * pl.delivered[part][si] / pl.units[part][si])
            cap = cap - np.bincount(di, weights=amt, minlength=pools.size)
            room = np.minimum(room - (np.bincount(di, weights=amt, minlength=pools.size) if not own_flag else 0),
                              cap)
    if not piece_pool:
        # deliveries so small beside the largest class that the placement LP's flows fell below its
        # resolution (capacities spanning ten orders of magnitude): no grant could carry them
        raise NumericalFailure(
            f"placement found no pool for deliveries of {target.sum() / net.scale:.6g} units: the pools' "
            f"capacities span too wide a range for the solver (the largest class holds "
            f"{1 / net.scale:.6g} units)")
    pool = np.concatenate(piece_pool)
    grp = np.concatenate(piece_group)
    units = np.concatenate(piece_units)
    deliv = np.concatenate(piece_deliv)
    # group pieces -> projects, in (group, pool id) and (group, project id) order, by delivered units
    o = np.lexsort((pool, grp))  # pools are indexed in id order
    pool, grp, units, deliv = pool[o], grp[o], units[o], deliv[o]
    items = net.live  # sorted by group then id
    si, di, amt = transport(grp, deliv, net.fair.item_group, value[items] * net.scale)
    proj = items[di]
    gain = deliv[si] / units[si]  # delivered per capacity unit on that piece
    dh = amt / gain / net.scale / inp.pool_rate[pool[si]]
    return (proj, pl.lp_solves), pool[si], dh


def _fill_in_order(flows: np.ndarray, caps: np.ndarray):
    """Split consecutive flows over consecutive capacities (north-west corner, no rescaling)."""
    fe = np.cumsum(flows)
    ce = np.cumsum(caps)
    total = fe[-1]
    if ce.size and ce[-1] < total:  # solver tolerance: stretch the last pool
        ce = ce.copy()
        ce[-1] = total
    pts = np.unique(np.concatenate([[0.0], fe, ce[ce < total], [total]]))
    lo, hi = pts[:-1], pts[1:]
    mid = (lo + hi) / 2
    si = np.searchsorted(fe, mid, side="right")
    di = np.searchsorted(ce, mid, side="right")
    ok = (hi > lo) & (si < flows.size) & (di < caps.size)
    return si[ok], di[ok], (hi - lo)[ok]


def _result(inp: _Inputs, value, level, proj, pool, dh, integer_grants, lp_solves, started):
    P, M = len(inp.pool_ids), len(inp.member_ids)
    # merge pieces of one (project, pool), sort by ids
    pid = np.array(inp.project_ids, dtype=object)
    poid = np.array(inp.pool_ids, dtype=object)
    if proj.size:
        key = proj * max(P, 1) + pool
        uk, inv = np.unique(key, return_inverse=True)
        dh = np.bincount(inv, weights=dh)
        proj, pool = uk // max(P, 1), uk % max(P, 1)
        # np.unique sorted the keys by (project, pool), i.e. by ids
        keep = dh > 1e-9
        proj, pool, dh = proj[keep], pool[keep], dh[keep]
    if integer_grants and proj.size:
        dh_out = largest_remainder(pool, dh, inp.pool_dh)
    elif proj.size:
        dh_out = _within_pools(inp, proj, pool, dh)
    else:
        dh_out = dh
    speed_on = np.array([1.0 if s is None else s[inp.pool_t[q]] for s, q in
                         zip((inp.speed[j] for j in proj.tolist()), pool.tolist())]) if proj.size else np.zeros(0)
    grant_units = (_exact_units(dh_out, inp.pool_rate[pool], speed_on) if integer_grants and proj.size
                   else (dh_out * inp.pool_rate[pool] * speed_on).tolist())
    grants = tuple(
        Grant(pid[j], poid[q], int(round(d)) if integer_grants else float(d), float(u))
        for j, q, d, u in zip(proj.tolist(), pool.tolist(), dh_out.tolist(), grant_units)
        if d > 0
    )
    granted = np.bincount(pool, weights=dh_out, minlength=P) if proj.size else np.zeros(P)

    # member totals from the projects' exact values
    Y = np.bincount(inp.st_mem, weights=inp.st_val * value[inp.st_proj], minlength=M)
    members = {
        m: MemberAllocation(m, float(inp.share[i]), float(inp.contributed[i]), float(inp.member_demand[i]),
                            float(Y[i]))
        for i, m in enumerate(inp.member_ids)
    }
    largest_class = (max((inp.pool_rate[ps] * inp.pool_dh[ps]).sum() for ps in inp.net.class_pools)
                     if inp.net.class_pools else 0.0)
    met = _met(value, inp.demand, largest_class)
    bottleneck = _bottlenecks(inp, value, met, proj, pool, dh)
    projects = {}
    for j, p in enumerate(inp.project_ids):
        w = float(inp.weight[j])
        if met[j]:
            lv = None
        elif w > 0:
            lv = float(value[j] / w)
        else:
            lv = float(value[j])
        projects[p] = ProjectAllocation(p, w, float(inp.demand[j]), float(value[j]), bottleneck[j], lv)
    pools = {q: PoolAllocation(q, float(inp.pool_dh[i]), float(granted[i])) for i, q in enumerate(inp.pool_ids)}
    cap_units = float((inp.pool_rate * inp.pool_dh).sum())
    util = float((inp.pool_rate * granted).sum() / cap_units) if cap_units > 0 else 0.0
    sponsors = inp.sponsors_any & (inp.share > 0)
    z = Y[sponsors] / inp.share[sponsors]
    jain = float(z.sum() ** 2 / (z.size * (z * z).sum())) if z.size and (z * z).sum() > 0 else 1.0
    metrics = AllocationMetrics(util, jain, int(met.sum()))
    return AllocationResult(
        members=MappingProxyType(members), projects=MappingProxyType(projects), pools=MappingProxyType(pools),
        grants=grants, metrics=metrics,
        solver=SolverStats(time.perf_counter() - started, lp_solves,
                           _resolution_warnings(inp, value, met, largest_class)),
    )


_TINY = 1e-6  # a demand below this fraction of the largest pool class is near the solver's resolution
_WARNED = 5  # projects named in such a warning; the rest are counted


def _resolution_warnings(inp: _Inputs, value, met, largest_class: float) -> tuple[str, ...]:
    """A warning for projects that did not get their demand and whose demand is below a millionth of
    the largest pool class: the LPs resolve about 1e-9 of that class, which is then a large part of
    such a demand, so their allocation may be off by that much (review: a demand of 1 beside a pool
    of 1e9 was given 0 and labelled `capacity`, with no word)."""
    if largest_class <= 0:
        return ()
    runs = inp.net.group_of >= 0  # (a project that can run nowhere gets nothing, exactly)
    tiny = np.flatnonzero(~met & runs & (inp.demand > 0) & (inp.demand < _TINY * largest_class))
    if not tiny.size:
        return ()
    named = ", ".join(f"{inp.project_ids[j]} ({_figure(float(value[j]))} of {_figure(float(inp.demand[j]))})"
                      for j in tiny[:_WARNED].tolist())
    more = f" and {tiny.size - _WARNED} more" if tiny.size > _WARNED else ""
    return (f"{tiny.size} project(s) short of a demand below a millionth of the largest pool class "
            f"({_figure(largest_class)} units), whose allocation may be off by up to about "
            f"{_figure(1e-9 * largest_class)} units, the solver's resolution there: {named}{more}",)


def _figure(x: float) -> str:
    return f"{x:.6g}"


def _exact_units(device_hours: np.ndarray, rate: np.ndarray, speed: np.ndarray) -> list[float]:
    """Whole device-hours x rate x speed in decimal arithmetic, then as floats: 521,391 x 0.95 is
    495,321.45, where the binary product gives 495,321.44999999995, and an auditor recomputing a
    grant's units from the manifest's decimal rates gets the same figure. (A rate or a speed is a
    decimal of a few digits, which its float's shortest repr gives back exactly.)"""
    from decimal import Decimal

    memo: dict[float, Decimal] = {}

    def exact(x: float) -> Decimal:
        d = memo.get(x)
        if d is None:
            d = memo[x] = Decimal(repr(x))
        return d

    return [float(Decimal(int(round(d))) * exact(r) * exact(s))
            for d, r, s in zip(device_hours.tolist(), rate.tolist(), speed.tolist())]


def _within_pools(inp: _Inputs, proj: np.ndarray, pool: np.ndarray, dh: np.ndarray) -> np.ndarray:
    """Fractional grants held to the pools exactly: the placement LPs meet a pool's capacity and an
    owner's lending limit to their tolerance (1e-9 of the largest class, more through a slow speed),
    so a pool's grants could add up to a hair over it. Where they do, the pool's grants (its lent
    grants, for the lending limit) are scaled down to fit, to 1e-12 under the limit; the difference
    stays within the tolerance between a project's grants and its allocated value that fractional
    grants have anyway (the LPs' tolerance is absolute, so for a pool far smaller than the largest
    class it can be a larger part of the pool)."""
    owner = inp.pool_owner[pool]
    lend_dh = inp.pool_dh * (1 - inp.pool_reserve)  # what an owner lends (all of it: reserve 0)
    _, usable = _usable(inp, inp.pool_dh)
    M = max(len(inp.member_ids), 1)
    lent = ~np.isin(proj * M + owner, inp.st_proj * M + inp.st_mem)
    out = np.minimum(dh, usable[pool])
    P = len(inp.pool_ids)
    for limit, which in ((lend_dh, lent), (usable, np.ones(out.size, dtype=bool))):
        used = np.bincount(pool[which], weights=out[which], minlength=P)
        over = used > limit
        if over.any():
            # a hair under the ratio, so that the scaled grants' sum cannot round to above the limit
            factor = np.where(over, limit / np.where(over, used, 1.0) * (1 - 1e-12), 1.0)
            out = np.where(which, out * factor[pool], out)
    return out


def _met(value: np.ndarray, demand: np.ndarray, largest_class: float) -> np.ndarray:
    """Which projects are served in full: within 1e-9 of their demand, or within the LPs' resolution
    (1e-8 of the largest class's units, in which the solver's error is bounded) capped at 1e-6 of
    the demand. A level that reaches a demand and a demand that limits the level are the same point
    in exact arithmetic; with 1e-9 alone, noise of 6e-9 of a demand decided whether a project read
    `demand` or `fairness` and counted as satisfied (a review sweep found 19 such labels in 3,537)."""
    allowance = np.maximum(demand * _MET_RTOL, np.minimum(_MET_NOISE * largest_class, _MET_NOISE_CAP * demand))
    return value >= demand - allowance - 1e-12


def _bottlenecks(inp: _Inputs, value, met, proj, pool, dh) -> list[str]:
    """Why each project stopped: its demand; capacity (it can run nowhere, or nobody with an equal or
    stronger claim holds capacity it could use); or fairness (others with equal claim hold the rest).
    `dh` are the exact device-hours of each (project, pool) before rounding."""
    net: _Net = inp.net
    J = len(inp.project_ids)
    out = ["demand" if met[j] else "capacity" for j in range(J)]
    if not proj.size:
        return out
    # where a project stands: projects with a weight by their level y / w, and above them all the
    # projects whose weight counts as 0 (served after every other, equally: y / 0 is infinite for
    # any y > 0), by their value. A holder standing as high as the project or higher keeps what it
    # holds for a reason other than a stronger claim (fairness); one standing lower was served first
    # (auditor's review: with zero-weight projects ranked lowest instead, a weight-0 project beside a
    # project at its demand read `fairness`, and a project held back by a weight-0 project of
    # another member, whose total step 1 fixed, read `capacity`)
    w = inp.weight
    with np.errstate(divide="ignore", invalid="ignore"):
        lvl = np.where(w > 0, value / np.where(w > 0, w, 1.0), value)
    tier = (w <= 0).astype(float)
    C = len(net.class_pools)
    pool_class = np.full(len(inp.pool_ids), -1)
    for c, ps in enumerate(net.class_pools):
        pool_class[ps] = c
    # a holding counts above the solver's resolution, 1e-8 of the largest class (solved to 1e-9 of
    # it): below that it is noise (a "scrap"), and a scrap held by a stronger project made a project
    # stopped by capacity look stopped by fairness
    class_dh = np.array([inp.pool_dh[ps].sum() for ps in net.class_pools])
    held = dh > max(1e-9, 1e-8 * class_dh.max()) if C else dh > 1e-9
    hc, hp, hd = pool_class[pool[held]], proj[held], dh[held]
    # A class of pools whose owner keeps a reserve: the projects the owner does not sponsor (borrowers)
    # share its lendable part. When they hold all of it, a borrower could only have more from another
    # borrower: what the owner's projects hold there is the reserve, closed to it (a borrower stopped
    # there stopped at capacity, not because the owner's projects have as strong a claim).
    owner = net.class_owner
    sponsored = set(zip(inp.st_proj.tolist(), inp.st_mem.tolist()))
    borrows = np.array([c >= 0 and owner[c] >= 0 and (p, int(owner[c])) not in sponsored
                        for c, p in zip(hc.tolist(), hp.tolist())], dtype=bool)
    lent = np.bincount(hc[borrows], weights=hd[borrows], minlength=C)
    lendable = np.array([(inp.pool_dh[ps] * (1 - inp.pool_reserve[ps])).sum() for ps in net.class_pools])
    # full to the LP's tolerance: relative to the part, and absolute (1e-8 of the largest class, in
    # which unit the solver's error is bounded: a tiny lendable part beside a big class falls short by it)
    slack = 1e-8 * class_dh.max() if C else 0.0
    lend_full = (owner >= 0) & (lent >= lendable * (1 - 1e-6) - slack)
    # per class, the two strongest distinct holders, and the two strongest borrowers
    top = [[] for _ in range(C)]
    top_borrower = [[] for _ in range(C)]
    for c, p, b in set(zip(hc.tolist(), hp.tolist(), borrows.tolist())):
        if c >= 0:
            top[c].append(((tier[p], lvl[p]), p))
            if b:
                top_borrower[c].append(((tier[p], lvl[p]), p))
    for c in range(C):
        top[c] = sorted(top[c], reverse=True)[:2]
        top_borrower[c] = sorted(top_borrower[c], reverse=True)[:2]
    for j in range(J):
        if met[j]:
            continue
        g = net.group_of[j]
        if g < 0:
            continue
        mine = (tier[j], lvl[j] * (1 - 1e-9))
        for c in net.group_classes[g].tolist():
            borrower = owner[c] >= 0 and (j, int(owner[c])) not in sponsored
            rivals = top_borrower[c] if borrower and lend_full[c] else top[c]
            if any(p != j and claim >= mine for claim, p in rivals):
                out[j] = "fairness"
                break
    return out

