"""Usage history, purely: the rules a usage line must obey, charging lines to members, decay, fair-share.

A usage line says that a project consumed `device_hours` of one pool between `start` and `end` (epoch
seconds, UTC), charged to a consortium `period`. From the lines recorded before a period starts, the
allocation of that period takes each member's *decayed usage* U_m (DESIGN section 3):

    units(line)  = device_hours x rate(accelerator of the pool, as of the line's period)
    decay(line)  = 2 ** (-(period start - line end) / half-life)        (lines ending later: not counted)
    U_m          = sum over lines of stake(project, m) x units x decay

and the fair-share factor of a member with normalised share S_m is 2 ** (-(U_m / sum U) / S_m), the
classic Slurm factor. A half-life of 0 turns usage history off.

Everything here is Decimal arithmetic in a fixed context (28 significant digits, half-even), so two
machines compute the same figures digit for digit. Nothing reads the clock or a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, NamedTuple

if TYPE_CHECKING:  # NumPy is imported only where the columns are made (big ledgers)
    import numpy as np

# Per-line plausibility limits (see `line_problem`).
MAX_LINE_DEVICE_HOURS = Decimal(10_000_000)
MAX_DEVICES_PER_LINE = 10_000
SECONDS_PER_DAY = 86_400
# Device-hours derived from seconds (Slurm) are kept to the nanohour (3.6 microseconds).
HOURS_QUANTUM = Decimal("1e-9")

_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)
_LN2 = _CONTEXT.ln(Decimal(2))
_ZERO = Decimal(0)


def line_problem(device_hours: Decimal, start: int, end: int) -> str | None:
    """Why a line is implausible, or None. The rules, in order:

    - the end is not before the start;
    - device-hours are a finite number, not negative;
    - at most 10,000,000 device-hours in one line;
    - at most what 10,000 devices could deliver in the line's wall time ((end - start) x 10,000
      device-seconds), so a line of zero length carries zero device-hours.
    """
    if end < start:
        return "the end is before the start"
    if not device_hours.is_finite():
        return f"device_hours {device_hours} is not a finite number"
    if device_hours < 0:
        return f"device_hours {device_hours:f} is negative"
    if device_hours > MAX_LINE_DEVICE_HOURS:
        return f"device_hours {device_hours:f} is more than {MAX_LINE_DEVICE_HOURS:,} in one line"
    if device_hours * 3600 > (end - start) * MAX_DEVICES_PER_LINE:
        wall = Decimal(end - start) / 3600
        return (f"device_hours {device_hours:f} is more than {MAX_DEVICES_PER_LINE:,} devices could use "
                f"in the line's {wall.normalize():f} wall-clock hours")
    return None


def device_hours_from_seconds(devices: int, seconds: int) -> Decimal:
    """devices x seconds / 3600, to the nanohour (half-even)."""
    with localcontext(_CONTEXT):
        return (Decimal(devices * seconds) / 3600).quantize(HOURS_QUANTUM)


def decay_factor(age_seconds: int, half_life_days: Decimal) -> Decimal:
    """2 ** (-age / half-life): 1 at age 0, 0.5 after one half-life, 0.25 after two..."""
    if age_seconds <= 0:
        return Decimal(1)
    with localcontext(_CONTEXT) as c:
        exponent = -Decimal(age_seconds) / (half_life_days * SECONDS_PER_DAY)
        # exp(x ln 2) rather than 2 ** x: Decimal's power with a fractional exponent is several
        # times slower, and this runs once per distinct line end.
        return c.exp(exponent * _LN2)


NANO = 1_000_000_000  # nanohours per device-hour
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)  # sums of finite decimals: never rounded


def from_nano(nano: int) -> Decimal:
    """Whole nanohours as the exact Decimal of canonical text ("2.5", "3", never "3.000000000")."""
    whole, part = divmod(nano, NANO)
    if not part:
        return Decimal(whole)
    return Decimal(nano).scaleb(-9, _EXACT).normalize(_EXACT)


def nano_text(nano: int) -> str:
    """`str(from_nano(nano))` without making the Decimal ("2.5", "3"; below a micro-hour Decimal's
    own exponent form, "5E-7")."""
    if -1000 < nano < 1000 and nano:
        return str(from_nano(nano))
    whole, part = divmod(abs(nano), NANO)
    text = f"{whole}.{part:09d}".rstrip("0") if part else str(whole)
    return "-" + text if nano < 0 else text


class PairHours(Mapping[tuple[str, str], Decimal]):
    """Device-hours per (project, pool), exactly: each pair's whole nanohours as an int, plus an
    exact Decimal for the rare pair with a figure finer than a nanohour (`fine`, added to `nano`).

    A mapping to Decimals like any other (each made when asked for, as `from_nano` makes it), so any
    caller can take it; the settlement and the audit read the integers instead, which over hundreds
    of thousands of pairs is several times faster than Decimal arithmetic. `ordered` says the pairs
    come in (project, pool) order.

    Made from `PairColumns` (`of_columns`), the pairs are held as NumPy columns only, and the dict of
    pairs (`nano`) is made the first time someone asks for it: the settlement and the audit's project
    figures on a big ledger never do."""

    def __init__(self, nano: dict[tuple[str, str], int], fine: Mapping[tuple[str, str], Decimal] | None = None,
                 *, ordered: bool = False) -> None:
        self._nano: dict[tuple[str, str], int] | None = nano
        self.fine = dict(fine or {})
        self.ordered = ordered

    @classmethod
    def of_columns(cls, columns: "PairColumns") -> "PairHours":
        """Whole-nanohour pairs held as columns (in (project, pool) order, no finer figures)."""
        pairs = cls({}, ordered=True)
        pairs._nano = None
        pairs._columns = columns
        return pairs

    @property
    def nano(self) -> dict[tuple[str, str], int]:
        """{(project, pool): whole nanohours}, in (project, pool) order when `ordered`."""
        if self._nano is None:
            self._nano = self._columns.as_dict()
        return self._nano

    def __getitem__(self, key: tuple[str, str]) -> Decimal:
        hours = from_nano(self.nano[key])
        fine = self.fine.get(key)
        return hours if fine is None else _EXACT.add(hours, fine)

    def __iter__(self):
        return iter(self.nano)

    def __len__(self) -> int:
        return len(self._columns) if self._nano is None else len(self._nano)

    def project_ids(self) -> frozenset[str]:
        """The projects that have pairs (from the columns when the dict is not made)."""
        if self._nano is None:
            return frozenset(self._columns.project_ids)
        return frozenset(p for p, _ in self._nano)

    def pool_ids(self) -> frozenset[str]:
        """The pools that have pairs (from the columns when the dict is not made)."""
        if self._nano is None:
            return frozenset(self._columns.pool_ids)
        return frozenset(q for _, q in self._nano)

    def nano_range(self) -> tuple[int, int]:
        """The smallest and the largest pair's nanohours ((0, 0) without pairs)."""
        if self._nano is None:
            figures = self._columns.nano
            return (int(figures.min()), int(figures.max())) if len(figures) else (0, 0)
        return min(self._nano.values(), default=0), max(self._nano.values(), default=0)

    def columns(self) -> "PairColumns | None":
        """The whole-nanohour pairs as NumPy columns, in (project, pool) order (made once, for the
        settlement and the audit's project figures on big ledgers); None when a figure does not fit
        int64."""
        if not hasattr(self, "_columns"):
            self._columns = PairColumns.of(self.nano, self.ordered)
        return self._columns


