"""Settlement: exact splits by stakes, lending and borrowing, pledged versus delivered, and the
property that balances always sum to exactly zero."""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Context, localcontext

from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pooler.core.model import Accelerator, Consortium, Member, Pool, Project, Snapshot
from pooler.core.settle import QUANTUM, MemberFigures, settle, split_by_stakes
from tests.strategies import amounts, fractions, snapshots


def _snapshot(pools, projects, members=("A", "B", "C"), rates=None):
    """pools: [(id, member, accelerator, capacity)]; projects: [(id, {member: stake}, speed or None)]."""
    rates = rates or {"gpu": "1"}
    return Snapshot(
        consortium=Consortium(period_hours=D(100)),
        accelerators=tuple(Accelerator(id=a, rate=D(r)) for a, r in rates.items()),
        members=tuple(Member(id=m, name=m) for m in members),
        pools=tuple(Pool(id=p, member=m, accelerator=a, capacity=D(c)) for p, m, a, c in pools),
        projects=tuple(Project.from_record({"id": j, "sponsors": s, "demand": "1000",
                                            **({"speed": sp} if sp is not None else {})})
                       for j, s, sp in projects),
    )


FIG = {m: MemberFigures(D("0.25"), D(100), D(50)) for m in "ABC"}


# --- splitting a line by stakes ------------------------------------------------------------------

SPLITS = {
    "thirds add up exactly": (D(1), {"A": D(1), "B": D(1), "C": D(1)},
                              {"A": D("0.333334"), "B": D("0.333333"), "C": D("0.333333")}),
    "70/30": (D(10), {"pcl": D("0.7"), "huawei": D("0.3")}, {"huawei": D(3), "pcl": D(7)}),
    "tie goes to the smaller id": (D("0.000001"), {"b": D(1), "a": D(1)}, {"a": D("0.000001"), "b": D(0)}),
    "units rounded to the quantum, half even": (D("0.0000025"), {"a": D(1)}, {"a": D("0.000002")}),
    "stakes need not be normalised": (D(9), {"a": D(2), "b": D(1)}, {"a": D(6), "b": D(3)}),
    "a negative correction splits too": (D(-1), {"a": D(1), "b": D(1), "c": D(1)},
                                         {"a": D("-0.333333"), "b": D("-0.333333"), "c": D("-0.333334")}),
    "nobody to charge (0/0)": (D(5), {}, {}),
}


@pytest.mark.parametrize("name", list(SPLITS))
def test_split_by_stakes(name):
    units, stakes, want = SPLITS[name]
    got = split_by_stakes(units, stakes)
    assert got == want
    if want:
        assert sum(got.values()) == units.quantize(QUANTUM)


# --- settling a period ---------------------------------------------------------------------------


def test_borrowing_from_another_members_pool():
    snap = _snapshot([("pa", "A", "gpu", 100), ("pb", "B", "gpu", 100)], [("ja", {"A": 1}, None)])
    s = settle(snap, "2026-11", FIG, {"pa": D(100), "pb": D(40)}, {("ja", "pb"): D(40), ("ja", "pa"): D(60)})
    a, b = s.member("A"), s.member("B")
    assert (a.used, a.own_use, a.borrowed, a.lent, a.balance) == (100, 60, 40, 0, -40)
    assert (b.used, b.lent, b.borrowed, b.balance) == (0, 40, 0, 40)
    assert [(f.lender, f.borrower, f.units) for f in s.flows] == [("B", "A", 40)]
    assert s.used_units == 100


def test_units_are_device_hours_times_rate_times_speed_split_by_stakes():
    snap = _snapshot([("pa", "A", "npu", 100)], [("j", {"A": 1, "B": 1, "C": 1}, {"npu": "0.9"})],
                     rates={"npu": "1.1"})
    s = settle(snap, "2026-11", FIG, {}, {("j", "pa"): D(10)})  # 10 x 1.1 x 0.9 = 9.9 units
    assert s.member("A").own_use == D("3.3") and s.member("B").borrowed == D("3.3")
    assert s.member("A").lent == D("6.6")
    assert sum(m.balance for m in s.members) == 0


