"""The settlement as it was written first (pooler.core.settle before it summed in integer quanta), kept
as a slow reference: `tests/test_settle.py` checks that the fast settlement gives the same figures,
notes and order on random inputs."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction
from math import lcm
from typing import Mapping

from pooler.core.contrib import pool_capacity, pool_region
from pooler.core.model import Snapshot

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
    fractions = sorted((m, Fraction(s)) for m, s in stakes.items() if s > 0)
    denominator = lcm(*(f.denominator for _, f in fractions)) if fractions else 1
    weights = tuple((m, int(f * denominator)) for m, f in fractions)
    return weights, sum(w for _, w in weights)


def _split(units: Decimal, weighted: tuple[tuple[tuple[str, int], ...], int],
           quantum: Decimal = QUANTUM) -> dict[str, Decimal]:
    weights, weight_sum = weighted
    with localcontext(_WIDE):
        total_quanta = int((units / quantum).to_integral_value(ROUND_HALF_EVEN))
        if not weights or weight_sum == 0:  # 0/0: nobody to charge
            return {}
        if len(weights) == 1:  # one sponsor takes the whole line (most projects)
            return {weights[0][0]: total_quanta * quantum}
        # exact share total_quanta * w / W = part + remainder / W (floor division: with negative
        # units, a correction, the remainder is still non-negative and the handing out below holds)
        parts, remainders = {}, {}
        for m, w in weights:
            parts[m], remainders[m] = divmod(total_quanta * w, weight_sum)
        left = total_quanta - sum(parts.values())
        order = sorted(remainders, key=lambda m: (-remainders[m], m))
        for m in order[:left]:
            parts[m] += 1
        return {m: q * quantum for m, q in sorted(parts.items())}


def settle(snapshot: Snapshot, period: str | None, members: Mapping[str, MemberFigures],
           granted: Mapping[str, Decimal], used: Mapping[tuple[str, str], Decimal]) -> Settlement:
    """Settle one period (see the module docstring for the rules)."""
    with localcontext(_WIDE):
        return _settle(snapshot, period, members, granted, used)


def _settle(snapshot, period, members, granted, used) -> Settlement:
    rates = {a.id: a.rate for a in snapshot.accelerators}
    pools = snapshot.by_id("pool")
    projects = snapshot.by_id("project")
    member_ids = sorted({m.id for m in snapshot.members} | set(members))
    notes: list[str] = []

    used_units = {m: ZERO for m in member_ids}
    own_use = dict(used_units)
    lent = dict(used_units)
    borrowed = dict(used_units)
    flows: dict[tuple[str, str], Decimal] = {}
    pool_used: dict[str, Decimal] = {}
    weights_of: dict[str, tuple] = {}  # project -> its stakes as exact fractions (see `_weights`)

    for (project_id, pool_id), device_hours in sorted(used.items()):
        pool = pools.get(pool_id)
        if pool is None:
            notes.append(f"usage of {device_hours} device-hours by {project_id} on unknown pool "
                         f"{pool_id} is not settled")
            continue
        pool_used[pool_id] = pool_used.get(pool_id, ZERO) + device_hours
        project = projects.get(project_id)
        if project is None:
            notes.append(f"usage of {device_hours} device-hours on {pool_id} by unknown project "
                         f"{project_id} is not charged to anyone")
            continue
        rate = rates.get(pool.accelerator, ZERO)
        speed = project.speed_on(pool.accelerator)
        if speed <= 0:
            notes.append(f"{project_id} has no speed for {pool.accelerator}; its "
                         f"{device_hours} device-hours on {pool_id} are charged at the pool's rate")
            speed = Decimal(1)
        weighted = weights_of.get(project_id)
        if weighted is None:
            weighted = weights_of[project_id] = _weights(dict(project.sponsors))
        parts = _split(device_hours * rate * speed, weighted)
        owner = pool.member
        for sponsor, part in parts.items():
            used_units.setdefault(sponsor, ZERO)
            for table in (own_use, lent, borrowed):
                table.setdefault(sponsor, ZERO)
            used_units[sponsor] += part
            if sponsor == owner:
                own_use[sponsor] += part
            else:
                lent.setdefault(owner, ZERO)
                lent[owner] += part
                borrowed[sponsor] += part
                flows[(owner, sponsor)] = flows.get((owner, sponsor), ZERO) + part

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
        notes=tuple(notes),
    )


def dec0(value) -> Decimal:
    return ZERO if value is None else Decimal(value)
