"""What stops a project (`pooler.core.why`): hand-worked cases for each answer the counterfactual
LPs give, computed from a real allocation of each consortium."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pooler.core.alloc import allocate
from pooler.core.why import Limit, fairness_limit
from tests.test_alloc_cases import consortium, pool, project


def limit_of(snap, project_id: str) -> Limit:
    res = allocate(snap)
    found = fairness_limit(
        snap, project_id,
        {p: a.allocated for p, a in res.projects.items()},
        {p: a.weight for p, a in res.projects.items()},
        {m: a.allocated for m, a in res.members.items()},
    )
    assert found is not None
    return found


def test_two_projects_level_with_each_other_are_a_tie():
    # one member, one pool of 10, two projects wanting 10 each: 5 and 5; more for a can only come
    # from b, whose claim is as strong; a hundredth of a's demand (0.1) more costs b 0.1
    snap = consortium(["m"], [pool("p", "m", 10)], [project("a", "m", 10), project("b", "m", 10)])
    found = limit_of(snap, "a")
    assert found.kind == "tie"
    assert found.gain == pytest.approx(5, rel=1e-6)
    assert found.step == pytest.approx(0.1, rel=1e-6)
    assert [name for name, _ in found.losers] == ["b"]
    assert found.losers[0][1] == pytest.approx(0.1, rel=1e-4)


def test_a_project_held_by_another_members_total_is_stopped_by_members():
    # A and B contribute 10 each (alpha 1: equal shares) and each sponsors one project that could
    # use both pools: 10 and 10. With B's total held, a cannot gain; without it, a could take all of
    # b's 10; a hundredth of a's demand (1) more for a costs B's total 1
    snap = consortium(["A", "B"], [pool("pa", "A", 10), pool("pb", "B", 10)],
                      [project("a", "A", 100), project("b", "B", 100)])
    found = limit_of(snap, "a")
    assert found.kind == "members"
    assert found.gain == pytest.approx(10, rel=1e-6)
    assert found.step == pytest.approx(1, rel=1e-6)
    assert [name for name, _ in found.losers] == ["B"]
    assert found.losers[0][1] == pytest.approx(1, rel=1e-4)


def test_a_project_held_by_an_owners_reserve_is_stopped_by_reserves():
    # DESIGN's reserve case: A contributes 9 and B 12 with reserve 11/12, only A sponsors a project:
    # it gets 9 + 1. Nothing but B's reserve stops it: opened, it could have 11 more
    snap = consortium(["A", "B"], [pool("pa", "A", 9), pool("pb", "B", 12, reserve=Decimal(11) / 12)],
                      [project("a", "A", 1000)])
    found = limit_of(snap, "a")
    assert found.kind == "reserves"
    assert found.gain == pytest.approx(11, rel=1e-6)
    assert [name for name, _ in found.losers] == ["pb"]
    assert found.losers[0][1] == pytest.approx(found.step, rel=1e-4)  # device-hours = units at rate 1


def test_a_project_that_has_every_device_hour_it_can_use_finds_no_limit():
    # one pool of 10 and one project wanting 100: it has all 10, and no rule of the allocation stands
    # between it and more; the check finds no gain at all
    snap = consortium(["m"], [pool("p", "m", 10)], [project("a", "m", 100)])
    assert limit_of(snap, "a") == Limit("none", 0.0, 0.0, ())


def test_weaker_projects_are_held_at_their_values():
    # a (demand 2) stands lower than b and c: the check may not take from it. b is level with c
    # (4 each): for b the limit is c, never a
    snap = consortium(["m"], [pool("p", "m", 10)],
                      [project("a", "m", 2), project("b", "m", 10), project("c", "m", 10)])
    found = limit_of(snap, "b")
    assert found.kind == "tie" and [name for name, _ in found.losers] == ["c"]
    assert found.gain == pytest.approx(4, rel=1e-6)  # all of c's 4; a keeps its 2


def test_an_unknown_project_has_no_limit():
    snap = consortium(["m"], [pool("p", "m", 10)], [project("a", "m", 100)])
    assert fairness_limit(snap, "nobody", {}, {}, {}) is None


def test_a_weight_0_project_may_not_take_from_weighted_ones():
    # z's weight counts as 0: it is served after w, which takes all 10; w is held, so nothing gives
    # way to z (before the review's fix the check let w give way and called it a tie)
    snap = consortium(["m"], [pool("p", "m", 10)],
                      [project("w", "m", 100), project("z", "m", 100, weight="1e-9")])
    assert limit_of(snap, "z").kind == "none"
    found = limit_of(snap, "w")  # and w may take from z, which holds nothing: nothing to gain
    assert found.kind == "none"