def test_thirds_are_settled_exactly():
    snap = _snapshot([("pa", "A", "gpu", 100)], [("j", {"B": 1, "C": 1, "A": 1}, None)])
    s = settle(snap, None, FIG, {}, {("j", "pa"): D(1)})
    assert s.member("B").borrowed + s.member("C").borrowed == s.member("A").lent == D("0.666666")  # the odd quantum to A (smallest id)
    assert sum(m.balance for m in s.members) == 0


@pytest.mark.parametrize("as_nanohours", [False, True])
def test_each_pairs_units_are_rounded_once_half_even(as_nanohours):
    snap = _snapshot([("pa", "A", "gpu", 100), ("pb", "B", "gpu", 100)], [("j", {"A": 1}, None)])
    # 0.5 quantum rounds to 0, 1.5 quanta to 2: half-even, per (project, pool) pair
    used = {("j", "pa"): D("0.0000005"), ("j", "pb"): D("0.0000015")}
    s = settle(snap, None, FIG, {}, _pair_hours(used, True) if as_nanohours else used)
    assert (s.member("A").own_use, s.member("A").borrowed) == (0, D("0.000002"))
    assert s.used_units == D("0.000002")


def test_no_speed_for_the_type_is_charged_at_the_pool_rate():
    snap = _snapshot([("pb", "B", "gpu", 100)], [("ja", {"A": 1}, {"other": "1"})],
                     rates={"gpu": "2", "other": "1"})
    s = settle(snap, None, FIG, {}, {("ja", "pb"): D(5)})
    assert s.member("A").borrowed == 10
    assert any("charged at the pool's rate" in n for n in s.notes)


def test_unknown_pool_and_project_are_noted_not_settled():
    snap = _snapshot([("pa", "A", "gpu", 100)], [("ja", {"A": 1}, None)])
    s = settle(snap, None, FIG, {}, {("ghost", "pa"): D(5), ("ja", "nowhere"): D(7)})
    assert all(m.used == 0 for m in s.members)
    assert s.pools[0].used == 5  # the pool was used, even if nobody can be charged
    assert len(s.notes) == 2


@pytest.mark.parametrize("as_nanohours", [False, True])
def test_projects_outside_the_snapshot_are_settled_by_their_last_recorded_sponsors(as_nanohours):
    """Review: usage by a project retired before the run (or added after it) was charged in
    fair-share but dropped from the settlement, with a note calling it unknown."""
    from pooler.core.settle import OutsideProject

    snap = _snapshot([("pa", "A", "gpu", 100)], [("ja", {"A": 1}, None)])
    old = Project.from_record({"id": "old", "sponsors": {"B": 1, "C": 3}, "demand": "1"})
    new = Project.from_record({"id": "new", "sponsors": {"C": 1}, "demand": "1", "speed": {"gpu": "0.5"}})
    idle = Project.from_record({"id": "idle", "sponsors": {"B": 1}, "demand": "1"})
    used = {("ghost", "pa"): D(5), ("new", "pa"): D(10), ("old", "pa"): D(8)}
    outside = {"old": OutsideProject(old, True), "new": OutsideProject(new, False),
               "idle": OutsideProject(idle, True)}
    s = settle(snap, None, FIG, {}, _pair_hours(used, True) if as_nanohours else used, outside)
    if as_nanohours:  # big ledgers' NumPy charging settles them alike
        with _arrays_from(0):
            assert settle(snap, None, FIG, {}, _pair_hours(used, True), outside) == s
    assert (s.member("B").borrowed, s.member("C").borrowed) == (2, 6 + 5)  # 8 by 1:3, and 10 x 0.5
    assert s.member("A").lent == 2 + 11 and sum(m.balance for m in s.members) == 0
    assert [o.record.id for o in s.outside] == ["new", "old"]  # "idle" used nothing
    assert s.notes[:2] == (
        # the speeds it was charged at, when it has a table (review: a report's reader saw 10
        # device-hours charged 5 units and could not tell why)
        "new is not in this run (added to the ledger after this run): its usage is settled by its "
        "sponsors, stakes and speeds as the ledger last recorded them (C 100%; speed gpu 0.5)",
        "old is not in this run (retired): its usage is settled by its sponsors and stakes as the "
        "ledger last recorded them (B 25%, C 75%)")
    # only a project the ledger never knew stays unsettled, named as unknown
    assert [n for n in s.notes if "unknown" in n] == [
        "usage of 5 device-hours on pa by unknown project ghost is not charged to anyone"]


