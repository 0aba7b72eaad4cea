"""Reading a usage file for an import: in the importing process, or beside it in a second process.

An import does three things per line: parse and check it, encode the row (its canonical JSON for the
batch digest, and its insert tuple), and insert it. On a million lines each takes seconds of one core
(in that order: about 3, 1.5 and 3 seconds), and only the last two need the writer's transaction.
So a big file is parsed and checked by a second process, which sends the rows to record, a chunk at a
time and in file order, through a pipe to the importing process; that one encodes, digests and
inserts them inside its write transaction, exactly as it does with rows it read itself. The two
overlap on two cores.

Nothing changes in what is checked or recorded: the second process runs the same readers
(`scan_csv`, `read_sacct`), and hands back its totals, problems and counts when the file ends, before
the writer asks for the entry's payload. Memory stays bounded: the pipe holds about one chunk, so the
reader waits for the writer rather than queueing the file in memory. The reader reports progress
(characters read) as it goes, so a progress bar moves even when bad lines mean no rows are sent. An
exception in the reader is sent over and raised again in the importing process; if the importing
process dies, the reader's next send fails and it ends.

Small files are read in the importing process: starting a second one costs more than it saves. So
are big files when the machine has no two idle cores (other work running): the two processes would
then take turns on one core.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import time
from datetime import timezone, tzinfo
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterator

from pooler.io.usage import PeriodOf, ReadStats, Seen, Tally, UsageMap, read_sacct, scan_csv, scan_items

BLOCK_CHARS = 1 << 20  # characters read per block (and between progress reports)
# Files at least this big are read in a second process (about 60,000 CSV lines).
SECOND_PROCESS_BYTES = 2 << 20
_PIPE_BYTES = 1 << 20  # asked of the system for the pipe (Linux): a message crosses in one write or two
# Rows per message. Each message is a switch between the two processes, which on a busy machine can
# wait for a time slice: a few dozen big messages rather than hundreds of small ones.
SEND_ROWS = 20_000
FREE_CORES = 1.6  # idle cores (over a tenth of a second) that make a second process worth it


@dataclass(frozen=True)
class ReadJob:
    """Everything reading a usage file needs, as plain values (the second process gets a copy)."""

    path: Path
    fmt: str
    projects: frozenset[str]
    pools: frozenset[str]
    period_kind: str
    period: str | None
    usage_map: UsageMap
    include_running: bool
    skip_bad: bool
    # Slurm: the file's jobs recorded before, and those it lists twice (`io.usage.Seen`); the one
    # read of the file updates it (a job is made per import and read once, here or in a second process)
    seen: Seen | None = None
    # the time zone of times written without one (`--tz`): None for UTC
    zone: tzinfo | None = None


def text_lines(path: Path, progress: Callable[[int], None] | None) -> Iterator[str]:
    """The file's lines, read a block of about a megabyte at a time; `progress(characters so far)`
    after each block."""

    def blocks() -> Iterator[list[str]]:
        done = 0
        with path.open("r", encoding="utf-8", newline="") as f:
            while True:
                block = f.readlines(BLOCK_CHARS)
                if not block:
                    break
                yield block
                if progress is not None:
                    done += sum(map(len, block))
                    progress(done)

    return chain.from_iterable(blocks())


def read_rows(job: ReadJob, stats: ReadStats, tally: Tally,
              progress: Callable[[int], None] | None = None) -> Iterator[list[tuple]]:
    """Chunks of rows to record (`usage_line` column order), counted in `tally` and `stats`, read here."""
    common = dict(projects=job.projects, pools=job.pools,
                  period=PeriodOf(job.period_kind, job.period, job.zone or timezone.utc),
                  stats=stats)
    lines = text_lines(job.path, progress)
    if job.fmt == "csv":
        return scan_csv(lines, tally=tally, **common)
    return scan_items(read_sacct(lines, usage_map=job.usage_map, include_running=job.include_running,
                                 seen=job.seen, **common), tally)


def rows_of(job: ReadJob, stats: ReadStats, tally: Tally, progress: Callable[[int], None] | None = None, *,
            apart: bool | None = None) -> Iterator[list[tuple]]:
    """`read_rows`, from a second process when `apart` (default: when `second_process_pays`).
    Either way `stats` and `tally` hold the whole file's figures once every chunk has been taken."""
    if second_process_pays(job.path) if apart is None else apart:
        return _from_second_process(job, stats, tally, progress)
    return read_rows(job, stats, tally, progress)


