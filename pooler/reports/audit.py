"""The audit report and member statements as plain values, ready for any renderer.

A report is a dict of sections; each table section is a list of rows (dicts with the same keys in the
same order). Quantities are exact `Decimal`s; the JSON and CSV renderers write them as decimal text,
the Markdown, HTML and terminal renderers round them for reading. Builders take values only: the run's
rows and payload, the snapshot it was solved from, the settlement, and what the ledger said about its
head and its verification.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping, Sequence

from pooler.core.model import Snapshot
from pooler.core.settle import IDLE_FLAG, Settlement

ZERO = Decimal(0)

# Table sections, in the order renderers show them, with their titles.
AUDIT_SECTIONS = (
    ("summary", "Consortium summary"),
    ("by_region", "Capacity and utilisation by region"),
    ("by_accelerator", "Capacity and utilisation by accelerator"),
    ("members", "Member statements"),
    ("projects", "Projects"),
    ("pools", "Pool utilisation"),
    ("flows", "Lending between members"),
    ("ledger", "Ledger"),
)
MEMBER_SECTIONS = (
    ("statement", "Statement"),
    ("projects", "Projects sponsored"),
    ("pools", "Pools contributed"),
    ("counterparties", "Lending and borrowing by counterparty"),
    ("ledger", "Ledger"),
)


def _ratio(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if whole <= 0 else part / whole  # 0/0: no capacity, no ratio


def _q(value: Decimal, places: int = 6) -> Decimal:
    """Ratios are reported to 1e-6; quantities stay exact."""
    return value.quantize(Decimal(1).scaleb(-places))


def _ratio_q(part: Decimal, whole: Decimal) -> Decimal | None:
    r = _ratio(part, whole)
    return None if r is None else _q(r)


def build_audit(*, snapshot: Snapshot, period: str, unit: str, run: Mapping[str, Any],
                members: Sequence[Mapping[str, Any]], projects: Sequence[Mapping[str, Any]],
                grants: Sequence[Mapping[str, Any]], settlement: Settlement,
                used: Mapping[tuple[str, str], Decimal], ledger: Mapping[str, Any]) -> dict[str, Any]:
    """The consortium's audit report for one period."""
    names = {m.id: m.name for m in snapshot.members}
    project_records = snapshot.by_id("project")
    pools_by_id = {p.pool: p for p in settlement.pools}
    metrics = run.get("metrics", {})

    granted_dh: dict[str, Decimal] = {}
    for g in grants:
        granted_dh[g["project"]] = granted_dh.get(g["project"], ZERO) + Decimal(g["device_hours"])
    used_dh: dict[str, Decimal] = {}
    used_units: dict[str, Decimal] = {}
    for (project, pool_id), dh in used.items():
        used_dh[project] = used_dh.get(project, ZERO) + dh
        pool = pools_by_id.get(pool_id)
        record = project_records.get(project)
        if pool is not None and record is not None:
            speed = record.speed_on(pool.accelerator)
            used_units[project] = used_units.get(project, ZERO) + dh * pool.rate * (speed if speed > 0 else 1)

    project_rows = []
    for p in sorted(projects, key=lambda r: r["project"]):
        record = project_records.get(p["project"])
        sponsors = ", ".join(f"{m} {s * 100:.0f}%" for m, s in sorted(record.stakes().items())) if record else ""
        demand, allocated = Decimal(p["demand"]), Decimal(p["allocated"])
        project_rows.append({
            "project": p["project"], "sponsors": sponsors, "demand": demand, "allocated": allocated,
            "served": _ratio_q(allocated, demand), "bottleneck": p["bottleneck"],
            "granted_device_hours": granted_dh.get(p["project"], ZERO),
            "used_device_hours": used_dh.get(p["project"], ZERO),
            "used_units": used_units.get(p["project"], ZERO),
        })

    member_rows = [{
        "member": b.member, "name": names.get(b.member, ""), "share": _q(b.share),
        "contributed": b.contributed, "entitled": b.entitled, "allocated": b.allocated, "used": b.used,
        "own_use": b.own_use, "lent": b.lent, "borrowed": b.borrowed, "balance": b.balance,
    } for b in settlement.members]

    pool_rows = [{
        "pool": p.pool, "member": p.member, "accelerator": p.accelerator, "region": p.region or "",
        "capacity": p.capacity, "granted": p.granted, "used": p.used,
        "idle_share": None if p.idle_share is None else _q(p.idle_share),
        "flagged": p.flagged,
    } for p in settlement.pools]

    def grouped(key) -> list[dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        for p in settlement.pools:
            name = key(p) or "(none)"
            g = groups.setdefault(name, {"pools": 0, "device_hours": ZERO, "units": ZERO,
                                         "granted_units": ZERO, "used_units": ZERO})
            g["pools"] += 1
            g["device_hours"] += p.capacity
            g["units"] += p.capacity_units
            g["granted_units"] += p.granted * p.rate
            g["used_units"] += p.used * p.rate
        return [{"name": name, **g, "granted_share": _ratio_q(g["granted_units"], g["units"]),
                 "used_share": _ratio_q(g["used_units"], g["units"])}
                for name, g in sorted(groups.items())]

    capacity_dh = sum((p.capacity for p in settlement.pools), ZERO)
    delivered_units = sum(((p.used if settlement.idle_basis == "used" else p.granted) * p.rate
                           for p in settlement.pools), ZERO)
    summary = [{
        "period": period, "unit": unit, "members": len(snapshot.members), "projects": len(projects),
        "pools": len(settlement.pools), "capacity_device_hours": capacity_dh,
        "capacity_units": settlement.pooled_units,
        "allocated_units": sum((Decimal(m["allocated"]) for m in members), ZERO),
        "used_units": settlement.used_units,
        "idle_basis": settlement.idle_basis,
        "idle_share": None if settlement.pooled_units <= 0 else
        _q(max(ZERO, 1 - delivered_units / settlement.pooled_units)),
        "pools_flagged": sum(1 for p in settlement.pools if p.flagged),
        "jain_index": Decimal(str(metrics.get("jain_index", "0"))),
        "satisfied_projects": int(metrics.get("satisfied_projects", 0)),
        "balance_sum": sum((b.balance for b in settlement.members), ZERO),
    }]

    return {
        "report": "audit",
        "title": f"{snapshot.consortium.name}: audit of {period}",
        "period": period, "unit": unit,
        "idle_flag": IDLE_FLAG,
        "run": dict(run.get("provenance", {})),
        "summary": summary,
        "by_region": grouped(lambda p: p.region),
        "by_accelerator": grouped(lambda p: p.accelerator),
        "members": member_rows,
        "projects": project_rows,
        "pools": pool_rows,
        "flows": [{"lender": f.lender, "borrower": f.borrower, "units": f.units} for f in settlement.flows],
        "ledger": [dict(ledger)],
        "notes": list(settlement.notes) + _basis_note(settlement, period),
    }


def _basis_note(settlement: Settlement, period: str) -> list[str]:
    if settlement.idle_basis == "used":
        return []
    return [f"No usage is recorded for {period}: used figures are zero and idle shares are computed "
            f"from the grants (what was offered), not from use."]


def build_member(audit: Mapping[str, Any], member: str, snapshot: Snapshot) -> dict[str, Any]:
    """One member's statement, cut from the audit report of the same period."""
    rows = [m for m in audit["members"] if m["member"] == member]
    if not rows:
        raise KeyError(member)
    projects = []
    for record in snapshot.projects:
        stakes = record.stakes()
        if member not in stakes:
            continue
        row = next((p for p in audit["projects"] if p["project"] == record.id), None)
        if row is None:
            continue
        stake = stakes[member]
        projects.append({"project": record.id, "stake": _q(stake), "demand": row["demand"],
                         "allocated": row["allocated"], "member_part": _q(row["allocated"] * stake),
                         "bottleneck": row["bottleneck"], "used_units": row["used_units"],
                         "member_used": _q(row["used_units"] * stake)})
    counterparties: dict[str, dict[str, Decimal]] = {}
    for f in audit["flows"]:
        if f["lender"] == member:
            counterparties.setdefault(f["borrower"], {"lent_to": ZERO, "borrowed_from": ZERO})["lent_to"] += f["units"]
        if f["borrower"] == member:
            counterparties.setdefault(f["lender"], {"lent_to": ZERO, "borrowed_from": ZERO})["borrowed_from"] += f["units"]
    return {
        "report": "member",
        "title": f"{rows[0]['name'] or member}: statement for {audit['period']}",
        "member": member, "period": audit["period"], "unit": audit["unit"], "idle_flag": audit["idle_flag"],
        "run": audit["run"],
        "statement": rows,
        "projects": projects,
        "pools": [p for p in audit["pools"] if p["member"] == member],
        "counterparties": [{"member": other, **v, "net": v["lent_to"] - v["borrowed_from"]}
                           for other, v in sorted(counterparties.items())],
        "ledger": audit["ledger"],
        "notes": audit["notes"],
    }


def sections(report: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (key, title) table sections of a report, in order."""
    return AUDIT_SECTIONS if report.get("report") == "audit" else MEMBER_SECTIONS


def to_plain(value: Any) -> Any:
    """JSON-ready: Decimals as canonical decimal text (exact), everything else as is."""
    from pooler.core.model import dec_str

    if isinstance(value, Decimal):
        return dec_str(value)
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
