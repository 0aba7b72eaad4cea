"""Usage: importing consumed device-hours, and the decayed usage that allocation and fair-share read.

An import is one `usage.import` journal entry whose attached `usage_line` rows hold every line (project,
pool, period, device-hours, start, end, job), so `ledger verify` covers them. Its payload names the
file, its SHA-256 (the same file is never imported twice), the format, the periods and the totals.

Every line is checked first (known project and pool, plausible hours, good times); any bad line and
nothing is recorded, unless `skip_bad`, which records the good ones and lists the others. Parsing,
checking and writing happen in one write transaction, so what is checked is what is written (a big
file is parsed and checked by a second process while this one writes: `usage_read`).

Each line is charged to a period: the one the import names, or the consortium period holding the
line's last second of use (stored per line, so one import may span several periods).
"""

from __future__ import annotations

import hashlib
import re
from array import array
from dataclasses import dataclass, field
from datetime import timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from pooler.core.model import Snapshot
from pooler.core.period import PeriodError, parse_period, period_of
from pooler.core.usage import ChargedLine, FairShareRow, MemberUsage, fairshare_rows, member_usage
from pooler.core.contrib import contributions
from pooler.errors import PoolerError, UsageError
from pooler.io.usage import (
    EXACT, FileProblem, LineProblem, ReadStats, Seen, Tally, UsageMap, job_hash, load_map, sacct_job_keys,
    type_mismatches,
)
from pooler.services.context import Context
from pooler.services.files import input_file
from pooler.services.heap import collector_paused
from pooler.services.registry import open_ledger
from pooler.services.usage_read import ReadJob, rows_of, second_process_pays, text_lines
from pooler.store import LedgerState, RowChunks

IMPORT_KIND = "usage.import"
FORMATS = ("csv", "sacct")
# Problems listed in an error message; the rest are counted.
MAX_LISTED_PROBLEMS = 1000


