"""Settlement of a period: who lent compute to whom, in exact normalised units, and what each pool
delivered against what it pledged.

Inputs are values only: the snapshot the period's run was solved from, the run's member figures
(share, contribution K_m, allocation Y_m), the device-hours granted per pool, and the device-hours used
per (project, pool). Nothing here reads a ledger.

Charging a (project, pool) pair. The period's usage lines are first summed, exactly, per (project j,
pool p): `device_hours` is the sum of every line of j on p whose period is the settled one. The pair
is worth `units = device_hours x rate(p) x speed(j, type(p))`, the effective rate of DESIGN section 3
without its region test (the device-hours were consumed wherever they ran). Where the project's speed
table gives the pool's type no positive speed, the pair is charged at the pool's rate (speed 1) and a
note says so: compute that was really consumed is never free. The units are split among j's sponsors
by their normalised stakes (a project outside the snapshot, `OutsideProject`, by the stakes and speeds
the ledger last recorded for it). A pool outside the snapshot (`OutsidePool`: retired before the run, or
added after it) is charged as a pool of the run is, from what the ledger last recorded of it: its owner,
its accelerator type at the rate the run gives that type (the ledger's rate of the type for the period
when the run has no such type), its region. The part of a sponsor that does not own p is *borrowed* by that sponsor
and *lent* by p's owner; the owner's own part is its own use. Balance = lent - borrowed.

Exact sums. Each pair's units (not each line's) are rounded once to QUANTUM (1e-6 units, half-even:
an exact half goes to the even quantum) and then split among the sponsors by the largest-remainder
method in whole quanta, computed with exact fractions: each sponsor first gets floor(quanta x stake)
quanta, and the quanta left over go one each to the largest fractional remainders, ties to the
smaller member id. To recompute a member's `used`, sum the device-hours of each (project, pool) pair,
multiply by rate and speed, round to 1e-6 half-even, split as above, and add the member's parts over
every pair. The parts of a pair therefore add up exactly to the pair's units, every lent quantum is
some other member's borrowed quantum, and the balances of all members sum to exactly zero, whatever
the stakes (1/3 included). All sums are Decimal sums of multiples of QUANTUM under a context wide
enough never to round. (Rounding per pair, not per line: two lines of 0.0000004 units of one pair
are charged 0.000001, not 0.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from math import lcm
from typing import Mapping, Sequence

from pooler.core.contrib import pool_capacity, pool_region
from pooler.core.model import Pool, Project, Snapshot, dec_str
from pooler.core.usage import NANO, PairHours, from_nano, nano_text

QUANTUM = Decimal("0.000001")  # units; every settled figure is a whole number of these
IDLE_FLAG = Decimal("0.3")  # a pool idle over this share of its capacity is flagged
_WIDE = Context(prec=80)  # no sum of quanta in a period comes near 80 digits: nothing ever rounds
ZERO = Decimal(0)


@dataclass(frozen=True)
class MemberFigures:
    """A member's figures from the period's recorded run."""

    share: Decimal
    contributed: Decimal
    allocated: Decimal


@dataclass(frozen=True)
class MemberBalance:
    member: str
    share: Decimal
    contributed: Decimal  # K_m, units (compute plus credits)
    entitled: Decimal  # share x the period's pooled compute units
    allocated: Decimal  # Y_m from the run
    used: Decimal  # units used by the member's stakes in projects, on any pool
    own_use: Decimal  # the part of `used` on its own pools
    lent: Decimal  # units of its pools used by the stakes of other members
    borrowed: Decimal  # units it used on other members' pools
    balance: Decimal  # lent - borrowed


@dataclass(frozen=True)
class PoolDelivery:
    """Pledged versus delivered: a pool's capacity, grants and use in the period."""

    pool: str
    member: str
    accelerator: str
    region: str | None
    rate: Decimal
    capacity: Decimal  # device-hours
    granted: Decimal  # device-hours
    used: Decimal  # device-hours
    idle_share: Decimal | None  # of capacity, on the settlement's idle basis; None for capacity 0
    flagged: bool

    @property
    def capacity_units(self) -> Decimal:
        return self.capacity * self.rate


@dataclass(frozen=True)
class Flow:
    lender: str
    borrower: str
    units: Decimal


@dataclass(frozen=True)
class OutsideProject:
    """A project that used compute in the period but is not in the run's snapshot (retired before the
    run, or added after it), as the ledger last recorded it: its usage is settled by these sponsors
    and stakes (the ones fair-share charges it to)."""

    record: Project
    retired: bool
    names: tuple[tuple[str, str], ...] = ()  # (member id, name) of its sponsors, as last recorded


