"""Domain values: the consortium's registry as immutable records.

Every quantity is a `Decimal`, exactly as written in the manifest or the ledger, so that nothing is
rounded on the way in and balances can be summed exactly. The allocation converts to floats inside
its own solver only.

Each record converts to and from a plain *record* (a dict of strings, numbers as canonical decimal
text, lists and dicts), the one form used by journal payloads, plans and exports.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any, ClassVar, Iterable, Mapping

PERIOD_KINDS = ("month", "week", "quarter")
DEFAULT_PERIOD_HOURS = {"month": Decimal(720), "week": Decimal(168), "quarter": Decimal(2160)}
ACCESS_KINDS = ("open", "consortium")
ENTITLEMENTS = ("contribution", "equal")


def dec(value: Any) -> Decimal:
    """Return `value` as a Decimal (ints, Decimals and decimal strings; floats via their repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def dec_str(value: Decimal) -> str:
    """Canonical decimal text: no exponent, no trailing zeros, no negative zero ("2.5", "100")."""
    if value.__class__ is not Decimal:
        value = dec(value)
    if value == 0:
        return "0"
    # Format the exact value, then strip zeros as text: Decimal.normalize() would round to the
    # context's 28 digits.
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def plain_number(value: Decimal) -> int | Decimal:
    """An int when the value is integral, else the Decimal itself (for TOML and JSON writers)."""
    value = dec(value)
    if value == value.to_integral_value():
        return int(value)
    return value


@dataclass(frozen=True)
class Record:
    """Base of the registry records: conversion to and from plain records."""

    record_kind: ClassVar[str] = ""
    id: str

    def to_record(self) -> dict[str, Any]:
        """A plain dict: Decimals as canonical text, tuples as lists, None values left out."""
        out: dict[str, Any] = {}
        for name, pairs in _to_plan(type(self)):
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = _plain(value, pairs=True) if pairs else value if value.__class__ is str else _plain(value)
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]):
        """Inverse of `to_record` (trusted input: the journal or a validated manifest)."""
        kwargs = {}
        for name, convert in _from_plan(cls):
            if name not in record:
                continue
            value = record[name]
            kwargs[name] = value if value is None or convert is None else convert(value)
        return cls(**kwargs)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """The names of a record class's fields, in order (`dataclasses.fields`, looked up once per class:
    replaying a journal of 10,000 projects asks tens of thousands of times)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _plain(value: Any, *, pairs: bool = False) -> Any:
    if isinstance(value, Decimal):
        return dec_str(value)
    # (text and exact Decimals inline: what the call would do with them)
    if pairs:  # (key, value) pairs become a table, the empty table included
        return {k: dec_str(v) if v.__class__ is Decimal else _plain(v) for k, v in value}
    if isinstance(value, tuple):
        return [v if v.__class__ is str else _plain(v) for v in value]
    return value


_DECIMAL_FIELDS = {
    "rate", "capacity", "devices", "hours", "reserve", "cost", "credit", "demand", "weight",
    "period_hours", "contribution_weight", "usage_half_life_days",
}
_PAIR_FIELDS = {"sponsors", "speed"}
_LIST_FIELDS = {"residency", "regions", "datasets", "models"}


def _typed(cls: type, name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _DECIMAL_FIELDS:
        return dec(value)
    if name in _PAIR_FIELDS:
        return tuple(sorted((str(k), dec(v)) for k, v in dict(value).items()))
    if name in _LIST_FIELDS:
        return tuple(str(v) for v in value)
    if name == "access":
        return value if isinstance(value, str) else tuple(sorted(str(v) for v in value))
    return value


# `to_record` and `from_record` decide per field name what `_plain` and `_typed` do with a value; the
# decision depends on the name alone, so it is made once per record class (replaying a journal of
# 10,000 projects converts hundreds of thousands of fields). Same functions, same results.


def _dec_in(value: Any) -> Decimal:
    return Decimal(value) if value.__class__ is str else dec(value)


def _pairs_in(value: Any) -> tuple:
    return tuple(sorted((str(k), dec(v)) for k, v in dict(value).items()))


def _list_in(value: Any) -> tuple:
    return tuple(map(str, value))


def _access_in(value: Any) -> Any:
    return value if isinstance(value, str) else tuple(sorted(str(v) for v in value))


def _in_converter(name: str) -> Any:
    """`_typed` for the field `name`, for a value that is not None (None: the value as it is)."""
    if name in _DECIMAL_FIELDS:
        return _dec_in
    if name in _PAIR_FIELDS:
        return _pairs_in
    if name in _LIST_FIELDS:
        return _list_in
    if name == "access":
        return _access_in
    return None


_FROM_PLANS: dict[type, tuple[tuple[str, Any], ...]] = {}
_TO_PLANS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _from_plan(cls: type) -> tuple[tuple[str, Any], ...]:
    plan = _FROM_PLANS.get(cls)
    if plan is None:
        plan = _FROM_PLANS[cls] = tuple((name, _in_converter(name)) for name in field_names(cls))
    return plan


def _to_plan(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, whether `_plain` takes its value as pairs)."""
    plan = _TO_PLANS.get(cls)
    if plan is None:
        plan = _TO_PLANS[cls] = tuple((name, name in _PAIR_FIELDS) for name in field_names(cls))
    return plan


