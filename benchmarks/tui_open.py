"""How long `pooler tui` takes to open on a large ledger.

    python benchmarks/tui_open.py [--size 200,1000,10000] [--dir DIR] [--repeat 3] [--late]

Builds (once, kept in --dir) a ledger with the synthetic consortium of `alloc_scale.py` (by default
200 members, 1,000 pools, 10,000 projects), a recorded run for 2026-11 and a usage import, then opens
the dashboard headless in a fresh process, several times, the way `pooler tui` opens it (the command
line's imports, then `tui.start.prepare`, which starts reading the Overview and imports Textual), and
prints:

* process start to Overview: from just before the process is started until the screen refresh
  after the Overview got the period's figures (a placeholder does not count); of it, the
  interpreter's own start, the command line's imports (Typer, the `tui` command, `tui.start` and
  the dashboard service), importing Textual and the app, and app start to Overview (the ledger
  read, or what is left of it, the aggregation and the paint);
* tables filled: from starting the app until Members, Projects and Pools hold their rows (read in
  the background while the Overview is already shown);
* slowest view switch: pressing 2, 3, 4 and 5 once each, until the page is drawn;
* verify: the full `ledger verify` the app runs in the background (here started by hand).

With --late, each run is paired with one that reads the Overview only once the app has mounted
(what `pooler tui` did before `tui.start`), for comparison on the same machine at the same time.

The allocation itself takes about 37 minutes at 10,000 projects (see README, Benchmarks), so the recorded
run is a stand-in: every project is served greedily, in id order, from a few pools it may use. It is
recorded through the same service (`alloc.run`) as a real one, so the dashboard reads exactly what
it would read after a real run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

PERIOD = "2026-11"
CLOCK = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def greedy(snapshot):
    """A feasible stand-in for the allocation: projects in id order take what they can use from up
    to four eligible pools, starting at a pool chosen by their index."""
    from pooler.core.alloc import (AllocationMetrics, AllocationResult, Grant, MemberAllocation,
                                   PoolAllocation, ProjectAllocation, SolverStats, _Inputs)
    from pooler.core.contrib import allowed_regions, effective_rate

    started = time.perf_counter()
    inp = _Inputs(snapshot)
    pools = list(snapshot.pools)
    left = [float(d) for d in inp.pool_dh]
    grants, allocated = [], {}
    for j, project in enumerate(snapshot.projects):
        want, got, tried = float(project.demand), 0.0, 0
        allowed = allowed_regions(snapshot, project)
        for k in range(len(pools)):
            if tried >= 4 or got >= want - 1e-9:
                break
            q = (j * 7 + k) % len(pools)
            rate = float(effective_rate(snapshot, project, pools[q], allowed))
            if rate <= 0 or left[q] < 1:
                continue
            tried += 1
            dh = min(left[q], (want - got) / rate) // 1
            if dh <= 0:
                continue
            left[q] -= dh
            got += dh * rate
            grants.append(Grant(project.id, pools[q].id, int(dh), dh * rate))
        allocated[project.id] = got
    grants.sort(key=lambda g: (g.project, g.pool))
    stakes = {p.id: p.stakes() for p in snapshot.projects}
    member_y = {m: 0.0 for m in inp.member_ids}
    for pid, st in stakes.items():
        for m, s in st.items():
            member_y[m] += float(s) * allocated[pid]
    members = {m: MemberAllocation(m, float(inp.share[i]), float(inp.contributed[i]),
                                   float(inp.member_demand[i]), member_y[m])
               for i, m in enumerate(inp.member_ids)}
    projects = {}
    for j, p in enumerate(snapshot.projects):
        met = allocated[p.id] >= float(p.demand) - 1e-6
        w = float(inp.weight[j])
        projects[p.id] = ProjectAllocation(p.id, w, float(p.demand), allocated[p.id],
                                           "demand" if met else "capacity",
                                           None if met else (allocated[p.id] / w if w > 0 else allocated[p.id]))
    pool_rows = {p.id: PoolAllocation(p.id, float(inp.pool_dh[i]), float(inp.pool_dh[i] - left[i]))
                 for i, p in enumerate(pools)}
    cap = float((inp.pool_rate * inp.pool_dh).sum())
    used = sum(float(inp.pool_rate[i]) * (float(inp.pool_dh[i]) - left[i]) for i in range(len(pools)))
    satisfied = sum(1 for p in projects.values() if p.bottleneck == "demand")
    return AllocationResult(MappingProxyType(members), MappingProxyType(projects), MappingProxyType(pool_rows),
                            tuple(grants), AllocationMetrics(used / cap if cap else 0.0, 0.0, satisfied),
                            SolverStats(time.perf_counter() - started, 0))


def build(db: Path, size: tuple[int, int, int]) -> None:
    """The big ledger: the synthetic consortium applied, a stand-in run for PERIOD, one usage import."""
    import alloc_scale
    from pooler.io.manifest import dump_manifest
    from pooler.services import alloc, registry, usage
    from pooler.services.context import Context

    ctx = Context(db=str(db), actor="bench@pooler", clock=lambda: CLOCK)
    snapshot = alloc_scale.consortium(*size)
    # A ledger refuses a project that can run nowhere; the solver benchmark keeps them, we drop the
    # region limits of the projects that also use a dataset with a residency.
    snapshot = snapshot.replace(
        consortium=replace(snapshot.consortium, name="Synthetic consortium"),
        members=tuple(replace(m, name=f"Member {m.id}") for m in snapshot.members),
        projects=tuple(replace(p, regions=None) if p.datasets else p for p in snapshot.projects))
    manifest = db.parent / "consortium.toml"
    manifest.write_text(dump_manifest(snapshot, "toml"), encoding="utf-8")
    t0 = time.perf_counter()
    registry.init(ctx)
    registry.apply(ctx, manifest)
    print(f"  applied {sum(size)} records in {time.perf_counter() - t0:.1f} s", flush=True)
    alloc._allocate = greedy  # the stand-in (see the module docstring)
    outcome = alloc.run(ctx, PERIOD)
    lines = db.parent / "usage.csv"
    with lines.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["project", "pool", "device_hours", "start", "end"])
        for i, g in enumerate(outcome.result["grants"]):
            if i % 3 == 2:
                continue  # a third of the grants unused
            out.writerow([g["project"], g["pool"], round(g["device_hours"] * 0.8, 3),
                          "2026-11-02T00:00:00Z", "2026-11-28T00:00:00Z"])
    usage.import_usage(replace(ctx), lines, "csv", period=PERIOD)
    print(f"  built in {time.perf_counter() - t0:.1f} s: {len(outcome.result['grants'])} grants", flush=True)


PROBE = r"""
import json, sys, time
launched = float(sys.argv[2])  # the parent's clock just before it started this process
wall, t0 = time.time(), time.perf_counter()
# What `pooler --db DB tui` imports before the app starts: the command line, then the tui command
# (Textual itself is imported by tui.start.prepare, after it has begun reading the Overview).
from pooler.cli.main import COMMANDS, load_command
load_command("tui", COMMANDS["tui"].module)
from pooler.services.context import Context
from tui.start import prepare
import asyncio

