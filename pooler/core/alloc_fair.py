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
  a concave, piecewise-linear function whose breakpoints are d_i / w_i; on a piece the need is linear,
  so one LP finds the highest level reachable on that piece. The piece at g lies above f_e
  everywhere, so its optimum is always reachable: Newton's method goes from piece to piece without
  ever meeting an infeasible LP, and speculative jumps over breakpoints (galloping, then bisecting
  below the first miss; a miss restores the basis) skip pieces in which only demands were met
  (demand-capped entities freeze in bulk);
* the entities that cannot exceed the level are found from the LP duals (a positive dual proves an
  entity blocked) and then from LPs that give every undecided entity a small capped excess: by
  convexity those that can each exceed the level can all exceed it together, so a zero excess proves
  the rest blocked;
* frozen entities keep their value as a lower bound (exactly: a frozen entity can never exceed it),
  never above what the LP reached; should an LP still come back infeasible, every frozen bound is
  loosened by 1e-9, 1e-8, then 1e-7 (relative) before the allocation gives up;
* warm starts are kept cheap: a round that only froze entities (bounds tightened at values already
  reached, level rows dropped) leaves the basis primal feasible, so the next LP runs the primal
  simplex from it; a round that reaches a demand ends there (the capped entities freeze, which is
  again only a loosening) rather than moving to the next piece, which would change coefficients of
  the basic level column; and the excess LPs hand the max-level basis back when they are done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pooler.core.alloc_lp import INF, WarmLP

