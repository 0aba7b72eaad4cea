"""What stops a project that stopped at `fairness`: counterfactual LPs on the recorded allocation.

A project j stopped by fairness cannot gain without lowering something the allocation protects
(DESIGN section 3): a project whose claim is no stronger than j's, a member's total from step 1, or
an owner's reserve. Which of them it is can be asked of the LP directly, one constraint family at a
time, every LP holding each project with a weaker claim than j at its value:

1. holding every member's total as well, can j gain? Then the only thing in its way is projects
   with the same claim as j: a tie (they are named, with what they would lose);
2. else, with member totals free, can j gain? Then the member totals stop it: more for j would lower
   those of the members named (step 1 settles them before projects are compared);
3. else, with the owners' reserves open to everyone as well, can j gain? Then the reserves stop it;
4. else nothing but capacity held by weaker claims stops it (`none`: the label is the allocation's
   summary of who holds the pools, and this check found no gain).

Claims compare as the allocation does: projects with a weight by level y/w, those of weight 0
after all of them, by y. One LP variable per (project, pool) a project may use, scaled so that the
largest pool holds 1; held values are loosened by 1e-9 of themselves and of that scale (the recorded
values carry the solver's error; 1e-7, then 1e-6 while that is infeasible), and a gain counts only above `GAIN` of that scale: holding the
values to 1e-9 can let a project gain a thousand times that through stake ratios (CHANGELOG, Known
problems), never a hundred-thousandth of the largest pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from pooler.core.alloc_lp import INF, WarmLP
from pooler.core.model import Snapshot

GAIN = 1e-5  # of the largest pool's device-hours: a smaller gain is the check's own noise
HOLDS = (1e-9, 1e-7, 1e-6)  # relative and absolute (scaled) loosenings of the held values, in turn
# while the LP is infeasible (recorded values can miss each other by about 1e-7 at 1,000 projects)
MAX_PAIRS = 50_000  # (project, pool) pairs beyond which the check is not attempted (seconds of LP)


class _Rows:
    """A sparse block of constraint rows (triplets), enough of a matrix for building these LPs."""

    def __init__(self, r, c, v, n_rows: int) -> None:
        self.r, self.c, self.v, self.n = np.asarray(r, np.int64), np.asarray(c, np.int64), np.asarray(v, float), n_rows

    def take(self, rows: np.ndarray) -> "_Rows":
        new = np.full(self.n, -1)
        new[rows] = np.arange(len(rows))
        keep = new[self.r] >= 0
        return _Rows(new[self.r[keep]], self.c[keep], self.v[keep], len(rows))

    def __neg__(self) -> "_Rows":
        return _Rows(self.r, self.c, -self.v, self.n)

    def dot(self, x: np.ndarray) -> np.ndarray:
        return np.bincount(self.r, weights=self.v * x[self.c], minlength=self.n)


def _stack(blocks: list[_Rows]) -> _Rows:
    offsets = np.cumsum([0] + [b.n for b in blocks])
    return _Rows(np.concatenate([b.r + o for b, o in zip(blocks, offsets)]),
                 np.concatenate([b.c for b in blocks]), np.concatenate([b.v for b in blocks]), int(offsets[-1]))


@dataclass(frozen=True)
class Limit:
    """What stops a fairness-stopped project, found by `fairness_limit`."""

    kind: str  # "tie", "members", "reserves" or "none"
    gain: float  # units the project could gain in the LP that found the limit (0 for "none")
    step: float  # the gain asked for to name who gives way: a hundredth of its demand, or `gain`
    losers: tuple[tuple[str, float], ...]  # projects (tie), members or pools (reserves), and how much
    # they give way for `step`: units lost, or device-hours beyond what a pool's owner lends


def fairness_limit(snapshot: Snapshot, project: str, allocated: Mapping[str, float],
                   weight: Mapping[str, float], member_allocated: Mapping[str, float]) -> Limit | None:
    """What stops `project` (see the module text), from the recorded project values and weights and
    the members' totals; None when the consortium is too big for the check or an LP fails."""
    from pooler.core.alloc import _Inputs  # the same eligibility, rates and reserves as the allocation

    inp = _Inputs(snapshot)
    ids = inp.project_ids
    if project not in ids:
        return None
    J, P, M = len(ids), len(inp.pool_ids), len(inp.member_ids)
    j0 = ids.index(project)
    value = np.array([float(allocated.get(p, 0.0)) for p in ids])
    w = np.array([float(weight.get(p, 0.0)) for p in ids])
    demand = inp.demand

    # eligible pairs and their rates (units per device-hour)
    region_index = {r: i for i, r in enumerate(sorted({r for r in inp.pool_region if r is not None}))}
    pool_reg = np.array([region_index.get(r, -1) if r is not None else -1 for r in inp.pool_region])
    rows_j, rows_p, rates = [], [], []
    for j in range(J):
        rate = inp.pool_rate.copy()
        if inp.speed[j] is not None:
            rate = rate * np.asarray(inp.speed[j])[inp.pool_t]
        if inp.allowed[j] is not None:
            ok = np.zeros(len(region_index) + 1, dtype=bool)
            ok[[region_index[r] for r in inp.allowed[j] if r in region_index]] = True
            rate = np.where(ok[pool_reg], rate, 0.0)  # index -1: no region, open only to the unrestricted
        rate = np.where(inp.pool_dh > 0, rate, 0.0)
        q = np.flatnonzero(rate > 0)
        rows_j.append(np.full(q.size, j))
        rows_p.append(q)
        rates.append(rate[q])
        if sum(a.size for a in rows_p) > MAX_PAIRS:
            return None
    pj = np.concatenate(rows_j) if J else np.zeros(0, dtype=np.int64)
    pp = np.concatenate(rows_p) if J else np.zeros(0, dtype=np.int64)
    pe = np.concatenate(rates) if J else np.zeros(0)
    if not (pj == j0).any():
        return None
    scale = float(inp.pool_dh.max())
    n = pj.size
    col = np.arange(n)

    # y = A_y x (scaled units: device-hours / scale x rate)
    A_y = _Rows(pj, col, pe, J)
    A_cap = _Rows(pp, col, np.ones(n), P)
    # lending: a pool's owner keeps `reserve` of it for the projects it sponsors
    sponsored = set(zip(inp.st_proj.tolist(), inp.st_mem.tolist()))
    lends = inp.pool_reserve > 0
    borrow = np.array([bool(lends[q]) and (j, int(inp.pool_owner[q])) not in sponsored
                       for j, q in zip(pj.tolist(), pp.tolist())], dtype=bool)
    lend_pools = np.flatnonzero(lends)
    lend_row = np.full(P, -1)
    lend_row[lend_pools] = np.arange(lend_pools.size)
    A_lend = _Rows(lend_row[pp[borrow]], col[borrow], np.ones(int(borrow.sum())), lend_pools.size)
    b_lend = inp.pool_dh[lend_pools] * (1 - inp.pool_reserve[lend_pools]) / scale
    # member totals Y = sum stake x y: one entry per stake and pair of its project
    first = np.searchsorted(pj, np.arange(J + 1))  # pairs are in project order
    per = first[inp.st_proj + 1] - first[inp.st_proj]
    at = np.repeat(first[inp.st_proj], per) + np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
    A_mem = _Rows(np.repeat(inp.st_mem, per), at, np.repeat(inp.st_val, per) * pe[at], M)
    Y = np.array([float(member_allocated.get(m, 0.0)) for m in inp.member_ids])

    # claims: weighted projects by level, after them those of weight 0 by value
    mine_tier = w[j0] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(w > 0, value / np.where(w > 0, w, 1.0), value)
    # held: the weaker claims of its own tier and, for a weight-0 project, every weighted one (they
    # are served first); a weighted project may take from weight-0 projects (served last)
    weaker = np.where((w > 0) == mine_tier, level < level[j0] * (1 - 1e-6), (w > 0) > mine_tier)
    weaker[j0] = False
    held = np.flatnonzero(weaker)
    v = value / scale
    Ys = Y / scale

    free = np.flatnonzero(~weaker)
    free = free[free != j0]
    # per kind: which constraints hold, and the family that gives way when j gains (rows F with
    # targets t: F x >= t is what the allocation keeps; the shortfall below t is what each gives way)
    kinds = {
        "tie": (True, False, A_y.take(free), v[free], [ids[k] for k in free]),
        "members": (False, False, A_mem, Ys, inp.member_ids),
        "reserves": (False, True, -A_lend, -b_lend, [inp.pool_ids[q] for q in lend_pools]),
    }
    mine = A_y.take(np.array([j0]))

    def solve(hold_members: bool, open_reserves: bool, family=None, step: float = 0.0):
        """Most for j; or, given the `family` that gives way, j at its value plus `step` with the
        least given way (the sum of the family's shortfalls, one variable each)."""
        for hold in HOLDS:
            x = _solve_once(hold_members, open_reserves, family, step, hold)
            if x is not None:
                return x
        return None

    def _solve_once(hold_members, open_reserves, family, step, hold):
        blocks = [A_cap, -A_y.take(held), A_y]
        rhs = [inp.pool_dh / scale, -np.maximum(v[held] * (1 - hold) - hold, 0.0), demand / scale]
        if not open_reserves:
            blocks.append(A_lend)
            rhs.append(b_lend)
        if hold_members:
            blocks.append(-A_mem)
            rhs.append(-np.maximum(Ys * (1 - hold) - hold, 0.0))
        cost = np.zeros(n)
        if family is None:
            cost[mine.c] = mine.v
            maximize = True
        else:
            F, target = family
            K = F.n
            blocks.append(-mine)
            rhs.append([-(v[j0] + step)])
            # F x + s >= target: -F x - s <= -target, s the shortfall
            blocks.append(_Rows(np.concatenate([F.r, np.arange(K)]), np.concatenate([F.c, n + np.arange(K)]),
                                np.concatenate([-F.v, -np.ones(K)]), K))
            rhs.append(-target)
            cost = np.concatenate([cost, np.ones(K)])
            maximize = False
        A = _stack(blocks)
        hi = np.concatenate(rhs)
        lp = WarmLP(cost, np.zeros(cost.size), np.full(cost.size, INF), np.full(A.n, -INF), hi,
                    A.r, A.c, A.v, maximize=maximize)
        sol = lp.solve()
        return sol.col_value if sol.status == "optimal" else None

    for kind, (hold_members, open_reserves, F, target, names) in kinds.items():
        if kind == "reserves" and not lend_pools.size:
            break
        x = solve(hold_members, open_reserves)
        if x is None:
            return None
        gain = float(mine.dot(x)[0] - v[j0])
        if gain <= GAIN:
            continue
        # who gives way, and how much at least, when j gets a little more: a hundredth of its demand,
        # or all it can gain
        step = min(gain, max(0.01 * demand[j0] / scale, 10 * GAIN))
        x = solve(hold_members, open_reserves, (F, target), step * (1 - 1e-6))
        if x is None:
            return None
        short = x[n:] * scale
        order = np.argsort(-short, kind="stable")
        losers = tuple((names[i], float(short[i])) for i in order if short[i] > 1e-3 * step * scale)
        return Limit(kind, gain * scale, step * scale, losers)
    return Limit("none", 0.0, 0.0, ())
