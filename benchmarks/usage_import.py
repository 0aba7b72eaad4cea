"""Scale figure for `usage import`: N CSV lines into a fresh temporary ledger, timed.

    python benchmarks/usage_import.py [--lines 1000000] [--varied] [--keep DIR]

Builds a small consortium (4 members, 8 pools, 16 projects), writes N usage lines spread over three
months, then imports them through the service (the same path as `pooler usage import --format csv`)
and prints the lines, the seconds, lines per second, the process's peak resident memory and the CPU
time of this process and of the second process that reads the file when the machine has two idle
cores for them. It then computes the decayed usage for the next period (what `alloc run` does) and
times that too.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

MANIFEST = """
[consortium]
name = "Bench"

[[accelerators]]
id = "gpu"
rate = 1
""" + "".join(f'\n[[members]]\nid = "m{i}"\nname = "m{i}"\n' for i in range(4)) + "".join(
    f'\n[[pools]]\nid = "p{i}"\nmember = "m{i % 4}"\naccelerator = "gpu"\ncapacity = 100000\n' for i in range(8)
) + "".join(
    f'\n[[projects]]\nid = "j{i}"\nsponsors = {{ m{i % 4} = 1 }}\ndemand = 1000\n' for i in range(16)
)

START = 1_790_000_000  # 2026-09-21


def write_csv(path: Path, n: int, varied: bool = False) -> None:
    """N lines; device-hours take 97 values (x/4, as Python writes floats: "1.0", "2.25"), or with
    `varied` nearly a distinct value per line (two decimals, up to 10,000)."""
    with path.open("w", encoding="utf-8") as f:
        f.write("project,pool,device_hours,start,end\n")
        step = max(1, (90 * 86_400) // n)
        for i in range(n):
            start = START + i * step
            hours = f"{(i * 7919) % 1_000_003 / 100:.2f}" if varied else (i % 97) / 4
            f.write(f"j{i % 16},p{i % 8},{hours},{start},{start + (36_000 if varied else 3600)}\n")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--varied", action="store_true",
                        help="Nearly every line with its own device-hours figure (default: 97 figures).")
    parser.add_argument("--keep", type=Path, default=None, help="Work in this directory and keep the files.")
    args = parser.parse_args()

    from pooler.services import alloc, registry, usage
    from pooler.services.context import Context

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = Context(db=str(work / "bench.db"), actor="bench@local")
        registry.init(ctx)
        (work / "bench.toml").write_text(MANIFEST, encoding="utf-8")
        registry.apply(ctx, work / "bench.toml")
        csv_path = work / "usage.csv"
        t0 = time.perf_counter()
        write_csv(csv_path, args.lines, args.varied)
        print(f"wrote {args.lines:,} lines ({csv_path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s; peak RSS so far {rss_mb():.0f} MB")
        t0 = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        outcome = usage.import_usage(ctx, csv_path, "csv")
        seconds = time.perf_counter() - t0
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        reader = resource.getrusage(resource.RUSAGE_CHILDREN)
        reader_cpu = reader.ru_utime + reader.ru_stime
        print(f"imported {outcome.recorded:,} lines as entry #{outcome.seq} in {seconds:.1f} s "
              f"({outcome.recorded / seconds:,.0f} lines/s); peak RSS {rss_mb():.0f} MB; "
              f"periods {', '.join(sorted(outcome.periods))}")
        print(f"  CPU: {cpu.ru_utime + cpu.ru_stime - cpu0.ru_utime - cpu0.ru_stime:.1f} s in this process"
              + (f", {reader_cpu:.1f} s in the second process that read the file" if reader_cpu else
                 " (the file was read here: no two idle cores, see pooler/services/usage_read.py)"))
        t0 = time.perf_counter()
        fair = usage.fairshare(ctx, "2027-01")
        print(f"decayed usage over {fair.lines:,} lines in {time.perf_counter() - t0:.1f} s; "
              f"peak RSS {rss_mb():.0f} MB")
        _ = alloc  # `alloc run` reads usage the same way as `fairshare`


if __name__ == "__main__":
    main()