# Relative tolerances of the progressive filling (the LPs are solved to 1e-9 absolute on O(1) data).
_LEVEL_RTOL = 1e-9  # two levels closer than this (relatively) are the same level
_FREEZE_SLACK = 1e-10  # frozen values are bounds relaxed by this fraction (and 1e-12), to stay feasible
_ABS_SLACK = 1e-12  # absolute part of that relaxation, in scaled units
_ZERO = 1e-9  # scaled units: a frozen value below this is nothing
_EXCESS = 1e-3  # the small excess offered to undecided entities, relative to their value
_EXCESS_SEEN = 2e-9  # an excess (scaled units) above this proves an entity can exceed
_EXCESS_ROUNDS = 3  # excess LPs per round; entities still undecided stay active for the next round
_RESTORE = (1e-9, 1e-8, 1e-7)  # relative loosenings of the frozen bounds tried before giving up
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
        c_t = E + A + G + M
        c_eg = c_t + 1 + np.arange(G)
        c_em = c_t + 1 + G + np.arange(M)
        n_col = c_t + 1 + G + M
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
        # rows, and their slacks in every basis (and t in every row) make step 1's LPs dearer

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
        put(r_mlev, np.full(M, c_t), -1.0)
        put(r_mlev, c_em, -1.0)

        member_demand = np.bincount(
            net.stake_member, weights=net.stake_value * net.group_demand[net.stake_group], minlength=M
        )
        self.member_demand = member_demand
        cost = np.zeros(n_col)
        cost[c_t] = 1.0
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
        self.c_t = c_t
        self.ent_col = np.concatenate([c_Y, c_y])
        self.ent_row = np.concatenate([r_mlev, np.full(G, -1)])  # groups: see `group_rows`
        self.c_y, self.c_eg = c_y, c_eg
        self.ent_eps = np.concatenate([c_em, c_eg])
        self.ent_cap = np.concatenate([member_demand, net.group_demand])
        n_ent = M + G
        self.coef = np.concatenate([np.ones(M), np.zeros(G)])  # current -coefficient of t in the level row
        self.rhs = np.full(n_ent, -INF)  # current lower bound of the level row (-inf: inactive)
        self.value = np.zeros(n_ent)
        self.level = np.full(n_ent, np.nan)
        self.frozen = np.zeros(n_ent, dtype=bool)
        self.frozen_lo = np.zeros(n_ent)
        self.failed_status = ""  # the verdict of the LP that ended the filling, when one did

    def group_rows(self) -> None:
        """Add the groups' level rows y_g - eps_g >= -inf (inactive; t enters with `_set_piece`)."""
        G, M = self.net.n_groups, self.net.n_members
        if not G:
            return
        first = self.lp.add_rows(np.full(G, -INF), np.full(G, INF), np.arange(G + 1) * 2,
                                 np.stack([self.c_y, self.c_eg], axis=1).ravel(), np.tile([1.0, -1.0], G))
        self.ent_row[M:] = first + np.arange(G)

    # -- pieces --------------------------------------------------------------------------------
    def _set_piece(self, ents: np.ndarray, items: tuple, level: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """Make the level rows of `ents` exact on the piece of f_e that starts at `level`; also says
        whether any row changed."""
        it_ent, it_w, it_d, it_bp = items
        capped = it_bp <= level * (1 + _LEVEL_RTOL)
        n_ent = len(self.coef)
        a = np.bincount(it_ent, weights=np.where(capped, 0.0, it_w), minlength=n_ent)[ents]
        b = np.bincount(it_ent, weights=np.where(capped, it_d, 0.0), minlength=n_ent)[ents]
        changed = (a != self.coef[ents]) | (b != self.rhs[ents])
        ch = ents[changed]
        if ch.size:
            ach = a[changed]
            rows = self.ent_row[ch]
            self.lp.set_coeffs(rows, np.full(ch.size, self.c_t), -ach)
            self.lp.set_row_bounds(rows, b[changed], INF)
            self.coef[ch] = ach
            self.rhs[ch] = b[changed]
        return a, b, bool(ch.size)

    def _deactivate(self, ents: np.ndarray) -> None:
        self.lp.set_row_bounds(self.ent_row[ents], -INF, INF)
        self.rhs[ents] = -INF

    def _freeze(self, ents: np.ndarray, values: np.ndarray, level: float | np.ndarray,
                reached: np.ndarray | None = None) -> None:
        """Hold `ents` at `values` from now on; `reached` is what the last LP solution gave them."""
        # values within the solver's tolerance of zero are zero (a level of 1e-9 is noise)
        values = np.where(values < _ZERO, 0.0, values)
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
        self._deactivate(ents)
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
                  forced=None) -> None:
        """Lexicographic max-min of f_e^{-1}(value) over `ents`, freezing every entity on the way.

        `forced(active)`, when given, names active entities whose value no longer has any freedom
        (see `_forced_groups`); they are frozen where the last LP has them, at their own level."""
        with np.errstate(divide="ignore", invalid="ignore"):
            it_bp = np.where(it_w > 0, it_d / it_w, np.where(it_d > 0, INF, 0.0))
        items = (it_ent, it_w, it_d, it_bp)
        ent_bp_max = np.full(len(self.coef), -1.0)
        np.maximum.at(ent_bp_max, it_ent, it_bp)
        none = ents[ent_bp_max[ents] <= 0]
        if none.size:
            self._freeze(none, np.zeros(none.size), np.nan)
        active = ents[ent_bp_max[ents] > 0]
        active = self._freeze_forced(active, forced, items, self.lp.col_values())
        level = 0.0
        while active.size:
            level, sol = self._max_level(active, items, level, ent_bp_max)
            if sol is None:
                raise NumericalFailure(
                    f"the allocation LP ended {self.failed_status} instead of optimal at level {level:.6g} "
                    f"with {active.size} entities left ({self.lp.solves} LPs solved)")
            reached = sol.col_value[self.ent_col[active]]
            full = ent_bp_max[active] <= level * (1 + _LEVEL_RTOL)
            if full.any():
                # demand-capped in bulk; freezing them only loosens the LP for the rest, so the next
                # round starts from this basis (primal simplex) and finds the blocked ones, if any
                self._freeze(active[full], self.ent_cap[active[full]], np.nan, reached[full])
                active = active[~full]
                active = self._freeze_forced(active, forced, items, sol.col_value)
                continue
            rest = active
            a, b, _ = self._set_piece(rest, items, level)
            blocked = self._blocked(rest, a, b, level, sol)
            if not blocked.any():
                # no progress proved: hold those the duals name most strongly (or everyone)
                dual = np.abs(sol.row_dual[self.ent_row[rest]]) if sol.row_dual.size else np.zeros(rest.size)
                blocked = dual >= dual.max() * (1 - 1e-9) if dual.max() > 0 else np.ones(rest.size, bool)
            self._freeze(rest[blocked], a[blocked] * level + b[blocked], level, reached[blocked])
            active = rest[~blocked]
            active = self._freeze_forced(active, forced, items, sol.col_value)

    def _freeze_forced(self, active, forced, items, col):
        """Freeze the active entities `forced(active)` names (each of one item) where the LP solution
        `col` has them: at the demand when it is met, else at the level value / weight; returns the
        entities left active."""
        if forced is None or col is None or not active.size:
            return active
        pick = forced(active)
        if not pick.any():
            return active
        it_ent, it_w, _, _ = items
        ents = active[pick]
        value = np.maximum(col[self.ent_col[ents]], 0.0)
        w = np.zeros(len(self.coef))
        w[it_ent] = it_w
        full = _at_demand(value, self.ent_cap[ents])
        if full.any():
            self._freeze(ents[full], self.ent_cap[ents[full]], np.nan, value[full])
        part = ents[~full]
        if part.size:
            self._freeze(part, value[~full], value[~full] / w[part], value[~full])
        return active[~pick]

    def _max_level(self, active, items, level, ent_bp_max):
        """The highest level every active entity can reach together, and the LP solution there.

        Newton's method on the concave need: the linear piece at g lies above the need everywhere,
        so the LP on it gives a reachable level t >= g; the piece at t is then feasible at t by the
        last solution, and the iteration stops when the optimum stays on its own piece."""
        it_ent, _, _, it_bp = items
        in_active = np.zeros(len(self.coef), dtype=bool)
        in_active[active] = True
        bps = np.unique(it_bp[in_active[it_ent] & (it_bp > level) & np.isfinite(it_bp)])
        top = ent_bp_max[active].max()
        self.lp.set_col_bounds([self.c_t], 0.0, top if np.isfinite(top) else INF)
        g = level
        sol = None
        full_pts = bps  # where projects reach their demands
        jump, hi_idx = 2, len(full_pts)
        first = True
        for _ in range(len(bps) + 3):
            _, _, changed = self._set_piece(active, items, g)
            # after a round's freezes (bounds only loosened for the rest) the basis is still primal
            # feasible: the primal simplex goes on from it
            sol = self._solve(want_duals=True, primal=first and not changed)
            first = False
            if sol.status != "optimal":
                self.failed_status = sol.status
                sol = None
                break
            t = max(sol.objective, g)
            if sol.objective < g * (1 - 1e-6) - 1e-9:
                # the level fell: the piece (or an earlier freeze) is numerically off; accept the LP
                t = sol.objective
            # a breakpoint strictly between g and t means the piece changed: go on from t
            # (a breakpoint at t itself counts: the optimum may sit there only because an entity
            # reached its demand, and the next piece lets the others go on)
            k = np.searchsorted(bps, g * (1 + _LEVEL_RTOL), side="right")
            if k >= len(bps) or bps[k] > t * (1 + _LEVEL_RTOL) or t <= g * (1 + _LEVEL_RTOL):
                g = t
                break
            g = t
            if (ent_bp_max[active] <= t * (1 + _LEVEL_RTOL)).any():
                # an entity met its whole demand: freezing it only loosens the LP (no new piece)
                break
            # the optimum stopped at a demand: speculate that the next `jump` demands are met too
            # (galloping while it works, then bisecting below the first miss)
            kt = int(np.searchsorted(full_pts, t * (1 + _LEVEL_RTOL), side="right"))
            idx = kt + jump - 1 if hi_idx >= len(full_pts) else (kt + hi_idx) // 2
            if kt < idx < min(hi_idx, len(full_pts)):
                t2, hit = self._speculate(active, items, full_pts[idx], t)
                if hit:
                    g = t2
                    jump *= 2
                else:
                    hi_idx = idx
        self.lp.set_col_bounds([self.c_t], 0.0, INF)
        return g, sol

    def _speculate(self, active, items, g: float, floor: float):
        """The level reached on the piece at `g` if it reaches `g` (then every demand before `g` is met
        and the level is a valid lower bound), else None with the previous basis restored."""
        basis = self.lp.h.getBasis()
        self._set_piece(active, items, g)
        sol = self.lp.solve(verify=False)
        if sol.status == "optimal" and sol.objective >= g * (1 - _LEVEL_RTOL):
            return max(sol.objective, g), True
        if basis.valid:
            self.lp.h.setBasis(basis)
        return None, False

    def _excess(self, ents, undecided, offer, value):
        """Offer every undecided entity a small excess, repeatedly; those that never take it are blocked.

        Returns the blocked ones among `undecided`, or None when an LP fails."""
        lp = self.lp
        for _ in range(_EXCESS_ROUNDS):
            if not undecided.size:
                break
            eps_cols = self.ent_eps[ents[undecided]]
            lp.set_col_bounds(eps_cols, 0.0, offer[undecided])
            lp.set_cost(eps_cols, 1.0)
            res = lp.solve(primal=True)
            lp.set_col_bounds(eps_cols, 0.0, 0.0)
            lp.set_cost(eps_cols, 0.0)
            if res.status != "optimal":
                return None
            seen = res.col_value[eps_cols] > _EXCESS_SEEN + 1e-9 * value[undecided]
            if not seen.any():
                return undecided
            undecided = undecided[~seen]
        return undecided[:0] if undecided.size else undecided

    def _blocked(self, ents, a, b, level, sol) -> np.ndarray:
        """Which of `ents` (all below their demand) cannot exceed `level` while the others hold it."""
        blocked = np.zeros(ents.size, dtype=bool)
        if sol is not None and sol.row_dual.size:
            dual = np.abs(sol.row_dual[self.ent_row[ents]])
            top = dual.max() if dual.size else 0.0
            if top > 0:
                blocked |= dual > 1e-7 * top
        undecided = np.flatnonzero(~blocked)
        if not undecided.size:
            return blocked
        lp = self.lp
        value = a * level + b
        dual_blocked = blocked.copy()
        offer = np.maximum(_EXCESS * value, 1e-6)
        basis = lp.h.getBasis()
        lp.set_cost([self.c_t], 0.0)
        try:
            for hold in (1e-9, 1e-7):
                lp.set_col_bounds([self.c_t], level * (1 - hold), level * (1 - hold))
                res = self._excess(ents, undecided, offer, value)
                if res is not None:
                    blocked[res] = True
                    break
            else:  # numerically hopeless: only what the duals proved
                blocked = dual_blocked
        finally:
            lp.set_col_bounds([self.c_t], 0.0, INF)
            lp.set_cost([self.c_t], 1.0)
            if basis.valid:  # the max-level basis stays dual feasible through the freezes that follow
                lp.h.setBasis(basis)
        return blocked


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
    eng.lexmaxmin(first, first, share[first], eng.member_demand[first])
    # Step 1b: members whose share counts as zero, served from what is left with equal weights.
    second = members[sponsors & (share <= 0)]
    eng.lexmaxmin(second, second, np.ones(second.size), eng.member_demand[second])
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
    eng.lexmaxmin(M + live, item_ent[pos], net.item_weight[pos], net.item_demand[pos],
                  forced=_forced_groups(net, M, net.group_zero & ~met))
    zero = groups[net.group_zero & ~met]
    last = (net.item_weight <= 0) & open_item
    eng.lexmaxmin(M + zero, item_ent[last], np.ones(int(last.sum())), net.item_demand[last])
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