class UsageImportError(PoolerError):
    """A usage file that cannot be imported as asked (bad lines, a duplicate, a bad map)."""

    def __init__(self, message: str, problems: tuple[LineProblem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass
class ImportOutcome:
    """What an import read and recorded (`to_json_dict` is the DESIGN 5a `--json` shape, plus extras)."""

    file: str
    file_digest: str
    format: str
    lines: int = 0
    recorded: int = 0
    skipped: list[LineProblem] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    device_hours: Decimal = Decimal(0)
    # Exact device-hours per (project, pool): a read-only mapping whose figures are made when read.
    by_project_pool: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    periods: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int | None = None
    # Slurm: typed GPUs charged to a pool of another accelerator (`io.usage.type_mismatches`)
    type_warnings: list[dict[str, Any]] = field(default_factory=list)
    # Slurm: jobs recorded before while running, of which only the rest of their use was recorded
    topped_up: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "recorded": self.recorded,
            "skipped": [{"line": p.line, "reason": p.reason} for p in self.skipped],
            "device_hours": float(self.device_hours),
            "by_project_pool": [{"project": j, "pool": p, "device_hours": float(h)}
                                for (j, p), h in sorted(self.by_project_pool.items())],
            "ignored": dict(sorted(self.ignored.items())),
            "periods": {label: {"lines": v["lines"], "device_hours": float(v["device_hours"])}
                        for label, v in sorted(self.periods.items())},
            "file": self.file,
            "file_digest": self.file_digest,
            "format": self.format,
            "seq": self.seq,
            "type_warnings": self.type_warnings,
            "topped_up": self.topped_up,
        }


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _problem_text(path: Path, problems: list[LineProblem], total: int) -> str:
    listed = "\n".join(f"  line {p.line}: {p.reason}" for p in problems[:MAX_LISTED_PROBLEMS])
    more = f"\n  ... and {total - MAX_LISTED_PROBLEMS} more" if total > MAX_LISTED_PROBLEMS else ""
    return (f"{total} bad line(s) in {path.name}; nothing recorded (fix them, or pass --skip-bad to record "
            f"the good lines):\n{listed}{more}")


def import_usage(ctx: Context, path: Path, fmt: str, *, period: str | None = None,
                 map_path: Path | None = None, include_running: bool = False, skip_bad: bool = False,
                 progress: Callable[[int], None] | None = None, tz: str | None = None) -> ImportOutcome:
    """Import a usage file (`fmt` "csv" or "sacct") as one `usage.import` entry with its lines;
    `tz` is the zone of times written without one (`time_zone`), UTC when None."""
    if fmt not in FORMATS:
        raise UsageError(f"--format: {fmt!r} is not a usage format (csv or sacct)")
    zone = time_zone(tz) if tz is not None else None
    input_file(path, "usage file")
    if map_path is not None:
        input_file(map_path, "map file")
    if map_path is not None and fmt != "sacct":
        raise UsageError("--map: a map translates Slurm accounts and partitions; it applies to --format sacct only")
    if include_running and fmt != "sacct":
        raise UsageError("--include-running applies to --format sacct only")
    try:
        usage_map = load_map(map_path) if map_path is not None else UsageMap()
    except FileProblem as exc:
        raise UsageImportError(str(exc)) from None
    digest = file_digest(path)
    outcome = ImportOutcome(path.name, digest, fmt)
    apart = second_process_pays(path)  # decided before the write lock is taken (it looks at the machine)
    with open_ledger(ctx) as ledger, ledger.writer(ctx.actor) as writer:
        kind, projects, pools = writer.usage_view()
        if period is not None:
            try:
                period = parse_period(period, kind).label
            except PeriodError as exc:
                raise UsageError(f"--period: {exc}") from None
        for entry in writer.entries_of_kind(IMPORT_KIND):
            if entry.payload.get("file_digest") == digest:
                raise UsageImportError(
                    f"{path.name} was already imported as entry #{entry.seq} ({entry.time} by {entry.actor}; "
                    f"same SHA-256 {digest[:12]}...); nothing recorded")
        try:
            seen = _seen_jobs(writer, path, zone or timezone.utc) if fmt == "sacct" else None
        except FileProblem as exc:
            raise UsageImportError(f"{path.name}: {exc}") from None
        except UnicodeDecodeError:
            raise UsageImportError(f"{path.name} is not UTF-8 text") from None
        job = ReadJob(path, fmt, projects, pools, kind, period, usage_map, include_running, skip_bad, seen, zone)
        stats = ReadStats()
        tally = Tally(skip_bad)
        read = rows_of(job, stats, tally, progress, apart=apart)

        def payload() -> dict[str, Any]:
            # Called by the writer once every line has been read (and the good ones inserted).
            outcome.lines = stats.lines
            outcome.ignored = dict(stats.ignored)
            outcome.topped_up = stats.topped_up
            if stats.untyped:
                outcome.type_warnings = type_mismatches(stats.untyped, writer.pool_accelerators())
            problems = tally.problems
            if problems and not skip_bad:
                raise UsageImportError(_problem_text(path, problems, len(problems)), tuple(problems))
            outcome.skipped = problems
            _totals(tally, outcome)
            if not outcome.recorded:
                raise _NothingToRecord
            return {
                "file": path.name,
                "file_digest": digest,
                "format": fmt,
                "period": period,
                "periods": {label: {"lines": v["lines"], "device_hours": v["device_hours"]}
                            for label, v in sorted(outcome.periods.items())},
                "lines": stats.lines,
                "recorded": outcome.recorded,
                "skipped": len(problems),
                "skipped_lines": [p.line for p in problems[:MAX_LISTED_PROBLEMS]],
                "ignored": dict(sorted(stats.ignored.items())),
                "device_hours": outcome.device_hours,
                "include_running": include_running,
                "topped_up": stats.topped_up,
                "tz": tz,
                "map_digest": file_digest(map_path) if map_path is not None else None,
            }

        try:
            with collector_paused():  # and in a reading process forked meanwhile
                entry = writer.append(IMPORT_KIND, payload, attachments={"usage_line": RowChunks(read)})
        except _NothingToRecord:
            writer.rollback()
            return outcome
        except FileProblem as exc:
            raise UsageImportError(f"{path.name}: {exc}") from None
        except UnicodeDecodeError:
            raise UsageImportError(f"{path.name} is not UTF-8 text") from None
        finally:
            read.close()  # a reading process, if any, is ended now even if the append stopped early
        outcome.seq = entry.seq
    return outcome


_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):?(\d{2})$")


