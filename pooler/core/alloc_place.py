"""Step 3 of the allocation (DESIGN section 3): place the fixed deliveries on pools, then round.

Placement is one LP on a network that refines the fairness classes into *subclasses* (pools of one
class with the same cost and owner), solved in passes, each holding what the ones before reached:
minimise total cost; maximise what projects take directly from their own sponsors' pools, the
groups of the earlier projects first; prefer subclasses earlier by pool id (minimise the
flow-weighted rank); and give the earlier pools to the groups of the earlier projects. So a tie
between placements of equal cost is not left to the solver's pivoting, which a change of pricing
rule or version moves. Flows through hubs are then split into (project, pool) grants by the
north-west-corner rule in id order, which is deterministic, and grants are rounded per pool by
largest remainder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pooler.core.alloc_fair import NumericalFailure
from pooler.core.alloc_lp import INF, WarmLP

_TARGET_RTOL = 1e-7  # if exact deliveries are (numerically) infeasible, they may fall short by this much
_PRESOLVE_COLS = 20_000  # the first pass runs HiGHS's presolve from this many columns on


@dataclass(frozen=True)
class PlaceNetwork:
    """What placement needs, on top of the fairness network's groups and classes (scaled units)."""

    n_groups: int
    n_hubs: int
    n_classes: int
    arc_hub: np.ndarray  # (A,) hub -> hub or class arcs of the fairness network
    arc_target: np.ndarray
    arc_to_hub: np.ndarray
    # group -> hub / class edges of the fairness network (the own-reserve edges are left out)
    edge_group: np.ndarray
    edge_target: np.ndarray
    edge_is_hub: np.ndarray
    edge_coef: np.ndarray
    # subclasses: pools of one class with one cost and owner
    sub_class: np.ndarray  # (B,)
    sub_cap: np.ndarray  # (B,) usable capacity, scaled units
    sub_lend: np.ndarray  # (B,) lending limit (inf: none)
    sub_cost: np.ndarray  # (B,) cost per scaled unit
    sub_rank: np.ndarray  # (B,) rank of the subclass's first pool id among all pool ids
    edge_rank: np.ndarray  # (E,) rank of the first pool id behind each group edge's target
    arc_rank: np.ndarray  # (A,) distinct ranks of the hub arcs, by the pool ids of target and hub
    # direct own-pool edges: group -> subclass whose owner sponsors the group (no lending limit)
    own_group: np.ndarray
    own_sub: np.ndarray
    own_coef: np.ndarray
    group_target: np.ndarray  # (G,) delivery y_g to place, scaled units


@dataclass(frozen=True)
class Placement:
    group: np.ndarray  # flow pieces: group, subclass, capacity units, delivered units, via own edge
    sub: np.ndarray
    units: np.ndarray
    delivered: np.ndarray
    own: np.ndarray
    lp_solves: int