def since_launch(t):
    return wall + (t - t0) - launched

async def main():
    t_prepare = time.perf_counter()
    app = prepare(Context(db=sys.argv[1]), early=sys.argv[3] == "early", verify_on_open=False)
    t_start = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        while "tables" not in app.painted:
            await asyncio.sleep(0.005)
        t_open, t_tables = app.painted["overview"], app.painted["tables"]
        await pilot.pause()
        switches = {}
        for key in "2345":
            t = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            switches[key] = time.perf_counter() - t
        rows = app.row_counts()
        t = time.perf_counter()
        app.action_verify()
        while app.verification is None:
            await pilot.pause(0.05)
        t_verify = time.perf_counter() - t
        await pilot.press("q")
    print(json.dumps({"interpreter": wall - launched, "cli": t_prepare - t0, "import": t_start - t_prepare,
                      "open": t_open - t_start, "tables": t_tables - t_start,
                      "total": since_launch(t_open), "switch": max(switches.values()), "verify": t_verify,
                      "rows": rows}))

asyncio.run(main())
"""


def measure(db: Path, early: bool = True) -> dict:
    launched = time.time()
    done = subprocess.run([sys.executable, "-c", PROBE, str(db), repr(launched), "early" if early else "late"],
                          capture_output=True, text=True, cwd=HERE.parent)
    if done.returncode != 0:
        sys.exit(f"the probe failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="200,1000,10000", help="members,pools,projects")
    parser.add_argument("--dir", type=Path, help="where the ledger is kept (default: a new temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--late", action="store_true",
                        help="also measure the Overview read only once the app has mounted (as before "
                             "tui.start read it early), alternating with the early read")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split(","))
    folder = args.dir or Path(tempfile.mkdtemp(prefix="pooler-tui-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / f"ledger-{'-'.join(map(str, size))}.db"
    if not db.exists():
        print(f"building {db} ({size[0]} members, {size[1]} pools, {size[2]} projects)", flush=True)
        build(db, size)
    print(f"{os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    modes = [True, False] if args.late else [True]
    runs: dict[bool, list[dict]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):
        for mode in modes:
            r = measure(db, early=mode)
            runs[mode].append(r)
            print(f"{'early' if mode else 'late '} · process start to Overview {r['total']:.2f} s "
                  f"(interpreter {r['interpreter']:.2f}, command line and services {r['cli']:.2f}, "
                  f"Textual and the app {r['import']:.2f}, app start to Overview {r['open']:.2f}) · tables filled "
                  f"{r['tables']:.2f} s after app start · slowest view switch {r['switch']:.2f} s · "
                  f"verify {r['verify']:.1f} s · rows {r['rows']}", flush=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for mode, results in runs.items():
        totals = sorted(r["total"] for r in results)
        print(f"{'early' if mode else 'late '}: process start to Overview min {totals[0]:.2f} s, "
              f"median {statistics.median(totals):.2f} s, max {totals[-1]:.2f} s")


if __name__ == "__main__":
    main()
