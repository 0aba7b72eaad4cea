"""`pooler demo`: the example consortium in a fresh ledger, summarised for a first look."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from pooler.core.contrib import compute_contributions, contributions, credit_contributions
from pooler.core.contrib import pool_capacity, pool_region
from pooler.core.model import Snapshot, dec_str
from pooler.errors import UsageError
from pooler.services import registry
from pooler.services.context import Context

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class DemoResult:
    db: Path
    snapshot: Snapshot
    entries: int
    regions: tuple[str, ...]
    accelerator_ids: tuple[str, ...]
    member_rows: tuple[tuple, ...]
    region_rows: tuple[tuple, ...]
    project_rows: tuple[tuple, ...]
    allocation: dict | None = None  # the DESIGN section-4 result of the recorded run
    manifest: Path | None = None
    period: str | None = None


def _fmt(value: Decimal, places: int = 0) -> str:
    return f"{value:,.{places}f}"


def run(ctx: Context, *, directory: Path | None = None, manifest: Path | None = None) -> DemoResult:
    manifest = manifest or EXAMPLES / "c2net.toml"
    if not manifest.is_file():
        raise UsageError(f"{manifest}: no such manifest (pass --manifest FILE)")
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="pooler-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "pooler.db"
    if db.exists():
        raise UsageError(f"{db} already exists; pass an empty folder with --dir")
    demo_ctx = replace(ctx, db=str(db))
    registry.init(demo_ctx)
    registry.apply(demo_ctx, manifest)
    from pooler.services import alloc

    outcome = alloc.run(demo_ctx)
    with registry.open_ledger(demo_ctx) as ledger:
        report = ledger.verify()
        if not report.ok:  # a fresh ledger that fails verification is a bug worth shouting about
            raise RuntimeError(f"the demo ledger does not verify: {report.problem}")
        state = ledger.snapshot()
    return replace(summarise(db, state, report.entries), allocation=outcome.result,
                   period=outcome.period, manifest=manifest.resolve())


def summarise(db: Path, state: Snapshot, entries: int) -> DemoResult:
    compute, credits, total = (
        compute_contributions(state), credit_contributions(state), contributions(state)
    )
    grand = sum(total.values(), Decimal(0))
    pools_of = {m.id: 0 for m in state.members}
    for pool in state.pools:
        pools_of[pool.member] += 1
    member_rows = tuple(
        (m.id, pools_of[m.id], _fmt(compute[m.id]),
         _fmt(credits[m.id]), _fmt(total[m.id]),
         f"{(total[m.id] / grand * 100):.1f}%" if grand else "-")
        for m in sorted(state.members, key=lambda m: (-total[m.id], m.id))
    )
    accelerators = tuple(a.id for a in state.accelerators)
    rate = {a.id: a.rate for a in state.accelerators}
    by_region: dict[str, dict[str, Decimal]] = {}
    for pool in state.pools:
        region = pool_region(state, pool) or "(none)"
        cells = by_region.setdefault(region, {})
        cells[pool.accelerator] = cells.get(pool.accelerator, Decimal(0)) + pool_capacity(state, pool)
    region_rows = tuple(
        (region, ", ".join(f"{a} {_fmt(cells[a])}" for a in accelerators if a in cells),
         _fmt(sum((rate[a] * c for a, c in cells.items()), Decimal(0))))
        for region, cells in sorted(by_region.items())
    )
    project_rows = tuple(
        (p.id, ", ".join(f"{m} {dec_str(s)}" for m, s in p.sponsors), _fmt(p.demand),
         dec_str(p.weight), ", ".join(f"{a}×{dec_str(s)}" for a, s in p.speed) if p.speed else "any")
        for p in state.projects
    )
    return DemoResult(db, state, entries, tuple(sorted(by_region)), accelerators, member_rows,
                      region_rows, project_rows)