def time_zone(name: str) -> tzinfo:
    """`--tz`: an IANA time zone name (Asia/Shanghai, UTC) or a fixed offset (+08:00, -0500); a usage
    error for anything else."""
    text = name.strip()
    m = _OFFSET.match(text)
    if m:
        sign, hours, minutes = m.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        if offset < timedelta(hours=24) and int(minutes) < 60:
            return timezone(-offset if sign == "-" else offset)
    elif text:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise UsageError(f"--tz: {name!r} is not a time zone (an IANA name such as Asia/Shanghai or UTC, "
                     "or an offset such as +08:00)")


def _seen_jobs(reader, path: Path, zone: tzinfo) -> Seen:
    """What a Slurm import must know of its file's jobs before it reads them (`io.usage.Seen`): one
    quick pass over the file gives every job's (JobIDRaw, Start); those recorded before are looked up
    through the job index (only when some usage line names a job at all), and the jobs listed twice
    are found by sorting their `job_hash`es, so neither costs memory per job of the file."""
    import numpy as np  # (not on the paths of commands that start fast)

    from pooler.store.ledger import stored_decimal  # SQLAlchemy: the writer has loaded it already

    look = reader.has_jobs()
    hashes = array("Q")
    recorded: dict[tuple[str, str, int], Decimal] = {}
    batch: set[tuple[str, int]] = set()

    def lookup() -> None:
        for job, pool, start, hours in reader.usage_of_jobs(sorted({job for job, _ in batch})):
            if (job, int(start)) in batch:
                key = (job, pool, int(start))
                recorded[key] = EXACT.add(recorded.get(key, _ZERO), stored_decimal(hours))
        batch.clear()

    for job, start in sacct_job_keys(text_lines(path, None), zone):
        hashes.append(job_hash(job, start))
        if look:
            batch.add((job, start))
            if len(batch) >= _LOOKUP_JOBS:
                lookup()
    if batch:
        lookup()
    ordered = np.sort(np.frombuffer(hashes, dtype=np.uint64))
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    return Seen(recorded, frozenset(int(h) for h in np.unique(twice)))


_LOOKUP_JOBS = 5000  # jobs of a file looked up together (`Reader.usage_of_jobs` splits them again)


class _NothingToRecord(Exception):
    """No good line: the import records nothing (raised from the payload function to drop the rows)."""


def _totals(tally: Tally, outcome: ImportOutcome) -> None:
    """The outcome's exact totals: by (project, pool), by period, overall."""
    outcome.by_project_pool = tally.pair_totals()
    total = Decimal(0)
    recorded = 0
    for label, lines, hours in tally.by_period():
        recorded += lines
        total = EXACT.add(total, hours)
        outcome.periods[label] = {"lines": lines, "device_hours": hours}
    outcome.device_hours = total
    outcome.recorded = recorded


_ZERO = Decimal(0)


# --- reading usage back -----------------------------------------------------------------------------


