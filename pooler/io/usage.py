"""Usage importers: CSV lines and Slurm `sacct -P` output, read as a stream, line by line.

Both parsers are generators over the lines of a file that yield, per input line, either `UsageLine`s
(the lines to record) or a `LineProblem` (a bad line, with its line number and why). They never stop
at the first problem, so a caller can report every problem at once, and they hold nothing but the
current line, so a file of any length is read in bounded memory. Which projects and pools exist is
the caller's knowledge, passed in as sets of ids.

CSV (DESIGN 5a): a header `project,pool,device_hours,start,end` (an optional sixth column `job` is
kept), times ISO 8601 (no zone: UTC) or integer epoch seconds.

Slurm: the fields JobIDRaw, Cluster, Account, User, Partition, QOS, AllocTRES, ElapsedRaw, Start, End,
State in that order, or any fields in the order a header line names them (`sacct -P` without `-n`,
`--format=ALL` included). Job steps (`12.batch`, `12.0`) are skipped; every typed `gres/gpu:TYPE=N`
of AllocTRES gives one line of N x ElapsedRaw / 3600 device-hours; the untyped `gres/gpu=N` counts
only when no typed entry is present. Jobs that ended count whatever their state; unfinished ones only
with `include_running`, up to now (Start + ElapsedRaw).

Each line is charged to a period: the one given, or else the consortium period holding the line's
last second of use (the end is exclusive, so a job ending at midnight on the 1st belongs to the month
before).
"""

from __future__ import annotations

import csv
import heapq
import marshal
import re
import tomllib
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

from pooler.core.period import Period, period_of
from pooler.core.usage import (
    MAX_DEVICES_PER_LINE, MAX_LINE_DEVICE_HOURS, device_hours_from_seconds, line_problem,
)

CSV_COLUMNS = ("project", "pool", "device_hours", "start", "end")
SACCT_FIELDS = ("JobIDRaw", "Cluster", "Account", "User", "Partition", "QOS", "AllocTRES", "ElapsedRaw",
                "Start", "End", "State")
_SACCT_NEEDED = ("JobIDRaw", "Cluster", "Account", "Partition", "AllocTRES", "ElapsedRaw", "Start", "End",
                 "State")