@pytest.mark.parametrize("as_nanohours", [False, True])
def test_pools_outside_the_snapshot_are_settled_by_their_last_recorded_facts(as_nanohours):
    """Review: usage on a pool retired before the run (or added after it) was noted as "unknown
    pool ... is not settled", though the ledger knows the pool's owner, type and region."""
    from pooler.core.settle import OutsidePool

    snap = _snapshot([("pa", "A", "gpu", 100)], [("ja", {"A": 1, "B": 1}, None), ("jb", {"C": 1}, {"gpu": "0.5"})],
                     rates={"gpu": "2"})
    old = Pool(id="old", member="B", accelerator="gpu", capacity=D(50), region="north")
    new = Pool(id="new", member="C", accelerator="tpu", capacity=D(50))
    idle = Pool(id="idle", member="C", accelerator="gpu", capacity=D(50))
    # the caller's rate for "old" is not the run's: one type has one rate in a report, the run's
    outside = {"old": OutsidePool(old, True, D(3), "north"), "new": OutsidePool(new, False, D("1.5"), None),
               "idle": OutsidePool(idle, True, D(2), None)}
    used = {("ja", "old"): D(4), ("jb", "old"): D(10), ("ja", "new"): D(2), ("ja", "ghost"): D(5), ("ja", "pa"): D(1)}
    s = settle(snap, None, FIG, {}, _pair_hours(used, True) if as_nanohours else used, outside_pools=outside)
    if as_nanohours:  # big ledgers' NumPy charging settles them alike
        with _arrays_from(0):
            assert settle(snap, None, FIG, {}, _pair_hours(used, True), outside_pools=outside) == s
    # old: 4 x 2 split A/B and 10 x 2 x 0.5 to C, all lent by B; new: 2 x 1.5 split A/B, lent by C
    assert (s.member("A").borrowed, s.member("B").own_use, s.member("C").borrowed) == (D("4") + D("1.5"), 4, 10)
    assert (s.member("B").lent, s.member("C").lent) == (4 + 10, D("1.5") + D("1.5"))
    assert sum(m.balance for m in s.members) == 0
    assert [(o.pool, o.rate, o.used, o.retired) for o in s.outside_pools] == [
        ("new", D("1.5"), 2, False), ("old", D(2), 14, True)]  # "idle" was not used
    assert [p.pool for p in s.pools] == ["pa"]  # the run's pools only: nothing pledged outside it
    assert s.settled_projects == {"ja", "jb"}
    assert s.notes[:2] == (
        "pool new is not in this run (added to the ledger after this run): its usage is settled as a pool "
        "of C (tpu at the ledger's rate for the period, 1.5 per device-hour; region none) as the ledger "
        "last recorded it",
        "pool old is not in this run (retired): its usage is settled as a pool of B (gpu at the run's rate, "
        "2 per device-hour; region north) as the ledger last recorded it")
    # only a pool the ledger never knew stays unsettled, named as unknown
    assert [n for n in s.notes if "unknown" in n] == ["usage of 5 device-hours by ja on unknown pool ghost is not settled"]


