"""A thin, warm-started LP wrapper over HiGHS (dual simplex) for the allocation engines.

The allocation solves many LPs that differ only in a few bounds and coefficients; keeping one HiGHS
instance and changing it in place lets every solve start from the previous optimal basis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:  # HiGHS ships with scipy as well, but only highspy exposes in-place model changes.
    import highspy
except ImportError as exc:  # pragma: no cover - exercised only without the dependency
    raise ImportError("pooler's allocation needs the 'highspy' package (HiGHS)") from exc

INF = highspy.kHighsInf
_LOOSE = 1e-7  # the tolerance of the last word on a verdict of infeasibility


@dataclass
class LPSolution:
    status: str  # "optimal", "infeasible" or another HiGHS status text
    objective: float
    col_value: np.ndarray
    row_dual: np.ndarray


class WarmLP:
    """One HiGHS model changed in place between solves; counts solves."""

    def __init__(
        self,
        cost: np.ndarray,
        col_lower: np.ndarray,
        col_upper: np.ndarray,
        row_lower: np.ndarray,
        row_upper: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        vals: np.ndarray,
        *,
        maximize: bool,
        tolerance: float = 1e-9,
    ) -> None:
        n_col, n_row = len(cost), len(row_lower)
        order = np.lexsort((rows, cols))
        rows, cols, vals = rows[order], cols[order], vals[order]
        start = np.zeros(n_col + 1, dtype=np.int32)
        np.cumsum(np.bincount(cols, minlength=n_col), out=start[1:])
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n_col, n_row
        lp.col_cost_ = np.asarray(cost, dtype=float)
        lp.col_lower_ = np.asarray(col_lower, dtype=float)
        lp.col_upper_ = np.asarray(col_upper, dtype=float)
        lp.row_lower_ = np.asarray(row_lower, dtype=float)
        lp.row_upper_ = np.asarray(row_upper, dtype=float)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n_col, n_row
        lp.a_matrix_.start_ = start
        lp.a_matrix_.index_ = rows.astype(np.int32)
        lp.a_matrix_.value_ = vals.astype(float)
        lp.sense_ = highspy.ObjSense.kMaximize if maximize else highspy.ObjSense.kMinimize
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("simplex_strategy", 1)  # dual simplex: bound changes keep the basis dual feasible
        h.setOptionValue("primal_feasibility_tolerance", tolerance)
        h.setOptionValue("dual_feasibility_tolerance", tolerance)
        h.setOptionValue("threads", 1)
        # Devex pricing in the dual simplex instead of HiGHS's default dual steepest edge: after the
        # warm starts here (a changed coefficient, a new piece of the level function) it took fewer
        # iterations as well as cheaper ones (10,000 projects: 659 s to 505 s; 3,000: 24 s to 20 s)
        h.setOptionValue("simplex_dual_edge_weight_strategy", 1)
        # HiGHS's own scaling stays on: without it the LPs took a third fewer iterations, but the
        # engines scale only the capacities, and a member whose total is a few 1e-9 of the largest
        # class (stakes of 2:1000 beside a pool of 1e7) was then judged at the raw 1e-9 tolerance:
        # a project got 70 of the 90 it was due (review; tests/test_alloc_cases.py holds the case)
        # presolve with 1e-9 tolerances declares these degenerate, exactly-tight LPs infeasible (seen
        # with HiGHS 1.16); the simplex alone does not, and hot starts skip presolve anyway
        h.setOptionValue("presolve", "off")
        h.passModel(lp)
        self.h = h
        self.tolerance = tolerance
        self.n_col, self.n_row = n_col, n_row
        self.solves = 0
        self._last_col: np.ndarray | None = None

    # -- changes -------------------------------------------------------------------------------
    def set_col_bounds(self, idx, lower, upper) -> None:
        idx = np.asarray(idx, dtype=np.int32)
        if idx.size:
            lo = np.broadcast_to(np.asarray(lower, dtype=float), idx.shape).copy()
            hi = np.broadcast_to(np.asarray(upper, dtype=float), idx.shape).copy()
            self.h.changeColsBounds(idx.size, idx, lo, hi)

    def set_row_bounds(self, idx, lower, upper) -> None:
        idx = np.asarray(idx, dtype=np.int32)
        if idx.size:
            lo = np.broadcast_to(np.asarray(lower, dtype=float), idx.shape).copy()
            hi = np.broadcast_to(np.asarray(upper, dtype=float), idx.shape).copy()
            self.h.changeRowsBounds(idx.size, idx, lo, hi)

    def set_cost(self, idx, cost) -> None:
        idx = np.asarray(idx, dtype=np.int32)
        if idx.size:
            c = np.broadcast_to(np.asarray(cost, dtype=float), idx.shape).copy()
            self.h.changeColsCost(idx.size, idx, c)

    def add_row(self, lower: float, upper: float, idx: np.ndarray, vals: np.ndarray) -> int:
        idx = np.asarray(idx, dtype=np.int32)
        self.h.addRow(float(lower), float(upper), idx.size, idx, np.asarray(vals, dtype=float))
        self.n_row += 1
        return self.n_row - 1

    def add_rows(self, lower, upper, start, idx, vals) -> int:
        """Add rows in CSR form (`start` has one entry per row and the end); returns the first's index.
        HiGHS extends the basis with the new rows' slacks, so the warm start is kept."""
        n = len(lower)
        self.h.addRows(n, np.asarray(lower, dtype=float), np.asarray(upper, dtype=float), int(start[-1]),
                       np.asarray(start[:-1], dtype=np.int32), np.asarray(idx, dtype=np.int32),
                       np.asarray(vals, dtype=float))
        self.n_row += n
        return self.n_row - n

    def col_values(self) -> np.ndarray | None:
        """The column values of the last optimal solve (None before one): HiGHS drops its solution
        at the next change of the model, this copy stays."""
        return self._last_col

    # -- solving -------------------------------------------------------------------------------
    def _run_with(self, key: str, value, usual) -> None:
        """One run with a HiGHS option at `value`, then back at its `usual` value."""
        self.h.setOptionValue(key, value)
        try:
            self.h.run()
        finally:
            self.h.setOptionValue(key, usual)

    def solve(self, *, want_duals: bool = False, verify: bool = True, primal: bool = False,
              presolve: bool = False) -> LPSolution:
        """Solve from the current basis; with `verify`, a verdict other than optimal is checked cold.

        `primal` uses the primal simplex for this solve: after a change of the objective alone the
        basis stays primal feasible, and the primal simplex goes on from there. `presolve` runs
        HiGHS's presolve first, for a cold start (the basis after it is the original LP's)."""
        if presolve:
            self._run_with("presolve", "on", "off")
        elif primal:
            self._run_with("simplex_strategy", 4, 1)
        else:
            self.h.run()
        self.solves += 1
        status = self.h.getModelStatus()
        if verify and status != highspy.HighsModelStatus.kOptimal:
            # a hot start after many changes can end in a spurious verdict (seen with HiGHS 1.16 on
            # these degenerate LPs, infeasibility included): a cold start has the last word
            self.h.clearSolver()
            self.h.run()
            self.solves += 1
            status = self.h.getModelStatus()
            if status != highspy.HighsModelStatus.kOptimal:
                # feasible within 1e-9 in the model's own units can still fail 1e-9 in HiGHS's scaled
                # space; the frozen values carry that much noise by construction: judge at 1e-7
                for key in ("primal_feasibility_tolerance", "dual_feasibility_tolerance"):
                    self.h.setOptionValue(key, _LOOSE)
                self.h.clearSolver()
                self.h.run()
                self.solves += 1
                status = self.h.getModelStatus()
                for key in ("primal_feasibility_tolerance", "dual_feasibility_tolerance"):
                    self.h.setOptionValue(key, self.tolerance)
        if status == highspy.HighsModelStatus.kOptimal:
            sol = self.h.getSolution()
            col = np.asarray(sol.col_value, dtype=float)
            self._last_col = col
            dual = np.asarray(sol.row_dual, dtype=float) if want_duals else np.empty(0)
            return LPSolution("optimal", float(self.h.getInfo().objective_function_value), col, dual)
        if status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            return LPSolution("infeasible", float("nan"), np.empty(0), np.empty(0))
        return LPSolution(self.h.modelStatusToString(status), float("nan"), np.empty(0), np.empty(0))
