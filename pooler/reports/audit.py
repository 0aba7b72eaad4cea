"""The audit report and member statements as plain values, ready for any renderer.

A report is a dict of sections; each table section is a list of rows (dicts with the same keys in the
same order). Quantities are exact `Decimal`s; the JSON and CSV renderers write them as decimal text,
the Markdown, HTML and terminal renderers round them for reading. Builders take values only: the run's
rows and payload, the snapshot it was solved from, the settlement, and what the ledger said about its
head and its verification.
"""

from __future__ import annotations

from decimal import Decimal, getcontext
from typing import Any, Mapping, Sequence

from pooler.core.model import Snapshot
from pooler.core.settle import IDLE_FLAG, Settlement, combo_speeds, split_by_stakes
from pooler.core.usage import PairHours, from_nano

ZERO = Decimal(0)

# Table sections, in the order renderers show them, with their titles.
AUDIT_SECTIONS = (
    ("run", "Run"),
    ("summary", "Consortium summary"),
    ("by_region", "Capacity and utilisation by region"),
    ("by_accelerator", "Capacity and utilisation by accelerator"),
    ("members", "Member statements"),
    ("projects", "Projects"),
    ("pools", "Pool utilisation"),
    ("outside_pools", "Pools outside the run"),
    ("flows", "Lending between members"),
    ("ledger", "Ledger"),
)
MEMBER_SECTIONS = (
    ("run", "Run"),
    ("statement", "Statement"),
    ("projects", "Projects sponsored"),
    ("pools", "Pools contributed"),
    ("outside_pools", "Pools contributed outside the run"),
    ("counterparties", "Lending and borrowing by counterparty"),
    ("ledger", "Ledger"),
)


