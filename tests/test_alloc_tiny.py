"""Demands below the LPs' resolution (about 1e-9 of the largest pool class): what DESIGN section 3
gives, worked by hand, for the cases a fix must get right (CHANGELOG, Known problems).

The fast path scales every LP so that the largest class holds 1 and solves to 1e-9, so a demand of 1
beside a pool of 1e9 cannot be told from nothing; the slow reference in `reference_alloc` scales the
same way and cannot serve as the oracle here, so each expected figure below is derived in its
docstring. The cases the fast path gets wrong today are strict xfails: a sound fix turns them into
passes (and must then drop the marker). Two further cases pin what it already gets right and a fix
must keep (a tiny weight; a tiny project beside a competitor that stands lower).

Helper h59 (2026-11-29) tried a second solve on the residual problem (the capacity the placement
left idle, the tiny projects left short, the original shares and weights) and found it unsound on
three of these cases: it ignores the members' standing from the main solve (`..._equal_shares`),
a competitor that is not tiny but stands lower (`..._lower_standing_competitor_...`), and capacity
the placement gave a met project on a pool the tiny project needs (`..._placed_on_the_cheap_...`).
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from pooler.core.alloc import allocate
from pooler.core.model import Accelerator, Member
from tests.test_alloc_cases import consortium, pool, project

TWO = (Accelerator("big", rate=D(1)), Accelerator("tiny", rate=D(1)))
BIG = (("big", D(1)),)
TINY = (("tiny", D(1)),)

UNRESOLVED = pytest.mark.xfail(
    strict=True,
    reason="Known problem: a demand below about 1e-9 of the largest pool class is below the LPs' "
           "resolution; the allocation stays feasible but is not the lexicographic max-min of DESIGN 3 "
           "(no sound fix yet: a residual solve alone is not exact, see the module docstring)")


def _values(snap) -> dict[str, float]:
    res = allocate(snap, integer_grants=False)
    for p in snap.pools:  # feasible whatever else: never over a pool
        granted = res.pools[p.id].granted
        assert granted <= float(p.device_hours(snap.consortium.hours)) * (1 + 1e-12), p.id
    return {k: v.allocated for k, v in res.projects.items()}


def _close(expected: dict[str, float]):
    # the tiny figures exactly (to 1e-9 of themselves), the big ones to the solver's 1e-9 relative
    return pytest.approx(expected, rel=1e-9, abs=1e-9)


def _two_pools(members, sponsors, *, alpha="1", owners=("a", "b")):
    """A pool of 1e12 ("big") and one of 1 ("tiny"); p1 and p2 (demand 1) can use only the tiny one,
    p3 (demand 2e12) only the big one."""
    return consortium(
        members, [pool("pa", owners[0], 1e12, accelerator="big"), pool("pb", owners[1], 1, accelerator="tiny")],
        [project("p1", sponsors[0], 1, speed=TINY), project("p2", sponsors[1], 1, speed=TINY),
         project("p3", sponsors[2], 2e12, speed=BIG)], accelerators=TWO, alpha=alpha)


@UNRESOLVED
def test_a_demand_of_1_beside_a_pool_of_1e9_is_met():
    """One member, one pool of 1e9, one project of demand 1: step 1 gives the member all it asks,
    so j gets 1 (bottleneck `demand`), and nothing is left to warn of."""
    res = allocate(consortium(["m"], [pool("p", "m", 1e9)], [project("j", "m", 1)]))
    assert res.projects["j"].allocated == 1 and res.projects["j"].bottleneck == "demand"
    assert res.solver.warnings == ()


@UNRESOLVED
def test_two_demands_of_1_on_a_pool_of_1_beside_1e12_follow_the_members_shares():
    """The review's case (alpha 1): a contributes 1e12, b contributes 1, so S_b = 1e-12 of S_a, below
    the 1e-6 rule: b's share counts as zero and b is served only from what a leaves. Step 1: a takes
    all it can use, Y_a = 1e12 (p3 on pa) + 1 (p1 on pb); b gets what is left of pb, nothing. So
    p1 = 1, p2 = 0, p3 = 1e12 (not 0.5 each: that is the answer when one member sponsors both,
    below)."""
    got = _values(_two_pools(["a", "b"], ("a", "b", "a")))
    assert got == _close({"p1": 1, "p2": 0, "p3": 1e12})


@UNRESOLVED
def test_two_demands_of_1_of_one_member_on_a_pool_of_1_share_it():
    """As above, with a sponsoring p1, p2 and p3: step 2 among a's projects (equal weights) raises p1
    and p2 together until pb is full: 0.5 each; p3 gets all of pa."""
    got = _values(_two_pools(["a", "b"], ("a", "a", "a")))
    assert got == _close({"p1": 0.5, "p2": 0.5, "p3": 1e12})


@UNRESOLVED
def test_two_demands_of_1_of_two_equal_members_on_a_pool_of_1_share_it():
    """Equal entitlement (alpha 0), three members a, b, c; a's p1 and b's p2 can use only the pool of
    1 (a's), c's p3 only the pool of 1e12 (c's). Step 1 raises Y_a / S_a and Y_b / S_b together
    until the pool of 1 is full: 0.5 each."""
    got = _values(_two_pools(["a", "b", "c"], ("a", "b", "c"), alpha="0", owners=("c", "a")))
    assert got == _close({"p1": 0.5, "p2": 0.5, "p3": 1e12})


@UNRESOLVED
def test_a_tiny_demand_of_the_member_that_stands_lowest_takes_the_tiny_pool_equal_shares():
    """Equal entitlement (alpha 0): a sponsors p1 (tiny pool only) and p3 (big pool only), b only p2
    (tiny pool only). Step 1 maximises the smaller of Y_a / S_a and Y_b / S_b first: that is b's, at
    most 1 (all of pb to p2), which leaves a with 1e12. So p1 = 0, p2 = 1. (A residual solve on the
    tiny projects alone, without the members' standing from the main solve, gives 0.5 each.)"""
    got = _values(_two_pools(["a", "b"], ("a", "b", "a"), alpha="0"))
    assert got == _close({"p1": 0, "p2": 1, "p3": 1e12})


@UNRESOLVED
def test_a_tiny_demand_beside_a_lower_standing_competitor_on_a_pool_of_0_1():
    """One member; pool pa of 1e9 (big, only b's) and q of 0.1 (tiny) that k (demand 1e6, weight 1)
    and j (demand 1, weight 1e-5) can use. Step 2 raises k and j on q by weight: k = 0.1 / (1 + 1e-5),
    j = 1e-5 of that. (The main solve gives both nothing and leaves q idle; a residual solve on the
    tiny projects alone gives j all of q: k is not tiny, its demand being 1e-3 of the largest class,
    but stands lower.)"""
    snap = consortium(["m"], [pool("pa", "m", 1e9, accelerator="big"), pool("q", "m", 0.1, accelerator="tiny")],
                      [project("k", "m", 1e6, speed=TINY), project("j", "m", 1, weight="0.00001", speed=TINY),
                       project("b", "m", 2e9, speed=BIG)], accelerators=TWO)
    t = 0.1 / (1 + 1e-5)
    assert _values(snap) == _close({"k": t, "j": 1e-5 * t, "b": 1e9})


@UNRESOLVED
def test_a_tiny_demand_on_a_pool_placed_on_the_cheap_for_a_met_project():
    """k (demand 1e9) can use both pools, j (demand 1) only the tiny one, which costs nothing while the
    big one costs 1: every demand can be met (k on the big pool), so k = 1e9 and j = 1; cost decides
    placement only after that. (The placement puts k on the free pool first: a residual solve on the
    capacity it leaves idle finds none for j.)"""
    snap = consortium(["m"], [pool("pa", "m", 1e12, accelerator="big", cost=D(1)), pool("pb", "m", 1, accelerator="tiny")],
                      [project("k", "m", 1e9), project("j", "m", 1, speed=TINY)], accelerators=TWO)
    assert _values(snap) == _close({"k": 1e9, "j": 1})


@UNRESOLVED
def test_tiny_demands_in_several_classes_are_each_met():
    """One member; classes gpu-north (1e9), gpu-south (1), tiny-north (1e9). j1 (1, gpu north), j2
    (0.5, south only), j3 (2, tiny type) each stand far below the big projects b1 (gpu north) and b3
    (tiny type), so each gets its demand; b1 and b3 get the rest of their classes."""
    snap = consortium([Member("m", region="north")],
                      [pool("g1", "m", 1e9, region="north"), pool("g2", "m", 1, region="south"),
                       pool("g3", "m", 1e9, accelerator="tiny", region="north")],
                      [project("j1", "m", 1, regions=("north",), speed=(("gpu", D(1)),)),
                       project("j2", "m", 0.5, regions=("south",)), project("j3", "m", 2, speed=TINY),
                       project("b1", "m", 5e9, speed=(("gpu", D(1)),), regions=("north",)),
                       project("b3", "m", 5e9, speed=TINY)],
                      accelerators=(Accelerator("gpu", rate=D(1)), Accelerator("tiny", rate=D(1))))
    got = _values(snap)
    assert {k: got[k] for k in ("j1", "j2", "j3")} == _close({"j1": 1, "j2": 0.5, "j3": 2})
    assert got["b1"] == pytest.approx(1e9 - 1, rel=1e-9) and got["b3"] == pytest.approx(1e9 - 2, rel=1e-9)


# -- what the fast path gets right today, and a fix must keep ---------------------------------------

def test_a_tiny_demand_with_a_tiny_weight_beside_a_big_project_is_met():
    """Pool of 1e9; b (demand 2e9, weight 1), j (demand 1, weight 1e-5, above the 1e-6 rule): j's
    demand is reached at level 1e5, far below the level 1e9 - 1 where the pool fills, so j = 1."""
    got = _values(consortium(["m"], [pool("p", "m", 1e9)],
                             [project("b", "m", 2e9), project("j", "m", 1, weight="0.00001")]))
    assert got["j"] == pytest.approx(1, rel=1e-9) and got["b"] == pytest.approx(1e9 - 1, rel=1e-9)


def test_a_tiny_weight_project_shares_a_pool_of_10_by_weight_beside_a_pool_of_1e9():
    """As `..._lower_standing_competitor_...` with q of 10 (1e-8 of the largest class, within the LPs'
    resolution): k = 10 / (1 + 1e-5), j = 1e-5 of that."""
    snap = consortium(["m"], [pool("pa", "m", 1e9, accelerator="big"), pool("q", "m", 10, accelerator="tiny")],
                      [project("k", "m", 1e6, speed=TINY), project("j", "m", 1, weight="0.00001", speed=TINY),
                       project("b", "m", 2e9, speed=BIG)], accelerators=TWO)
    got = _values(snap)
    t = 10 / (1 + 1e-5)
    assert got["k"] == pytest.approx(t, rel=1e-6) and got["j"] == pytest.approx(1e-5 * t, rel=1e-6)


# -- through `pooler alloc solve --json` ------------------------------------------------------------

_ONE = """\
[policy]
contribution_weight = 1.0
usage_half_life_days = 0

[[accelerators]]
id = "gpu"
rate = 1

[[members]]
id = "m"
name = "m"

[[pools]]
id = "p"
member = "m"
accelerator = "gpu"
capacity = 1000000000

[[projects]]
id = "j"
sponsors = { m = 1 }
demand = 1
"""

_TWO = """\
[policy]
contribution_weight = 1.0
usage_half_life_days = 0

[[accelerators]]
id = "big"
rate = 1

[[accelerators]]
id = "tiny"
rate = 1

[[members]]
id = "a"
name = "a"

[[members]]
id = "b"
name = "b"

[[pools]]
id = "pa"
member = "a"
accelerator = "big"
capacity = 1000000000000

[[pools]]
id = "pb"
member = "b"
accelerator = "tiny"
capacity = 1

[[projects]]
id = "p1"
sponsors = { a = 1 }
demand = 1
speed = { tiny = 1 }

[[projects]]
id = "p2"
sponsors = { b = 1 }
demand = 1
speed = { tiny = 1 }

[[projects]]
id = "p3"
sponsors = { a = 1 }
demand = 2000000000000
speed = { big = 1 }
"""


def _solve(cli, tmp_path, text):
    manifest = tmp_path / "case.toml"
    manifest.write_text(text, encoding="utf-8")
    result = cli("alloc", "solve", manifest, "--json", db_path=None)
    assert result.exit_code == 0, result.stderr
    data = result.json()
    for p in data["pools"].values():
        assert p["granted"] <= p["capacity"]
    return data


@UNRESOLVED
def test_alloc_solve_json_meets_a_demand_of_1_beside_a_pool_of_1e9(cli, tmp_path):
    data = _solve(cli, tmp_path, _ONE)
    assert data["projects"]["j"]["allocated"] == 1 and data["projects"]["j"]["bottleneck"] == "demand"
    assert [g["device_hours"] for g in data["grants"] if g["project"] == "j"] == [1]
    assert "warnings" not in data["solver"]


@UNRESOLVED
def test_alloc_solve_json_two_demands_of_1_on_a_pool_of_1_beside_1e12(cli, tmp_path):
    data = _solve(cli, tmp_path, _TWO)
    got = {j: v["allocated"] for j, v in data["projects"].items()}
    assert got == _close({"p1": 1, "p2": 0, "p3": 1e12})
    assert sum(g["device_hours"] for g in data["grants"] if g["pool"] == "pb") == 1
