"""Hierarchical lexicographic max-min fairness on an aggregated flow network (DESIGN section 3, steps 1-2).

The network is built by `pooler.core.alloc`: *groups* of interchangeable projects (same sponsors and
stakes, same effective rates everywhere) send normalised units to pool *classes* (pools that are
interchangeable for fairness), directly or through *hubs*: a hub gathers classes that are one and the
same to the groups that reach it (a region's classes for projects without speed tables; one
accelerator type's classes everywhere for projects with speed tables and no region limits), so a
group needs one edge per hub instead of one per class. Hubs feed classes and other hubs by arcs of
pure flow; the speed is the gain on the group's edge (a generalised flow).

Both fairness steps run the same progressive filling on one warm-started LP:

* an *entity* (a member in step 1, a group in step 2) needs f_e(t) = sum_i min(d_i, w_i t) at level t:
  a concave, nondecreasing, piecewise-linear function whose breakpoints d_i / w_i are the demands;
* a round finds the highest level t* every active entity can reach together while the frozen ones
  keep their values, by Newton's method from above. The LP at a level t fixes every active entity's
  need in its row (y_e - eps_e >= f_e(t)) and minimises the total shortfall -sum eps_e. When there is
  a shortfall, the LP duals lam_e >= 0 of those rows give a *cut*, sum_e lam_e y_e <= rest, that every
  feasible point meets (weak duality: the dual solution stays feasible whatever the rows' bounds).
  No level above the t at which the cut is tight with every active entity at f_e(t) is reachable,
  so the next LP is at that t, found without an LP on the sorted breakpoints; the level falls to
  t* in a few LPs, however many demands lie on the way (demand-capped entities never cost an LP);
* at t* the cut is tight: every entity it names (lam_e > 0) and that is below its demand is
  blocked (it cannot exceed t* while the others hold it) and freezes at f_e(t*); every entity at its
  demand freezes there. Another bottleneck at the same level is found by the next round, at t*;
* cuts stay valid when entities freeze (the frozen bounds only shrink the feasible set), so the
  earlier rounds' cuts, and in step 2 each member's total from step 1 (sum over its groups of
  stake * y_g <= Y_m), give each round's first guess; it is often already t*;
* only row bounds change between LPs, so every basis stays dual feasible and each LP is a hot start
  of the dual simplex; frozen entities keep their rows, at their frozen values;
* frozen entities keep their value as a lower bound (exactly: a frozen entity can never exceed it),
  never above what the LP reached; should an LP still come back infeasible, every frozen bound is
  loosened by 1e-9, 1e-8, then 1e-7 (relative) before the allocation gives up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pooler.core.alloc_lp import INF, WarmLP

# Relative tolerances of the progressive filling (the LPs are solved to 1e-9 absolute on O(1) data).
_LEVEL_RTOL = 1e-9  # two levels closer than this (relatively) are the same level
_FREEZE_SLACK = 1e-10  # frozen values are bounds relaxed by this fraction (and 1e-12), to stay feasible
_ABS_SLACK = 1e-12  # absolute part of that relaxation, in scaled units
_ZERO = 1e-9  # scaled units: a frozen value below this is nothing, a shortfall below it the LP's noise
_RESTORE = (1e-9, 1e-8, 1e-7)  # relative loosenings of the frozen bounds tried before giving up
_LAM_MIN = 1e-6  # a fresh cut's dual at least this fraction of its largest proves an entity blocked
_GUESS_MIN = 1e-3  # the same for a cut from before (a member's total, an earlier round, the capacity)
_GUESS_RTOL = 1e-6  # ... which blocks no entity the LP gives this much (relatively) more than its need
_NEWTON_MAX = 100  # LPs per round before the filling gives up
_CLIMBS = 3  # guesses that hold and block nobody tried in a round before the level is quadrupled
#             (a next guess more than 4x above is not tried either: the level is quadrupled)
_CUT_DOUBT = 1e-6  # a cut that puts the level this far (relatively) below the last round's is doubted
_MET_RTOL = 1e-9  # a group is at its demand after step 1 when the LP has it this close (and _ZERO)


class NumericalFailure(ArithmeticError):
    """The LP solver lost feasibility that exact arithmetic would keep (see `lexmaxmin`)."""


@dataclass(frozen=True)
class FairNetwork:
    """The aggregated problem; all quantities are scaled so that the largest class capacity is 1."""

    n_members: int
    n_groups: int
    n_hubs: int
    class_cap: np.ndarray  # (C,) capacity in scaled units
    class_lend: np.ndarray  # (C,) lending limit for projects the owner does not sponsor (inf: none)
    arc_hub: np.ndarray  # (A,) hub an arc leaves (pure flow between hubs and classes, coefficient 1)
    arc_target: np.ndarray  # (A,) class it enters, or hub when arc_to_hub
    arc_to_hub: np.ndarray  # (A,) bool
    edge_group: np.ndarray  # (E,)
    edge_target: np.ndarray  # (E,) class index, or hub index when edge_is_hub
    edge_is_hub: np.ndarray  # (E,) bool
    edge_coef: np.ndarray  # (E,) delivered units per unit of capacity (the speed; 1 through a hub)
    edge_lend: np.ndarray  # (E,) bool: counts against the class's lending limit
    stake_group: np.ndarray  # (S,) group of each stake entry
    stake_member: np.ndarray  # (S,)
    stake_value: np.ndarray  # (S,)
    group_demand: np.ndarray  # (G,)
    group_zero: np.ndarray  # (G,) bool: a group of zero-weight projects (served last)
    item_group: np.ndarray  # (N,) the projects, each in one group
    item_weight: np.ndarray  # (N,) w(j) scaled to max 1 (0 for zero-weight projects)
    item_demand: np.ndarray  # (N,)
    member_share: np.ndarray  # (M,) S_m scaled to max 1 (0: served after the others)


@dataclass(frozen=True)
class FairResult:
    member_value: np.ndarray  # (M,) Y_m from step 1
    item_value: np.ndarray  # (N,) y(j)
    item_level: np.ndarray  # (N,) level t at which the project's group froze (nan: demand or nothing)
    lp_solves: int


@dataclass(frozen=True)
class Progress:
    """How far a solve has got, for a caller that shows it (`allocate(progress=...)`): the step
    ("members": step 1, "projects": step 2, "placement": step 3), how many of the step's members or
    projects are settled (frozen at their final value) and of how many, and the LPs solved so far;
    `attempt` is for a caller that solves again (`alloc run` when the ledger changed meanwhile)."""

    step: str
    settled: int
    total: int
    lp_solves: int
    attempt: int = 1


Cuts = tuple  # (cut index, entity, lam, rest per cut): the cuts sum_e lam_e y_e <= rest


class _Items:
    """The items of one `lexmaxmin` (projects, or members as their own items): entity, weight,
    demand, breakpoint d / w, and the items grouped by entity."""

    def __init__(self, ent, w, d, bp, n_ent) -> None:
        self.ent, self.w, self.d, self.bp = ent, w, d, bp
        self.order = np.argsort(ent, kind="stable")
        self.count = np.bincount(ent, minlength=n_ent)
        self.start = np.cumsum(self.count) - self.count
        self.n_ent = n_ent

    def need(self, t: float) -> np.ndarray:
        """need_e(t) = sum over e's items of min(d_i, w_i t), for every entity (0 for others)."""
        v = np.where(self.bp <= t, self.d, self.w * t)
        return np.bincount(self.ent, weights=v, minlength=self.n_ent)


