"""A slow, independent reference for DESIGN section 3 (steps 1 and 2), used by the property tests.

Written apart from `pooler.core.alloc*` and sharing nothing with it but the domain records: one
variable per (project, pool) pair, no aggregation, no breakpoints. Each level is found by one LP
(maximise t), then every unfrozen entity is probed by its own LP (can it exceed t while the others
hold t?); the entities that cannot are frozen. Exact, and hopeless beyond toy sizes.

Numerics, kept apart from the fast path's choices: device-hours are scaled so that the largest pool
holds 1 (the LPs see O(1) data) and solved to 1e-10; a probe holds the others at t minus 1e-9 of the
scale (1e-8, then 1e-7 while that is infeasible: always above the solver's tolerance) and counts an
entity as able to exceed t only when it gains more than 1e-8; an LP that is still infeasible because
frozen values carry the solver's error is retried with every frozen bound loosened by 1e-10, then
1e-9 more; any LP verdict other than optimal that survives those is an error (`ReferenceFailure`),
never read as "blocked" or "level 0".
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from pooler.core.model import Snapshot

FEAS = 1e-10  # HiGHS's primal and dual feasibility tolerances here (scaled units)
HOLDS = (1e-9, 1e-8, 1e-7)  # scaled units the others give up in a probe, tried in turn while infeasible
GAIN = 1e-8  # scaled units a probed entity must gain over t to count as able to exceed it
RELAX = (0.0, 1e-10, 1e-9)  # further loosenings of every frozen bound, tried while a level LP is infeasible
SLACK = 1e-11  # frozen values are bounds relaxed by this much (scaled units): project values can move
# a hundred times more than the member totals they are pinned by, so this stays below the tolerance


class ReferenceFailure(ArithmeticError):
    """An LP of the reference did not solve to optimality: its answer would be unreliable."""


def reference_allocate(snap: Snapshot) -> tuple[dict[str, float], dict[str, float]]:
    """(y per project id, Y per member id)."""
    members = [m.id for m in snap.members]
    mi = {m: i for i, m in enumerate(members)}
    rate = {a.id: a.rate for a in snap.accelerators}
    home = {m.id: m.region for m in snap.members}
    hours = snap.consortium.hours
    assets = {("d", d.id): d for d in snap.datasets}
    assets.update({("m", d.id): d for d in snap.models})

    # contributions and shares
    K = [Decimal(0)] * len(members)
    for p in snap.pools:
        K[mi[p.member]] += rate[p.accelerator] * p.device_hours(hours)
    for d in list(snap.datasets) + list(snap.models):
        K[mi[d.member]] += d.credit
    nM = len(members)
    alpha = float(snap.policy.alpha)
    sumK = float(sum(K))
    S = []
    for k in K:
        S.append(alpha * float(k) / sumK + (1 - alpha) / nM if sumK > 0 else 1.0 / nM)
    usage = dict(snap.usage)
    U = [float(usage.get(m, 0)) for m in members]
    if snap.policy.usage_half_life_days != 0 and sum(U) > 0:
        S = [s * 2.0 ** (-(u / sum(U)) / s) if s > 0 else 0.0 for s, u in zip(S, U)]
    top = max(S) if S else 0.0
    S = [0.0 if s < 1e-6 * top else s for s in S]
    S = [s / sum(S) for s in S] if sum(S) > 0 else S

    projects = list(snap.projects)
    stakes = [{m: float(v) for m, v in p.stakes().items()} for p in projects]
    denom = {m: 0.0 for m in members}
    for p, st in zip(projects, stakes):
        for m, v in st.items():
            denom[m] += v * float(p.weight)
    w = []
    for p, st in zip(projects, stakes):
        w.append(sum(v * S[mi[m]] * float(p.weight) / denom[m] for m, v in st.items() if denom[m] > 0))
    wtop = max(w) if w else 0.0
    w = [0.0 if x < 1e-6 * wtop else x for x in w]

    # effective rates and the (project, pool) variables
    pools = list(snap.pools)
    pairs, coef = [], []
    for j, p in enumerate(projects):
        regions = None if p.regions is None else set(p.regions)
        for kind, ids in (("d", p.datasets), ("m", p.models)):
            for a in ids:
                res = assets[(kind, a)].residency
                if res is not None:
                    regions = set(res) if regions is None else regions & set(res)
        for q, pool in enumerate(pools):
            region = pool.region if pool.region is not None else home[pool.member]
            if regions is not None and region not in regions:
                continue
            e = float(rate[pool.accelerator] * p.speed_on(pool.accelerator))
            if e > 0 and pool.device_hours(hours) > 0:
                pairs.append((j, q))
                coef.append(e)
    nx = len(pairs)
    J = len(projects)
    if nx == 0:  # nothing can run anywhere
        return {p.id: 0.0 for p in projects}, {m: 0.0 for m in members}
    # y = A_y x ; pool use = A_cap x ; non-sponsor use = A_lend x
    ay = np.zeros((J, nx))
    acap = np.zeros((len(pools), nx))
    alend = np.zeros((len(pools), nx))
    for k, ((j, q), e) in enumerate(zip(pairs, coef)):
        ay[j, k] = e
        acap[q, k] = 1.0
        if pools[q].member not in stakes[j]:
            alend[q, k] = 1.0
    cap_raw = np.array([float(p.device_hours(hours)) for p in pools])
    scale = 1.0 / cap_raw.max() if cap_raw.max() > 0 else 1.0  # x and y in units of the largest pool
    cap = cap_raw * scale
    lend = np.array([float((1 - p.reserve) * p.device_hours(hours)) for p in pools]) * scale
    dem = np.array([float(p.demand) for p in projects]) * scale
    aY = np.zeros((nM, nx))
    for j, st in enumerate(stakes):
        for m, v in st.items():
            aY[mi[m]] += v * ay[j]
    base_ub = np.vstack([acap, alend, ay]) if nx else np.zeros((0, 0))
    base_b = np.concatenate([cap, lend, dem])
    lower: list[tuple[np.ndarray, float]] = []  # rows r with r @ x >= value

    def lp(obj_x, obj_t, floor_rows, t_fixed=None, may_fail=False):
        """Maximise obj_x @ x + obj_t * t s.t. base, lower, and r @ x >= c t for (r, c) in floor_rows."""
        n = nx + 1
        rows, rhs = [], []
        for r in base_ub:
            rows.append(np.append(r, 0.0))
        rhs.extend(base_b)
        for r, v in lower:
            rows.append(np.append(-r, 0.0))
            rhs.append(-v)
        for r, c in floor_rows:
            rows.append(np.append(-r, c))
            rhs.append(0.0)
        bounds = [(0, None)] * nx + [((t_fixed, t_fixed) if t_fixed is not None else (0, None))]
        res = linprog(-np.append(obj_x, obj_t), A_ub=coo_matrix(np.array(rows).reshape(-1, n)) if rows else None,
                      b_ub=np.array(rhs) if rows else None, bounds=bounds, method="highs",
                      options={"primal_feasibility_tolerance": FEAS, "dual_feasibility_tolerance": FEAS})
        if res.status != 0 and not may_fail:
            raise ReferenceFailure(f"reference LP ended with status {res.status}: {res.message}")
        return res

    def solve(obj_x, obj_t, floors, t_of_hold=None):
        """`lp`, and while it is infeasible: hold the others back further (probes), then loosen every
        frozen bound (frozen values carry the solver's error); the last failure is an error."""
        attempts = [(relax, hold) for relax in RELAX for hold in (HOLDS if t_of_hold else (None,))]
        for k, (relax, hold) in enumerate(attempts):
            if relax and attempts[k - 1][0] != relax:
                lower[:] = [(r, v - relax) for r, v in lower]
            res = lp(obj_x, obj_t, floors, t_fixed=None if hold is None else t_of_hold(hold),
                     may_fail=k < len(attempts) - 1)
            if res.status == 0:
                return res
        raise AssertionError("unreachable: the last attempt raises")

    def lexmaxmin(entities):
        """entities: list of (row, weight); freezes each, appending to `lower`; returns values."""
        values = {}
        todo = list(range(len(entities)))
        while todo:
            floors = [(entities[i][0], entities[i][1]) for i in todo]
            # t is bounded: every entity has a positive weight and a finite demand (y <= demand)
            t = solve(np.zeros(nx), 1.0, floors).x[-1]
            frozen = []
            for i in todo:
                others = [(entities[k][0], entities[k][1]) for k in todo if k != i]
                r, c = entities[i]
                probe = solve(r, 0.0, others, lambda hold: max(t - hold, 0.0))
                if -probe.fun <= c * t + GAIN:
                    frozen.append(i)
            if not frozen:  # by convexity some entity is blocked at the maximal level
                raise ReferenceFailure(f"no entity is blocked at level {t!r}")
            for i in frozen:
                r, c = entities[i]
                values[i] = c * t
                lower.append((r, max(c * t - SLACK, 0.0)))
            todo = [i for i in todo if i not in frozen]
        return values

    sponsors = [i for i in range(nM) if aY[i].any() or any(members[i] in st for st in stakes)]
    Y = {}
    for phase in (True, False):
        ents = [i for i in sponsors if (S[i] > 0) == phase]
        vals = lexmaxmin([(aY[i], S[i] if phase else 1.0) for i in ents])
        for k, i in enumerate(ents):
            Y[i] = vals[k]
    # step 2: pin every Y_m, then projects by y / w, zero weights last
    for i, v in Y.items():
        lower.append((-aY[i], -(v + SLACK)))
    y = {}
    for phase in (True, False):
        ents = [j for j in range(J) if (w[j] > 0) == phase]
        vals = lexmaxmin([(ay[j], w[j] if phase else 1.0) for j in ents])
        for k, j in enumerate(ents):
            y[j] = vals[k]
    y_out = {p.id: float(min(y.get(j, 0.0), dem[j])) / scale for j, p in enumerate(projects)}
    Y_out = {m: 0.0 for m in members}
    for j, st in enumerate(stakes):
        for m, v in st.items():
            Y_out[m] += v * y_out[projects[j].id]
    return y_out, Y_out
