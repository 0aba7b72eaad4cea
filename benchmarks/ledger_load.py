"""Load figures of issue #6: a ledger of 10,000 projects, 1,000 pools and 1,000,000 usage lines.

    python benchmarks/ledger_load.py [--members 200 --pools 1000 --projects 10000 --lines 1000000]
                                     [--keep DIR] [--repeat 2] [--db URL] [--build-only]

On SQLite by default (a file in the work directory); with `--db postgresql+psycopg://.../postgres`
(a server, e.g. the one `.ci/postgres start DIR` prints) on a new database `pooler_load_<pid>` made on
that server, dropped at the end unless `--keep` is given (its URL is printed either way).

Builds the ledger and times what an admin and an auditor run on it:

1. the consortium: `benchmarks/alloc_scale.py`'s synthetic generator (16 accelerator types, 8 regions,
   speed tables, co-sponsored projects, datasets with residency), written as a manifest and applied
   with `pooler apply` (timed, but not a target);
2. an allocation run for the period, recorded as an `alloc.run` entry with its member, project, pool
   and grant rows. The grants are synthetic (when this benchmark was written the solver took 37
   minutes at 10,000 projects; now about 10 s, but the ledger's build need not depend on it): each
   project gets a slice of one pool, no pool over its capacity. The entry says
   so in its `reason`. It is the same kind of entry with the same rows as `pooler alloc run` writes,
   which is all the audit reads;
3. `pooler usage import` of N CSV lines spread over every project and pool and the last three
   periods (target: under 10 s), through the service in a fresh process (the command's human
   summary table, one row per (project, pool) pair, is left out: here it has up to a million rows);
4. `pooler ledger verify` (target: under 10 s) and `pooler report audit --format json` (target:
   under 5 s), each as the command line runs it: a fresh `pooler` process, timed from start to exit.

Each timed command is run `--repeat` times; every run is printed, with the load average beside it and
the import's CPU time (and its reading process's, when it had one). `--build-only --keep DIR` stops
before the first import: copy `DIR/load.db` before each timed import, so each starts from the same
ledger (on PostgreSQL: `CREATE DATABASE ... TEMPLATE` the kept one).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
PERIOD = "2026-11"
# Usage lines are spread over September, October and November 2026 (epoch seconds).
START, END = 1_788_220_800, 1_796_083_200  # 2026-09-01, 2026-12-01 (UTC)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_consortium(work: Path, members: int, pools: int, projects: int):
    sys.path.insert(0, str(HERE))
    from alloc_scale import consortium  # noqa: E402

    from pooler.io.manifest import dump_manifest

    snapshot = consortium(members, pools, projects)
    # What a manifest needs beyond the solver's snapshot: member names; and no project whose own
    # regions and its dataset's residency leave it nowhere to run (apply refuses those).
    snapshot = replace(
        snapshot,
        members=tuple(replace(m, name=f"Member {m.id}") for m in snapshot.members),
        projects=tuple(replace(p, regions=None) if p.datasets else p for p in snapshot.projects),
    )
    path = work / "consortium.toml"
    path.write_text(dump_manifest(snapshot), encoding="utf-8")
    return snapshot, path


def record_run(ctx, snapshot) -> int:
    """A synthetic `alloc.run` for PERIOD: each project a slice of one pool of its accelerator types."""
    from pooler.services.registry import open_ledger

    rng = random.Random(11)
    rates = {a.id: a.rate for a in snapshot.accelerators}
    left = {p.id: int(p.capacity) for p in snapshot.pools}
    pools = list(snapshot.pools)
    grants = []
    allocated: dict[str, Decimal] = {}
    for project in snapshot.projects:
        speed = dict(project.speed) if project.speed is not None else None
        usable = [p for p in pools if speed is None or speed.get(p.accelerator, 0) > 0]
        pool = rng.choice(usable or pools)
        hours = min(left[pool.id], int(rng.uniform(10, 2000)))
        if hours <= 0:
            continue
        left[pool.id] -= hours
        units = hours * rates[pool.accelerator] * (speed or {}).get(pool.accelerator, Decimal(1))
        grants.append({"project": project.id, "pool": pool.id, "device_hours": hours, "units": units})
        allocated[project.id] = allocated.get(project.id, Decimal(0)) + units
    contributed: dict[str, Decimal] = {m.id: Decimal(0) for m in snapshot.members}
    for pool in pools:
        contributed[pool.member] += pool.capacity * rates[pool.accelerator]
    total = sum(contributed.values()) or Decimal(1)
    by_member: dict[str, Decimal] = {m.id: Decimal(0) for m in snapshot.members}
    demand: dict[str, Decimal] = {m.id: Decimal(0) for m in snapshot.members}
    for project in snapshot.projects:
        stakes = sum(s for _, s in project.sponsors)
        for member, stake in project.sponsors:
            by_member[member] += allocated.get(project.id, Decimal(0)) * stake / stakes
            demand[member] += project.demand * stake / stakes
    rows = {
        "alloc_member": [{"member": m, "share": contributed[m] / total, "contributed": contributed[m],
                          "demand": demand[m], "allocated": by_member[m]} for m in sorted(contributed)],
        "alloc_project": [{"project": p.id, "weight": Decimal(1), "demand": p.demand,
                           "allocated": allocated.get(p.id, Decimal(0)), "bottleneck": "fairness",
                           "level": None} for p in snapshot.projects],
        "alloc_pool": [{"pool": p.id, "capacity": p.capacity, "granted": Decimal(int(p.capacity) - left[p.id])}
                       for p in pools],
        "alloc_grant": grants,
    }
    with open_ledger(ctx) as ledger, ledger.writer(ctx.actor) as writer:
        payload = {
            "period": PERIOD, "unit": "NCU", "state_seq": writer.head()[0], "inputs_digest": None,
            "reason": "synthetic run written by benchmarks/ledger_load.py (synthetic grants, so that the "
                      "ledger's build does not depend on the solver)",
            "supersedes": None, "usage": {},
            "metrics": {"utilisation": Decimal("0.5"), "jain_index": Decimal("0.5"), "satisfied_projects": 0},
            "solver": {"lp_solves": 0, "seconds": Decimal(0)},
        }
        return writer.append("alloc.run", payload, attachments=rows).seq


def write_usage(path: Path, snapshot, n: int) -> None:
    rng = random.Random(5)
    projects = [p.id for p in snapshot.projects]
    pools = [p.id for p in snapshot.pools]
    span = END - START - 86_400
    with path.open("w", encoding="utf-8") as f:
        f.write("project,pool,device_hours,start,end\n")
        for i in range(n):
            start = START + rng.randrange(span)
            seconds = rng.randrange(600, 86_400)
            devices = rng.choice((1, 2, 4, 8))
            hours = Decimal(devices * seconds) / 3600
            f.write(f"{rng.choice(projects)},{rng.choice(pools)},{hours.quantize(Decimal('0.01'))},"
                    f"{start},{start + seconds}\n")


@contextmanager
def new_database(server: str, keep: bool) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at `server` (its URL); dropped afterwards
    unless `keep`."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"pooler_load_{os.getpid()}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    print(f"ledger database {url}" + (" (kept)" if keep else " (dropped at the end)"))
    try:
        yield url
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


def ledger_size(db: str) -> str:
    """The ledger's size on disk, as the database reports it."""
    if "://" not in db:
        return f"{Path(db).stat().st_size / 1e6:.0f} MB"
    from sqlalchemy import create_engine

    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
    finally:
        engine.dispose()
    return f"{size / 1e6:.0f} MB"


