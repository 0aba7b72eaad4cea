"""How long `pooler --help` and `pooler member list` take, as fresh processes (issue #6).

    python benchmarks/startup.py [--runs 20] [--dir DIR]

Makes the demo ledger once (`pooler demo --dir DIR`, kept in DIR), then runs each command --runs
times as a new process, output to /dev/null, and prints the minimum, median and maximum wall time,
beside `python -c pass` (the interpreter's own start-up, the floor) and the load average; and
`pooler --help` --runs times more with its stdout a pseudo-terminal 100 columns wide (`TERM=
xterm-256color`, what is written read from the terminal as it comes), as at a shell's prompt. Then
it runs each command once more in a fresh process and names the heavy libraries it imported (the
target is that neither imports SQLAlchemy, pydantic, NumPy, SciPy or Textual; tests/test_startup.py
holds that), and whether it imported Typer or Rich (the quick paths of `pooler.cli.fast` import no
Typer, and the root help no Rich either, to a file, a pipe or a terminal).

The target is 0.3 s for both on the project's machine kind (2 cores). Other work on the machine
shows as a higher median and maximum; the minimum is the figure least disturbed by it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "numpy", "scipy", "highspy", "textual", "yaml",
         "cryptography", "psycopg")

PROBE = """
import sys
sys.argv = ["pooler", *sys.argv[1:]]
from pooler.cli.main import main
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
cli = sorted({m.split(".")[0] for m in sys.modules} & {"typer", "rich"})
print("imported: " + (", ".join(heavy) or "none of them") + "; of Typer and Rich: "
      + (", ".join(cli) or "neither"), file=sys.stderr)
""" % (HEAVY,)


def pooler_command() -> list[str]:
    """The `pooler` console script beside this Python, else `python -m pooler.cli`."""
    script = Path(sys.executable).with_name("pooler")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pooler.cli"]


def timed(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{done.stderr.decode(errors='replace')}")
    return times


def run_in_terminal(argv: list[str], env: dict[str, str], width: int = 100) -> tuple[int, bytes]:
    """Run `argv` with its stdout a new pseudo-terminal `width` columns wide (stdin /dev/null, stderr a
    pipe), reading the terminal until the program closes it: (exit code, stderr)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, width, 0, 0))
    child = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    while True:
        try:
            if not os.read(master, 1 << 16):
                break
        except OSError:  # EIO: the program closed the terminal
            break
    os.close(master)
    err = child.stderr.read()
    return child.wait(), err


def timed_in_terminal(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        code, err = run_in_terminal(argv, env)
        times.append(time.perf_counter() - started)
        if code != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{err.decode(errors='replace')}")
    return times


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dir", type=Path, help="where the demo ledger is kept (default: a new temporary folder)")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="pooler-startup-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "pooler.db"
    pooler = pooler_command()
    if not db.exists():
        subprocess.run([*pooler, "demo", "--dir", str(folder)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["COLUMNS"] = "100"  # the same table width whatever the terminal
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("pooler --help", [*pooler, "--help"]),
        ("pooler member list", [*pooler, "--db", str(db), "member", "list"]),
    ]
    print(f"{os.cpu_count()} cores; load average before: {load_average()}; {args.runs} runs each")
    terminal = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "COLORTERM")}
    terminal["TERM"] = "xterm-256color"  # the terminal's own width, 100 columns
    for name, argv in cases:
        times = timed(argv, args.runs)
        print(f"{name:24s} min {min(times):.3f} s · median {statistics.median(times):.3f} s · "
              f"max {max(times):.3f} s")
    times = timed_in_terminal([*pooler, "--help"], args.runs, terminal)
    print(f"{'pooler --help, terminal':24s} min {min(times):.3f} s · median {statistics.median(times):.3f} s · "
          f"max {max(times):.3f} s")
    print(f"load average after: {load_average()}")
    for name, extra in (("pooler --help", ["--help"]), ("pooler member list", ["--db", str(db), "member", "list"])):
        done = subprocess.run([sys.executable, "-c", PROBE, *extra], capture_output=True, text=True)
        print(f"{name:24s} {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    code, err = run_in_terminal([sys.executable, "-c", PROBE, "--help"], terminal)
    lines = err.decode(errors="replace").strip().splitlines()
    print(f"{'pooler --help, terminal':24s} {lines[-1] if lines else code}")
    if args.dir is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