def _lines(reader, as_of: int | None = None) -> Iterator[ChargedLine]:
    """Every recorded usage line (ended by `as_of` when given), streamed from the database in journal
    and line order, so memory holds a few thousand at a time and the sums are made in the same order
    as ever (the decayed figures are the same to the last digit)."""
    decimals: dict[str, Decimal] = {}  # device-hours texts repeat; each is read once
    rows = reader.attachment_stream("usage_line", ("project", "pool", "period", "device_hours", "end"),
                                    kind=IMPORT_KIND, at_most=None if as_of is None else {"end": as_of})
    for project, pool, period, hours, end in rows:
        value = decimals.get(hours)
        if value is None:
            try:
                value = Decimal(hours)
            except (InvalidOperation, TypeError):
                raise PoolerError(f"the ledger holds {hours!r} as device-hours of a usage line; "
                                  "run `pooler ledger verify`") from None
            if len(decimals) < 100_000:
                decimals[hours] = value
        yield ChargedLine(project, pool, period, value, end)


def _stakes(state: LedgerState) -> dict[str, dict[str, Decimal]]:
    # Retired projects keep charging their sponsors for what they used.
    return {pid: dict(rs.record.sponsors) for pid, rs in state.collection("project").items()}  # type: ignore[attr-defined]


def _rate_of(state: LedgerState) -> Callable[[str, str], Decimal]:
    pools = state.collection("pool")

    def rate(pool: str, period: str) -> Decimal:
        accelerator = pools[pool].record.accelerator  # type: ignore[attr-defined]
        return state.rate_as_of(accelerator, period)

    return rate


def usage_as_of(reader, state: LedgerState, label: str, members: Iterable[str]) -> MemberUsage:
    """Raw and decayed usage per member for allocating period `label` (lines ended by its start)."""
    start = parse_period(label, state.consortium.period).start
    as_of = int(start.timestamp())
    return member_usage(_lines(reader, as_of), stakes=_stakes(state), rate=_rate_of(state),
                        as_of=as_of, half_life_days=state.policy.usage_half_life_days,
                        members=members)


def with_usage(reader, state: LedgerState, snapshot: Snapshot, label: str) -> tuple[Snapshot, dict[str, Decimal]]:
    """`snapshot` with the decayed usage of its members for `label` (none when the half-life is 0),
    and the figures used (member -> decayed units, members with none left out)."""
    if snapshot.policy.usage_half_life_days <= 0:
        return snapshot.replace(usage=()), {}
    usage = usage_as_of(reader, state, label, [m.id for m in snapshot.members]).decayed
    members = {m.id for m in snapshot.members}
    used = {m: u for m, u in usage.items() if m in members and u > 0}
    return snapshot.replace(usage=tuple(used.items())), used


@dataclass(frozen=True)
class FairShare:
    period: str
    unit: str
    half_life_days: Decimal
    lines: int
    rows: list[FairShareRow]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "period": self.period, "unit": self.unit, "half_life_days": float(self.half_life_days),
            "lines": self.lines,
            "members": [{"member": r.member, "raw_shares": float(r.raw_shares),
                         "norm_shares": float(r.norm_shares), "raw_usage": float(r.raw_usage),
                         "decayed_usage": float(r.decayed_usage), "effective_usage": float(r.effective_usage),
                         "fairshare": float(r.fairshare)} for r in self.rows],
        }


def fairshare(ctx: Context, period: str | None = None) -> FairShare:
    """Slurm-`sshare`-like figures for allocating `period` (default: the current period)."""
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
        state = reader.state()
        kind = state.consortium.period
        try:
            label = parse_period(period, kind).label if period else period_of(ctx.clock(), kind).label
        except PeriodError as exc:
            raise UsageError(f"--period: {exc}") from None
        snapshot = state.snapshot(label)
        members = [m.id for m in snapshot.members]
        usage = usage_as_of(reader, state, label, members)
    history = snapshot.policy.usage_half_life_days > 0
    if not history:
        usage = MemberUsage(usage.raw, {m: Decimal(0) for m in members}, usage.lines)
    else:
        usage = MemberUsage(usage.raw, {m: usage.decayed.get(m, Decimal(0)) for m in members}, usage.lines)
    rows = fairshare_rows(contributions(snapshot), snapshot.policy.alpha, usage)
    return FairShare(label, snapshot.consortium.unit, snapshot.policy.usage_half_life_days, usage.lines, rows)