def _ratio(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if whole <= 0 else part / whole  # 0/0: no capacity, no ratio


def _q(value: Decimal, places: int = 6) -> Decimal:
    """Derived ratios (served, idle and granted shares) are reported to 1e-6; quantities, and the
    shares the settlement multiplies, stay exact."""
    return value.quantize(Decimal(1).scaleb(-places))


def _ratio_q(part: Decimal, whole: Decimal) -> Decimal | None:
    r = _ratio(part, whole)
    return None if r is None else _q(r)


def build_audit(*, snapshot: Snapshot, period: str, unit: str, run: Mapping[str, Any],
                members: Sequence[Mapping[str, Any]], projects: Sequence[Mapping[str, Any]],
                grants: Sequence[Mapping[str, Any]], settlement: Settlement,
                used: Mapping[tuple[str, str], Decimal], ledger: Mapping[str, Any]) -> dict[str, Any]:
    """The consortium's audit report for one period."""
    # members outside the run (a retired sponsor charged, a pool's owner that lent) by the names the
    # ledger last recorded; the run's own by the snapshot's
    names = {**{m: n for o in settlement.outside for m, n in o.names},
             **{o.record.member: o.owner_name for o in settlement.outside_pools},
             **{m.id: m.name for m in snapshot.members}}
    # projects outside the run that used compute, settled by their last recorded sponsors
    outside = {o.record.id: o for o in settlement.outside}
    project_records = {**{p: o.record for p, o in outside.items()}, **snapshot.by_id("project")}
    # pools outside the run that were used are charged as the run's are: by their rate and type
    pools_by_id = {**{p.pool: p for p in settlement.outside_pools}, **{p.pool: p for p in settlement.pools}}
    metrics = run.get("metrics", {})

    granted_dh: dict[str, Decimal] = {}
    for g in grants:
        granted_dh[g["project"]] = granted_dh.get(g["project"], ZERO) + Decimal(g["device_hours"])
    fast = _project_use(used, pools_by_id, project_records) if isinstance(used, PairHours) else None
    used_dh, used_units = fast if fast is not None else _project_use_decimal(used, pools_by_id, project_records)

    project_rows = []
    # the run's projects, and those outside it that used compute (not allocated: no demand or share)
    outside_rows = [{"project": p, "demand": None, "allocated": None, "bottleneck": None} for p in outside]
    for p in sorted([*projects, *outside_rows], key=lambda r: r["project"]):
        record = project_records.get(p["project"])
        sponsors = ", ".join(f"{m} {s * 100:.0f}%" for m, s in sorted(record.stakes().items())) if record else ""
        demand = None if p["demand"] is None else Decimal(p["demand"])
        allocated = None if p["allocated"] is None else Decimal(p["allocated"])
        project_rows.append({
            "project": p["project"], "sponsors": sponsors, "demand": demand, "allocated": allocated,
            "served": None if demand is None else _ratio_q(allocated, demand), "bottleneck": p["bottleneck"],
            "granted_device_hours": granted_dh.get(p["project"], ZERO),
            "used_device_hours": used_dh.get(p["project"], ZERO),
            "used_units": used_units.get(p["project"], ZERO),
        })

    member_rows = [{
        "member": b.member, "name": names.get(b.member, ""), "share": b.share,  # exact: entitled = share x pooled
        "contributed": b.contributed, "entitled": b.entitled, "allocated": b.allocated, "used": b.used,
        "own_use": b.own_use, "lent": b.lent, "borrowed": b.borrowed, "balance": b.balance,
    } for b in settlement.members]

    pool_rows = [{
        "pool": p.pool, "member": p.member, "accelerator": p.accelerator, "region": p.region or "",
        "capacity": p.capacity, "granted": p.granted, "used": p.used,
        "idle_share": None if p.idle_share is None else _q(p.idle_share),
        "flagged": p.flagged,
    } for p in settlement.pools]

    # Pools outside the run that were used: no capacity pledged in this run (so no idle share, and
    # not in the summary's capacity or used capacity units), their usage settled all the same.
    outside_pool_rows = [{
        "pool": o.pool, "status": "retired" if o.retired else "added after the run", "member": o.member,
        "accelerator": o.accelerator, "region": o.region or "", "rate": o.rate,
        "used_device_hours": o.used, "used_capacity_units": o.used * o.rate,
    } for o in settlement.outside_pools]

    def grouped(key) -> list[dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        for p in settlement.pools:
            name = key(p) or "(none)"
            g = groups.setdefault(name, {"pools": 0, "device_hours": ZERO, "units": ZERO,
                                         "granted_units": ZERO, "used_capacity_units": ZERO})
            g["pools"] += 1
            g["device_hours"] += p.capacity
            g["units"] += p.capacity_units
            g["granted_units"] += p.granted * p.rate
            g["used_capacity_units"] += p.used * p.rate
        return [{"name": name, **g, "granted_share": _ratio_q(g["granted_units"], g["units"]),
                 "used_share": _ratio_q(g["used_capacity_units"], g["units"])}
                for name, g in sorted(groups.items())]

    # Two figures of use, each shown under its own name: `used_units` is what the settlement charged
    # (device-hours x rate x the project's speed, settled lines only), `used_capacity_units` what the
    # pools delivered (device-hours x rate, every line on a pool of the run). Idle is a share of
    # capacity, so it follows from the second (or from `granted_units` before any usage), never the first.
    capacity_dh = sum((p.capacity for p in settlement.pools), ZERO)
    granted_units = sum((p.granted * p.rate for p in settlement.pools), ZERO)
    used_capacity_units = sum((p.used * p.rate for p in settlement.pools), ZERO)
    delivered_units = used_capacity_units if settlement.idle_basis == "used" else granted_units
    summary = [{
        # Counts say what they count: the run's members, projects and pools, and those outside the
        # run that the settlement lists (members charged or lending, projects and pools used).
        "period": period, "unit": unit, "members_in_run": len(snapshot.members),
        "members_outside_run": len({b.member for b in settlement.members} - {m.id for m in snapshot.members}),
        "projects_in_run": len(projects), "projects_outside_run": len(outside),
        "projects_with_settled_usage": len(settlement.settled_projects),
        "pools_in_run": len(settlement.pools), "pools_outside_run": len(settlement.outside_pools),
        "capacity_device_hours": capacity_dh,
        "capacity_units": settlement.pooled_units,
        "allocated_units": sum((Decimal(m["allocated"]) for m in members), ZERO),
        "granted_units": granted_units,
        "used_units": settlement.used_units,
        "used_capacity_units": used_capacity_units,
        "idle_basis": settlement.idle_basis,
        # max(0, ...): pools used beyond their capacity leave nothing idle
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
        "outside_pools": outside_pool_rows,
        "flows": [{"lender": f.lender, "borrower": f.borrower, "units": f.units} for f in settlement.flows],
        "ledger": [dict(ledger)],
        # what the notes say of projects outside the run, for programs: exact stakes and speeds (None:
        # no table, speed 1 everywhere), as settled; `alloc inputs` has neither, the project not being
        # in the run (review: an auditor could not tell why 200 device-hours were charged 140 units)
        "outside_run": [{"project": p, "status": "retired" if o.retired else "added after the run",
                         "stakes": dict(sorted(o.record.stakes().items())),
                         "speed": None if o.record.speed is None else dict(sorted(o.record.speed))}
                        for p, o in outside.items()],
        "notes": list(settlement.notes) + _basis_note(settlement, period),
    }


def _project_use_decimal(used: Mapping[tuple[str, str], Decimal], pools_by_id: Mapping[str, Any],
                         project_records: Mapping[str, Any]) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Device-hours and units used per project: device-hours x the pool's rate x the project's speed
    on the pool's type (1 where it has none), in Decimal arithmetic (the default context)."""
    used_dh: dict[str, Decimal] = {}
    used_units: dict[str, Decimal] = {}
    # project -> (in the snapshot, its speed table or None): `Project.speed_on` without a dict per pair
    speeds: dict[str, tuple[bool, dict[str, Decimal] | None]] = {}
    one = Decimal(1)
    for (project, pool_id), dh in used.items():
        used_dh[project] = used_dh.get(project, ZERO) + dh
        pool = pools_by_id.get(pool_id)
        if pool is None:
            continue
        known = speeds.get(project)
        if known is None:
            record = project_records.get(project)
            known = speeds[project] = (record is not None,
                                       None if record is None or record.speed is None else dict(record.speed))
        if not known[0]:
            continue
        speed = one if known[1] is None else known[1].get(pool.accelerator, ZERO)
        used_units[project] = used_units.get(project, ZERO) + dh * pool.rate * (speed if speed > 0 else 1)
    return used_dh, used_units


def _project_use(used: PairHours, pools_by_id: Mapping[str, Any],
                 project_records: Mapping[str, Any]) -> tuple[dict[str, Decimal], dict[str, Decimal]] | None:
    """`_project_use_decimal` in integers (nanohours, and units at one common scale), the same
    figures when every product and sum fits the default context's digits, which is checked; None
    (use the Decimal way) when one might not, or a figure is finer than a nanohour or negative."""
    if used.fine or used.nano_range()[0] < 0:
        return None
    if len(used) >= _ARRAYS_FROM:
        columns = used.columns()
        fast = None if columns is None else _project_use_arrays(columns, pools_by_id, project_records)
        if fast is not None:
            return fast  # None: int64 might not hold it; the loop below has the last word
    dh: dict[str, int] = {}
    units: dict[str, int] = {}
    of_figures: dict[tuple[Decimal, Decimal], tuple[int, int, int]] = {}  # (rate, speed) -> see `_factor`
    scale = 0  # units are kept as integers of 10**-(9 + scale)
    biggest = 0  # the largest product of the rate's and the speed's coefficients met
    one = Decimal(1)
    current, record, speeds = None, None, None  # the project at hand (its pairs come one after another)
    factors: dict[str, int | None] = {}  # its pools' types -> rate x speed x 10**scale (None: not charged)
    dh_sum = units_sum = 0
    charged = False  # whether the project at hand used a known pool (it then has a units figure)
    for (project, pool_id), nano in used.nano.items():
        if project != current:
            if current is not None:
                dh[current] = dh.get(current, 0) + dh_sum
                if charged:
                    units[current] = units.get(current, 0) + units_sum
            current, record, factors, dh_sum, units_sum = project, project_records.get(project), {}, 0, 0
            charged = False
            speeds = None if record is None or record.speed is None else dict(record.speed)
        dh_sum += nano
        pool = pools_by_id.get(pool_id)
        if pool is None or record is None:
            continue
        factor = factors.get(pool.accelerator)
        if factor is None:
            speed = one if speeds is None else speeds.get(pool.accelerator, ZERO)
            figures = (pool.rate, speed if speed > 0 else one)
            exact = of_figures.get(figures)
            if exact is None:
                exact = of_figures[figures] = _factor(*figures)
                if exact is None:
                    return None
                if exact[1] > scale:  # a finer factor: every sum so far moves to the finer scale
                    up = 10 ** (exact[1] - scale)
                    units = {p: u * up for p, u in units.items()}
                    units_sum *= up
                    factors = {t: f * up for t, f in factors.items()}
                    scale = exact[1]
                biggest = max(biggest, exact[2])
            factor = factors[pool.accelerator] = exact[0] * 10 ** (scale - exact[1])
        units_sum += nano * factor
        charged = True
    if current is not None:
        dh[current] = dh.get(current, 0) + dh_sum
        if charged:
            units[current] = units.get(current, 0) + units_sum
    # Every product dh x rate x speed and every partial sum is below these bounds, so the Decimal
    # way (the current context, as `_project_use_decimal` runs) would not have rounded anything.
    held = 10 ** getcontext().prec
    if (max(used.nano.values(), default=0) * biggest >= held or max(dh.values(), default=0) >= held
            or max(units.values(), default=0) >= held):
        return None
    return ({p: from_nano(n) for p, n in dh.items()},
            {p: Decimal(u).scaleb(-9 - scale) for p, u in units.items()})


_ARRAYS_FROM = 20_000  # pairs from which `_project_use_arrays` pays for NumPy's import
_INT64_SAFE = 2 ** 62


def _project_use_arrays(columns, pools_by_id: Mapping[str, Any],
                        project_records: Mapping[str, Any]) -> tuple[dict[str, Decimal], dict[str, Decimal]] | None:
    """`_project_use` with the per-pair products and sums in NumPy int64 (whole-nanohour pairs, none
    negative): the same figures, at the same scale. None when a figure, product or sum might leave
    int64 or the default context's digits, or a factor is not a plain figure (the loop then decides)."""
    import numpy as np

    nano, project_of, pool_of = columns.nano, columns.project, columns.pool
    records = [project_records.get(p) for p in columns.project_ids]
    pools = [pools_by_id.get(p) for p in columns.pool_ids]
    types: dict[str, int] = {}
    pool_type = np.array([-1 if p is None else types.setdefault(p.accelerator, len(types)) for p in pools],
                         dtype=np.int64)
    nt = max(len(types), 1)
    charged = (pool_type[pool_of] >= 0) & np.array([r is not None for r in records], dtype=bool)[project_of]
    if float(nano.sum(dtype=float)) >= _INT64_SAFE / 4:
        return None
    dh = np.zeros(len(records), dtype=np.int64)
    np.add.at(dh, project_of, nano)
    # the factor of each (project, type) met, as `_factor` makes it, then at one common scale
    combo = np.where(charged, project_of * nt + np.maximum(pool_type[pool_of], 0), -1)
    uniq, inverse = np.unique(combo, return_inverse=True)
    inverse = inverse.reshape(-1)
    rate_of = {}
    for p in pools:
        if p is not None:
            rate_of.setdefault(p.accelerator, p.rate)
    type_ids = list(types)
    one = Decimal(1)
    # each (project, type) met has the speed its table gives (0 stands for none: the speed 1), then
    # each distinct (type, speed) its factor
    valid = uniq >= 0
    found = combo_speeds(records, types, uniq, canonical=True)
    if found is None:  # 2.50 and 2.5 are one speed there, yet the loop writes each in its own form
        return None
    code, speeds = found
    speeds[0] = one
    figure = np.where(valid, (uniq % nt) * len(speeds) + code, -1)
    distinct, figure_of = np.unique(figure, return_inverse=True)
    exact_of = []  # per distinct figure: (F, k, coefficient product) as `_factor` makes it
    for f in distinct.tolist():
        if f < 0:
            exact_of.append((0, 0, 0))
            continue
        exact = _factor(rate_of[type_ids[f // len(speeds)]], speeds[f % len(speeds)])
        if exact is None:
            return None
        exact_of.append(exact)
    scale = max((k for f, (_, k, _) in zip(distinct.tolist(), exact_of) if f >= 0), default=0)
    biggest = max((b for f, (_, _, b) in zip(distinct.tolist(), exact_of) if f >= 0), default=0)
    scaled_of = [f * 10 ** (scale - k) for f, k, _ in exact_of]
    # per (project, type): its nanohours summed in int64, then times the factor, in int64 when the
    # products and each project's sum surely fit (checked in floats), else in Python integers
    combo_nano = np.zeros(len(uniq), dtype=np.int64)
    np.add.at(combo_nano, inverse, nano)
    figure_of = figure_of.reshape(-1)
    combo_project = np.where(valid, uniq // nt, 0)
    small = len(uniq) > 0 and max(scaled_of) < _INT64_SAFE  # (float() of a huge factor would fail)
    if small:  # in floats, only to see whether int64 holds the exact products and sums
        product = combo_nano * np.array([float(f) for f in scaled_of])[figure_of]
        small = (float(product.max(initial=0)) < _INT64_SAFE / 4
                 and float(np.bincount(combo_project, weights=product).max(initial=0)) < _INT64_SAFE / 4)
    if small:
        exact = np.zeros(len(records), dtype=np.int64)
        np.add.at(exact, combo_project[valid], combo_nano[valid] * np.array(scaled_of, dtype=np.int64)[figure_of[valid]])
        met = np.unique(combo_project[valid]).tolist()
        units = dict(zip(met, exact[met].tolist()))
    else:
        units = {}
        for c, n, f in zip(uniq.tolist(), combo_nano.tolist(), map(scaled_of.__getitem__, figure_of.tolist())):
            if c >= 0:
                units[c // nt] = units.get(c // nt, 0) + n * f
    held = 10 ** getcontext().prec
    if (int(nano.max(initial=0)) * biggest >= held or int(dh.max(initial=0)) >= held
            or max(units.values(), default=0) >= held):
        return None
    ids = columns.project_ids
    return ({ids[j]: from_nano(v) for j, v in enumerate(dh.tolist())},
            {ids[j]: Decimal(u).scaleb(-9 - scale) for j, u in sorted(units.items())})


def _factor(rate: Decimal, speed: Decimal) -> tuple[int, int, int] | None:
    """rate x speed as (an integer F x 10**k, k), and the product of the two figures' coefficients
    (what bounds the digits of dh x rate x speed); None for a negative or infinite figure."""
    if rate < 0 or not rate.is_finite() or not speed.is_finite():
        return None
    exact = rate * speed  # both are short: exact
    _, digits, exponent = exact.as_tuple()
    k = max(0, -exponent)
    return (int("".join(map(str, digits)) or 0) * 10 ** (exponent + k), k,
            _coefficient(rate) * _coefficient(speed))


def _coefficient(value: Decimal) -> int:
    return int("".join(map(str, value.as_tuple().digits)) or 0)


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
    weights: dict[str, Decimal] = {}  # project -> its used units x the member's stake
    records = snapshot.by_id("project")
    outside = {o["project"]: o["stakes"] for o in audit.get("outside_run", ())}
    for row in audit["projects"]:
        record = records.get(row["project"])
        stakes = record.stakes() if record is not None else outside.get(row["project"], {})
        if member not in stakes:
            continue
        stake = stakes[member]
        weights[row["project"]] = row["used_units"] * stake
        projects.append({"project": row["project"], "stake": _q(stake), "demand": row["demand"],
                         "allocated": row["allocated"],
                         "member_part": None if row["allocated"] is None else _q(row["allocated"] * stake),
                         "bottleneck": row["bottleneck"], "used_units": row["used_units"],
                         "member_used": ZERO})
    # The member's settled `used`, split over its projects in proportion to used units x stake by the
    # settlement's own rule (whole 1e-6, largest remainder, ties to the smaller id): the parts add up
    # to the statement's figure exactly, where rounding each on its own could miss it by a quantum.
    parts = split_by_stakes(rows[0]["used"], weights)
    for p in projects:
        p["member_used"] = parts.get(p["project"], ZERO)
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
        "outside_pools": [p for p in audit.get("outside_pools", ()) if p["member"] == member],
        "counterparties": [{"member": other, **v, "net": v["lent_to"] - v["borrowed_from"]}
                           for other, v in sorted(counterparties.items())],
        "ledger": audit["ledger"],
        "notes": audit["notes"],
    }


# Sections shown only when they have rows (most periods have none): the forms for people and the
# CSV then look as they did before such pools were settled. The JSON always has the key.
_WHEN_USED = frozenset({"outside_pools"})


def sections(report: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (key, title) table sections of a report, in order."""
    listed = AUDIT_SECTIONS if report.get("report") == "audit" else MEMBER_SECTIONS
    return tuple((key, title) for key, title in listed if key not in _WHEN_USED or report.get(key))


# Columns in device-hours whose key does not say so (pool rows keep their JSON keys): the CSV and
# the headings for people name the unit, so that a pool's `used` (device-hours) is never one column
# with a member's `used` (normalised units) that a spreadsheet would add up.
_DEVICE_HOURS = {"pools": frozenset({"capacity", "granted", "used"})}


def column_name(section: str, key: str) -> str:
    """The name a section's column goes by outside the JSON: `used` of a pool is `used_device_hours`."""
    return f"{key}_device_hours" if key in _DEVICE_HOURS.get(section, ()) else key


# Sections of one record, shown as item/value pairs by the renderers for people.
KEY_VALUE = frozenset({"run", "summary", "ledger", "statement"})


def section_rows(report: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The rows of a section: its list of rows, or the one record `run` is (a mapping in the JSON)."""
    value = report.get(key)
    if isinstance(value, Mapping):
        return [value] if value else []
    return list(value or [])


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