@dataclass(frozen=True)
class OutsidePool:
    """A pool that was used in the period but is not in the run's snapshot (retired before the run,
    or added after it), as the ledger last recorded it: its usage is settled as a pool of the run's
    is, its owner lending. `rate` is the units per device-hour its type is worth in the period (the
    settlement keeps the run's rate where the run has the type); `region` its own or its owner's,
    as last recorded. The settlement returns it with `used`, its device-hours in the period."""

    record: Pool
    retired: bool
    rate: Decimal
    region: str | None
    used: Decimal = ZERO
    owner_name: str = ""  # its owner's name, as last recorded

    @property
    def pool(self) -> str:
        return self.record.id

    @property
    def member(self) -> str:
        return self.record.member

    @property
    def accelerator(self) -> str:
        return self.record.accelerator


@dataclass(frozen=True)
class Settlement:
    period: str | None
    members: tuple[MemberBalance, ...]
    pools: tuple[PoolDelivery, ...]
    flows: tuple[Flow, ...]  # lender -> borrower units, sorted by (lender, borrower)
    pooled_units: Decimal  # rate x capacity over every pool
    used_units: Decimal  # units charged to sponsors
    idle_basis: str  # "used" when the period has usage, else "granted"
    notes: tuple[str, ...]
    quantum: Decimal = QUANTUM
    outside: tuple[OutsideProject, ...] = ()  # projects settled that are not in the snapshot, by id
    outside_pools: tuple[OutsidePool, ...] = ()  # pools charged that are not in the snapshot, by id
    settled_projects: frozenset[str] = frozenset()  # projects whose usage was charged to sponsors

    def member(self, member_id: str) -> MemberBalance:
        for m in self.members:
            if m.member == member_id:
                return m
        raise KeyError(member_id)


def split_by_stakes(units: Decimal, stakes: Mapping[str, Decimal],
                    quantum: Decimal = QUANTUM) -> dict[str, Decimal]:
    """`units` split by `stakes` (any positive weights) into whole quanta that add up exactly to
    `units` rounded to the quantum; largest remainder, ties to the smaller id."""
    return _split(units, _weights(stakes), quantum)