def test_entitlement_is_share_of_pooled_units():
    snap = _snapshot([("pa", "A", "gpu", 100), ("pb", "B", "h", 10)], [], rates={"gpu": "1", "h": "2.5"})
    s = settle(snap, None, {"A": MemberFigures(D("0.4"), D(100), D(0))}, {}, {})
    assert s.pooled_units == 125
    assert s.member("A").entitled == 50


IDLE = {
    # name: (capacity, granted, used or None, want idle share, want flagged)
    "used 60 of 100: 40% idle, flagged": (100, 100, 60, D("0.4"), True),
    "used 70 of 100: exactly 30% is not over": (100, 100, 70, D("0.3"), False),
    "over-used: never negative": (100, 100, 120, D(0), False),
    "no usage in the period: from grants": (100, 50, None, D("0.5"), True),
    "capacity 0: no share, not flagged": (0, 0, None, None, False),
}


@pytest.mark.parametrize("name", list(IDLE))
def test_pledged_versus_delivered(name):
    capacity, granted, used, idle, flagged = IDLE[name]
    snap = _snapshot([("pa", "A", "gpu", capacity)], [("ja", {"A": 1}, None)])
    s = settle(snap, None, FIG, {"pa": D(granted)}, {} if used is None else {("ja", "pa"): D(used)})
    pool = s.pools[0]
    assert (pool.idle_share, pool.flagged) == (idle, flagged)
    assert s.idle_basis == ("granted" if used is None else "used")


# --- property: balances sum to zero exactly ------------------------------------------------------


@st.composite
def _settlement_inputs(draw):
    snap = draw(snapshots(usage=False))
    pairs = [(j.id, p.id) for j in snap.projects for p in snap.pools]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=12)) if pairs else []
    used = {pair: draw(amounts(max_digits=9)) for pair in chosen}
    return snap, used


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_settlement_inputs())
def test_balances_sum_to_zero_exactly(inputs):
    snap, used = inputs
    s = settle(snap, None, {}, {}, used)
    # Check in a context as wide as settlement's own: units of 1e23 at a 1e-6 quantum need 30 digits,
    # more than decimal's default 28, and the default context would round the check itself.
    with localcontext(Context(prec=100)):
        _check_sums(s)


def _check_sums(s):
    assert sum((m.balance for m in s.members), D(0)) == 0
    assert sum((m.lent for m in s.members), D(0)) == sum((m.borrowed for m in s.members), D(0))
    assert sum((f.units for f in s.flows), D(0)) == sum((m.lent for m in s.members), D(0))
    for m in s.members:
        assert m.used == m.own_use + m.borrowed
        for value in (m.used, m.lent, m.borrowed):
            assert value % QUANTUM == 0  # whole quanta: nothing left to round
    assert s.used_units == sum((m.used for m in s.members), D(0))


# --- the fast settlement against the first, slow one ---------------------------------------------


def _figures(s):
    """Every figure, note and order of a settlement, as plain tuples (Decimals compare by value)."""
    from dataclasses import astuple

    return (s.period, [astuple(m) for m in s.members], [astuple(p) for p in s.pools],
            [astuple(f) for f in s.flows], s.pooled_units, s.used_units, s.idle_basis, list(s.notes))


@st.composite
def _odd_settlement_inputs(draw):
    """As `_settlement_inputs`, plus corrections (negative device-hours), pairs naming an unknown
    project or pool, and member figures for some members."""
    snap, used = draw(_settlement_inputs())
    # Figures of 1e-7 device-hours make units that fall half-way between two quanta.
    fine = st.integers(-10**7, 10**7).map(lambda n: D(n).scaleb(-7))
    for pair in draw(st.lists(st.tuples(st.sampled_from(["ghost", *(j.id for j in snap.projects)]),
                                        st.sampled_from(["nowhere", *(p.id for p in snap.pools)])),
                              max_size=8)):
        used[pair] = draw(st.one_of(amounts(max_digits=9), fine)) * draw(st.sampled_from([1, -1]))
    figures = {m.id: MemberFigures(draw(fractions()), draw(amounts()), draw(amounts()))
               for m in snap.members if draw(st.booleans())}
    granted = {p.id: draw(amounts()) for p in snap.pools if draw(st.booleans())}
    return snap, figures, granted, used


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_settlement_inputs())
def test_the_settlement_equals_the_reference(inputs):
    from tests import reference_settle

    snap, figures, granted, used = inputs
    fast = settle(snap, "2026-11", figures, granted, used)
    slow = reference_settle.settle(snap, "2026-11", {m: reference_settle.MemberFigures(*vars(f).values())
                                                      for m, f in figures.items()}, granted, used)
    assert _figures(fast) == _figures(slow)


