"""Hypothesis strategies for valid consortium snapshots, shared by the test modules.

`snapshots()` draws a `Snapshot` that passes every manifest rule (DESIGN section 2): ids unique per
table and sometimes odd (quotes, spaces, SQL, CJK, emoji), references consistent, stakes and weights
> 0, fractions in [0, 1], every sponsor allowed to use its projects' datasets and models, and every
project left at least one region. Numbers are Decimals of varied scale and form (`5E+3`, `0.000125`).

Records are built with `from_record`, so they are normalised exactly as the ledger and the manifest
reader normalise them (sorted sponsors, speeds and access lists).

Import with `from tests.strategies import snapshots`.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal

from hypothesis import strategies as st

from pooler.core.model import (
    ENTITLEMENTS,
    PERIOD_KINDS,
    Accelerator,
    Consortium,
    Dataset,
    Member,
    Model,
    Policy,
    Pool,
    Project,
    Snapshot,
)

# Ids a manifest must keep verbatim: quoting, escaping, SQL, TOML syntax, numbers-as-text, scripts.
ODD_IDS = (
    "pcl",
    "ascend-910b",
    'Peng Cheng "Lab"',
    "o'neil",
    "x'; DROP TABLE members; --",
    "鹏城实验室",
    "ünïcödé",
    "rocket 🚀",
    "back\\slash",
    " leading space",
    "a.b",
    "=",
    "[[pools]]",
    "#not-a-comment",
    "1e3",
    "true",
    "NaN",
    "x" * 200,
)
REGIONS = (
    "beijing-tianjin-hebei",
    "yangtze-river-delta",
    "greater-bay",
    "guizhou",
    "粤港澳大湾区",
    'region "7"',
)

# Any character TOML and JSON can carry: no control characters (Cc) and no lone surrogates (Cs).
_CHARS = st.characters(blacklist_categories=("Cc", "Cs"))


def texts(max_size: int = 12) -> st.SearchStrategy[str]:
    """Non-blank free text without control characters."""
    return st.text(_CHARS, min_size=1, max_size=max_size).filter(lambda s: s.strip() != "")


# Ids and regions: no invisible format characters (Cf) either, and in Unicode's composed form (NFC).
_ID_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Cf"))


def identifiers(max_size: int = 12) -> st.SearchStrategy[str]:
    """Non-blank text an id or a region may be."""
    return st.text(_ID_CHARS, min_size=1, max_size=max_size).filter(
        lambda s: s.strip() != "" and unicodedata.normalize("NFC", s) == s)


def ids() -> st.SearchStrategy[str]:
    return _IDS


def regions() -> st.SearchStrategy[str]:
    return _REGIONS


@st.composite
def _amounts(draw, low: int, max_digits: int) -> Decimal:
    coefficient = draw(st.integers(low, 10**max_digits))
    exponent = draw(st.integers(-6, 5))
    return Decimal(coefficient).scaleb(exponent)


def amounts(*, positive: bool = False, max_digits: int = 9) -> st.SearchStrategy[Decimal]:
    """A non-negative Decimal below 1e15, in varied forms (exponents such as 5E+3, trailing zeros)."""
    key = (positive, max_digits)
    if key not in _AMOUNTS:
        _AMOUNTS[key] = _amounts(1 if positive else 0, max_digits)
    return _AMOUNTS[key]


@st.composite
def _fractions(draw) -> Decimal:
    places = draw(st.integers(0, 6))
    return Decimal(draw(st.integers(0, 10**places))).scaleb(-places)


def fractions() -> st.SearchStrategy[Decimal]:
    """A Decimal in [0, 1] with up to six places."""
    return _FRACTIONS


def _maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


# Strategies are built once: Hypothesis validates every new strategy object, which dominated run time
# when they were rebuilt on each draw.
_IDS = st.one_of(st.sampled_from(ODD_IDS), identifiers())
_REGIONS = st.one_of(st.sampled_from(REGIONS), identifiers(8))
_AMOUNTS: dict[tuple[bool, int], st.SearchStrategy[Decimal]] = {}
_FRACTIONS = _fractions()
_TEXT = texts()
_MAYBE_TEXT = _maybe(_TEXT)
_MAYBE_REGION = _maybe(_REGIONS)
_REGION_LIST = _maybe(st.lists(_REGIONS, min_size=1, max_size=3, unique=True))
_NAME = texts(40)
_UNIT = texts(6)
_PERIOD_KIND = st.sampled_from(PERIOD_KINDS)
_ENTITLEMENT = st.sampled_from(ENTITLEMENTS)
_PERIOD_HOURS = _maybe(amounts(positive=True, max_digits=4))
_HOURS = _maybe(amounts(max_digits=4))
_ACCESS_KIND = st.sampled_from(("open", "consortium"))


def _id_lists(min_size: int, max_size: int) -> st.SearchStrategy[list[str]]:
    key = (min_size, max_size)
    if key not in _ID_LISTS:
        _ID_LISTS[key] = st.lists(_IDS, min_size=min_size, max_size=max_size, unique=True)
    return _ID_LISTS[key]


_ID_LISTS: dict[tuple[int, int], st.SearchStrategy[list[str]]] = {}


def _subset(draw, items, *, min_size: int = 0, max_size: int | None = None) -> list:
    if not items:
        return []
    return draw(st.lists(st.sampled_from(sorted(items)), min_size=min_size, max_size=max_size, unique=True))


def _record(cls, **values):
    return cls.from_record({k: v for k, v in values.items() if v is not None})


@st.composite
def snapshots(draw, *, usage: bool = True) -> Snapshot:
    """A random valid snapshot (with a `[usage]` table sometimes, unless `usage=False`)."""
    consortium = _record(
        Consortium,
        name=draw(_NAME),
        unit=draw(_UNIT),
        period=draw(_PERIOD_KIND),
        period_hours=draw(_PERIOD_HOURS),
    )
    policy = _record(
        Policy,
        entitlement=draw(_ENTITLEMENT),
        contribution_weight=draw(fractions()),
        usage_half_life_days=draw(amounts(max_digits=3)),
    )

    accelerator_ids = draw(_id_lists(1, 4))
    accelerators = [
        _record(Accelerator, id=a, rate=draw(amounts(positive=True, max_digits=3)), name=draw(_MAYBE_TEXT))
        for a in accelerator_ids
    ]
    member_ids = draw(_id_lists(1, 5))
    members = [
        _record(Member, id=m, name=draw(_NAME), kind=draw(_MAYBE_TEXT), region=draw(_MAYBE_REGION))
        for m in member_ids
    ]

    pools = []
    for pool_id in draw(_id_lists(0, 6)):
        size = {}
        if draw(st.booleans()):
            size["capacity"] = draw(amounts())
        else:
            devices = draw(amounts(max_digits=5))
            hours = draw(_HOURS)
            # a device runs at most the period's hours (a rule of the manifest)
            size["hours"] = hours if hours is None else min(hours, consortium.hours)
            # and devices x hours is at most 1e15 device-hours, like any number (another rule)
            per_period = size["hours"] if size["hours"] is not None else consortium.hours
            if per_period > 0:
                devices = min(devices, (Decimal("1e15") / per_period).to_integral_value(rounding="ROUND_FLOOR"))
            size["devices"] = devices
        pools.append(_record(
            Pool,
            id=pool_id,
            member=draw(st.sampled_from(member_ids)),
            accelerator=draw(st.sampled_from(accelerator_ids)),
            region=draw(_MAYBE_REGION),
            reserve=draw(fractions()),
            cost=draw(amounts(max_digits=4)),
            **size,
        ))

    def assets(cls):
        out = []
        for asset_id in draw(_id_lists(0, 3)):
            access = draw(st.one_of(
                _ACCESS_KIND,
                st.lists(st.sampled_from(member_ids), unique=True),
            ))
            residency = draw(_REGION_LIST)
            out.append(_record(
                cls,
                id=asset_id,
                member=draw(st.sampled_from(member_ids)),
                access=access,
                residency=residency,
                credit=draw(amounts()),
            ))
        return out

    datasets = assets(Dataset)
    models = assets(Model)

    projects = []
    for project_id in draw(_id_lists(0, 5)):
        sponsors = {m: draw(amounts(positive=True, max_digits=3)) for m in _subset(draw, member_ids, min_size=1, max_size=3)}
        # Keep only data every sponsor may use and that leaves some region where the project can run.
        allowed: set[str] | None = None
        used: dict[str, list[str]] = {"datasets": [], "models": []}
        for table, pool_of_assets in (("datasets", datasets), ("models", models)):
            by_id = {a.id: a for a in pool_of_assets}
            for asset_id in _subset(draw, by_id, max_size=3):
                asset = by_id[asset_id]
                if not all(asset.accessible_to(m) for m in sponsors):
                    continue
                narrowed = allowed
                if asset.residency is not None:
                    narrowed = set(asset.residency) if allowed is None else allowed & set(asset.residency)
                    if not narrowed:
                        continue
                allowed = narrowed
                used[table].append(asset_id)
        project_regions = draw(_REGION_LIST)
        if project_regions is not None and allowed is not None and not allowed & set(project_regions):
            project_regions.append(sorted(allowed)[0])
        speed = None
        if accelerator_ids and draw(st.booleans()):
            # a table runs the project on its types above speed 0: at least one (else it runs nowhere)
            speed = {a: draw(amounts(max_digits=2)) for a in _subset(draw, accelerator_ids, max_size=3)}
            speed[draw(st.sampled_from(sorted(accelerator_ids)))] = draw(amounts(positive=True, max_digits=2))
        projects.append(_record(
            Project,
            id=project_id,
            sponsors=sponsors,
            demand=draw(amounts()),
            weight=draw(amounts(positive=True, max_digits=3)),
            speed=speed,
            regions=project_regions,
            datasets=used["datasets"],
            models=used["models"],
        ))

    usage_table = {}
    if usage and draw(st.booleans()):
        usage_table = {m: draw(amounts()) for m in _subset(draw, member_ids)}

    return Snapshot(
        consortium=consortium,
        policy=policy,
        accelerators=tuple(accelerators),
        members=tuple(members),
        pools=tuple(pools),
        datasets=tuple(datasets),
        models=tuple(models),
        projects=tuple(projects),
        usage=tuple(usage_table.items()),
    )