class _Engine:
    def __init__(self, net: FairNetwork, progress=None) -> None:
        self.net = net
        self.progress = progress  # called with a `Progress` after every round, when given
        self.stage: tuple[str, np.ndarray] | None = None  # the step and the entities it counts
        M, G, H = net.n_members, net.n_groups, net.n_hubs
        C, E, A = len(net.class_cap), len(net.edge_group), len(net.arc_hub)
        lend_classes = np.flatnonzero(np.isfinite(net.class_lend))
        R = len(lend_classes)
        lend_row_of = np.full(C, -1)
        # columns
        c_u = np.arange(E)
        c_v = E + np.arange(A)
        c_y = E + A + np.arange(G)
        c_Y = E + A + G + np.arange(M)
        c_eg = E + A + G + M + np.arange(G)
        c_em = E + A + G + M + G + np.arange(M)
        n_col = E + A + G + M + G + M
        # rows
        r_hub = np.arange(H)
        r_cap = H + np.arange(C)
        r_lend = H + C + np.arange(R)
        lend_row_of[lend_classes] = r_lend
        r_gdef = H + C + R + np.arange(G)
        r_mdef = H + C + R + G + np.arange(M)
        r_mlev = H + C + R + G + M + np.arange(M)
        n_row = H + C + R + G + 2 * M
        # the groups' level rows come only with step 2 (`group_rows`): in step 1 they would be free
        # rows, and their slacks in every basis make step 1's LPs dearer

        rows, cols, vals = [], [], []

        def put(r, c, v):
            r, c = np.asarray(r), np.asarray(c)
            rows.append(r.ravel())
            cols.append(np.broadcast_to(c, r.shape).ravel())
            vals.append(np.broadcast_to(np.asarray(v, dtype=float), r.shape).ravel())

        hub = net.edge_is_hub
        to_cls = ~hub
        # edges: into a hub, or into a class (and its lending row), and into the group's delivery
        put(r_hub[net.edge_target[hub]], c_u[hub], 1.0)
        put(r_cap[net.edge_target[to_cls]], c_u[to_cls], 1.0)
        lend = to_cls & net.edge_lend
        put(lend_row_of[net.edge_target[lend]], c_u[lend], 1.0)
        put(r_gdef[net.edge_group], c_u, net.edge_coef)
        # arcs out of hubs, into hubs or classes (and the class's lending row: hubs carry anyone's flow)
        put(r_hub[net.arc_hub], c_v, -1.0)
        ah = net.arc_to_hub
        put(r_hub[net.arc_target[ah]], c_v[ah], 1.0)
        put(r_cap[net.arc_target[~ah]], c_v[~ah], 1.0)
        al = ~ah & (lend_row_of[np.where(ah, 0, net.arc_target)] >= 0) if A else np.zeros(0, bool)
        put(lend_row_of[net.arc_target[al]], c_v[al], 1.0)
        # groups: definition rows (the level rows come with step 2)
        put(r_gdef, c_y, -1.0)
        # members
        put(r_mdef[net.stake_member], c_y[net.stake_group], net.stake_value)
        put(r_mdef, c_Y, -1.0)
        put(r_mlev, c_Y, 1.0)
        put(r_mlev, c_em, -1.0)

        member_demand = np.bincount(
            net.stake_member, weights=net.stake_value * net.group_demand[net.stake_group], minlength=M
        )
        self.member_demand = member_demand
        cost = np.zeros(n_col)
        col_lo = np.zeros(n_col)
        col_hi = np.full(n_col, INF)
        col_hi[c_y] = net.group_demand
        col_hi[c_Y] = member_demand
        col_hi[c_eg] = 0.0
        col_hi[c_em] = 0.0
        row_lo = np.full(n_row, -INF)
        row_hi = np.full(n_row, INF)
        row_lo[r_hub] = row_hi[r_hub] = 0.0
        row_hi[r_cap] = net.class_cap
        row_hi[r_lend] = net.class_lend[lend_classes]
        row_lo[r_gdef] = row_hi[r_gdef] = 0.0
        row_lo[r_mdef] = row_hi[r_mdef] = 0.0
        self.lp = WarmLP(
            cost, col_lo, col_hi, row_lo, row_hi,
            np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), maximize=True,
        )
        # entities: members 0..M-1, then groups M..M+G-1
        self.ent_col = np.concatenate([c_Y, c_y])
        self.ent_row = np.concatenate([r_mlev, np.full(G, -1)])  # groups: see `group_rows`
        self.c_y, self.c_eg = c_y, c_eg
        self.ent_eps = np.concatenate([c_em, c_eg])
        self.ent_cap = np.concatenate([member_demand, net.group_demand])
        n_ent = M + G
        self.n_ent = n_ent
        self.rhs = np.full(n_ent, -INF)  # current lower bound of the level row (-inf: inactive)
        self.value = np.zeros(n_ent)
        self.level = np.full(n_ent, np.nan)
        self.frozen = np.zeros(n_ent, dtype=bool)
        self.frozen_lo = np.zeros(n_ent)
        self.failed_status = ""  # the verdict of the LP that ended the filling, when one did

    def group_rows(self) -> None:
        """Add the groups' level rows y_g - eps_g >= -inf (inactive until `lexmaxmin` serves them)."""
        G, M = self.net.n_groups, self.net.n_members
        if not G:
            return
        first = self.lp.add_rows(np.full(G, -INF), np.full(G, INF), np.arange(G + 1) * 2,
                                 np.stack([self.c_y, self.c_eg], axis=1).ravel(), np.tile([1.0, -1.0], G))
        self.ent_row[M:] = first + np.arange(G)

    def _freeze(self, ents: np.ndarray, values: np.ndarray, level: float | np.ndarray,
                reached: np.ndarray | None = None) -> None:
        """Hold `ents` at `values` from now on; `reached` is what the last LP solution gave them."""
        # values within the solver's tolerance of zero are zero (a level of 1e-9 is noise), and so
        # are values the LP delivered less than that of (a shortfall that small is taken for noise)
        noise = values < _ZERO
        if reached is not None:
            noise |= (reached < _ZERO) & (values < 2 * _ZERO)
        values = np.where(noise, 0.0, values)
        self.value[ents] = values
        self.level[ents] = level
        # The bound is never above what the LP actually reached: an error of the solver's size in the
        # level t is multiplied by the ratio of the entities' coefficients in a*t + b, and bounds at
        # the computed values could then be infeasible together. It is relaxed a hair more as well.
        bound = values if reached is None else np.minimum(values, np.maximum(reached, 0.0))
        lower = np.maximum(bound * (1 - _FREEZE_SLACK) - _ABS_SLACK, 0.0)
        self.frozen[ents] = True
        self.frozen_lo[ents] = lower
        self.lp.set_col_bounds(self.ent_col[ents], lower, self.ent_cap[ents])
        has_row = self.ent_row[ents] >= 0
        self.lp.set_row_bounds(self.ent_row[ents[has_row]], lower[has_row], INF)
        self.lp.set_col_bounds(self.ent_eps[ents], 0.0, 0.0)
        self.rhs[ents[has_row]] = lower[has_row]
        if self.progress is not None and self.stage is not None:
            step, counted = self.stage
            self.progress(Progress(step, int(np.count_nonzero(self.frozen[counted])), counted.size,
                                   self.lp.solves))

    # -- progressive filling -------------------------------------------------------------------
    def _relax_frozen(self, rel: float) -> None:
        """Loosen every frozen lower bound to (1 - rel) of its value (feasibility restoration)."""
        ents = np.flatnonzero(self.frozen)
        if ents.size:
            lower = np.maximum(self.frozen_lo[ents] * (1 - rel) - rel * 1e-3, 0.0)
            self.frozen_lo[ents] = lower
            self.lp.set_col_bounds(self.ent_col[ents], lower, self.ent_cap[ents])
            has_row = self.ent_row[ents] >= 0
            self.lp.set_row_bounds(self.ent_row[ents[has_row]], lower[has_row], INF)
            self.rhs[ents[has_row]] = lower[has_row]

    def _solve(self, **kw):
        """Solve from the current basis; on a verdict other than optimal, loosen the frozen bounds
        (hot starts, cheap) before a cold start has the last word.

        The frozen bounds carry the solver's error of every earlier round; once they are infeasible
        together at 1e-9 they stay so, and every later LP would need two cold starts to be solved at
        1e-7. Loosening them by 1e-9 (relative) restores feasibility for the rounds that follow."""
        sol = self.lp.solve(verify=False, **kw)
        for rel in _RESTORE:
            if sol.status == "optimal":
                return sol
            self._relax_frozen(rel)
            sol = self.lp.solve(verify=False, **kw)
        if sol.status != "optimal":
            sol = self.lp.solve(**kw)
        return sol

    def lexmaxmin(self, ents: np.ndarray, it_ent: np.ndarray, it_w: np.ndarray, it_d: np.ndarray,
                  forced=None, known: Cuts | None = None) -> None:
        """Lexicographic max-min of f_e^{-1}(value) over `ents`, freezing every entity on the way.

        `forced(active)`, when given, names active entities whose value no longer has any freedom
        (see `_forced_groups`); they are frozen where the last LP has them, at their own level.
        `known` are cuts that hold from the start (see `_member_cuts`): first guesses of each level."""
        with np.errstate(divide="ignore", invalid="ignore"):
            it_bp = np.where(it_w > 0, it_d / it_w, np.where(it_d > 0, INF, 0.0))
        items = _Items(it_ent, it_w, it_d, it_bp, self.n_ent)
        ent_bp_max = np.full(self.n_ent, -1.0)
        np.maximum.at(ent_bp_max, it_ent, it_bp)
        none = ents[ent_bp_max[ents] <= 0]
        if none.size:
            self._freeze(none, np.zeros(none.size), np.nan)
        active = ents[ent_bp_max[ents] > 0]
        # the active entities' shortfalls: y_e - eps_e >= need_e(t), eps_e <= 0 at a cost of 1
        self.lp.set_col_bounds(self.ent_eps[active], -INF, 0.0)
        self.lp.set_cost(self.ent_eps[active], 1.0)
        active = self._freeze_forced(active, forced, items, self.lp.col_values())
        level = 0.0
        learnt: list[Cuts] = []
        while active.size:
            level, blocked, sol = self._cut_level(active, items, level, ent_bp_max, known, learnt)
            if sol is None:
                raise NumericalFailure(
                    f"the allocation LP ended {self.failed_status} instead of optimal at level {level:.6g} "
                    f"with {active.size} entities left ({self.lp.solves} LPs solved)")
            reached = sol.col_value[self.ent_col[active]]
            full = ent_bp_max[active] <= level * (1 + _LEVEL_RTOL)
            blocked &= ~full
            if not full.any() and not blocked.any():
                raise NumericalFailure(f"no entity proved blocked at level {level:.6g} "
                                       f"with {active.size} entities left ({self.lp.solves} LPs solved)")
            if full.any():
                self._freeze(active[full], self.ent_cap[active[full]], np.nan, reached[full])
            if blocked.any():
                need = items.need(level)[active[blocked]]
                # never above what the LP gave (only when its answers at one level disagree by more
                # than their tolerance, on duals of a million and more: stakes of 1000:0.001)
                got = reached[blocked]
                short = got < need * (1 - _LEVEL_RTOL) - _ZERO
                levels = np.full(need.size, level)
                if short.any():
                    need[short] = np.maximum(got[short], 0.0)
                    own = self._level_of(active[blocked][short], need[short], items)
                    levels[short] = np.minimum(own, level)
                self._freeze(active[blocked], need, levels, got)
            active = active[~(full | blocked)]
            active = self._freeze_forced(active, forced, items, sol.col_value)

    def _level_of(self, ents: np.ndarray, values: np.ndarray, items: _Items) -> np.ndarray:
        """The level at which each entity's need reaches its value (the inverse of need_e)."""
        is_act = np.zeros(self.n_ent, dtype=bool)
        is_act[ents] = True
        return self._cut_bounds((np.arange(ents.size), ents, np.ones(ents.size), values), items, is_act)

    def _cut_bounds(self, cuts: Cuts, items: _Items, is_act: np.ndarray) -> np.ndarray:
        """The highest t each cut sum_e lam_e y_e <= rest allows with the active entities at need_e(t)
        and the frozen ones at their bounds (inf: the cut never binds)."""
        k, e, lam, rest = cuts
        K = len(rest)
        fro = self.frozen[e]
        phi = rest - np.bincount(k[fro], weights=lam[fro] * self.frozen_lo[e[fro]], minlength=K)
        out = np.full(K, INF)
        act = is_act[e] & (lam > 0)
        if not act.any():
            return out
        # the cut entries of active entities, one per item
        ka, ea, la = k[act], e[act], lam[act]
        cnt = items.count[ea]
        first = np.repeat(items.start[ea] - (np.cumsum(cnt) - cnt), cnt) + np.arange(int(cnt.sum()))
        item = items.order[first]
        rk, rl = np.repeat(ka, cnt), np.repeat(la, cnt)
        bp = items.bp[item]
        order = np.lexsort((bp, rk))
        rk, bp = rk[order], bp[order]
        w, d = (items.w[item] * rl)[order], (items.d[item] * rl)[order]
        # per cut, h(t) = sum of lam d over the items met at t + t * sum of lam w over the others,
        # at every breakpoint; the bound lies on the segment before the first breakpoint where h > phi
        head = np.flatnonzero(np.r_[True, rk[1:] != rk[:-1]])
        size = np.diff(np.r_[head, rk.size])
        cd, cw = np.cumsum(d), np.cumsum(w)
        base_d = np.repeat(np.r_[0.0, cd][head], size)
        base_w = np.repeat(np.r_[0.0, cw][head], size)
        C = cd - base_d
        tot_w = np.bincount(rk, weights=w, minlength=K)
        W = tot_w[rk] - (cw - base_w)
        W = np.where(W > tot_w[rk] * 1e-15, W, 0.0)  # what cancellation leaves of nothing
        with np.errstate(invalid="ignore"):
            h = C + np.where(W > 0, bp * W, 0.0)
        over = np.flatnonzero(h > phi[rk])
        if not over.size:
            return out
        kk, pos = np.unique(rk[over], return_index=True)
        p = over[pos]
        at_head = np.r_[True, rk[1:] != rk[:-1]][p]
        Cp = np.where(at_head, 0.0, C[p - 1])
        Wp = np.where(at_head, tot_w[kk], W[np.maximum(p - 1, 0)])
        with np.errstate(divide="ignore", invalid="ignore"):
            out[kk] = np.where(Wp > 0, np.maximum(phi[kk] - Cp, 0.0) / Wp, INF)
        return out

    def _cut_level(self, active, items, level, ent_bp_max, known, learnt):
        """The highest level t (>= `level`) at which every active entity can have need_e(t) while the
        frozen ones keep their bounds; also which active entities are blocked there (a mask), and
        the LP solution at t.

        Newton's method from above on cuts: the LP at t minimises the total shortfall; when there is
        one, its duals lam >= 0 give a cut sum_e lam_e y_e <= rest valid for every feasible point, so
        no level above the t at which the cut is tight is reachable; the next LP is at that t. Cuts
        stay valid after freezes, so the earlier rounds' cuts (and the `known` ones) give the first
        guess. At the level, the entities the tight cut names are blocked (see `_named`); should a
        first guess prove feasible without naming any, the level lies higher: the search goes on
        above it."""
        n_ent = self.n_ent
        is_act = np.zeros(n_ent, dtype=bool)
        is_act[active] = True
        top = float(ent_bp_max[active].max())
        # a cut none of whose entities is still active never binds again
        learnt[:] = [c for c in learnt if is_act[c[1]].any()]
        # the known cuts' bounds, lowest first: the first is the first guess; should it hold and
        # block nobody, the next one above it is the next guess
        guesses = []
        for cuts in ([known] if known is not None else []) + ([_stack(learnt)] if learnt else []):
            b = self._cut_bounds(cuts, items, is_act)
            for i in np.flatnonzero(b < top):
                guesses.append((max(float(b[i]), level), cuts, int(i)))
        guesses.sort(key=lambda g: g[0])

        def guess(above: float, strict: bool):
            """The lowest known cut's bound (and the cut) at or above `above`, or strictly above it,
            if any (else the highest demand)."""
            for n, (b, _, _) in enumerate(guesses):
                if b > above * (1 + _LEVEL_RTOL) if strict else b >= above:
                    # every cut tight there names entities
                    same = [(c[1][c[0] == i], c[2][c[0] == i], False)
                            for bb, c, i in guesses[n:] if bb <= b * (1 + _LEVEL_RTOL)]
                    return b, same
            return top, []

        t, cut = guess(level, False)
        climbs = 0
        floor = level  # a level every active entity reaches together
        has_row = np.flatnonzero(self.ent_row >= 0)
        cold = False
        for _ in range(_NEWTON_MAX):
            need = items.need(t)
            self.lp.set_row_bounds(self.ent_row[active], need[active], INF)
            self.rhs[active] = need[active]
            sol = self._solve(want_duals=True)
            if sol.status != "optimal":
                self.failed_status = sol.status
                return t, None, None
            # the LP's own noise (its feasibility tolerance) is no shortfall
            if (sol.col_value[self.ent_eps[active]] >= -_ZERO).all():
                blocked = self._named(cut, active, need, sol)
                if blocked.any() or t >= top or (ent_bp_max[active] <= t * (1 + _LEVEL_RTOL)).any():
                    return t, blocked, sol
                # a guess that holds but blocks nobody: the level lies above it
                floor = t
                climbs += 1
                nxt, cut = guess(t, True) if climbs <= _CLIMBS else (INF, [])
                # never more than 4x at once: LPs at levels near the largest demand are inaccurate
                if nxt > 4 * t > 0:
                    nxt, cut = min(top, 4 * t), []
                t = min(nxt, top)
                continue
            lam = np.maximum(-sol.row_dual[self.ent_row[has_row]], 0.0)
            live = (lam > 0) & np.isfinite(self.rhs[has_row])
            e, lam = has_row[live], lam[live]
            rest = float(np.dot(lam, self.rhs[e])) + sol.objective  # the objective is minus the shortfall
            new = (np.zeros(e.size, dtype=np.intp), e, lam, np.array([rest]))
            learnt.append(new)
            cut = [(e, lam, True)]
            b = float(self._cut_bounds(new, items, is_act)[0])
            if b < floor * (1 - _CUT_DOUBT) and not cold and self._denies(e, lam, items, is_act, floor, b):
                # the cut denies a level already reached: the hot start is not to be believed
                # (HiGHS can be wrong after bound changes); a cold start has the last word
                learnt.pop()
                self.lp.h.clearSolver()
                cold = True
                continue
            if b >= t * (1 - _LEVEL_RTOL) or t <= floor:
                # only the LP's noise is short: the level moved by less than its resolution, or a
                # level already reached is short now
                return t, self._named(cut, active, need, sol), sol
            t = max(b, floor)
        self.failed_status = "without converging"
        return t, None, None

    def _named(self, cuts, active, need, sol) -> np.ndarray:
        """Which active entities the cuts tight at the level block (see `_named_by`)."""
        named = np.zeros(active.size, dtype=bool)
        for cut in cuts:
            named |= self._named_by(cut, active, need, sol)
        return named

    def _named_by(self, cut, active, need, sol) -> np.ndarray:
        """Which active entities one cut tight at the level blocks.

        A cut's rest carries the LP's error, which an entity with a dual of lam can turn into lam
        times as much of its own value: so a cut blocks the entities it names with a dual of at least
        _LAM_MIN (a cut the LP just gave) or _GUESS_MIN (a cut from before: a member's total, an
        earlier round, the capacity) of its largest dual, frozen entities included. A cut from
        before must also agree with the LP solution at the level: it blocks no entity that the
        solution gives clearly more than its need (it holds only to the LP's tolerance: in step 2 a
        member's total may exceed its step-1 value by that much, and a project with a small stake
        then take far more than the cut says). Should a cut the LP just gave block nobody by that
        rule, those it names most strongly among the active ones are blocked, so that the round
        ends (the error is then the solver's, as small as it can be made here)."""
        none = np.zeros(active.size, dtype=bool)
        e, lam, fresh = cut
        la = np.zeros(self.n_ent)
        la[e] = lam
        la = la[active]
        if la.max(initial=0.0) <= 0:
            return none
        named = la >= (_LAM_MIN if fresh else _GUESS_MIN) * lam.max()
        if fresh:
            return named if named.any() else la >= la.max() * (1 - 1e-9)
        need = need[active]
        reached = sol.col_value[self.ent_col[active]]
        return named & (reached <= need * (1 + _GUESS_RTOL) + 2 * _ZERO)

    def _denies(self, e, lam, items: _Items, is_act, level: float, b: float) -> bool:
        """Whether the cut (entities `e`, duals `lam`) denies `level` by more than the LP's noise: what
        it takes from the active entities between `level` and its own bound `b`, against the
        tolerance of the rows it sums."""
        act = is_act[e]
        gap = float(np.dot(lam[act], (items.need(level) - items.need(b))[e[act]]))
        return gap > _ZERO * (1.0 + float(lam.sum()))

    def _freeze_forced(self, active, forced, items, col):
        """Freeze the active entities `forced(active)` names (each of one item) where the LP solution
        `col` has them: at the demand when it is met, else at the level value / weight; returns the
        entities left active."""
        if forced is None or col is None or not active.size:
            return active
        pick = forced(active)
        if not pick.any():
            return active
        it_ent, it_w = items.ent, items.w
        ents = active[pick]
        value = np.maximum(col[self.ent_col[ents]], 0.0)
        w = np.zeros(self.n_ent)
        w[it_ent] = it_w
        full = _at_demand(value, self.ent_cap[ents])
        if full.any():
            self._freeze(ents[full], self.ent_cap[ents[full]], np.nan, value[full])
        part = ents[~full]
        if part.size:
            self._freeze(part, value[~full], value[~full] / w[part], value[~full])
        return active[~pick]