def _pair_hours(used, ordered):
    """`used` as `PairHours`: whole nanohours as integers, finer figures as exact Decimals."""
    from pooler.core.usage import PairHours

    nano, fine = {}, {}
    for key, hours in (sorted(used.items()) if ordered else used.items()):
        scaled = hours.scaleb(9)
        if scaled == scaled.to_integral_value():
            nano[key] = int(scaled)
        else:
            nano[key], fine[key] = 0, hours
    return PairHours(nano, fine, ordered=ordered)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_settlement_inputs(), st.booleans())
def test_whole_nanohours_settle_as_their_decimals(inputs, ordered):
    snap, figures, granted, used = inputs
    pairs = _pair_hours(used, ordered)
    as_decimals = dict(pairs)  # the same figures, in the text the database's sums have ("2.5", "-1")
    assert as_decimals == used
    assert _figures(settle(snap, "2026-11", figures, granted, pairs)) == \
        _figures(settle(snap, "2026-11", figures, granted, as_decimals))


@contextmanager
def _arrays_from(n):
    """Charge through `_charge_arrays` from `n` pairs on (the default waits for 20,000)."""
    from pooler.core import settle as module

    old = module._ARRAYS_FROM
    module._ARRAYS_FROM = n
    try:
        yield
    finally:
        module._ARRAYS_FROM = old


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_settlement_inputs(), st.booleans(), st.sampled_from([1, 10**6, 10**13]))
def test_the_array_charging_equals_the_loop(inputs, ordered, scale):
    """The NumPy charging (big ledgers) gives every figure, note and order the Python loop gives:
    single and shared sponsors, thirds, corrections, unknown pools and projects, missing speeds; and
    figures too big for int64 (scale 1e13) fall back to the loop with the same result."""
    snap, figures, granted, used = inputs
    with localcontext(Context(prec=100)):  # figures up to 1e22 device-hours, to the nanohour
        pairs = _pair_hours({k: v * scale for k, v in used.items() if (v * scale).scaleb(9) % 1 == 0}, ordered)
    assert not pairs.fine
    with _arrays_from(0):
        arrays = settle(snap, "2026-11", figures, granted, pairs)
    with _arrays_from(10**12):
        loop = settle(snap, "2026-11", figures, granted, pairs)
    assert _figures(arrays) == _figures(loop)
    assert arrays.settled_projects == loop.settled_projects  # (the summary counts them)


def test_the_array_charging_declines_what_int64_cannot_hold():
    from pooler.core.settle import _charge_arrays
    from pooler.core.usage import PairHours

    snap = _snapshot([("p1", "A", "gpu", 10)], [("j1", {"A": "1"}, None)], rates={"gpu": "1.5"})
    rates = {"gpu": D("1.5")}
    pools, projects = snap.by_id("pool"), snap.by_id("project")
    assert _charge_arrays(PairHours({("j1", "p1"): 5 * 10**9}), pools, projects, rates, []) is not None
    assert _charge_arrays(PairHours({("j1", "p1"): 10**19}), pools, projects, rates, []) is None  # not int64
    assert _charge_arrays(PairHours({("j1", "p1"): 10**18}), pools, projects, rates, []) is None  # x 3: no
