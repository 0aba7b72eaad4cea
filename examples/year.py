#!/usr/bin/env python3
"""Take the example consortium through a year of monthly periods, the way its admins would.

Every month: allocate (`pooler alloc run`), let the members use their grants (a generated usage
file: each member runs its grants at its own typical utilisation, with some noise), import that usage
(`pooler usage import`), and move on; decayed usage then lowers the next month's share of the heavy
users. Mid-year the catalogue's H800 rate is revised and a small firm joins. At the end it writes
the year's last audit as Markdown and HTML and prints the fair-share table and a few lines of story.

    python examples/year.py                 # into a new temporary folder
    python examples/year.py --dir year --months 12 --start 2026-01

Only the `pooler` command line is used, as a cron job would use it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
# How much of its grants each member's projects typically use; the rest stays idle.
UTILISATION = {"pcl": 0.95, "china-mobile": 0.9, "alicloud": 0.85, "huawei": 0.8, "baai": 0.98,
               "tsinghua": 0.97, "china-telecom": 0.6, "tencent-cloud": 0.5}
NEWCOMER = """
[[members]]
id = "lanyun-ai"
name = "Lanyun AI (a new small firm)"
kind = "small-firm"
region = "guizhou"

[[pools]]
id = "lanyun-guian-910b"
member = "lanyun-ai"
accelerator = "ascend-910b"
devices = 32
region = "guizhou"

[[projects]]
id = "lanyun-speech"
sponsors = { lanyun-ai = 1 }
demand = 60000
"""


def pooler(db: Path, *args: str, capture: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "pooler.cli", "--db", str(db), *args],
                          capture_output=capture, text=True)
    if done.returncode != 0:
        sys.exit(f"pooler {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def months(start: str, count: int) -> list[str]:
    year, month = map(int, start.split("-"))
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def write_usage(path: Path, period: str, run: dict, rng: random.Random, sponsors: dict,
                devices: dict) -> float:
    """Usage lines for the month's grants: each grant used at its lead sponsor's utilisation, in
    jobs that each fit on the pool's devices within their wall time."""
    start = datetime.strptime(period + "-01", "%Y-%m-%d").replace(tzinfo=timezone.utc)
    total = 0.0
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["project", "pool", "device_hours", "start", "end"])
        for grant in run["grants"]:
            if grant["device_hours"] <= 0:
                continue
            lead = sponsors[grant["project"]]
            level = min(1.0, max(0.0, UTILISATION.get(lead, 0.75) + rng.uniform(-0.08, 0.05)))
            used = round(grant["device_hours"] * level, 3)
            # Spread over a few jobs inside the month, each under 20 days of wall time and at least
            # 5 days, and each no larger than the pool's devices can run in 5 days.
            jobs = max(rng.randint(1, 4), math.ceil(used / (devices[grant["pool"]] * 5 * 24)))
            for k in range(jobs):
                begin = start + timedelta(days=rng.uniform(0, 8), hours=k)
                end = begin + timedelta(days=rng.uniform(5, 19))
                out.writerow([grant["project"], grant["pool"], round(used / jobs, 3),
                              begin.isoformat(), end.isoformat()])
            total += used
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="working folder (default: a new temporary one)")
    parser.add_argument("--start", default="2026-01", help="first month, e.g. 2026-01")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="pooler-year-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "pooler.db"
    if db.exists():
        sys.exit(f"{db} exists; choose an empty --dir")
    rng = random.Random(args.seed)

    pooler(db, "init")
    manifest = folder / "c2net.toml"
    manifest.write_text((HERE / "c2net.toml").read_text(encoding="utf-8"), encoding="utf-8")
    pooler(db, "apply", str(manifest))
    sponsors = {p["id"]: max(p["sponsors"].items(), key=lambda kv: (float(kv[1]), kv[0]))[0]
                for p in json.loads(pooler(db, "project", "list", "--json"))}

    periods = months(args.start, args.months)
    story = []
    for index, period in enumerate(periods):
        if index == len(periods) // 2:
            # Mid-year: the H800's rate is revised upwards from this month on, and a firm joins.
            text = manifest.read_text(encoding="utf-8").replace(
                'id = "h800"\nname = "NVIDIA H800 80GB"\nrate = 2.5', 'id = "h800"\nname = "NVIDIA H800 80GB"\nrate = 2.8')
            manifest.write_text(text + NEWCOMER, encoding="utf-8")
            pooler(db, "apply", str(manifest), "--rates-from", period)
            sponsors["lanyun-speech"] = "lanyun-ai"
            story.append(f"{period}: H800 rate revised to 2.8; lanyun-ai joined with 32 Ascend 910B")
            print(story[-1], flush=True)
        run = json.loads(pooler(db, "alloc", "run", "--period", period, "--json"))
        usage = folder / f"usage-{period}.csv"
        # devices per pool; a pool given as device-hours per period counts as that over 31 days
        devices = {p["id"]: float(p["devices"]) if "devices" in p else float(p["capacity"]) / (31 * 24)
                   for p in json.loads(pooler(db, "pool", "list", "--json"))}
        used = write_usage(usage, period, run, rng, sponsors, devices)
        pooler(db, "usage", "import", str(usage), "--format", "csv", "--period", period, "--json")
        m = run["metrics"]
        heavy = max(run["members"].items(), key=lambda kv: kv[1]["share"])
        story.append(f"{period}: utilisation {m['utilisation']:.1%}, Jain {m['jain_index']:.3f}, "
                     f"{m['satisfied_projects']} projects served in full, {used:,.0f} device-hours used; "
                     f"largest share {heavy[0]} {heavy[1]['share']:.1%}")
        print(story[-1], flush=True)

    last = periods[-1]
    pooler(db, "report", "audit", "--period", last, "--format", "md", "-o", str(folder / f"audit-{last}.md"))
    pooler(db, "report", "audit", "--period", last, "--format", "html", "-o", str(folder / f"audit-{last}.html"))
    print()
    print(pooler(db, "report", "fairshare", "--period", months(last, 2)[1]))
    print(pooler(db, "alloc", "diff", periods[0], last))
    print(f"The year's ledger is {db}; audits: {folder / f'audit-{last}.md'} and .html")
    print(f"Verify it: pooler --db {db} ledger verify")


if __name__ == "__main__":
    main()