def _stack(cuts: list) -> Cuts:
    """Several `Cuts` as one, numbered in order."""
    first = np.cumsum([0] + [len(c[3]) for c in cuts[:-1]])
    k = np.concatenate([c[0] + f for f, c in zip(first, cuts)])
    return (k, np.concatenate([c[1] for c in cuts]), np.concatenate([c[2] for c in cuts]),
            np.concatenate([c[3] for c in cuts]))


def _at_demand(value: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Whether LP values meet their demands, to the LP's tolerance."""
    return value >= demand * (1 - _MET_RTOL) - _ZERO


def _forced_groups(net: FairNetwork, M: int, later: np.ndarray):
    """For step 2: which active groups have no freedom left. Every member's total is fixed by
    step 1 (in exact arithmetic no member can exceed it: step 1 is Pareto optimal for members), so
    when all but one of a member's groups are frozen, the last one's value is fixed too; it is
    frozen at once instead of waiting for the level to reach it. `later` marks groups still to be
    served after these (zero weights): they are not frozen, so a member with one of them has no
    forced group. Only groups of one project (the level of a group of several would need the
    inverse of its need function)."""
    items_per_group = np.bincount(net.item_group, minlength=net.n_groups)
    live_stake = net.stake_value > 0
    s_group, s_member = net.stake_group[live_stake], net.stake_member[live_stake]

    def forced(active: np.ndarray) -> np.ndarray:
        groups = active - M
        is_open = later.copy()
        is_open[groups] = True
        open_stake = is_open[s_group]
        per_member = np.bincount(s_member[open_stake], minlength=M)
        lone = per_member[s_member] == 1
        pick = np.zeros(net.n_groups, dtype=bool)
        pick[s_group[open_stake & lone]] = True
        return pick[groups] & (items_per_group[groups] == 1)

    return forced


def _capacity_cut(net: FairNetwork, entities: np.ndarray, weight: np.ndarray) -> Cuts:
    """sum_e weight_e y_e <= what all the classes can deliver (their capacity times the largest speed),
    over `entities`: a first guess that keeps the first LP of a round off levels as high as the
    largest demand (the LP is inaccurate there, and so are the cuts it gives)."""
    most = float(net.class_cap.sum()) * max(float(net.edge_coef.max(initial=1.0)), 1.0)
    return (np.zeros(entities.size, dtype=np.intp), entities, weight, np.array([most]))


def _member_cuts(net: FairNetwork, member_value: np.ndarray) -> Cuts:
    """Step 2's cuts from step 1: sum over m's groups of stake * y_g <= Y_m for every member m (in exact
    arithmetic no member can exceed its step-1 total), over entities M + group."""
    live = net.stake_value > 0
    return (net.stake_member[live], net.n_members + net.stake_group[live], net.stake_value[live],
            member_value.astype(float))


def solve_fair(net: FairNetwork, progress=None) -> FairResult:
    """Steps 1 and 2 of DESIGN section 3 on the aggregated network; `progress`, when given, is called
    with a `Progress` after every round (members settled in step 1, projects in step 2)."""
    M, G = net.n_members, net.n_groups
    eng = _Engine(net, progress)
    share = net.member_share
    sponsors = np.zeros(M, dtype=bool)
    sponsors[net.stake_member] = True
    members = np.arange(M)
    eng.stage = ("members", members[sponsors])
    # Step 1a: members with a share, level Y_m / S_m.
    first = members[sponsors & (share > 0)]
    # every member's total is the sum of its stakes in groups' deliveries (stakes sum to 1 a group)
    stake_sum = np.bincount(net.stake_group, weights=net.stake_value, minlength=G).max(initial=1.0)
    total = _capacity_cut(net, members, np.full(M, 1.0 / max(stake_sum, 1.0)))
    eng.lexmaxmin(first, first, share[first], eng.member_demand[first], known=total)
    # Step 1b: members whose share counts as zero, served from what is left with equal weights.
    second = members[sponsors & (share <= 0)]
    eng.lexmaxmin(second, second, np.ones(second.size), eng.member_demand[second], known=total)
    member_value = eng.value[:M].copy()
    # Step 2 keeps every Y_m through its frozen lower bound: no member can exceed its value anyway
    # (that is what froze it), and pinning it from above too would only add numerical trouble
    # Step 2: holding every Y_m (frozen lower bounds stay), projects by y / w, zero weights last.
    groups = np.arange(G)
    eng.stage = ("projects", M + net.item_group)  # a project is settled when its group is frozen
    eng.group_rows()
    # A member that step 1 gave its whole demand gives every project it sponsors its whole demand
    # (Y_m = sum of stake * y over its projects, each y at most its demand): those groups are frozen
    # at their demands before step 2, without an LP each. "Whole" is judged by the LP, to its
    # tolerance, and a project seen through a small stake can be short by far more than its
    # member's total shows: so a group counts as met only where step 1's last LP solution, which
    # meets every frozen bound, also has the group at its demand (to the LP's 1e-9); the rest go
    # to step 2.
    full_member = (eng.member_demand > 0) & (member_value >= eng.member_demand)
    met = np.zeros(G, dtype=bool)
    met[net.stake_group[full_member[net.stake_member] & (net.stake_value > 0)]] = True
    reached = eng.lp.col_values()
    if reached is None:
        met[:] = False
    else:
        reached = reached[eng.c_y]
        met &= _at_demand(reached, net.group_demand)
    if met.any():
        done = groups[met]
        eng._freeze(M + done, net.group_demand[done], np.nan, reached[done])
    item_ent = M + net.item_group
    open_item = ~met[net.item_group]
    pos = (net.item_weight > 0) & open_item
    live = groups[~net.group_zero & ~met]
    known = _stack([_member_cuts(net, member_value), _capacity_cut(net, M + groups, np.ones(G))])
    eng.lexmaxmin(M + live, item_ent[pos], net.item_weight[pos], net.item_demand[pos],
                  forced=_forced_groups(net, M, net.group_zero & ~met), known=known)
    zero = groups[net.group_zero & ~met]
    last = (net.item_weight <= 0) & open_item
    eng.lexmaxmin(M + zero, item_ent[last], np.ones(int(last.sum())), net.item_demand[last], known=known)
    # Disaggregate: the projects of a group share its level; demand-frozen groups meet every demand.
    g_level = eng.level[M + net.item_group]
    w_eff = np.where(net.group_zero[net.item_group], 1.0, net.item_weight)
    # a group frozen at nothing (below _ZERO: the solver's noise, see `_freeze`) gives its projects
    # nothing, not weight x a level of that noise's size
    g_value = eng.value[M + net.item_group]
    item_value = np.where(g_value > 0, np.where(np.isnan(g_level), net.item_demand,
                                                np.minimum(net.item_demand, w_eff * np.nan_to_num(g_level))), 0.0)
    item_level = np.where(np.isnan(g_level), np.nan, g_level)
    return FairResult(member_value, item_value, item_level, eng.lp.solves)