def place(net: PlaceNetwork) -> Placement:
    G, H = net.n_groups, net.n_hubs
    C, B, A = net.n_classes, len(net.sub_class), len(net.arc_hub)
    E, O = len(net.edge_group), len(net.own_group)
    # columns: group edges (E), hub arcs (A), class->subclass (B), own edges (O)
    c_e = np.arange(E)
    c_v = E + np.arange(A)
    c_z = E + A + np.arange(B)
    c_o = E + A + B + np.arange(O)
    n_col = E + A + B + O
    # rows: hubs (H), classes (C) conservation, subclass capacity (B), subclass lending (B), groups (G)
    r_hub = np.arange(H)
    r_cls = H + np.arange(C)
    r_cap = H + C + np.arange(B)
    r_lend = H + C + B + np.arange(B)
    r_grp = H + C + 2 * B + np.arange(G)
    n_row = H + C + 2 * B + G
    rows, cols, vals = [], [], []

    def put(r, c, v):
        r = np.asarray(r)
        rows.append(r.ravel())
        cols.append(np.broadcast_to(np.asarray(c), r.shape).ravel())
        vals.append(np.broadcast_to(np.asarray(v, dtype=float), r.shape).ravel())

    hub = net.edge_is_hub
    put(r_hub[net.edge_target[hub]], c_e[hub], 1.0)
    put(r_cls[net.edge_target[~hub]], c_e[~hub], 1.0)
    put(r_grp[net.edge_group], c_e, net.edge_coef)
    put(r_hub[net.arc_hub], c_v, -1.0)
    ah = net.arc_to_hub
    put(r_hub[net.arc_target[ah]], c_v[ah], 1.0)
    put(r_cls[net.arc_target[~ah]], c_v[~ah], 1.0)
    put(r_cls[net.sub_class], c_z, -1.0)
    put(r_cap, c_z, 1.0)
    put(r_lend, c_z, 1.0)
    put(r_cap[net.own_sub], c_o, 1.0)
    put(r_grp[net.own_group], c_o, net.own_coef)

    cost = np.zeros(n_col)
    cost[c_z] = net.sub_cost
    cost[c_o] = net.sub_cost[net.own_sub]
    row_lo = np.full(n_row, -INF)
    row_hi = np.full(n_row, INF)
    row_lo[r_hub] = row_hi[r_hub] = 0.0
    row_lo[r_cls] = row_hi[r_cls] = 0.0
    row_hi[r_cap] = net.sub_cap
    row_hi[r_lend] = net.sub_lend
    target = net.group_target
    row_lo[r_grp] = row_hi[r_grp] = target
    lp = WarmLP(cost, np.zeros(n_col), np.full(n_col, INF), row_lo, row_hi,
                np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), maximize=False)

    def hold(idx, vals, value: float, *, at_least: bool) -> None:
        """Keep sum(vals * x[idx]) at `value` (reached by the last solve) through the passes that
        follow, to 1e-9 of it: at least it, or at most it."""
        slack = 1e-9 * max(1.0, abs(value))
        if at_least:
            lp.add_row(value - slack, INF, idx, vals)
        else:
            lp.add_row(-INF, value + slack, idx, vals)

    # a first solve is a cold start: its verdict needs no second cold start to be believed. On a
    # large LP HiGHS's presolve shortens it (10,000 projects, 44,000 columns: placement 3.8-4.1 s to
    # 3.0-3.4 s; 50,000: an infeasible verdict in 13 s instead of 22 s, placement 152 s to 132 s);
    # on small ones it costs more than it saves (3,000 projects: 0.53 s to 0.66 s), and its answer
    # can be less accurate (review: a random instance's small project got grants 2e-3 short of its
    # allocation beside a pool of 6e7, within the LP's 1e-9 of that pool). Should presolve call
    # feasible deliveries infeasible (it can, on LPs this tight), the fallback below still
    # delivers them whole: the most delivery within the allowance is then every target.
    sol = lp.solve(verify=False, presolve=n_col >= _PRESOLVE_COLS)
    if sol.status != "optimal":
        # the exact values carry solver tolerance (a frozen level loosened by 1e-9, amplified by a
        # stake ratio) and together may exceed the capacity by that much: let each fall short by at
        # most 1e-7 (relative), deliver as much as the capacity allows, and only then minimise the
        # cost, which would otherwise take the whole allowance and leave capacity idle
        lp.set_row_bounds(r_grp, target * (1 - _TARGET_RTOL) - 1e-9, target)
        # a verdict of the simplex leaves a basis dual feasible for the costs, and looser bounds keep
        # it so: the dual simplex goes on from it to a point within the allowance (presolve's
        # verdict leaves no basis: this solve then starts cold). From there the objective alone
        # changes, and the primal simplex goes on to the most delivery (50,000 projects: 25 s + 7 s,
        # against 61 s to maximise the delivery from the basis with the costs changed)
        warm = lp.solve(verify=False)
        gives = np.concatenate([c_e, c_o])
        coef = np.concatenate([net.edge_coef, net.own_coef])
        lp.set_cost(np.arange(n_col), 0.0)
        lp.set_cost(gives, -coef)
        sol = lp.solve(primal=warm.status == "optimal")
        if sol.status != "optimal":
            # further off than the solver's tolerance explains: deliver what fits, if that is
            # within 1e-6 of the whole (more would be an error upstream, not noise)
            lp.set_row_bounds(r_grp, 0.0, target)
            sol = lp.solve()
            if sol.status != "optimal" or -sol.objective < target.sum() * (1 - 1e-6):
                raise NumericalFailure(f"placement failed: {sol.status}, deliveries beyond the capacity")
        hold(gives, coef, -sol.objective, at_least=True)
        lp.set_cost(np.arange(n_col), cost)
        sol = lp.solve(primal=True)
        if sol.status != "optimal":
            raise NumericalFailure(f"placement failed: {sol.status}")
    if np.any(net.sub_cost != 0) and (O or B > 1):
        # hold the least cost through the passes that follow
        hold(np.flatnonzero(cost), cost[cost != 0], sol.objective, at_least=False)
    if O:
        # then prefer the projects' own sponsors' pools
        lp.set_cost(np.arange(n_col), 0.0)
        lp.set_cost(c_o, -1.0)  # (maximising own flows, not minimising others: no pull on slack)
        # the cost row holds at the optimum just found and only the objective changed: the basis
        # stays primal feasible and the primal simplex goes on from it (the dual took 10x the time)
        sol2 = lp.solve(primal=True)
        if sol2.status == "optimal":
            sol = sol2
            if np.unique(net.own_group).size > 1:
                # which groups take that own flow, where several could: the earlier groups (by
                # first project id) first, holding the total
                hold(c_o, np.ones(O), float(np.maximum(sol.col_value[c_o], 0.0).sum()), at_least=True)
                lp.set_cost(c_o, -(G - net.own_group) / G)
                sol2 = lp.solve(primal=True)
                if sol2.status == "optimal":
                    sol = sol2
    if B > 1:
        # then ties by ids: use the pools earliest by id, holding the own flow just reached (the
        # current solution meets it, so the basis stays primal feasible) per group, exactly: one
        # total within a tolerance would be traded for earlier pools, and per group it may still
        # move between a sponsor's own pools, so that ties among those go by id too
        if O:
            grp, idx = np.unique(net.own_group, return_inverse=True)
            held = np.bincount(idx, weights=np.maximum(sol.col_value[c_o], 0.0), minlength=grp.size)
            start = np.r_[0, np.cumsum(np.bincount(idx, minlength=grp.size))]
            lp.add_rows(held, np.full(grp.size, INF), start, c_o[np.argsort(idx, kind="stable")], np.ones(O))
        rank_cost = np.zeros(n_col)
        rank_cost[c_z] = 1.0 + net.sub_rank
        rank_cost[c_o] = 1.0 + net.sub_rank[net.own_sub]
        lp.set_cost(np.arange(n_col), rank_cost)
        sol3 = lp.solve(primal=True)
        if sol3.status == "optimal":
            sol = sol3
            routes = np.bincount(np.concatenate([net.edge_group, net.own_group]), minlength=G)
            if G > 1 and routes.max() > 1:
                # last, which group takes which of the pools just chosen: holding the ranks, the
                # earlier groups (by first project id) take the earlier pools. A flow costs its
                # group's weight x (1 + the rank of its first pool), the weights falling with the
                # group's order: swapping two groups' pools then costs more one way, and the
                # cheaper way gives the earlier pool to the earlier group. The weights are logs
                # of distinct primes, so that no longer cycle of moves between pools (integer
                # rank steps) costs exactly nothing (review, 2026-11-28: with (G - g) / G three
                # groups tied on ranks 0, 1, 3)
                hold(np.flatnonzero(rank_cost), rank_cost[rank_cost != 0], sol.objective, at_least=False)
                order = np.zeros(n_col)
                weight = _prime_weights(G)[::-1]
                order[c_e] = weight[net.edge_group] * (1.0 + net.edge_rank)
                order[c_o] = weight[net.own_group] * (1.0 + net.sub_rank[net.own_sub])
                lp.set_cost(np.arange(n_col), order)
                sol4 = lp.solve(primal=True)
                if sol4.status == "optimal":
                    sol = sol4
    x = np.maximum(sol.col_value, 0.0)
    xv, solves = _canonical_arcs(net, x[c_v])
    return _decompose(net, x[c_e], xv, x[c_z], x[c_o], lp.solves + solves)