@dataclass(frozen=True)
class PairColumns:
    """Pairs as columns: pair i is (`project_ids[project[i]]`, `pool_ids[pool[i]]`) with `nano[i]`
    nanohours, in (project, pool) order; the ids are listed in order of first appearance among the
    pairs (`of`) or sorted (`of_lines`)."""

    nano: np.ndarray
    project: np.ndarray
    project_ids: list
    pool: np.ndarray
    pool_ids: list

    def __len__(self) -> int:
        return len(self.nano)

    def key(self, i: int) -> tuple[str, str]:
        """Pair i as (project, pool)."""
        return self.project_ids[int(self.project[i])], self.pool_ids[int(self.pool[i])]

    def as_dict(self) -> dict[tuple[str, str], int]:
        projects, pools = self.project_ids, self.pool_ids
        return {(projects[j], pools[q]): n
                for j, q, n in zip(self.project.tolist(), self.pool.tolist(), self.nano.tolist())}

    @classmethod
    def of(cls, nano: Mapping[tuple[str, str], int], ordered: bool) -> "PairColumns | None":
        import numpy as np

        keys = list(nano) if ordered else sorted(nano)
        try:
            figures = np.fromiter(nano.values() if ordered else (nano[k] for k in keys), dtype=np.int64,
                                  count=len(keys))
        except OverflowError:
            return None
        project, project_ids = _codes([k[0] for k in keys])
        pool, pool_ids = _codes([k[1] for k in keys])
        return cls(figures, project, project_ids, pool, pool_ids)

    @classmethod
    def of_lines(cls, project: np.ndarray, project_ids: list, pool: np.ndarray, pool_ids: list,
                 nano: np.ndarray) -> "PairColumns | None":
        """The pairs of usage lines given as columns: line i is project `project_ids[project[i]]` on
        pool `pool_ids[pool[i]]` for `nano[i]` nanohours (int64, none negative). Summed per pair in
        int64, the pairs in (project, pool) order of the ids (Python's string order). None when the
        sums might not fit int64."""
        import numpy as np

        if len(nano) and (int(nano.min()) < 0 or float(nano.sum(dtype=float)) >= 2.0 ** 62):
            return None
        by_project = sorted(range(len(project_ids)), key=project_ids.__getitem__)
        by_pool = sorted(range(len(pool_ids)), key=pool_ids.__getitem__)
        project_rank = np.empty(len(project_ids), dtype=np.int64)
        project_rank[by_project] = np.arange(len(project_ids), dtype=np.int64)
        pool_rank = np.empty(len(pool_ids), dtype=np.int64)
        pool_rank[by_pool] = np.arange(len(pool_ids), dtype=np.int64)
        width = max(len(pool_ids), 1)
        key = project_rank[project] * width + pool_rank[pool]
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
        sums = np.add.reduceat(nano[order], first) if len(key) else np.zeros(0, dtype=np.int64)
        pairs = key[first]
        return cls(sums.astype(np.int64, copy=False), pairs // width, [project_ids[i] for i in by_project],
                   pairs % width, [pool_ids[i] for i in by_pool])