def second_process_pays(path: Path) -> bool:
    """A second process pays for a big file when two cores are free for the two processes: on a
    machine busy with other work the two would take turns on one core, and then the hand-overs
    between them cost more than the overlap gives (measured: 10-20% slower than one process)."""
    try:
        big = path.stat().st_size >= SECOND_PROCESS_BYTES
    except OSError:
        return False
    if not big or (os.cpu_count() or 1) < 2:
        return False
    if SECOND_PROCESS_BYTES == 0:  # asked for whatever the machine is doing (tests)
        return True
    free = idle_cores()
    return free is None or free >= FREE_CORES


def idle_cores(interval: float = 0.1) -> float | None:
    """How many cores were idle over the last `interval` seconds: from /proc/stat (Linux), else
    from the load average; None where neither is known."""
    try:
        before = _cpu_jiffies()
        time.sleep(interval)
        after = _cpu_jiffies()
    except (OSError, ValueError, IndexError):
        try:
            return (os.cpu_count() or 1) - os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    spent = [b - a for a, b in zip(before, after)]
    total = sum(spent)
    return (os.cpu_count() or 1) * (spent[3] + spent[4]) / total if total > 0 else None


def _cpu_jiffies() -> list[int]:
    """user, nice, system, idle, iowait, irq, softirq, steal: the machine's CPU time so far."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    if fields[0] != "cpu":
        raise ValueError("no cpu line in /proc/stat")
    return [int(v) for v in fields[1:9]]


def _from_second_process(job: ReadJob, stats: ReadStats, tally: Tally,
                         progress: Callable[[int], None] | None) -> Iterator[list[tuple]]:
    # fork: the reader starts at once, with everything already imported (Linux); spawn elsewhere.
    fork = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    _widen(sender)
    reader = context.Process(target=_read_and_send, args=(job, sender, receiver), name="pooler-usage-reader",
                             daemon=True)
    reader.start()
    sender.close()  # the reader holds the only sending end: if it dies, the wait below ends
    try:
        while True:
            try:
                kind, body = receiver.recv()
            except EOFError:
                raise RuntimeError("the process reading the usage file ended without a word "
                                   f"(exit code {reader.exitcode})") from None
            if kind == "rows":
                rows, done = body
                if progress is not None and done is not None:
                    progress(done)
                yield rows
            elif kind == "progress":
                if progress is not None:
                    progress(body)
            elif kind == "done":
                _copy_into(stats, tally, *body)
                return
            else:  # "error": what the reader raised, raised here
                raise body
    finally:
        receiver.close()  # a reader still sending (this side stopped early) gets an error and ends
        reader.join(timeout=10)
        if reader.is_alive():
            reader.terminate()
            reader.join()


def _widen(connection: Any) -> None:
    """Ask for a bigger pipe buffer where the system has the call (Linux). A chunk of rows is a few
    hundred kilobytes: through the default 64 KiB it crosses in many writes, each a switch between
    the two processes, which on a busy machine costs more than the work."""
    try:
        import fcntl

        fcntl.fcntl(connection.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    except (ImportError, OSError):
        pass


def _copy_into(stats: ReadStats, tally: Tally, theirs: ReadStats, their_tally: Tally) -> None:
    stats.__dict__.update(theirs.__dict__)
    tally.__dict__.update(their_tally.__dict__)


def _read_and_send(job: ReadJob, sender: Any, receiver: Any) -> None:
    """The second process: every chunk of rows and progress as they come, then the totals; or the
    exception that stopped it."""
    # a forked reader holds the receiving end too: closed, the importer's is the only one, so if the
    # importer is killed the next send fails and the reader ends (kept, it filled the pipe and waited
    # for ever, holding the importer's database connection and its open transaction)
    receiver.close()
    try:
        stats, tally = ReadStats(), Tally(job.skip_bad)
        pending: list[tuple] = []
        done: list[int | None] = [None]  # characters read, not yet reported

        def read(characters: int) -> None:
            if pending:  # reported with the rows
                done[0] = characters
            else:  # no rows to go with it (bad lines stop them): on its own
                sender.send(("progress", characters))

        for chunk in read_rows(job, stats, tally, read):
            pending.extend(chunk)
            if len(pending) >= SEND_ROWS:
                sender.send(("rows", (pending, done[0])))
                pending, done[0] = [], None
        if pending:
            sender.send(("rows", (pending, done[0])))
        tally.pack_pairs()  # a million pairs cross as one string, unpacked only if read
        sender.send(("done", (stats, tally)))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the importing process stopped listening: nobody to tell
    except BaseException as exc:  # noqa: BLE001 - every failure is the importing process's to report
        try:
            pickle.dumps(exc)
        except Exception:  # an exception that cannot be sent: its words can
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        try:
            sender.send(("error", exc))
        except OSError:
            pass
    finally:
        sender.close()