def _canonical_arcs(net: PlaceNetwork, xv: np.ndarray) -> tuple[np.ndarray, int]:
    """The hubs' arc flows with the same net flow into every hub and class as `xv`, the least costly
    by weights in the order of the pool ids (and the LP solves used).

    Every pass of `place` fixes the groups' flows into the hubs and the classes' flows into pools,
    but not which hub feeds a class where several hubs lead to it; the decomposition into grants
    follows the arcs, so a change of the solve path alone moved the grants of a third of 10,000
    projects. Among the arc flows with the same net flows (a small LP: one column per arc, one row
    per hub and class), the least cost by rank, the costs logs of distinct primes (no cycle of
    moves costs exactly nothing), is one flow whatever the path, to the LP's tolerance. Arcs whose
    keys tie (a region's hub and a type's hub gathering the same classes) keep the order in which
    the network made them, which follows the sorted ids too. Should the LP fail, the passes' own arcs
    stay: a flow with these net flows as well, only not the canonical one."""
    A, H = len(net.arc_hub), net.n_hubs
    if not A or not xv.any():
        return xv, 0
    ah = net.arc_to_hub
    rows = np.concatenate([net.arc_hub, np.where(ah, net.arc_target, H + net.arc_target)])
    cols = np.concatenate([np.arange(A), np.arange(A)])
    vals = np.concatenate([np.full(A, -1.0), np.ones(A)])
    n_row = H + net.n_classes
    net_in = np.bincount(rows, weights=vals * xv[cols], minlength=n_row)
    used = np.unique(rows)
    remap = np.full(n_row, -1)
    remap[used] = np.arange(used.size)
    cost = _prime_weights(A)[net.arc_rank.astype(np.int64)]
    lp = WarmLP(cost, np.zeros(A), np.full(A, INF), net_in[used], net_in[used], remap[rows], cols, vals,
                maximize=False)
    sol = lp.solve()
    if sol.status != "optimal":
        return xv, lp.solves  # (the LP's own arcs are a flow with these net flows as well)
    return np.maximum(sol.col_value, 0.0), lp.solves