def _codes(names: list[str]):
    """Each name's index among the distinct names (in order of first appearance), and those names."""
    import numpy as np

    index = dict.fromkeys(names)
    for i, name in enumerate(index):
        index[name] = i
    return np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names)), list(index)


class ChargedLine(NamedTuple):
    """What the charging needs of one recorded usage line."""

    project: str
    pool: str
    period: str
    device_hours: Decimal
    end: int


@dataclass(frozen=True)
class MemberUsage:
    """Per member: undecayed units (`raw`) and decayed units (`decayed`) of the lines counted."""

    raw: Mapping[str, Decimal]
    decayed: Mapping[str, Decimal]
    lines: int


RateOf = Callable[[str, str], Decimal]  # (pool, period) -> units per device-hour


def member_usage(lines: Iterable[ChargedLine], *, stakes: Mapping[str, Mapping[str, Decimal]],
                 rate: RateOf, as_of: int, half_life_days: Decimal,
                 members: Iterable[str] = ()) -> MemberUsage:
    """Charge the lines that ended by `as_of` (epoch seconds: the start of the period being allocated)
    to members by their stakes (normalised per project), in units, undecayed and decayed.

    Members listed in `members` appear with 0 when they used nothing. With `half_life_days` 0 usage
    history is off: nothing is decayed into the result (every decayed figure is 0).
    """
    history = half_life_days > 0
    raw_by_project: dict[str, Decimal] = {}
    decayed_by_project: dict[str, Decimal] = {}
    rates: dict[tuple[str, str], Decimal] = {}
    # 2^(-age/h) = 2^(-hours part) x 2^(-seconds part): two small caches instead of one exp per
    # distinct end (the product is rounded once more, identically on every machine).
    by_hour: dict[int, Decimal] = {}
    by_second: dict[int, Decimal] = {}
    counted = 0
    with localcontext(_CONTEXT):
        for line in lines:
            if line.end > as_of:  # used after the period began: it counts for the next one
                continue
            key = (line.pool, line.period)
            r = rates.get(key)
            if r is None:
                r = rates[key] = rate(line.pool, line.period)
            units = line.device_hours * r
            raw_by_project[line.project] = raw_by_project.get(line.project, _ZERO) + units
            if history:
                hours, seconds = divmod(as_of - line.end, 3600)
                fh = by_hour.get(hours)
                if fh is None:
                    fh = by_hour[hours] = decay_factor(hours * 3600, half_life_days)
                fs = by_second.get(seconds)
                if fs is None:
                    fs = by_second[seconds] = decay_factor(seconds, half_life_days)
                f = fh * fs
                decayed_by_project[line.project] = decayed_by_project.get(line.project, _ZERO) + units * f
            counted += 1
        raw = {m: _ZERO for m in members}
        decayed = {m: _ZERO for m in members}
        # Deterministic order: projects, then members, sorted by id.
        for project in sorted(raw_by_project):
            for member, stake in sorted(_normalised(stakes.get(project, {})).items()):
                raw[member] = raw.get(member, _ZERO) + stake * raw_by_project[project]
                decayed[member] = decayed.get(member, _ZERO) + stake * decayed_by_project.get(project, _ZERO)
    return MemberUsage(dict(sorted(raw.items())), dict(sorted(decayed.items())), counted)


