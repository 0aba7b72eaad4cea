"""Scale figures for the allocation: pooler's full solve against LP reference points.

    python benchmarks/alloc_scale.py [--sizes 10,50,100 50,300,1000 ...] [--skip-naive] [--seed N]

For each size (members, pools, projects) it builds a synthetic consortium (16 accelerator types,
8 regions, a third of the projects with speed tables, co-sponsored projects, datasets with residency,
reserves and costs) and prints, each measured in a fresh process:

* pooler: the full `allocate` (shares, both fairness steps, placement, rounding), its LP count and
  the process's peak resident memory (ru_maxrss, which includes HiGHS's own allocations);
* gavel: ONE single-level max-min LP in Gavel's form (one variable per project and pool class,
  maximise t with y_j >= w_j t and y_j <= d_j), solved by HiGHS (interior point, no crossover, and
  dual simplex up to --simplex-max projects): the floor a one-shot method cannot go under;
* naive: the lexicographic method with one LP per level on that same Gavel-form model (warm-started
  dual simplex, freezing the projects with a positive dual), run while it takes under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from decimal import Decimal

import numpy as np

DEFAULT_SIZES = [(10, 50, 100), (50, 300, 1000), (200, 1000, 10000), (500, 2000, 50000)]
N_TYPES, N_REGIONS = 16, 8


def consortium(n_members: int, n_pools: int, n_projects: int, seed: int = 7):
    """A synthetic consortium as a `Snapshot` (deterministic for a seed)."""
    from pooler.core.model import (Accelerator, Consortium, Dataset, Member, Policy, Pool, Project,
                                   Snapshot)

    rng = np.random.default_rng(seed)
    D = Decimal
    types = [f"acc{t:02d}" for t in range(N_TYPES)]
    regions = [f"region-{r}" for r in range(N_REGIONS)]
    accels = tuple(Accelerator(t, rate=D(str(round(float(rng.uniform(0.5, 4.0)), 2)))) for t in types)
    members = tuple(Member(f"m{i:04d}", region=regions[int(rng.integers(N_REGIONS))]) for i in range(n_members))
    # a few big contributors, many small ones
    weight = rng.pareto(1.2, n_members) + 0.05
    owners = rng.choice(n_members, size=n_pools, p=weight / weight.sum())
    pools = []
    for i in range(n_pools):
        own = members[owners[i]]
        region = None if rng.random() < 0.8 else regions[int(rng.integers(N_REGIONS))]
        reserve = D(str(round(float(rng.uniform(0.1, 0.5)), 2))) if rng.random() < 0.25 else D(0)
        pools.append(Pool(
            f"pool{i:05d}", member=own.id, accelerator=types[int(rng.integers(N_TYPES))],
            capacity=D(int(rng.integers(8, 2048)) * 720), region=region, reserve=reserve,
            cost=D(str(round(float(rng.uniform(0, 0.1)), 2))),
        ))
    datasets = tuple(Dataset(f"ds{i:04d}", member=members[int(rng.integers(n_members))].id,
                             residency=tuple(sorted(set(rng.choice(regions, size=int(rng.integers(1, 3)))))),
                             credit=D(int(rng.integers(0, 50000))))
                     for i in range(max(1, n_members // 2)))
    rate = {a.id: float(a.rate) for a in accels}
    total = sum(rate[p.accelerator] * float(p.capacity) for p in pools)
    demand = rng.lognormal(0.0, 1.0, n_projects)
    demand *= 1.5 * total / demand.sum()
    projects = []
    for j in range(n_projects):
        k = 1 if rng.random() < 0.8 else int(rng.integers(2, 4))
        spons = rng.choice(n_members, size=min(k, n_members), replace=False)
        sponsors = tuple((members[m].id, D(int(rng.integers(1, 5)))) for m in spons)
        speed = None
        if rng.random() < 1 / 3:
            ts = rng.choice(N_TYPES, size=int(rng.integers(2, 6)), replace=False)
            speed = tuple((types[t], D(str(round(float(rng.uniform(0.5, 2.0)), 2)))) for t in ts)
        regs = None
        if rng.random() < 0.2:
            regs = tuple(sorted(set(rng.choice(regions, size=int(rng.integers(1, 4))))))
        ds = (datasets[int(rng.integers(len(datasets)))].id,) if rng.random() < 0.15 else ()
        projects.append(Project(
            f"proj{j:06d}", sponsors=sponsors, demand=D(int(demand[j]) + 1),
            weight=D(str(float(rng.choice([0.5, 1.0, 2.0])))), speed=speed, regions=regs, datasets=ds,
        ))
    return Snapshot(consortium=Consortium(period_hours=D(720)), policy=Policy(), accelerators=accels,
                    members=members, pools=tuple(pools), datasets=datasets, projects=tuple(projects))


# -- the Gavel-form model (reference floor and naive lexicographic method) --------------------------

def gavel_model(snap):
    """Columns x(j, c) for every project j and pool class c = (type, region) it can use, plus t."""
    from pooler.core.alloc import _Inputs

    inp = _Inputs(snap)
    keys = sorted({(t, r or "") for t, r in zip(inp.pool_type, inp.pool_region)})
    kidx = {k: i for i, k in enumerate(keys)}
    cls = np.array([kidx[(t, r or "")] for t, r in zip(inp.pool_type, inp.pool_region)])
    cap = np.bincount(cls, weights=inp.pool_rate * inp.pool_dh * (1 - inp.pool_reserve), minlength=len(keys))
    ctype = np.array([inp.types.index(k[0]) for k in keys])
    creg = [k[1] for k in keys]
    J = len(inp.project_ids)
    rows_j, cols_c, coef = [], [], []
    for j in range(J):
        sp = np.ones(len(inp.types)) if inp.speed[j] is None else np.array(inp.speed[j])
        ok = sp[ctype] > 0
        if inp.allowed[j] is not None:
            ok &= np.array([r in inp.allowed[j] for r in creg])
        c = np.flatnonzero(ok)
        rows_j.append(np.full(c.size, j))
        cols_c.append(c)
        coef.append(sp[ctype[c]])
    vj, vc, ve = np.concatenate(rows_j), np.concatenate(cols_c), np.concatenate(coef)
    scale = 1.0 / cap.max()
    w = inp.weight / inp.weight.max()
    return vj, vc, ve, cap * scale, inp.demand * scale, np.where(w > 0, w, 1e-6)


def _highs_lp(vj, vc, ve, cap, dem, w):
    import highspy

    J, C, V = dem.size, cap.size, vj.size
    # columns: x (V), t ; rows: capacity (C), y_j - w_j t >= 0 (J), y_j <= d_j (J)
    rows = np.concatenate([vc, C + vj, C + J + vj, C + np.arange(J)])
    cols = np.concatenate([np.arange(V)] * 3 + [np.full(J, V)])
    vals = np.concatenate([np.ones(V), ve, ve, -w])
    order = np.lexsort((rows, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = V + 1, C + 2 * J
    lp.col_cost_ = np.concatenate([np.zeros(V), [1.0]])
    lp.col_lower_ = np.zeros(V + 1)
    lp.col_upper_ = np.full(V + 1, highspy.kHighsInf)
    lp.row_lower_ = np.concatenate([np.full(C, -highspy.kHighsInf), np.zeros(J), np.full(J, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([cap, np.full(J, highspy.kHighsInf), dem])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=V + 1))]).astype(np.int32)
    lp.a_matrix_.index_ = rows.astype(np.int32)
    lp.a_matrix_.value_ = vals
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = V + 1, C + 2 * J
    lp.sense_ = highspy.ObjSense.kMaximize
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    return h


def run_gavel(snap, solver: str) -> dict:
    vj, vc, ve, cap, dem, w = gavel_model(snap)
    h = _highs_lp(vj, vc, ve, cap, dem, w)
    if solver == "ipm":
        h.setOptionValue("solver", "ipm")
        h.setOptionValue("run_crossover", "off")
    else:
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("simplex_strategy", 1)
    t0 = time.perf_counter()
    h.run()
    return {"seconds": time.perf_counter() - t0, "columns": int(vj.size + 1), "status": h.modelStatusToString(h.getModelStatus())}


def run_naive(snap, limit: float) -> dict:
    """One LP per level: maximise t; freeze the projects whose level row has a positive dual."""
    import highspy

    vj, vc, ve, cap, dem, w = gavel_model(snap)
    J, C, V = dem.size, cap.size, vj.size
    h = _highs_lp(vj, vc, ve, cap, dem, w)
    h.setOptionValue("solver", "simplex")
    h.setOptionValue("simplex_strategy", 1)
    active = np.ones(J, dtype=bool)
    t0, lps = time.perf_counter(), 0
    while active.any():
        h.run()
        lps += 1
        if time.perf_counter() - t0 > limit:
            return {"seconds": time.perf_counter() - t0, "lp_solves": lps, "finished": False,
                    "frozen": int(J - active.sum())}
        t = h.getInfo().objective_function_value
        dual = np.asarray(h.getSolution().row_dual)[C:C + J]
        hit = active & (np.abs(dual) > 1e-9)
        if not hit.any():
            hit = active.copy()
        idx = np.flatnonzero(hit).astype(np.int32)
        # frozen: y_j >= w_j t as a plain lower bound, t's coefficient gone
        for j in idx.tolist():
            h.changeCoeff(C + j, V, 0.0)
        h.changeRowsBounds(idx.size, C + idx, w[idx] * t * (1 - 1e-9), np.full(idx.size, highspy.kHighsInf))
        active &= ~hit
    return {"seconds": time.perf_counter() - t0, "lp_solves": lps, "finished": True}


def run_pooler(snap) -> dict:
    from pooler.core.alloc import allocate

    t0 = time.perf_counter()
    res = allocate(snap)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "lp_solves": res.solver.lp_solves,
            "grants": len(res.grants), "utilisation": res.metrics.utilisation,
            "satisfied": res.metrics.satisfied_projects}


def _child(kind: str, size: tuple, seed: int, arg: float) -> None:
    snap = consortium(*size, seed=seed)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "pooler":
        out = run_pooler(snap)
    elif kind in ("ipm", "simplex"):
        out = run_gavel(snap, kind)
    else:
        out = run_naive(snap, arg)
    out["rss_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_mib"] = base / 1024
    print(json.dumps(out))


def measure(kind: str, size: tuple, seed: int, arg: float = 60.0, timeout: float = 900.0) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--sizes", ",".join(map(str, size)), "--seed", str(seed),
           "--limit", str(arg)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ})
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", default=None, help="members,pools,projects triples")
    ap.add_argument("--skip-naive", action="store_true", help="do not run the naive lexicographic method")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--limit", type=float, default=60.0, help="seconds after which the naive method stops")
    ap.add_argument("--simplex-max", type=int, default=10000, help="largest project count for gavel simplex")
    ap.add_argument("--pooler-timeout", type=float, default=900.0, help="seconds before pooler's run is abandoned")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [tuple(int(x) for x in s.split(",")) for s in args.sizes] if args.sizes else DEFAULT_SIZES
    if args.child:
        _child(args.child, sizes[0], args.seed, args.limit)
        return
    print(f"cores: {os.cpu_count()}  seed: {args.seed}")
    naive_ok = not args.skip_naive
    for size in sizes:
        print(f"\n== members {size[0]}, pools {size[1]}, projects {size[2]}")
        p = measure("pooler", size, args.seed, timeout=args.pooler_timeout)
        if "error" in p:
            print(f"  pooler   error: {p['error']}")
        else:
            print(f"  pooler   {p['seconds']:8.2f} s  {p['lp_solves']:5d} LPs  rss peak {p['rss_peak_mib']:7.0f} MiB"
                  f" (before solve {p['rss_before_mib']:.0f})"
                  f"  grants {p['grants']}  utilisation {p['utilisation']:.4f}  satisfied {p['satisfied']}")
        g = measure("ipm", size, args.seed)
        if "error" in g:
            print(f"  gavel-ipm error: {g['error']}")
        else:
            print(f"  gavel LP, HiGHS ipm     {g['seconds']:8.2f} s  ({g['columns']} columns, {g['status']})")
        if size[2] <= args.simplex_max:
            g = measure("simplex", size, args.seed)
            if "error" not in g:
                print(f"  gavel LP, HiGHS dual simplex {g['seconds']:8.2f} s")
        if naive_ok:
            n = measure("naive", size, args.seed, args.limit, timeout=args.limit * 3 + 120)
            if "error" in n:
                print(f"  naive    error: {n['error']}")
                naive_ok = False
            else:
                state = "finished" if n["finished"] else f"stopped at the limit, {n['frozen']} of {size[2]} frozen"
                print(f"  naive lexicographic     {n['seconds']:8.2f} s  {n['lp_solves']} LPs  {state}")
                if not n["finished"]:
                    naive_ok = False  # larger sizes only take longer


if __name__ == "__main__":
    main()