def _prime_weights(n: int) -> np.ndarray:
    """n increasing weights in (0, 1], the logs of the first n primes over the largest: no sum of
    integer multiples of their differences is exactly zero, so no cycle of moves between the
    things they weigh costs nothing."""
    log_p = np.log(_primes(n))
    return log_p / log_p[-1]


def _primes(n: int) -> np.ndarray:
    """The first `n` primes."""
    if n < 1:
        return np.empty(0, dtype=np.int64)
    size = max(16, int(n * (np.log(n + 1) + np.log(np.log(n + 2)) + 2)))
    sieve = np.ones(size, dtype=bool)
    sieve[:2] = False
    for k in range(2, int(size ** 0.5) + 1):
        if sieve[k]:
            sieve[k * k::k] = False
    return np.flatnonzero(sieve)[:n]


def transport(src_key: np.ndarray, src_amt: np.ndarray, dst_key: np.ndarray, dst_amt: np.ndarray):
    """North-west-corner split, independently within each key (both sides sorted by key, then order).

    Returns (src index, dst index, amount) of every piece; within a key the destination amounts are
    scaled to the source total, so every source is spent exactly.
    """
    if not src_amt.size or not dst_amt.size:
        return np.empty(0, int), np.empty(0, int), np.empty(0)
    keys = np.union1d(src_key, dst_key)
    s_tot = np.bincount(np.searchsorted(keys, src_key), weights=src_amt, minlength=keys.size)
    d_tot = np.bincount(np.searchsorted(keys, dst_key), weights=dst_amt, minlength=keys.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_tot > 0, s_tot / d_tot, 0.0)
    dst_amt = dst_amt * ratio[np.searchsorted(keys, dst_key)]
    # lay each key's segment on one line: key k starts at offset[k]
    offset = np.concatenate([[0.0], np.cumsum(s_tot)])
    s_end = offset[np.searchsorted(keys, src_key)] + _cum_within(src_key, src_amt)
    d_end = offset[np.searchsorted(keys, dst_key)] + _cum_within(dst_key, dst_amt)
    s_start = s_end - src_amt
    d_start = d_end - dst_amt
    pts = np.unique(np.concatenate([s_start, s_end, d_start, d_end]))
    lo, hi = pts[:-1], pts[1:]
    mid = (lo + hi) / 2
    si = np.searchsorted(s_end, mid, side="right")
    di = np.searchsorted(d_end, mid, side="right")
    ok = (si < src_amt.size) & (di < dst_amt.size)
    si, di, amt, mid = si[ok], di[ok], (hi - lo)[ok], mid[ok]
    ok = (s_start[si] <= mid) & (d_start[di] <= mid) & (src_key[si] == dst_key[di]) & (amt > 0)
    return si[ok], di[ok], amt[ok]