def _weights(stakes: Mapping[str, Decimal]) -> tuple[tuple[tuple[str, int], ...], int]:
    """The positive stakes as exact integers over one common denominator, in id order, and their sum
    (computed once per project): the split below is then integer arithmetic."""
    ratios = sorted((m, s.as_integer_ratio()) for m, s in stakes.items() if s > 0)  # lowest terms
    denominator = lcm(*(d for _, (_, d) in ratios)) if ratios else 1
    weights = tuple((m, n * (denominator // d)) for m, (n, d) in ratios)
    return weights, sum(w for _, w in weights)


def _quanta(units: Decimal, quantum: Decimal = QUANTUM) -> int:
    """`units` in whole quanta, rounded half-even (in the wide context: exact up to the rounding)."""
    with localcontext(_WIDE):
        return int((units / quantum).to_integral_value(ROUND_HALF_EVEN))


def _split_quanta(total: int, weighted: tuple[tuple[tuple[str, int], ...], int]) -> list[tuple[str, int]]:
    """`total` quanta split by integer weights, in id order: largest remainder, ties to the smaller id."""
    weights, weight_sum = weighted
    if not weights or weight_sum == 0:  # 0/0: nobody to charge
        return []
    if len(weights) == 1:  # one sponsor takes the whole line (most projects)
        return [(weights[0][0], total)]
    # exact share total * w / W = part + remainder / W (floor division: with negative units, a
    # correction, the remainder is still non-negative and the handing out below holds)
    shares = [divmod(total * w, weight_sum) for _, w in weights]
    parts = [part for part, _ in shares]
    left = total - sum(parts)
    if left:
        for i in sorted(range(len(weights)), key=lambda i: (-shares[i][1], weights[i][0]))[:left]:
            parts[i] += 1
    return [(m, part) for (m, _), part in zip(weights, parts)]  # `weights` are in id order


def _split(units: Decimal, weighted: tuple[tuple[tuple[str, int], ...], int],
           quantum: Decimal = QUANTUM) -> dict[str, Decimal]:
    with localcontext(_WIDE):
        return {m: q * quantum for m, q in _split_quanta(_quanta(units, quantum), weighted)}


def settle(snapshot: Snapshot, period: str | None, members: Mapping[str, MemberFigures],
           granted: Mapping[str, Decimal], used: Mapping[tuple[str, str], Decimal],
           outside: Mapping[str, OutsideProject] | None = None,
           outside_pools: Mapping[str, OutsidePool] | None = None) -> Settlement:
    """Settle one period (see the module docstring for the rules). `outside`: the projects not in
    the snapshot as the ledger last recorded them; their usage is settled by those records (a
    project in neither is unknown: its usage is noted and charged to nobody). `outside_pools`: the
    same for pools (a pool in neither is unknown: its usage is noted and not settled)."""
    with localcontext(_WIDE):
        return _settle(snapshot, period, members, granted, used, outside or {}, outside_pools or {})


def _settle(snapshot, period, members, granted, used, outside, outside_pools) -> Settlement:
    rates = {a.id: a.rate for a in snapshot.accelerators}
    pools = snapshot.by_id("pool")
    projects = snapshot.by_id("project")
    member_ids = sorted({m.id for m in snapshot.members} | set(members))
    notes: list[str] = []
    settled_outside: list[OutsideProject] = []
    if outside:
        with_usage = used_projects(used)
        settled_outside = [outside[p] for p in sorted(outside) if p not in projects and p in with_usage]
        for o in settled_outside:
            notes.append(_outside_note(o))
        projects = {**projects, **{o.record.id: o.record for o in settled_outside}}
    charged_pools: list[OutsidePool] = []
    if outside_pools:
        with_usage = used_pools(used)
        charged_pools = [outside_pools[p] for p in sorted(outside_pools) if p not in pools and p in with_usage]
        run_rates = dict(rates)
        for o in charged_pools:  # the run's rate of the type where it has one: one type, one rate
            rates.setdefault(o.accelerator, o.rate)
        charged_pools = [o if rates[o.accelerator] == o.rate else replace(o, rate=rates[o.accelerator])
                         for o in charged_pools]
        for o in charged_pools:
            notes.append(_outside_pool_note(o, o.accelerator in run_rates))
        pools = {**pools, **{o.pool: o.record for o in charged_pools}}
    pool_used, moved, settled = _charge_pairs(used, pools, projects, rates, notes)

    # Everything else is a sum over the units moved from pool owners to sponsors: the part a
    # sponsor takes on its own pool is own use, any other part is lent by the owner and borrowed
    # by the sponsor. Members listed: every member, every sponsor charged, every owner who lent.
    used_q = dict.fromkeys(member_ids, 0)
    own_q: dict[str, int] = {}
    lent_q: dict[str, int] = {}
    borrowed_q: dict[str, int] = {}
    flows_q: dict[tuple[str, str], int] = {}
    for (owner, sponsor), quanta in moved.items():
        used_q[sponsor] = used_q.get(sponsor, 0) + quanta
        if sponsor == owner:
            own_q[sponsor] = own_q.get(sponsor, 0) + quanta
        else:
            lent_q[owner] = lent_q.get(owner, 0) + quanta
            borrowed_q[sponsor] = borrowed_q.get(sponsor, 0) + quanta
            flows_q[(owner, sponsor)] = quanta
    used_units = {m: q * QUANTUM for m, q in used_q.items()}
    own_use = {m: q * QUANTUM for m, q in own_q.items()}
    lent = {m: q * QUANTUM for m, q in lent_q.items()}
    borrowed = {m: q * QUANTUM for m, q in borrowed_q.items()}
    flows = {key: q * QUANTUM for key, q in flows_q.items()}

    pooled = sum((rates.get(p.accelerator, ZERO) * pool_capacity(snapshot, p) for p in snapshot.pools), ZERO)
    balances = []
    for m in sorted(set(used_units) | set(lent)):
        fig = members.get(m, MemberFigures(ZERO, ZERO, ZERO))
        balances.append(MemberBalance(
            member=m, share=fig.share, contributed=fig.contributed, entitled=fig.share * pooled,
            allocated=fig.allocated, used=used_units.get(m, ZERO), own_use=own_use.get(m, ZERO),
            lent=lent.get(m, ZERO), borrowed=borrowed.get(m, ZERO),
            balance=lent.get(m, ZERO) - borrowed.get(m, ZERO),
        ))

    basis = "used" if used else "granted"
    deliveries = []
    for pool in snapshot.pools:
        capacity = pool_capacity(snapshot, pool)
        got = dec0(granted.get(pool.id))
        use = pool_used.get(pool.id, ZERO)
        delivered = use if basis == "used" else got
        # Capacity 0: nothing was pledged, so nothing can be idle (and 0/0 has no share).
        idle = None if capacity <= 0 else max(ZERO, (capacity - delivered) / capacity)
        deliveries.append(PoolDelivery(
            pool=pool.id, member=pool.member, accelerator=pool.accelerator,
            region=pool_region(snapshot, pool), rate=rates.get(pool.accelerator, ZERO),
            capacity=capacity, granted=got, used=use, idle_share=idle,
            flagged=idle is not None and idle > IDLE_FLAG,
        ))

    return Settlement(
        period=period, members=tuple(balances), pools=tuple(deliveries),
        flows=tuple(Flow(a, b, u) for (a, b), u in sorted(flows.items())),
        pooled_units=pooled, used_units=sum(used_units.values(), ZERO), idle_basis=basis,
        notes=tuple(notes), outside=tuple(settled_outside),
        outside_pools=tuple(replace(o, used=pool_used.get(o.pool, ZERO)) for o in charged_pools),
        settled_projects=settled,
    )


def used_projects(used: Mapping[tuple[str, str], Decimal]) -> frozenset[str]:
    """The projects with usage in `used` (from the columns, without making the dict, when it has them)."""
    if isinstance(used, PairHours):
        return used.project_ids()
    return frozenset(p for p, _ in used)


def used_pools(used: Mapping[tuple[str, str], Decimal]) -> frozenset[str]:
    """The pools with usage in `used` (from the columns, without making the dict, when it has them)."""
    if isinstance(used, PairHours):
        return used.pool_ids()
    return frozenset(q for _, q in used)


def _outside_note(o: OutsideProject) -> str:
    stakes = ", ".join(f"{m} {_percent(s)}%" for m, s in sorted(o.record.stakes().items()))
    why = "retired" if o.retired else "added to the ledger after this run"
    if o.record.speed is None:  # speed 1 on every type
        return (f"{o.record.id} is not in this run ({why}): its usage is settled by its sponsors and stakes "
                f"as the ledger last recorded them ({stakes})")
    # the speeds too: the run's inputs do not hold the project, and the units charged depend on them
    speeds = ", ".join(f"{t} {dec_str(v)}" for t, v in sorted(o.record.speed))
    return (f"{o.record.id} is not in this run ({why}): its usage is settled by its sponsors, stakes and "
            f"speeds as the ledger last recorded them ({stakes}; speed {speeds})")


def _outside_pool_note(o: OutsidePool, run_rate: bool) -> str:
    why = "retired" if o.retired else "added to the ledger after this run"
    rate = "the run's rate" if run_rate else "the ledger's rate for the period"
    return (f"pool {o.pool} is not in this run ({why}): its usage is settled as a pool of {o.member} "
            f"({o.accelerator} at {rate}, {dec_str(o.rate)} per device-hour; region {o.region or 'none'}) "
            f"as the ledger last recorded it")


def _percent(stake: Decimal) -> str:
    """A stake as a percentage to 0.01, without trailing zeros (50, 33.33, 100)."""
    return f"{(stake * 100).quantize(Decimal('0.01')).normalize():f}"


def _charge_pairs(used: Mapping[tuple[str, str], Decimal], pools: Mapping[str, Pool],
                  projects: Mapping[str, Project], rates: Mapping[str, Decimal],
                  notes: list[str]) -> tuple[dict[str, Decimal], dict[tuple[str, str], int], frozenset[str]]:
    """Charge every (project, pool) pair's device-hours, in (project, pool) order: the device-hours
    used per pool, the whole quanta moved per (pool owner, sponsor), summed as integers (exact,
    and cheap over hundreds of thousands of pairs), and the projects charged (those with a pair of
    a known project on a known pool). Pairs that cannot be charged are noted.

    With `PairHours` the device-hours are whole nanohours and the pair's quanta are computed in
    integers (the exact product, rounded half-even, as the wide Decimal context computes it);
    a pair with a finer figure, or a product too long for that context to hold exactly, is charged
    with Decimals as any other mapping's pairs are."""
    exact = isinstance(used, PairHours)
    if exact and not used.fine and len(used) >= _ARRAYS_FROM:
        charged = _charge_arrays(used, pools, projects, rates, notes)
        if charged is not None:
            return charged
    if exact:
        pairs = used.nano.items() if used.ordered else sorted(used.nano.items())
        fine = used.fine
    else:
        pairs = sorted(used.items())
        fine = {}
    pool_nano: dict[str, int] = {}
    pool_used: dict[str, Decimal] = {}
    moved: dict[tuple[str, str], int] = {}
    settled: set[str] = set()
    scale = -QUANTUM.as_tuple().exponent  # units x 10**scale = quanta
    per_unit = NANO // 10 ** scale  # nanohours x (units per device-hour) per quantum
    one = Decimal(1)
    current = project = speeds = weighted = sponsor = None  # the project of the pairs at hand
    factors: dict[str, tuple[Decimal, bool, int, int]] = {}  # its accelerator -> speed, noted, num, den
    for (project_id, pool_id), hours in pairs:
        nano = None
        if exact:
            if fine and (project_id, pool_id) in fine:
                hours = used[(project_id, pool_id)]
            else:
                nano, hours = hours, None
        pool = pools.get(pool_id)
        if pool is None:
            notes.append(f"usage of {_text(used, project_id, pool_id, hours, nano)} device-hours by {project_id} on "
                         f"unknown pool {pool_id} is not settled")
            continue
        if nano is not None:
            pool_nano[pool_id] = pool_nano.get(pool_id, 0) + nano
        else:
            pool_used[pool_id] = pool_used.get(pool_id, ZERO) + hours
        if project_id != current:  # the pairs come project by project: its figures, once
            current, project, factors = project_id, projects.get(project_id), {}
            if project is not None:
                speeds = None if project.speed is None else dict(project.speed)
                weighted = _weights(dict(project.sponsors))
                sponsor = weighted[0][0][0] if len(weighted[0]) == 1 and weighted[1] else None
        if project is None:
            notes.append(f"usage of {_text(used, project_id, pool_id, hours, nano)} device-hours on {pool_id} by "
                         f"unknown project {project_id} is not charged to anyone")
            continue
        settled.add(project_id)
        accelerator = pool.accelerator
        factor = factors.get(accelerator)
        if factor is None:
            speed = one if speeds is None else speeds.get(accelerator, ZERO)  # as `Project.speed_on`
            noted = speed <= 0
            speed = one if noted else speed
            num, den = (rates.get(accelerator, ZERO) * speed).as_integer_ratio()
            factor = factors[accelerator] = (speed, noted, num, den * per_unit)
        speed, noted, num, den = factor
        if noted:
            notes.append(f"{project_id} has no speed for {accelerator}; its "
                         f"{_text(used, project_id, pool_id, hours, nano)} device-hours on {pool_id} are charged "
                         f"at the pool's rate")
        if nano is not None and -_EXACT_UP_TO < nano * num < _EXACT_UP_TO:
            # nano x num / den quanta, rounded half-even (floor division keeps the remainder >= 0)
            total, rest = divmod(nano * num, den)
            if 2 * rest > den or (2 * rest == den and total & 1):
                total += 1
        else:
            if hours is None:
                hours = used[(project_id, pool_id)]
            # The pair's units, exact in the wide context, rounded once to whole quanta (half-even).
            total = int((hours * rates.get(accelerator, ZERO) * speed).scaleb(scale)
                        .to_integral_value(ROUND_HALF_EVEN))
        owner = pool.member
        if sponsor is not None:  # one sponsor takes it all (most projects)
            key = (owner, sponsor)
            moved[key] = moved.get(key, 0) + total
            continue
        for member, part in _split_quanta(total, weighted):
            key = (owner, member)
            moved[key] = moved.get(key, 0) + part
    for pool_id, nano in pool_nano.items():
        hours = from_nano(nano)
        pool_used[pool_id] = hours + pool_used[pool_id] if pool_id in pool_used else hours
    return pool_used, moved, frozenset(settled)


# Integer products below this many units are well inside what the wide context holds exactly
# (80 digits), so the integer and the Decimal ways agree digit for digit.
_EXACT_UP_TO = 10 ** 60
_ARRAYS_FROM = 20_000  # pairs from which `_charge_arrays` pays for NumPy's import
_INT64_SAFE = 2 ** 62  # every product and sum of `_charge_arrays` stays below this, or it declines


def _charge_arrays(used: PairHours, pools: Mapping[str, Pool], projects: Mapping[str, Project],
                   rates: Mapping[str, Decimal], notes: list[str]
                   ) -> tuple[dict[str, Decimal], dict[tuple[str, str], int], frozenset[str]] | None:
    """`_charge_pairs` on whole-nanohour pairs, with the per-pair arithmetic in NumPy int64: the same
    integers (quanta rounded half-even, the largest-remainder split, ties to the smaller id), the same
    notes in the same order. The per-project and per-type figures are still made once each, exactly,
    in Python. None when a product or a sum could leave int64 (the caller then loops in Python)."""
    import numpy as np

    columns = used.columns()
    if columns is None:
        return None
    nano = columns.nano
    pool_of, pool_ids = columns.pool, columns.pool_ids
    project_of, project_ids = columns.project, columns.project_ids

    # pools: known, owner, accelerator; projects: known, single sponsor or weights
    members: dict[str, int] = {}
    types: dict[str, int] = {}
    pool_known = np.zeros(len(pool_ids), dtype=bool)
    pool_owner = np.zeros(len(pool_ids), dtype=np.int64)
    pool_type = np.zeros(len(pool_ids), dtype=np.int64)
    for i, pid in enumerate(pool_ids):
        pool = pools.get(pid)
        if pool is not None:
            pool_known[i] = True
            pool_owner[i] = members.setdefault(pool.member, len(members))
            pool_type[i] = types.setdefault(pool.accelerator, len(types))
    type_ids = list(types)
    records = [projects.get(pid) for pid in project_ids]
    project_known = np.array([r is not None for r in records], dtype=bool)
    project_single = np.full(len(project_ids), -1, dtype=np.int64)  # the one sponsor (-1: none or several)
    # the weights of the projects with several sponsors (or a stake that is not positive), made once
    # per distinct sponsors and stakes; a project whose one sponsor has a positive stake needs none
    of_sponsors: dict = {}
    weighted: list = []
    for i, r in enumerate(records):
        if r is None:
            weighted.append(None)
            continue
        sponsors = r.sponsors
        if len(sponsors) == 1 and sponsors[0][1] > 0:
            weighted.append(None)
            project_single[i] = members.setdefault(sponsors[0][0], len(members))
            continue
        w = of_sponsors.get(sponsors)
        if w is None:
            w = of_sponsors[sponsors] = _weights(dict(sponsors))
        weighted.append(w)
        if len(w[0]) == 1 and w[1]:
            project_single[i] = members.setdefault(w[0][0][0], len(members))

    pool_ok = pool_known[pool_of]
    charge = pool_ok & project_known[project_of]
    # the factor of each (project, type) met: rate x speed as num / den quanta per nanohour
    combo = project_of * max(len(type_ids), 1) + pool_type[pool_of]
    uniq, inverse = np.unique(np.where(charge, combo, -1), return_inverse=True)
    inverse = inverse.reshape(-1)
    num = np.zeros(len(uniq), dtype=np.int64)
    den = np.ones(len(uniq), dtype=np.int64)
    noted = np.zeros(len(uniq), dtype=bool)
    scale = -QUANTUM.as_tuple().exponent
    per_unit = NANO // 10 ** scale
    one = Decimal(1)
    nt = max(len(type_ids), 1)
    of_figures: dict[tuple[str, Decimal], tuple[bool, int, int]] = {}  # (type, speed) -> noted, num, den

    def figures_of(accelerator: str, speed: Decimal) -> tuple[bool, int, int] | None:
        figures = of_figures.get((accelerator, speed))
        if figures is None:
            a, b = (rates.get(accelerator, ZERO) * (one if speed <= 0 else speed)).as_integer_ratio()
            b *= per_unit
            if not (-_INT64_SAFE < a < _INT64_SAFE and 0 < b < _INT64_SAFE // 4):
                return None
            figures = of_figures[(accelerator, speed)] = (speed <= 0, a, b)
        return figures

    # projects without a speed table: the type's rate alone, for all their pairs at once
    plain_figures = [figures_of(t, one) for t in type_ids]
    if any(f is None for f in plain_figures):
        return None
    combo_project = np.where(uniq >= 0, uniq // nt, 0)
    combo_type = np.where(uniq >= 0, uniq % nt, 0)
    tabled = np.array([r is not None and r.speed is not None for r in records], dtype=bool)
    plain = (uniq >= 0) & ~tabled[combo_project] if len(records) else np.zeros(len(uniq), dtype=bool)
    if plain_figures:
        num[plain] = np.array([f[1] for f in plain_figures], dtype=np.int64)[combo_type[plain]]
        den[plain] = np.array([f[2] for f in plain_figures], dtype=np.int64)[combo_type[plain]]
    # projects with a speed table: the speed it gives the type (as `Project.speed_on`), per distinct
    # (type, speed) met
    tab = np.flatnonzero((uniq >= 0) & ~plain)
    if tab.size:
        code, speeds = combo_speeds(records, types, uniq[tab])
        figure = combo_type[tab] * len(speeds) + code
        distinct, figure_of = np.unique(figure, return_inverse=True)
        found_figures = [figures_of(type_ids[f // len(speeds)], speeds[f % len(speeds)]) for f in distinct.tolist()]
        if any(f is None for f in found_figures):
            return None
        figure_of = figure_of.reshape(-1)
        noted[tab] = np.array([f[0] for f in found_figures], dtype=bool)[figure_of]
        num[tab] = np.array([f[1] for f in found_figures], dtype=np.int64)[figure_of]
        den[tab] = np.array([f[2] for f in found_figures], dtype=np.int64)[figure_of]
    big = float(np.abs(nano).max(initial=0))
    if (big * float(np.abs(num).max(initial=0)) >= _INT64_SAFE / 2
            or float(np.abs(nano).sum(dtype=float)) >= _INT64_SAFE / 2):
        return None
    # quanta per pair: nano x num / den, rounded half-even (floor division keeps the remainder >= 0)
    prod = nano * num[inverse]
    d = den[inverse]
    total = prod // d
    rest = prod - total * d
    total += (2 * rest > d) | ((2 * rest == d) & (total % 2 == 1))
    total = np.where(charge, total, 0)

    # notes, in pair order: unknown pool, unknown project, no speed for the pool's type
    found: list[str] = []  # handed to `notes` only when the charging is done here
    flagged = np.flatnonzero(~pool_ok | (pool_ok & ~charge) | (charge & noted[inverse]))
    kinds = (pool_ok[flagged].astype(np.int8) + charge[flagged]).tolist()  # 0, 1 or 2: as below
    for project_id, pool_id, kind, text, t in zip(
            map(project_ids.__getitem__, project_of[flagged].tolist()),
            map(pool_ids.__getitem__, pool_of[flagged].tolist()), kinds,
            map(nano_text, nano[flagged].tolist()), pool_type[pool_of[flagged]].tolist()):
        if kind == 0:
            found.append(f"usage of {text} device-hours by {project_id} on unknown pool {pool_id} is not settled")
        elif kind == 1:
            found.append(f"usage of {text} device-hours on {pool_id} by unknown project {project_id} is not "
                         f"charged to anyone")
        else:
            found.append(f"{project_id} has no speed for {type_ids[t]}; its {text} device-hours "
                         f"on {pool_id} are charged at the pool's rate")

    # device-hours per known pool (unknown projects' pairs included, as `_charge_pairs` counts them)
    pool_nano = np.zeros(len(pool_ids), dtype=np.int64)
    np.add.at(pool_nano, pool_of[pool_ok], nano[pool_ok])
    seen = np.zeros(len(pool_ids), dtype=bool)
    seen[pool_of[pool_ok]] = True
    pool_used = {pool_ids[i]: from_nano(v) for i, v in zip(np.flatnonzero(seen).tolist(),
                                                           pool_nano[seen].tolist())}

    # quanta moved per (owner, sponsor): single-sponsor pairs at once, the others split by stakes
    owners = pool_owner[pool_of]
    single = charge & (project_single[project_of] >= 0)
    key_owner = [owners[single]]
    key_member = [project_single[project_of[single]]]
    key_quanta = [total[single]]
    several = np.flatnonzero(charge & (project_single[project_of] < 0))
    if several.size:
        split = _split_arrays(several, total, project_of, owners, weighted, members)
        if split is None:
            return None
        key_owner.append(split[0])
        key_member.append(split[1])
        key_quanta.append(split[2])
    o = np.concatenate(key_owner)
    m = np.concatenate(key_member)
    q = np.concatenate(key_quanta)
    if float(np.abs(q).sum(dtype=float)) >= _INT64_SAFE / 2:
        return None
    member_ids = list(members)
    pair_key = o * len(member_ids) + m
    ukeys, where = np.unique(pair_key, return_inverse=True)
    sums = np.zeros(len(ukeys), dtype=np.int64)
    np.add.at(sums, where.reshape(-1), q)
    moved = {(member_ids[k // len(member_ids)], member_ids[k % len(member_ids)]): int(v)
             for k, v in zip(ukeys.tolist(), sums.tolist())}
    notes.extend(found)
    settled = frozenset(map(project_ids.__getitem__, np.unique(project_of[charge]).tolist()))
    return pool_used, moved, settled


def combo_speeds(records: Sequence[Project | None], types: Mapping[str, int], combos,
                 canonical: bool = False):
    """The speed of each (project, type) combination `j * len(types) + t` (an int64 array, j indexing
    `records`, t `types`): as a number among the speeds returned, where 0 is `ZERO` and stands for
    every speed that is not positive or not in a table (no table, or no entry for the type). Equal
    speeds get one number. With `canonical`, None when a table writes a speed other than in its
    canonical form (2.50, 5E+3), whose form the caller could not keep."""
    import numpy as np

    nt = max(len(types), 1)
    speed_code: dict[Decimal, int] = {ZERO: 0}
    listed: dict[int, int] = {}  # j * nt + t -> speed number, for the speeds tables give
    for j in np.unique(combos[combos >= 0] // nt).tolist():
        record = records[j]
        if record is None or record.speed is None:
            continue
        for accelerator, speed in record.speed:
            t = types.get(accelerator)
            if t is None:
                continue
            if canonical and speed > 0 and str(speed) != dec_str(speed):
                return None
            listed[j * nt + t] = speed_code.setdefault(speed if speed > 0 else ZERO, len(speed_code))
    code = np.zeros(len(combos), dtype=np.int64)
    if listed:
        keys = np.fromiter(listed, dtype=np.int64, count=len(listed))
        codes = np.fromiter(listed.values(), dtype=np.int64, count=len(listed))
        order = np.argsort(keys)
        keys, codes = keys[order], codes[order]
        at = np.minimum(np.searchsorted(keys, combos), len(keys) - 1)
        code = np.where((combos >= 0) & (keys[at] == combos), codes[at], 0)
    return code, list(speed_code)


def _split_arrays(pairs, total, project_of, owners, weighted, members):
    """The largest-remainder split of `_split_quanta` for the pairs `pairs` (indices) of projects with
    several sponsors, all at once: (owner, member, quanta) per part, parts of 0 included."""
    import numpy as np

    projects = np.unique(project_of[pairs]).tolist()
    start = {}
    member_col: list[int] = []
    weight_col: list[int] = []
    rank_col: list[int] = []
    sums: dict[int, int] = {}
    for p in projects:
        weights, weight_sum = weighted[p]
        start[p] = (len(member_col), len(weights))
        sums[p] = weight_sum
        for r, (member, w) in enumerate(weights):
            member_col.append(members.setdefault(member, len(members)))
            weight_col.append(w)
            rank_col.append(r)
    if max(weight_col, default=0) >= _INT64_SAFE or max(sums.values(), default=0) >= _INT64_SAFE:
        return None
    member_arr = np.array(member_col, dtype=np.int64)
    weight_arr = np.array(weight_col, dtype=np.int64)
    rank_arr = np.array(rank_col, dtype=np.int64)
    proj = project_of[pairs]
    first = np.array([start[p][0] for p in projects], dtype=np.int64)
    count = np.array([start[p][1] for p in projects], dtype=np.int64)
    wsum = np.array([sums[p] for p in projects], dtype=np.int64)
    slot = np.searchsorted(np.array(projects, dtype=np.int64), proj)
    k = count[slot]
    keep = (k > 0) & (wsum[slot] > 0)  # 0/0: nobody to charge
    pairs, slot, k = pairs[keep], slot[keep], k[keep]
    if not pairs.size:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    tot = total[pairs]
    if float(np.abs(tot).max()) * float(weight_arr.max()) >= _INT64_SAFE:
        return None
    # one row per (pair, sponsor), pairs in order and sponsors in id order within each
    row_pair = np.repeat(np.arange(pairs.size), k)
    offset = np.arange(row_pair.size) - np.repeat(np.cumsum(k) - k, k)
    entry = np.repeat(first[slot], k) + offset
    w = weight_arr[entry]
    W = wsum[slot][row_pair]
    prod = tot[row_pair] * w
    part = prod // W
    rem = prod - part * W
    left = tot - np.add.reduceat(part, np.cumsum(k) - k)
    # hand out the quanta left over: largest remainder first, ties to the smaller id (sponsor order)
    order = np.lexsort((rank_arr[entry], -rem, row_pair))
    place = np.empty(row_pair.size, dtype=np.int64)
    place[order] = np.arange(row_pair.size) - np.repeat(np.cumsum(k) - k, k)
    part += place < left[row_pair]
    return owners[pairs][row_pair], member_arr[entry], part


def _text(used: Mapping[tuple[str, str], Decimal], project_id: str, pool_id: str, hours: Decimal | None,
          nano: int | None) -> str:
    """The pair's device-hours as the notes write them (the Decimal's own text)."""
    if hours is not None:
        return str(hours)
    return nano_text(nano) if nano is not None else str(used[(project_id, pool_id)])


def dec0(value) -> Decimal:
    return ZERO if value is None else Decimal(value)