# Slurm job states of jobs that have not ended (sacct's long names).
UNFINISHED_STATES = frozenset({
    "PENDING", "RUNNING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
    "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "STOPPED",
})
# ... except that a record in a requeue state with an End is an attempt that ended (`sacct -D` lists
# every attempt of a requeued job; each held its GPUs until its End)
REQUEUE_STATES = frozenset({"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
# Slurm job ids as JobIDRaw prints them: 123, a step 123.batch or 123.0, an array task 123_4, a pending
# array's tasks 123_[4-9%2], a heterogeneous job's component 123+0
_JOB_ID = re.compile(r"^[0-9]+(?:_(?:[0-9]+|\[[^\]|]*\]))?(?:\+[0-9]+)?(?:\.[^|]+)?$")
_NO_TIME = frozenset({"", "unknown", "none", "n/a"})


class UsageLine(NamedTuple):
    """One line to record; `line` is its line number in the file. (A named tuple: a million of them
    are built per import, and a frozen dataclass costs several times more to construct.)"""

    line: int
    project: str
    pool: str
    period: str
    device_hours: Decimal
    start: int
    end: int
    job: str | None = None


class LineProblem(NamedTuple):
    line: int
    reason: str


@dataclass
class ReadStats:
    """What a parser read besides the lines it yielded (updated as it goes)."""

    lines: int = 0                     # data lines read (header and blank lines excluded)
    ignored: dict[str, int] = field(default_factory=dict)   # reason -> count (steps, no GPU...)
    # Slurm: (GPU type, pool, how the pool was found) -> job lines, for typed GPUs charged to a pool
    # found by a key that names no type (`cluster/partition`, `cluster`, a partition or cluster name):
    # the import then checks that pool's accelerator against the type (`type_mismatches`)
    untyped: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # Slurm: jobs recorded before (by an earlier import or earlier in the file) with less use than
    # now, of which only the difference is recorded (see `read_sacct`)
    topped_up: int = 0

    def ignore(self, reason: str) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1


class FileProblem(ValueError):
    """A problem with a whole file (no header, an unusable map), not with one line."""


# --- the map ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageMap:
    """Slurm names -> ledger ids (DESIGN 5a). Unlisted accounts keep their name; for pools the most
    specific key wins: `cluster/partition/type`, `cluster/partition`, `cluster`; when none is listed
    the partition's own name, then the cluster's, is tried as a pool id."""

    projects: Mapping[str, str] = field(default_factory=dict)
    pools: Mapping[str, str] = field(default_factory=dict)

    def project(self, account: str) -> str:
        return self.projects.get(account, account)

    def pool_candidates(self, cluster: str, partition: str, gpu_type: str | None) -> list[tuple[str, str]]:
        """(how, pool id) to try in order; `how` names the map key, or the partition or cluster name."""
        keys = ([f"{cluster}/{partition}/{gpu_type}"] if gpu_type else []) + [f"{cluster}/{partition}", cluster]
        for key in keys:
            if key in self.pools:
                return [(f"map key {key!r}", self.pools[key])]
        return [("partition name", partition), ("cluster name", cluster)]


def load_map(path: Path) -> UsageMap:
    """Read a map file; every problem in it is listed in one `FileProblem`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FileProblem(f"cannot read the map {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FileProblem(f"the map {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise FileProblem(f"the map {path} is not valid TOML: {exc}") from None
    problems = [f"unknown table [{key}] (a map has [projects] and [pools])"
                for key in sorted(set(data) - {"projects", "pools"})]
    tables = {}
    for name in ("projects", "pools"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            problems.append(f"{name} must be a table")
            continue
        for key, value in table.items():
            if not isinstance(value, str) or not value:
                problems.append(f"[{name}] {key!r}: the value must be a non-empty id in quotes")
        tables[name] = {k: v for k, v in table.items() if isinstance(v, str)}
    if problems:
        raise FileProblem(f"the map {path}: " + "; ".join(problems))
    return UsageMap(tables.get("projects", {}), tables.get("pools", {}))


# --- times and periods ------------------------------------------------------------------------------


# The last moment a usage line may name: 9000-01-01T00:00:00Z. Later ones (sacct's 10^300, year 9999)
# are refused as times: the periods around them cannot be computed (beyond `datetime`'s range).
LAST_EPOCH = 221_845_392_000


def parse_time(text: str, zone: tzinfo = timezone.utc) -> int:
    """Epoch seconds from integer epoch text or ISO 8601 (no zone: `zone`, UTC unless the import's
    `--tz` says otherwise); ValueError when neither, or when the moment is after LAST_EPOCH."""
    text = text.strip()
    if text.isdigit():
        value = int(text)
    else:
        moment = datetime.fromisoformat(text)  # ValueError for anything else
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        value = int(moment.timestamp() // 1)
    if value > LAST_EPOCH:
        raise LateTime(f"{text!r} is after the year 9000")
    return value


class LateTime(ValueError):
    """A time that is a time, but after the last one pooler takes (LAST_EPOCH, the year 9000)."""


def _time_reason(label: str, text: str, exc: ValueError) -> str:
    if isinstance(exc, LateTime):
        # (review: "9999-12-31T22:00:00 is not an ISO 8601 time" was untrue)
        return f"{label} {text!r} is after the year 9000, the last pooler takes"
    return f"{label} {text!r} is not an ISO 8601 time or epoch seconds"


class PeriodOf:
    """The period label holding a moment, remembering the last period found (lines come in runs);
    and `zone`, the time zone of the file's times written without one (UTC unless `--tz` says)."""

    def __init__(self, kind: str, fixed: str | None = None, zone: tzinfo = timezone.utc) -> None:
        self.kind = kind
        self.fixed = fixed
        self.zone = zone
        self._low = self._high = 0
        self._label = ""

    def __call__(self, start: int, end: int) -> str:
        if self.fixed is not None:
            return self.fixed
        moment = max(start, end - 1)  # the line's last second of use
        if not self._low <= moment < self._high:
            p: Period = period_of(datetime.fromtimestamp(moment, timezone.utc), self.kind)
            self._low, self._high, self._label = int(p.start.timestamp()), int(p.end.timestamp()), p.label
        return self._label

    @property
    def bounds(self) -> tuple[int, int]:
        """[low, high): the epoch seconds of the last period found (its last second of use)."""
        return self._low, self._high


def _known(kind: str, wanted: str, known: frozenset[str] | set[str], how: str = "") -> str | None:
    if wanted in known:
        return None
    return f"{how}{kind} {wanted!r} is not in the ledger"


# --- CSV --------------------------------------------------------------------------------------------


def read_csv(lines: Iterable[str], *, projects: frozenset[str], pools: frozenset[str], period: PeriodOf,
             stats: ReadStats) -> Iterator[UsageLine | LineProblem]:
    """Parse CSV usage lines (an iterable of text lines, e.g. an open file)."""
    reader = csv.reader(lines)
    width = None
    for row in reader:
        number = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if width is None:
            width, problem = _csv_header(row, number)
            if problem is not None:
                yield problem
                return
            continue
        stats.lines += 1
        yield _csv_line(number, row, width, projects, pools, period)
    if width is None:
        yield _empty_csv()


def _csv_header(row: list[str], number: int) -> tuple[int, LineProblem | None]:
    header = [c.strip().lower() for c in row]
    if header not in (list(CSV_COLUMNS), [*CSV_COLUMNS, "job"]):
        return 0, LineProblem(number, f"the header must be {','.join(CSV_COLUMNS)} (optionally ,job); "
                                      f"found {','.join(row)}")
    return len(header), None


def _empty_csv() -> LineProblem:
    return LineProblem(1, f"the file is empty: expected the header {','.join(CSV_COLUMNS)}")


def _csv_line(number: int, row: list[str], width: int, projects, pools, period) -> UsageLine | LineProblem:
    """One data row of a CSV file, checked: the line to record, or why not."""
    if len(row) != width:
        return LineProblem(number, f"expected {width} columns, found {len(row)}")
    project, pool, hours_text, start_text, end_text = (c.strip() for c in row[:5])
    job = row[5].strip() or None if width == 6 else None
    reasons = []
    if job is not None and "\x00" in job:
        # PostgreSQL's text takes no NUL, SQLite's does: refused on both (review)
        reasons.append("the job holds a NUL character")
    if not project:
        reasons.append("the project is empty")
    elif project not in projects:
        reasons.append(f"project {project!r} is not in the ledger")
    if not pool:
        reasons.append("the pool is empty")
    elif pool not in pools:
        reasons.append(f"pool {pool!r} is not in the ledger")
    try:
        hours = Decimal(hours_text)
    except InvalidOperation:
        reasons.append(f"device_hours {hours_text!r} is not a number")
        hours = None
    start = end = None
    try:
        start = parse_time(start_text, period.zone)
    except ValueError as exc:
        reasons.append(_time_reason("start", start_text, exc))
    try:
        end = parse_time(end_text, period.zone)
    except ValueError as exc:
        reasons.append(_time_reason("end", end_text, exc))
    if start is not None and end is not None:
        why = line_problem(hours, start, end) if hours is not None else (
            "the end is before the start" if end < start else None)
        if why:
            reasons.append(why)
    if reasons:
        return LineProblem(number, "; ".join(reasons))
    return UsageLine(number, project, pool, period(start, end), hours, start, end, job)


# --- bulk reading: chunks of rows and exact totals ----------------------------------------------------

NANO = 10 ** 9  # device-hours are totalled in whole nanohours where a line's figure allows
_MAX_NANO = int(MAX_LINE_DEVICE_HOURS) * NANO
_WALL_NANO = MAX_DEVICES_PER_LINE * NANO  # nanohours x 3600 per second of wall time, at most
# Plain device-hours text: up to 10 integer digits and 9 decimals (ASCII digits only).
_PLAIN_HOURS = re.compile(r"([0-9]{1,10})(?:\.([0-9]{1,9}))?\Z", re.ASCII).match
CHUNK_ROWS = 5_000


class Tally:
    """What a bulk read found: device-hours per (project, pool) and lines and device-hours per period,
    exactly (whole nanohours as ints, plus Decimals for the rare figure finer than a nanohour), and
    every problem with its line number. `keep_rows` turns False at the first problem unless bad lines
    are skipped: from then on no row is handed out, but reading goes on so every problem is listed."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.keep_rows = True
        self.pairs: dict[tuple[str, str], int] = {}        # (project, pool) -> nanohours
        self.fine_pairs: dict[tuple[str, str], Decimal] = {}
        self.period_lines: dict[str, int] = {}
        self.period_nano: dict[str, int] = {}
        self.fine_periods: dict[str, Decimal] = {}
        self.problems: list[LineProblem] = []
        self._packed: bytes | None = None  # `pairs`, packed by `pack_pairs` (None: `pairs` is current)

    def pack_pairs(self) -> None:
        """Pack the per-pair totals into one byte string (marshal: a fifth of pickle's time on a
        million pairs) before the tally is sent to another process; they are unpacked there only
        when someone reads them. Nothing may be counted afterwards."""
        if self._packed is None:
            self._packed = marshal.dumps(self.pairs)
            self.pairs = {}

    def _unpack(self) -> dict[tuple[str, str], int]:
        if self._packed is not None:
            self.pairs = marshal.loads(self._packed)
            self._packed = None
        return self.pairs

    def problem(self, item: LineProblem) -> None:
        self.problems.append(item)
        if not self.skip_bad:
            self.keep_rows = False

    def count(self, label: str, lines: int, nano: int) -> None:
        self.period_lines[label] = self.period_lines.get(label, 0) + lines
        self.period_nano[label] = self.period_nano.get(label, 0) + nano

    def add(self, line: UsageLine) -> tuple:
        """Count a line read the slow way; its row (column order of the `usage_line` table)."""
        key = (line.project, line.pool)
        hours = line.device_hours
        nano = whole_nanohours(hours)
        if nano is not None:
            self.pairs[key] = self.pairs.get(key, 0) + nano
            self.count(line.period, 1, nano)
        else:
            self.pairs.setdefault(key, 0)
            self.fine_pairs[key] = EXACT.add(self.fine_pairs.get(key, Decimal(0)), hours)
            self.count(line.period, 1, 0)
            self.fine_periods[line.period] = EXACT.add(self.fine_periods.get(line.period, Decimal(0)), hours)
        return (line.project, line.pool, line.period, hours, line.start, line.end, line.job)

    def by_pair(self) -> Iterator[tuple[tuple[str, str], Decimal]]:
        """(project, pool), exact device-hours."""
        fine = self.fine_pairs
        for key, nano in self._unpack().items():
            hours = from_nanohours(nano)
            yield key, (EXACT.add(hours, fine[key]) if key in fine else hours)

    def pair_totals(self) -> PairTotals:
        """`by_pair` as a mapping whose exact figures are made when asked (a big import over many
        projects and pools has nearly a pair per line, and most callers never look at them)."""
        return PairTotals(self)

    def by_period(self) -> Iterator[tuple[str, int, Decimal]]:
        """period, lines, exact device-hours; sorted by period."""
        for label in sorted(self.period_lines):
            yield label, self.period_lines[label], EXACT.add(from_nanohours(self.period_nano[label]),
                                                              self.fine_periods.get(label, Decimal(0)))

    @property
    def recorded(self) -> int:
        return sum(self.period_lines.values())


class PairTotals(Mapping[tuple[str, str], Decimal]):
    """(project, pool) -> exact device-hours, read-only, each figure made from the tally's whole
    nanohours (plus the finer remainder) when it is looked up: the same figures as `Tally.by_pair`,
    without building a million Decimals that nobody reads."""

    __slots__ = ("_tally",)

    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def __getitem__(self, key: tuple[str, str]) -> Decimal:
        hours = from_nanohours(self._tally._unpack()[key])
        fine = self._tally.fine_pairs.get(key)
        return hours if fine is None else EXACT.add(hours, fine)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._tally._unpack())

    def __len__(self) -> int:
        return len(self._tally._unpack())

    def __contains__(self, key: object) -> bool:
        return key in self._tally._unpack()

    def __repr__(self) -> str:
        return f"PairTotals({len(self)} pairs)"

    def largest(self, n: int) -> list[tuple[tuple[str, str], Decimal]]:
        """The `n` pairs with the most device-hours, exactly, ties to the smaller (project, pool);
        without making a Decimal per pair: the whole-nanohour pairs are ranked as integers, and only
        the leaders and the few pairs with a finer remainder are made exact and compared."""
        nano, fine = self._tally._unpack(), self._tally.fine_pairs
        if n <= 0:
            return []
        # the n-th largest whole-nanohour figure, then every such pair at or above it (ties included)
        values = nano.values() if not fine else [v for k, v in nano.items() if k not in fine]
        leaders = heapq.nlargest(n, values)
        floor = leaders[-1] if len(leaders) == n else None
        candidates = [k for k, v in nano.items() if (floor is None or v >= floor) and k not in fine]
        candidates += fine
        return heapq.nsmallest(n, ((k, self[k]) for k in candidates), key=lambda kv: (-kv[1], kv[0]))


# Sums of finite decimals in this context are exact (no precision limit is ever reached).
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def whole_nanohours(hours: Decimal) -> int | None:
    """`hours` as a whole number of nanohours, or None when it is not one (finer, or not finite)."""
    if not hours.is_finite():
        return None
    sign, digits, exponent = hours.as_tuple()
    n = int("".join(map(str, digits)) or "0")
    shift = exponent + 9
    if shift >= 0:
        n *= 10 ** shift
    else:
        n, rest = divmod(n, 10 ** -shift)
        if rest:
            return None
    return -n if sign else n


def from_nanohours(nano: int) -> Decimal:
    """Whole 1e-9 units as the exact Decimal of canonical text ("2.5", "3", never "3.000000000")."""
    whole, part = divmod(abs(nano), 1_000_000_000)
    text = f"{whole}.{part:09d}".rstrip("0") if part else str(whole)
    return Decimal("-" + text if nano < 0 and (whole or part) else text)


def scan_csv(lines: Iterable[str], *, projects: frozenset[str], pools: frozenset[str], period: PeriodOf,
             stats: ReadStats, tally: Tally) -> Iterator[list[tuple]]:
    """`read_csv` in bulk: chunks of rows to record (tuples in the `usage_line` column order: project,
    pool, period, device-hours, start, end, job), totals and problems in `tally`.

    A plain line (known ids without surrounding blanks, device-hours as digits with at most nine
    decimals, epoch times) is checked with integer arithmetic on the spot; any other line goes through
    `read_csv`'s own checks, so both ways accept, refuse and word the same."""
    reader = csv.reader(lines)
    width = None
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        width, problem = _csv_header(row, reader.line_num)
        if problem is not None:
            tally.problem(problem)
            return
        break
    if width is None:
        tally.problem(_empty_csv())
        return
    # Ids with blanks around them can only be reached through the slow path (which strips). Each id
    # maps to one string object, shared by every row that names it: rows sent to another process
    # then carry each id once per chunk, and the encoder hashes each id once.
    fast_projects = {p: p for p in projects if p == p.strip()}
    fast_pools = {p: p for p in pools if p == p.strip()}
    pairs = tally.pairs
    plain = _PLAIN_HOURS
    # Periods met so far, [low, high) in epoch seconds (lines need not come in time order).
    # Each with its [lines, nanohours] counted so far on this path (`counters`, by label): lines in
    # no time order switch periods every other line, and a switch then costs a few list operations.
    periods: list[tuple[int, int, str, list[int]]] = []
    counters: dict[str, list[int]] = {}
    run_lines = run_nano = 0  # lines and nanohours of `label` not yet added to `counted`
    # device-hours text -> (nanohours, canonical text), for the figures met before (they repeat)
    seen_hours: dict[str, tuple[int, str]] = {}
    low = high = 0
    label = ""
    fixed = period.fixed
    counted = counters.setdefault(fixed, [0, 0]) if fixed is not None else [0, 0]
    out: list[tuple] = []
    add = out.append
    n = 0
    job = None
    for row in reader:
        n += 1
        try:
            if width == 5:
                project, pool, hours, start, end = row
            else:
                project, pool, hours, start, end, job = row
        except ValueError:  # another number of columns, or a blank line
            if not row or (len(row) == 1 and not row[0].strip()):
                n -= 1
                continue
        else:
            known = seen_hours.get(hours)
            if known is None:
                m = plain(hours)
                if m is not None:
                    whole, frac = m.groups()
                    nano = int(whole) * NANO + (int(frac.ljust(9, "0")) if frac else 0)
                    canon = hours
                    if (frac is not None and frac[-1] == "0") or (whole[0] == "0" and len(whole) > 1):
                        q, r = divmod(nano, NANO)  # not canonical text: rebuild it from the nanohours
                        canon = f"{q}.{r:09d}".rstrip("0") if r else str(q)
                    known = (nano, canon)
                    if len(seen_hours) < 100_000:
                        seen_hours[hours] = known
            project = fast_projects.get(project)
            pool = fast_pools.get(pool)
            if (known is not None and project is not None and pool is not None and start.isdigit()
                    and end.isdigit() and (job is None or "\x00" not in job)):
                try:
                    start = int(start)
                    end = int(end)
                except ValueError:  # digits int() does not read (superscripts...)
                    start = end = -1
                nano = known[0]
                if (0 <= start <= end <= LAST_EPOCH and nano <= _MAX_NANO
                        and nano * 3600 <= (end - start) * _WALL_NANO):
                    if fixed is not None:
                        label = fixed
                    else:
                        moment = end - 1 if end > start else start
                        if not low <= moment < high:
                            if run_lines:
                                counted[0] += run_lines
                                counted[1] += run_nano
                                run_lines = run_nano = 0
                            for low, high, label, counted in periods:
                                if low <= moment < high:
                                    break
                            else:
                                label = period(start, end)
                                low, high = period.bounds
                                counted = counters.setdefault(label, [0, 0])
                                if len(periods) < 256:
                                    periods.append((low, high, label, counted))
                    run_lines += 1
                    run_nano += nano
                    key = (project, pool)
                    pairs[key] = pairs.get(key, 0) + nano
                    if tally.keep_rows:
                        if job is not None:
                            job = job.strip() or None
                        add((project, pool, label, known[1], start, end, job))
                        if len(out) >= CHUNK_ROWS:
                            yield out
                            out = []
                            add = out.append
                    continue
        item = _csv_line(reader.line_num, row, width, projects, pools, period)
        if item.__class__ is LineProblem:
            tally.problem(item)
            if not tally.keep_rows:
                out = []
                add = out.append
            continue
        row_values = tally.add(item)
        if tally.keep_rows:
            add(row_values)
    counted[0] += run_lines
    counted[1] += run_nano
    for label, (lines_of, nano_of) in counters.items():
        if lines_of:
            tally.count(label, lines_of, nano_of)
    stats.lines += n
    if out and tally.keep_rows:
        yield out


def scan_items(items: Iterable[UsageLine | LineProblem], tally: Tally) -> Iterator[list[tuple]]:
    """Chunks of rows from a per-line reader (`read_sacct`, `read_csv`), counted in `tally`."""
    out: list[tuple] = []
    for item in items:
        if item.__class__ is LineProblem:
            tally.problem(item)  # type: ignore[arg-type]
            if not tally.keep_rows:
                out = []
            continue
        row = tally.add(item)  # type: ignore[arg-type]
        if tally.keep_rows:
            out.append(row)
            if len(out) >= CHUNK_ROWS:
                yield out
                out = []
    if out and tally.keep_rows:
        yield out


# --- Slurm sacct ------------------------------------------------------------------------------------


def parse_gpus(tres: str) -> dict[str | None, int]:
    """GPU counts by type from AllocTRES; {None: n} for an untyped count alone; {} for no GPU.
    ValueError for a count that is not a whole number."""
    typed: dict[str | None, int] = {}
    untyped = 0
    for item in tres.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name == "gres/gpu":
            untyped = _count(value)
        elif name.startswith("gres/gpu:"):
            gpu_type = name[len("gres/gpu:"):]
            typed[gpu_type] = typed.get(gpu_type, 0) + _count(value)
    if typed:
        return {t: n for t, n in typed.items() if n > 0}
    return {None: untyped} if untyped > 0 else {}


def _count(value: str) -> int:
    value = value.strip()
    if not value.isdigit():
        raise ValueError(f"GPU count {value!r} is not a whole number")
    return int(value)


def _sacct_layout(fields: list[str], number: int) -> tuple[dict[str, int], int, bool]:
    """From the first line of a sacct file: where each field is, how many fields a line has, and
    whether the line is the header (else it is the first job line, in `SACCT_FIELDS` order)."""
    if fields[0].strip().lower() in ("jobidraw", "jobid") or "JobIDRaw" in fields:
        names = [f.strip() for f in fields]
        missing = [f for f in _SACCT_NEEDED if f not in names]
        if missing:
            raise FileProblem(f"line {number}: the header has no {', '.join(missing)} "
                              f"(sacct -P -o {','.join(SACCT_FIELDS)})")
        return {name: names.index(name) for name in SACCT_FIELDS if name in names}, len(names), True
    if not _JOB_ID.match(fields[0].strip()):
        # another program's output (sshare, sacct with other fields): not a file of bad jobs
        raise FileProblem(f"line {number} is neither a sacct header (naming JobIDRaw) nor a job "
                          f"line starting with a job id (sacct -P -n -o {','.join(SACCT_FIELDS)})")
    return {name: i for i, name in enumerate(SACCT_FIELDS)}, len(SACCT_FIELDS), False


def _sacct_lines(lines: Iterable[str]) -> Iterator[tuple[int, list[str], dict[str, int], int]]:
    """The job lines of sacct output (blank lines and the header left out): line number, fields, where
    each field is (`_sacct_layout`, from the first line), and how many fields a line has."""
    index: dict[str, int] | None = None
    width = 0
    for number, text in enumerate(lines, start=1):
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        fields = text.split("|")
        if index is None:
            index, width, header = _sacct_layout(fields, number)
            if header:
                continue
        yield number, fields, index, width


def job_hash(job: str, start: int) -> int:
    """A stable 64-bit number for a job's (JobIDRaw, Start), the same in every process: for finding
    the jobs a file lists twice without holding every job's id (`sacct_job_keys`)."""
    return (zlib.crc32(job.encode("utf-8")) << 32) | (start & 0xFFFFFFFF)


def sacct_job_keys(lines: Iterable[str], zone: tzinfo = timezone.utc) -> Iterator[tuple[str, int]]:
    """(JobIDRaw, Start) of every job line of sacct output whose Start is a time (steps left out):
    what an import looks up before it reads the file with `read_sacct`. Lines it cannot read are
    passed over (`read_sacct` reports them); a file that is not sacct output is a FileProblem."""
    for _, fields, index, width in _sacct_lines(lines):
        if len(fields) != width:
            continue
        job = fields[index["JobIDRaw"]].strip()
        if "." in job or not _JOB_ID.match(job):
            continue
        try:
            start = parse_time(fields[index["Start"]].strip(), zone)
        except ValueError:
            continue
        yield job, start


@dataclass
class Seen:
    """What a Slurm import knows of its file's jobs before it reads it (see `read_sacct`): the
    device-hours recorded per (job, pool, start) by earlier imports, and the `job_hash`es of the jobs
    the file lists more than once. It is updated as the file is read."""

    recorded: dict[tuple[str, str, int], Decimal] = field(default_factory=dict)
    twice: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        self.known = {(job, start) for job, _, start in self.recorded}

    def watched(self, job: str, start: int) -> bool:
        return (job, start) in self.known or (bool(self.twice) and job_hash(job, start) in self.twice)


def read_sacct(lines: Iterable[str], *, projects: frozenset[str], pools: frozenset[str], period: PeriodOf,
               usage_map: UsageMap, include_running: bool, stats: ReadStats,
               seen: Seen | None = None) -> Iterator[UsageLine | LineProblem]:
    """Parse `sacct -P` output (an iterable of text lines).

    A job is known by its JobIDRaw and Start (every attempt of a requeued job starts anew): per pool,
    one recorded before (`seen`, by an earlier import or earlier in the file) with as much use is not
    recorded again (overlapping `sacct` windows, the same jobs saved twice), and one recorded with
    less, while it ran (`--include-running`), gets only the rest of its use."""
    if seen is None:
        seen = Seen()
    for number, fields, index, width in _sacct_lines(lines):
        stats.lines += 1
        if len(fields) != width:
            yield LineProblem(number, f"expected {width} fields separated by |, found {len(fields)}")
            continue
        job = fields[index["JobIDRaw"]].strip()
        if "\x00" in job:
            # PostgreSQL's text takes no NUL, SQLite's does: refused on both (review)
            yield LineProblem(number, f"job {job!r}: JobIDRaw holds a NUL character")
            continue
        if not _JOB_ID.match(job):
            yield LineProblem(number, f"JobIDRaw {job!r} is not a Slurm job id")
            continue
        if "." in job:
            stats.ignore("job steps")
            continue
        yield from _sacct_job(number, job, fields, index, projects=projects, pools=pools, period=period,
                              usage_map=usage_map, include_running=include_running, stats=stats, seen=seen)


def _sacct_job(number: int, job: str, fields: list[str], index: dict[str, int], *, projects, pools, period,
               usage_map: UsageMap, include_running: bool, stats: ReadStats,
               seen: Seen) -> Iterator[UsageLine | LineProblem]:
    def get(name: str) -> str:
        return fields[index[name]].strip()

    try:
        gpus = parse_gpus(get("AllocTRES"))
    except ValueError as exc:
        yield LineProblem(number, f"job {job}: AllocTRES: {exc}")
        return
    if not gpus:
        stats.ignore("jobs without GPUs")
        return
    state = get("State").split(" ", 1)[0].upper()
    end_text = get("End")
    unfinished = end_text.lower() in _NO_TIME or (state in UNFINISHED_STATES and state not in REQUEUE_STATES)
    if unfinished and not include_running:
        stats.ignore("unfinished jobs")
        return
    reasons = []
    elapsed_text = get("ElapsedRaw")
    elapsed = int(elapsed_text) if elapsed_text.isdigit() and len(elapsed_text) <= 15 else None
    if elapsed is None or elapsed > LAST_EPOCH:
        # (a number of 400 digits was a traceback from the device-hours' arithmetic: Hypothesis)
        shown = elapsed_text if len(elapsed_text) <= 24 else elapsed_text[:20] + "..."
        reasons.append(f"ElapsedRaw {shown!r} is not a whole number of seconds" if not elapsed_text.isdigit()
                       else f"ElapsedRaw {shown!r} is longer than any job runs (more than the seconds to the "
                            "year 9000)")
        elapsed = None
    start_text = get("Start")
    start = end = None
    if start_text.lower() in _NO_TIME:
        if unfinished:
            stats.ignore("jobs not started")
            return
        reasons.append(f"Start {start_text!r} is not a time")
    else:
        try:
            start = parse_time(start_text, period.zone)
        except ValueError as exc:
            reasons.append(_time_reason("Start", start_text, exc))
    if unfinished:
        end = start + elapsed if start is not None and elapsed is not None else None
        if end is not None and end > LAST_EPOCH:
            reasons.append("Start + ElapsedRaw is after the year 9000")
            end = None
    else:
        try:
            end = parse_time(end_text, period.zone)
        except ValueError as exc:
            reasons.append(_time_reason("End", end_text, exc))
    if elapsed == 0 and not reasons:
        stats.ignore("jobs that never ran")
        return
    account = get("Account")
    project = usage_map.project(account)
    if project not in projects:
        how = f"account {account!r} maps to project {project!r}, which" if project != account else \
            f"account {account!r} is not listed in the map and, as a project id, it"
        reasons.append(f"{how} is not in the ledger")
    cluster, partition = get("Cluster"), get("Partition")
    lines = []
    for gpu_type in sorted(gpus, key=lambda t: t or ""):
        candidates = usage_map.pool_candidates(cluster, partition, gpu_type)
        found = next(((how, p) for how, p in candidates if p in pools), None)
        if found is None:
            where = "/".join(x for x in (cluster, partition, gpu_type) if x)
            tried = ", ".join(f"{p!r} ({how})" for how, p in candidates)
            reasons.append(f"{where} maps to no pool in the ledger (tried {tried})")
            continue
        how, pool = found
        # (a typed key: the map says so; else counted below, once the line is recorded)
        untyped = (gpu_type, pool, how) if gpu_type and f"{cluster}/{partition}/{gpu_type}" not in usage_map.pools \
            else None
        lines.append((gpu_type, pool, untyped))
    if start is not None and end is not None and elapsed is not None:
        if end < start:
            reasons.append("End is before Start")
        for gpu_type, _, _ in lines:
            hours = device_hours_from_seconds(gpus[gpu_type], elapsed)
            why = line_problem(hours, start, max(end, start + elapsed))
            if why:
                reasons.append(why)
                break
    if reasons:
        yield LineProblem(number, f"job {job}: " + "; ".join(dict.fromkeys(reasons)))
        return
    label = period(start, end)
    new = [(t, p, u, device_hours_from_seconds(gpus[t], elapsed)) for t, p, u in lines]
    if seen.watched(job, start):
        new = _unrecorded(job, start, new, seen.recorded, stats)
    for _, pool, untyped, hours in new:
        if untyped is not None:
            stats.untyped[untyped] = stats.untyped.get(untyped, 0) + 1
        yield UsageLine(number, project, pool, label, hours, start, end, job)


def _unrecorded(job: str, start: int, lines: list[tuple], recorded: dict[tuple[str, str, int], Decimal],
                stats: ReadStats) -> list[tuple]:
    """Of a job's lines (GPU type, pool, untyped key, device-hours), what is not recorded yet: per
    pool, all of them for a job not seen before; one line of the difference for a job recorded with
    less (it was running then); nothing for one recorded with as much. `recorded` is updated."""
    by_pool: dict[str, list[tuple]] = {}
    for line in lines:
        by_pool.setdefault(line[1], []).append(line)
    out: list[tuple] = []
    topped = False
    for pool, group in by_pool.items():
        key = (job, pool, start)
        total = Decimal(0)
        for line in group:
            total = EXACT.add(total, line[3])
        before = recorded.get(key)
        if before is None:
            out.extend(group)
        elif total > before:
            gpu_type, _, untyped, _ = group[0]
            out.append((gpu_type, pool, untyped, EXACT.subtract(total, before)))
            topped = True
        recorded[key] = total if before is None else max(before, total)
    if topped:
        stats.topped_up += 1
    elif not out:
        stats.ignore("jobs already recorded")
    return out


def _plain_name(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def _model_tokens(name: str) -> set[str]:
    """The words of a name that hold a digit ("nvidia_a100-sxm4-80gb": a100, sxm4, 80gb)."""
    return {w for w in re.split(r"[^0-9a-z]+", name.lower()) if any(c.isdigit() for c in w)}


def same_accelerator(gpu_type: str, accelerator: str) -> bool | None:
    """Whether a Slurm GPU type names the accelerator: the same letters and digits ("ascend910b",
    "ascend-910b"), or a word with a digit in common ("h800" and "nvidia-h800-80g"; "nvidia_a100-sxm4-80gb"
    and "a100-80g"); "h20" is not "h200", nor "a10" "a100". None for a type without a digit ("gpu",
    "tesla"), which names no model to compare."""
    if not any(c.isdigit() for c in gpu_type):
        return None
    if _plain_name(gpu_type) == _plain_name(accelerator):
        return True
    type_words = _model_tokens(gpu_type)
    return bool(type_words & _model_tokens(accelerator))


def type_mismatches(untyped: Mapping[tuple[str, str, str], int],
                    accelerator_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """The recorded charges of typed GPUs to a pool of another accelerator (`same_accelerator` false),
    found by a key naming no type. Slurm's type names are the site's own, so this is a warning, not a
    refusal (review: such a job was charged to the other pool in silence)."""
    out = []
    for (gpu_type, pool, how), n in sorted(untyped.items()):
        accelerator = accelerator_of.get(pool)
        if accelerator is not None and same_accelerator(gpu_type, accelerator) is False:
            out.append({"gpu_type": gpu_type, "pool": pool, "accelerator": accelerator, "via": how, "lines": n})
    return out


def reader_for(fmt: str) -> Callable[..., Iterator[UsageLine | LineProblem]]:
    return {"csv": read_csv, "sacct": read_sacct}[fmt]