def load() -> str:
    """The load average over the last minute and the time of a fixed pure-Python loop, measured just
    before: the machine is shared and its speed changes from minute to minute (on 2026-11-27 such a
    loop's time doubled and halved again within one hour), so figures are read against both."""
    try:
        average = f"load {os.getloadavg()[0]:.2f}"
    except OSError:
        average = "load unknown"
    return f"{average}, {_loop}"


_loop = "loop not run"


def calibrate() -> None:
    """Time the fixed loop (5 million additions) now; `load()` reports it with the next figure."""
    global _loop
    t0 = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    _loop = f"loop {time.perf_counter() - t0:.2f} s"


def timed(argv: list[str], db: str, child: str | None = None) -> tuple[float, int, int]:
    """Seconds, exit code and peak resident memory (MB) of one `pooler` process; its CPU time (and its
    children's) is printed when the child reports it."""
    env = dict(os.environ, POOLER_DB=db, POOLER_ACTOR="bench@local")
    calibrate()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", child or _CHILD, *argv], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    lines = done.stderr.strip().splitlines()
    peak = int(lines.pop()[len("peak-rss-kb "):]) // 1024 if lines and lines[-1].startswith("peak-rss-kb ") else -1
    if lines and lines[-1].startswith("cpu-s "):
        own, children = lines.pop().split()[1:]
        print(f"  CPU {float(own):.1f} s in the process" + (f", {float(children):.1f} s in its children"
                                                            if float(children) else ""))
    if done.returncode != 0:
        print(f"  pooler {' '.join(argv)} exited {done.returncode}: {chr(10).join(lines)[-500:]}")
    return seconds, done.returncode, peak