@dataclass(frozen=True)
class Consortium(Record):
    """The consortium itself; its `id` is always "consortium"."""

    record_kind: ClassVar[str] = "consortium"
    id: str = "consortium"
    name: str = "Unnamed consortium"
    unit: str = "NCU"
    period: str = "month"
    period_hours: Decimal | None = None

    @property
    def hours(self) -> Decimal:
        """Hours in one period: `period_hours`, or the default for the period kind."""
        if self.period_hours is not None:
            return self.period_hours
        return DEFAULT_PERIOD_HOURS[self.period]


@dataclass(frozen=True)
class Policy(Record):
    """How shares are computed; its `id` is always "policy"."""

    record_kind: ClassVar[str] = "policy"
    id: str = "policy"
    entitlement: str = "contribution"
    contribution_weight: Decimal = Decimal("0.9")
    usage_half_life_days: Decimal = Decimal(30)

    @property
    def alpha(self) -> Decimal:
        """The weight of contribution in the share blend (0 when entitlement is "equal")."""
        return Decimal(0) if self.entitlement == "equal" else self.contribution_weight


@dataclass(frozen=True)
class Accelerator(Record):
    """A device type of the catalogue and its rate in normalised units per device-hour."""

    record_kind: ClassVar[str] = "accelerator"
    rate: Decimal = Decimal(1)
    name: str | None = None


@dataclass(frozen=True)
class Member(Record):
    record_kind: ClassVar[str] = "member"
    name: str = ""
    kind: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Pool(Record):
    """A member's compute contribution: one accelerator type in one region."""

    record_kind: ClassVar[str] = "pool"
    member: str = ""
    accelerator: str = ""
    capacity: Decimal | None = None
    devices: Decimal | None = None
    hours: Decimal | None = None
    region: str | None = None
    reserve: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    def device_hours(self, period_hours: Decimal) -> Decimal:
        """Capacity in device-hours per period: `capacity`, or `devices` x `hours`."""
        if self.capacity is not None:
            return self.capacity
        hours = self.hours if self.hours is not None else period_hours
        return (self.devices or Decimal(0)) * hours


@dataclass(frozen=True)
class Dataset(Record):
    """A member's dataset: who may use it, where it may be processed, what it is credited."""

    record_kind: ClassVar[str] = "dataset"
    member: str = ""
    access: str | tuple[str, ...] = "consortium"
    residency: tuple[str, ...] | None = None
    credit: Decimal = Decimal(0)

    def accessible_to(self, member: str) -> bool:
        if self.access in ACCESS_KINDS:
            return True
        return member == self.member or member in self.access


@dataclass(frozen=True)
class Model(Dataset):
    """A member's model; the same fields as a dataset."""

    record_kind: ClassVar[str] = "model"


@dataclass(frozen=True)
class Project(Record):
    """A pooled project: sponsors with stakes, demand per period, weight, where it can run."""

    record_kind: ClassVar[str] = "project"
    sponsors: tuple[tuple[str, Decimal], ...] = ()
    demand: Decimal = Decimal(0)
    weight: Decimal = Decimal(1)
    speed: tuple[tuple[str, Decimal], ...] | None = None
    regions: tuple[str, ...] | None = None
    datasets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def stakes(self) -> dict[str, Decimal]:
        """Sponsor stakes normalised to sum 1 (exact decimal division)."""
        total = sum((s for _, s in self.sponsors), Decimal(0))
        return {m: s / total for m, s in self.sponsors}

    def speed_on(self, accelerator: str) -> Decimal:
        """1 with no table; the table's entry, or 0 for a type missing from it."""
        if self.speed is None:
            return Decimal(1)
        return dict(self.speed).get(accelerator, Decimal(0))


RECORD_TYPES: dict[str, type[Record]] = {
    cls.record_kind: cls for cls in (Consortium, Policy, Accelerator, Member, Pool, Dataset, Model, Project)
}
# Manifest table name for each collection kind, in dependency order.
COLLECTIONS: dict[str, str] = {
    "accelerator": "accelerators",
    "member": "members",
    "pool": "pools",
    "dataset": "datasets",
    "model": "models",
    "project": "projects",
}


@dataclass(frozen=True)
class Snapshot:
    """A frozen view of the consortium: what a manifest says or what a ledger holds at one moment.

    Collections are tuples sorted by id. `usage` holds decayed usage per member in normalised units
    (from a manifest's `[usage]` table, or computed from a ledger's usage history).
    """

    consortium: Consortium = field(default_factory=Consortium)
    policy: Policy = field(default_factory=Policy)
    accelerators: tuple[Accelerator, ...] = ()
    members: tuple[Member, ...] = ()
    pools: tuple[Pool, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    models: tuple[Model, ...] = ()
    projects: tuple[Project, ...] = ()
    usage: tuple[tuple[str, Decimal], ...] = ()
    period: str | None = None

    def __post_init__(self) -> None:
        for name in COLLECTIONS.values():
            items = getattr(self, name)
            object.__setattr__(self, name, tuple(sorted(items, key=lambda r: r.id)))
        object.__setattr__(self, "usage", tuple(sorted((m, dec(u)) for m, u in dict(self.usage).items())))

    def collection(self, kind: str) -> tuple[Record, ...]:
        return getattr(self, COLLECTIONS[kind])

    def by_id(self, kind: str) -> dict[str, Record]:
        return {r.id: r for r in self.collection(kind)}

    def replace(self, **changes: Any) -> "Snapshot":
        return replace(self, **changes)

    def records(self) -> Iterable[Record]:
        """Every record, singletons first, then collections in dependency order."""
        yield self.consortium
        yield self.policy
        for name in COLLECTIONS.values():
            yield from getattr(self, name)