def _cum_within(key: np.ndarray, amt: np.ndarray) -> np.ndarray:
    """Cumulative sum of `amt` restarting at every new value of the (sorted) `key`."""
    cum = np.cumsum(amt)
    first = np.concatenate([[True], key[1:] != key[:-1]])
    base = np.where(first, cum - amt, 0.0)
    return cum - np.maximum.accumulate(np.where(first, base, -INF))


def _decompose(net: PlaceNetwork, xe, xv, xz, xo, solves) -> Placement:
    tiny = 1e-13
    # 1. hub flows, hubs in order (a hub's arcs lead only to hubs before it, so the last is first):
    #    each hub's inflows, by group, go to its arcs in (target kind, target) order
    hub_e = np.flatnonzero(net.edge_is_hub & (xe > tiny))
    # pieces waiting in hubs: hub, group, capacity units, delivered units per capacity unit
    p_hub, p_grp = net.edge_target[hub_e], net.edge_group[hub_e]
    p_amt, p_coef = xe[hub_e], net.edge_coef[hub_e]
    c_grp, c_cls, c_amt, c_coef = [], [], [], []
    arcs = np.flatnonzero(xv > tiny)
    for h in range(net.n_hubs - 1, -1, -1):
        mine = p_hub == h
        out = arcs[net.arc_hub[arcs] == h]
        if not mine.any() or not out.size:
            continue
        grp, amt, coef = p_grp[mine], p_amt[mine], p_coef[mine]
        p_hub, p_grp, p_amt, p_coef = p_hub[~mine], p_grp[~mine], p_amt[~mine], p_coef[~mine]
        o = np.lexsort((coef, grp))
        grp, amt, coef = grp[o], amt[o], coef[o]
        out = out[np.lexsort((net.arc_target[out], ~net.arc_to_hub[out]))]
        si, di, part = transport(np.zeros(grp.size, np.int64), amt, np.zeros(out.size, np.int64), xv[out])
        to_hub = net.arc_to_hub[out[di]]
        tgt = net.arc_target[out[di]]
        p_hub = np.concatenate([p_hub, tgt[to_hub]])
        p_grp = np.concatenate([p_grp, grp[si][to_hub]])
        p_amt = np.concatenate([p_amt, part[to_hub]])
        p_coef = np.concatenate([p_coef, coef[si][to_hub]])
        c_grp.append(grp[si][~to_hub])
        c_cls.append(tgt[~to_hub])
        c_amt.append(part[~to_hub])
        c_coef.append(coef[si][~to_hub])
    # class inflows per group: through hubs and direct edges
    direct = np.flatnonzero(~net.edge_is_hub & (xe > tiny))
    in_group = np.concatenate(c_grp + [net.edge_group[direct]])
    in_class = np.concatenate(c_cls + [net.edge_target[direct]])
    in_amt = np.concatenate(c_amt + [xe[direct]])
    in_coef = np.concatenate(c_coef + [net.edge_coef[direct]])
    o = np.lexsort((in_coef, in_group, in_class))
    in_group, in_class, in_amt, in_coef = in_group[o], in_class[o], in_amt[o], in_coef[o]
    # 2. class -> subclass flows, groups in id order, subclasses in their (cost, id) order
    subs = np.flatnonzero(xz > tiny)
    subs = subs[np.argsort(net.sub_class[subs], kind="stable")]
    si, di, amt = transport(in_class, in_amt, net.sub_class[subs], xz[subs])
    g1, b1, u1, c1 = in_group[si], subs[di], amt, in_coef[si]
    # 3. own edges
    own = np.flatnonzero(xo > tiny)
    g2, b2, u2, c2 = net.own_group[own], net.own_sub[own], xo[own], net.own_coef[own]
    return Placement(
        group=np.concatenate([g1, g2]), sub=np.concatenate([b1, b2]), units=np.concatenate([u1, u2]),
        delivered=np.concatenate([u1 * c1, u2 * c2]),
        own=np.concatenate([np.zeros(g1.size, bool), np.ones(g2.size, bool)]), lp_solves=solves,
    )