# `pooler usage import FILE --format csv` through the service, as the command calls it, but without
# the human summary: its table lists every (project, pool) pair, up to a million rows here.
_IMPORT_CHILD = """
import os, resource, sys
from pathlib import Path
try:
    from pooler.services import usage
    from pooler.services.context import Context
    usage.import_usage(Context(db=os.environ["POOLER_DB"], actor="bench@local"), Path(sys.argv[1]), "csv")
finally:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print("cpu-s", own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, file=sys.stderr)
    print("peak-rss-kb", own.ru_maxrss, file=sys.stderr)
"""

# `pooler ARGS` as the console script runs it, then its CPU time (and its children's: the audit's
# verification runs in a forked process) and its own peak resident memory on stderr.
_CHILD = """
import resource, sys
sys.argv = ["pooler", *sys.argv[1:]]
try:
    from pooler.cli.main import main
    main()
finally:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print("cpu-s", own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, file=sys.stderr)
    print("peak-rss-kb", own.ru_maxrss, file=sys.stderr)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None,
                        help="Work in this directory and keep the files (and the PostgreSQL database).")
    parser.add_argument("--db", default=None, metavar="URL",
                        help="A PostgreSQL server URL: the ledger goes to a new database on it.")
    parser.add_argument("--build-only", action="store_true",
                        help="Stop after building the ledger and writing the usage files (with --keep: a "
                             "ledger to copy before each timed import).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.db is not None:
            db = stack.enter_context(new_database(args.db, keep=args.keep is not None))
        else:
            db = str(work / "load.db")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        run(args, work, db)


def run(args: argparse.Namespace, work: Path, db: str) -> None:
    from pooler.services import registry
    from pooler.services.context import Context

    ctx = Context(db=db, actor="bench@local")
    registry.init(ctx)
    t0 = time.perf_counter()
    snapshot, manifest = build_consortium(work, args.members, args.pools, args.projects)
    registry.apply(ctx, manifest)
    print(f"consortium: {args.members} members, {args.pools} pools, {args.projects} projects applied in "
          f"{time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    seq = record_run(ctx, snapshot)
    print(f"synthetic alloc.run for {PERIOD} recorded as entry #{seq} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    files = []
    for r in range(args.repeat):
        path = work / f"usage-{r}.csv"
        write_usage(path, snapshot, args.lines if r == 0 else args.lines // 10)
        files.append(path)
    print(f"wrote {args.lines:,} usage lines ({files[0].stat().st_size / 1e6:.0f} MB) in "
          f"{time.perf_counter() - t0:.1f} s")
    if args.build_only:
        print(f"built: {db} (no usage imported); usage files {', '.join(str(f) for f in files)}")
        return
    # The first import fills the ledger with the million lines; the repeats import a tenth as many
    # more (a file already imported is refused, by design).
    for r, path in enumerate(files):
        seconds, code, peak = timed([str(path)], db, child=_IMPORT_CHILD)
        lines = args.lines if r == 0 else args.lines // 10
        print(f"usage import of {lines:,} lines: {seconds:.1f} s (exit {code}, peak RSS {peak} MB; {load()})")
    for argv in (["ledger", "verify"], ["report", "audit", "--period", PERIOD, "--format", "json"]):
        for _ in range(args.repeat):
            seconds, code, peak = timed(argv, db)
            print(f"pooler {' '.join(argv)}: {seconds:.1f} s (exit {code}, peak RSS {peak} MB; {load()})")
    print(f"ledger size {ledger_size(db)}")
    if args.keep is not None:
        print(f"kept: {work}; time the commands again with\n"
              f"  pooler --db {db} ledger verify\n"
              f"  pooler --db {db} report audit --period {PERIOD} --format json -o /dev/null")


if __name__ == "__main__":
    main()