def _normalised(stakes: Mapping[str, Decimal]) -> dict[str, Decimal]:
    total = sum(stakes.values(), _ZERO)
    if total <= 0:  # a project without stakes charges nobody (0/0 guarded)
        return {}
    return {m: s / total for m, s in stakes.items()}


@dataclass(frozen=True)
class FairShareRow:
    """One member's line of `usage fairshare`, after Slurm's `sshare` columns."""

    member: str
    raw_shares: Decimal          # contribution K_m, in units per period
    norm_shares: Decimal         # S_m = alpha K_m / sum K + (1 - alpha) / |M|, before usage
    raw_usage: Decimal           # undecayed units charged to the member
    decayed_usage: Decimal       # U_m
    effective_usage: Decimal     # U_m / sum U (0 when nobody used anything)
    fairshare: Decimal           # 2 ** (-effective / S_m); 0 for a share of 0


def shares(contributions: Mapping[str, Decimal], alpha: Decimal) -> dict[str, Decimal]:
    """S_m, the alpha blend of DESIGN section 3 (1/|M| each when nobody contributes)."""
    n = len(contributions)
    if n == 0:
        return {}
    with localcontext(_CONTEXT):
        total = sum(contributions.values(), _ZERO)
        if total <= 0:
            return {m: Decimal(1) / n for m in contributions}
        return {m: alpha * k / total + (1 - alpha) / n for m, k in contributions.items()}


def fairshare_rows(contributions: Mapping[str, Decimal], alpha: Decimal, usage: MemberUsage) -> list[FairShareRow]:
    """The fair-share table, one row per member sorted by id."""
    s = shares(contributions, alpha)
    rows = []
    with localcontext(_CONTEXT) as c:
        total = sum(usage.decayed.values(), _ZERO)
        for member in sorted(contributions):
            u = usage.decayed.get(member, _ZERO)
            effective = u / total if total > 0 else _ZERO
            share = s[member]
            if share <= 0:
                factor = _ZERO  # a share of 0 stays 0
            elif effective == 0:
                factor = Decimal(1)
            else:
                factor = c.exp(-effective / share * _LN2)
            rows.append(FairShareRow(member, contributions[member], share, usage.raw.get(member, _ZERO),
                                     u, effective, factor))
    return rows
