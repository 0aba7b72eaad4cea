"""Contributions, exactly: what each member puts into the pool, in normalised units per period.

K_m = sum over m's pools of rate x capacity (device-hours), plus the credits of m's datasets and
models (DESIGN section 3). Computed in Decimal so that statements and audits can sum them exactly.
"""

from __future__ import annotations

from decimal import Decimal

from pooler.core.model import Pool, Project, Snapshot


def pool_capacity(snapshot: Snapshot, pool: Pool) -> Decimal:
    """Device-hours per period of `pool` under the consortium's period length."""
    return pool.device_hours(snapshot.consortium.hours)


def pool_units(snapshot: Snapshot, pool: Pool) -> Decimal:
    """Normalised units per period of `pool`: rate x capacity."""
    rate = snapshot.by_id("accelerator")[pool.accelerator].rate
    return rate * pool_capacity(snapshot, pool)


def pool_region(snapshot: Snapshot, pool: Pool) -> str | None:
    """The pool's region, or its owner's when it gives none (None: serves only unrestricted projects)."""
    if pool.region is not None:
        return pool.region
    owner = snapshot.by_id("member").get(pool.member)
    return owner.region if owner is not None else None


def compute_contributions(snapshot: Snapshot) -> dict[str, Decimal]:
    """Compute contribution per member id (every member, zero when it gives nothing)."""
    totals = {m.id: Decimal(0) for m in snapshot.members}
    for pool in snapshot.pools:
        totals[pool.member] += pool_units(snapshot, pool)
    return totals


def credit_contributions(snapshot: Snapshot) -> dict[str, Decimal]:
    """Dataset and model credits per member id."""
    totals = {m.id: Decimal(0) for m in snapshot.members}
    for item in (*snapshot.datasets, *snapshot.models):
        totals[item.member] += item.credit
    return totals


def contributions(snapshot: Snapshot) -> dict[str, Decimal]:
    """K_m per member id: compute plus credits."""
    compute, credits = compute_contributions(snapshot), credit_contributions(snapshot)
    return {m: compute[m] + credits[m] for m in compute}


def allowed_regions(snapshot: Snapshot, project: Project) -> frozenset[str] | None:
    """Regions where `project` may run: its `regions` intersected with the residency of every
    dataset and model it uses; None when nothing restricts it."""
    allowed = None if project.regions is None else set(project.regions)
    assets = {**{("dataset", d.id): d for d in snapshot.datasets},
              **{("model", m.id): m for m in snapshot.models}}
    for kind, ids in (("dataset", project.datasets), ("model", project.models)):
        for asset_id in ids:
            residency = assets[(kind, asset_id)].residency
            if residency is not None:
                allowed = set(residency) if allowed is None else allowed & set(residency)
    return None if allowed is None else frozenset(allowed)


def effective_rate(snapshot: Snapshot, project: Project, pool: Pool,
                   allowed: frozenset[str] | None = None) -> Decimal:
    """e(j, p): units per device-hour of `pool` for `project`; 0 where it may not run (DESIGN 3)."""
    if allowed is None:
        allowed = allowed_regions(snapshot, project)
    if allowed is not None and pool_region(snapshot, pool) not in allowed:
        return Decimal(0)
    rate = snapshot.by_id("accelerator")[pool.accelerator].rate
    return rate * project.speed_on(pool.accelerator)