def largest_remainder(pool: np.ndarray, exact: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Round `exact` device-hours to integers per pool: the floors, plus one for the largest remainders
    (to 1e-6; ties by position, i.e. by (project, pool) order) until the pool's rounded total; never
    over `cap`.

    `pool` indexes `cap`; entries must be sorted so that position breaks ties deterministically.
    """
    # float noise: 2.9999999999 is 3
    base = np.floor(exact + 1e-9)
    rem = np.maximum(exact - base, 0.0)
    n_pool = cap.size
    total = np.bincount(pool, weights=exact, minlength=n_pool)
    floor_sum = np.bincount(pool, weights=base, minlength=n_pool)
    want = np.minimum(np.floor(np.round(total, 6) + 0.5), np.floor(cap + 1e-9))
    # (the total to 1e-6: an exact half rounds up whichever side of it the solver's noise puts it)
    extra = np.maximum(want - floor_sum, 0).astype(np.int64)
    # rank the remainders inside each pool: largest first, then by position
    # (remainders equal to 1e-6 are equal: a tie of exact halves is not left to the solver's noise)
    order = np.lexsort((np.arange(pool.size), -np.round(rem, 6), pool))
    first = np.searchsorted(pool[order], np.arange(n_pool))
    rank = np.empty(pool.size, dtype=np.int64)
    rank[order] = np.arange(pool.size) - first[pool[order]]
    out = base + (rank < extra[pool])
    # a pool can be over only when floors already exceed a fractional capacity (never in exact data)
    over = np.bincount(pool, weights=out, minlength=n_pool) - np.floor(cap + 1e-9)
    for p in np.flatnonzero(over > 0):
        idx = np.flatnonzero(pool == p)
        idx = idx[np.lexsort((-np.arange(idx.size), rem[idx]))]  # take back from the smallest remainders
        k = int(over[p])
        for i in idx:
            take = min(k, int(out[i]))
            out[i] -= take
            k -= take
            if k == 0:
                break
    return out
