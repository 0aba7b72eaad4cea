"""Audit reports and member statements: read a period's run and usage, settle, build, render, write.

Everything a report says comes from the ledger in one read transaction: the committed run of the
period (its rows, never a fresh solve), the registry state the run was solved from (`state_seq`), the
usage recorded for the period, and the head of the journal; the verification runs on the whole ledger
at the same time, in a second process where the machine has a core for it (`beside.Beside`), and its
outcome is part of the report.

On a big ledger (10,000 projects, 1,000 pools, a million usage lines) the usage is summed here per
(project, pool) in whole nanohours (`used_device_hours`), and the settlement and the project figures
work on those integers (`PairHours`): the same figures as Decimal arithmetic gives, in a fraction of
the time.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Mapping

from pooler.core.settle import MemberFigures, OutsidePool, OutsideProject, settle, used_pools, used_projects
from pooler.core.usage import NANO, PairColumns, PairHours
from pooler.errors import NotFound, UsageError
from pooler.io.usage import EXACT
from pooler.reports.audit import KEY_VALUE, build_audit, build_member, column_name, section_rows, sections
from pooler.reports.render_csv import render_csv, render_json
from pooler.reports.render_html import render_html
from pooler.reports.render_md import render_markdown
from pooler.reports.text import human, is_numeric, label
from pooler.services.alloc import period_option, pick_run
from pooler.services.beside import Beside
from pooler.services.context import Context
from pooler.services.heap import collector_paused
from pooler.services.registry import open_ledger

USAGE_KIND = "usage.import"
USAGE_TABLE = "usage_line"
FORMATS = ("table", "md", "json", "csv", "html")
ZERO = Decimal(0)
RENDERERS = {"md": render_markdown, "json": render_json, "csv": render_csv, "html": render_html}


def used_device_hours(reader, period: str) -> PairHours:
    """Device-hours used per (project, pool) in `period`, from every `usage.import` entry: the lines
    whose `period` column is that period, summed exactly, in (project, pool) order (a mapping to
    Decimals that also holds the sums as whole nanohours, see `PairHours`).

    The lines are streamed (a few thousand in memory at a time) and turned into three columns of
    integers: the project's and the pool's number in order of first appearance, and the device-hours
    in whole nanohours (each distinct text converted once). From `_COLUMNS_FROM` lines on, NumPy
    sums them per pair (`PairColumns.of_lines`) and the pairs stay columns: on the load ledger
    (327,000 lines, 321,000 pairs) that is a second less than a dict of (project, pool) pairs, which
    is made from the columns only for small periods or when a figure is finer than a nanohour."""
    from collections import defaultdict
    from itertools import count

    from pooler.store.ledger import stored_decimal  # SQLAlchemy: not on the dashboard's first path

    chunks = reader.attachment_columns(USAGE_TABLE, ("project", "pool", "device_hours"),
                                       kind=USAGE_KIND, equal={"period": period})
    projects: defaultdict[str, int] = defaultdict(count().__next__)  # id -> number, on first sight
    pools: defaultdict[str, int] = defaultdict(count().__next__)
    nano_of = _NanoOf()
    project_col: list[int] = []
    pool_col: list[int] = []
    nano_col: list[int] = []
    odd: dict[int, str] = {}  # line -> text, for the figures that are not whole nanohours (or huge)
    for project_text, pool_text, hours_text in chunks:
        project_col.extend(map(projects.__getitem__, project_text))
        pool_col.extend(map(pools.__getitem__, pool_text))
        first = len(nano_col)
        nano_col.extend(map(nano_of.__getitem__, hours_text))
        if min(nano_col[first:]) < 0:
            odd.update((first + i, text) for i, text in enumerate(hours_text) if nano_col[first + i] < 0)
    project_ids = [str(p) for p in projects]
    pool_ids = [str(p) for p in pools]
    if len(nano_col) >= _COLUMNS_FROM and not odd:
        import numpy as np

        columns = PairColumns.of_lines(np.array(project_col, dtype=np.int64), project_ids,
                                       np.array(pool_col, dtype=np.int64), pool_ids,
                                       np.array(nano_col, dtype=np.int64))
        if columns is not None:
            return PairHours.of_columns(columns)
    nano: dict[tuple[str, str], int] = {}
    fine: dict[tuple[str, str], Decimal] = {}
    for line, (j, q, n) in enumerate(zip(project_col, pool_col, nano_col)):
        key = (project_ids[j], pool_ids[q])
        if n < 0:
            text = odd[line]
            n = _nanohours(text)
            if n is None:
                nano.setdefault(key, 0)
                fine[key] = EXACT.add(fine.get(key, ZERO), stored_decimal(text))
                continue
        nano[key] = nano.get(key, 0) + n
    return PairHours(dict(sorted(nano.items())), fine, ordered=True)


_COLUMNS_FROM = 20_000  # lines from which the pairs are summed by NumPy and kept as columns
_NANO_HUGE = 2 ** 62  # a line's nanohours from here on go the exact way (the columns are int64)


class _NanoOf(dict):
    """Stored device-hours text -> whole nanohours, or -1 when the text is not a whole number of
    nanohours below `_NANO_HUGE`; each text converted once (texts repeat), at most 100,000 kept."""

    def __missing__(self, text: Any) -> int:
        n = _nanohours(text)
        n = -1 if n is None or n >= _NANO_HUGE else n
        if len(self) < 100_000:
            self[text] = n
        return n


# Stored device-hours text that is a whole number of nanohours: digits, at most nine decimals.
_NANO_TEXT = re.compile(r"([0-9]{1,10})(?:\.([0-9]{1,9}))?\Z", re.ASCII).match


def _nanohours(text: Any) -> int | None:
    m = _NANO_TEXT(text) if isinstance(text, str) else None
    if m is None:
        return None
    whole, frac = m.groups()
    return int(whole) * NANO + (int(frac.ljust(9, "0")) if frac else 0)


def _check_period(period: str | None) -> None:
    if period is not None:
        period_option(period)


def audit(ctx: Context, period: str | None = None) -> dict[str, Any]:
    """The audit report of `period` (default: the latest period with a recorded run)."""
    return _audit(ctx, period)[0]


def _audit(ctx: Context, period: str | None) -> tuple[dict[str, Any], Any]:
    # The whole ledger is verified (in a second process, see `Beside`) while the run and the usage
    # are read and settled; the report waits for the verification only to fill its ledger section.
    _check_period(period)
    _load_store(ctx)
    with Beside(_verify, ctx) as verification, collector_paused():
        with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
            view = pick_run(reader, period)
            snapshot = reader.state_at(view.payload["state_seq"]).snapshot(view.period)
            used = used_device_hours(reader, view.period)
            outside, outside_pools = outside_records(reader, snapshot, used)
            head = reader.head()
        report = audit_of(view, snapshot, used, head, outside=outside, outside_pools=outside_pools)
        checked = verification.result()
        report["ledger"] = [_ledger_info(head, checked)]
        if not checked.ok:
            through = report["ledger"][0]["verified_through"]
            report["notes"] = [
                f"THE LEDGER DOES NOT VERIFY ({checked.problem}; the journal verifies through entry "
                f"#{through}): the figures of this report are read from the ledger as it stands and "
                "cannot be trusted. Run `pooler ledger verify` for every problem."] + report["notes"]
    return report, snapshot


def _load_store(ctx: Context) -> None:
    """Import the store and the database's driver before the verification's process is forked, so
    that the two processes do not each import them (about 0.3 s of CPU on SQLite, more with psycopg).
    Nothing connects here; a URL that names no known database is left to `open_ledger` to report."""
    import pooler.store.ledger  # noqa: F401 - SQLAlchemy, the journal, the projections, the digests

    from sqlalchemy.engine import make_url

    try:
        make_url(ctx.url).get_dialect()
    except Exception:  # noqa: BLE001 - reported by open_ledger, in the one way it reports it
        pass


def _verify(ctx: Context):
    with open_ledger(ctx, read_only=True) as ledger, collector_paused():
        return ledger.verify()


def outside_records(reader, snapshot, used: Mapping[tuple[str, str], Decimal]
                    ) -> tuple[dict[str, OutsideProject], dict[str, OutsidePool]]:
    """The projects and the pools with usage in `used` that are not in the run's `snapshot` (retired
    before the run, or added after it), as the ledger last recorded them, retired ones included. A
    project: the sponsors and stakes fair-share charges its usage to. A pool: its owner, its type and
    its region (its own, else its owner's as last recorded), and its type's rate for the period (the
    run's where the run has the type, else the ledger's, as fair-share rates it). An id the ledger
    never knew is left out (unknown). The ledger's state is read only when such a record exists."""
    missing = used_projects(used) - {p.id for p in snapshot.projects}
    missing_pools = used_pools(used) - {p.id for p in snapshot.pools}
    if not missing and not missing_pools:
        return {}, {}
    state = reader.state()
    records = state.collection("project")
    members = state.collection("member")

    def name(member: str) -> str:
        return members[member].record.name if member in members else ""

    projects = {p: OutsideProject(records[p].record, not records[p].active,
                                  tuple((m, name(m)) for m in sorted(records[p].record.stakes())))
                for p in sorted(missing) if p in records}
    pools: dict[str, OutsidePool] = {}
    if missing_pools:
        pool_records = state.collection("pool")
        run_rates = {a.id: a.rate for a in snapshot.accelerators}
        for q in sorted(missing_pools):
            if q not in pool_records:
                continue
            record = pool_records[q].record
            owner = members.get(record.member)
            region = record.region if record.region is not None else (
                owner.record.region if owner is not None else None)
            rate = run_rates.get(record.accelerator)
            if rate is None:
                rate = state.rate_as_of(record.accelerator, snapshot.period)
            pools[q] = OutsidePool(record, not pool_records[q].active, rate, region,
                                   owner_name=name(record.member))
    return projects, pools


def audit_of(view, snapshot, used: Mapping[tuple[str, str], Decimal], head: tuple[int, str],
             verification=None, outside: Mapping[str, OutsideProject] | None = None,
             outside_pools: Mapping[str, OutsidePool] | None = None) -> dict[str, Any]:
    """The audit report of a run already read: its rows, the snapshot it was solved from, the period's
    usage, the journal head, and the projects and pools outside the snapshot that were used
    (`outside_records`). Without a `verification` the report's ledger section says `verified` None
    (not checked)."""
    figures = {m["member"]: MemberFigures(Decimal(m["share"]), Decimal(m["contributed"]),
                                          Decimal(m["allocated"])) for m in view.members}
    granted = {p["pool"]: Decimal(p["granted"]) for p in view.pools}
    settlement = settle(snapshot, view.period, figures, granted, used, outside, outside_pools)
    entry = view.entry
    run = {"metrics": view.payload.get("metrics", {}),
           # which run this is, first: tables and CSV show it as the report's first section
           "provenance": {"seq": entry.seq, "supersedes": view.payload.get("supersedes"),
                          "reason": view.payload.get("reason"), "time": entry.time, "actor": entry.actor,
                          "state_seq": view.payload["state_seq"],
                          "inputs_digest": view.payload.get("inputs_digest")}}
    return build_audit(snapshot=snapshot, period=view.period, unit=view.payload.get("unit") or "units",
                       run=run, members=view.members, projects=view.projects, grants=view.grants,
                       settlement=settlement, used=used, ledger=_ledger_info(head, verification))


def _ledger_info(head: tuple[int, str], verification=None) -> dict[str, Any]:
    """The report's ledger section: the head, and what the verification found (None: not checked)."""
    problems = [str(p) for p in verification.problems] if verification is not None else []
    head_seq, head_hash = head
    return {
        "head_seq": head_seq, "head_hash": head_hash,
        "entries": verification.entries if verification is not None else None,
        "verified": verification.ok if verification is not None else None,
        "verified_through": _verified_through(verification) if verification is not None else None,
        "problems": "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
    }


def _verified_through(verification) -> int:
    """The last entry the verification found nothing wrong with, or before: the head when it passed,
    else the entry before the first one blamed (the head when only tables are to blame)."""
    blamed = [p.seq for p in verification.problems if p.seq is not None]
    return min(blamed) - 1 if blamed else verification.head_seq


def member(ctx: Context, member_id: str, period: str | None = None) -> dict[str, Any]:
    """One member's statement for `period` (default: the latest period with a recorded run)."""
    report, snapshot = _audit(ctx, period)
    return member_of(report, member_id, snapshot)


def member_of(report: Mapping[str, Any], member_id: str, snapshot) -> dict[str, Any]:
    """One member's statement cut from an audit report already built."""
    try:
        return build_member(report, member_id, snapshot)
    except KeyError:
        raise NotFound(f'no member "{member_id}" in the {report["period"]} run') from None


def render(report: Mapping[str, Any], fmt: str) -> str:
    """The report as text in `fmt` (md, json, csv or html)."""
    try:
        return RENDERERS[fmt](report)
    except KeyError:
        raise UsageError(f"--format: {fmt!r} is not one of {', '.join(RENDERERS)}") from None


def display_sections(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's tables as text cells, for the terminal: title, columns, rows, numeric columns,
    and whether the table is a single record better shown as item/value pairs."""
    out = []
    for key, title in sections(report):
        rows = section_rows(report, key)
        if key in KEY_VALUE and len(rows) == 1:
            out.append({"title": title, "columns": ["item", "value"],
                        "rows": [(label(k), human(k, v)) for k, v in rows[0].items()], "numeric": []})
            continue
        columns = list(rows[0]) if rows else []
        out.append({"title": title, "columns": [label(column_name(key, c)) for c in columns],
                    "rows": [tuple(human(c, r.get(c)) for c in columns) for r in rows],
                    "numeric": [label(column_name(key, c)) for c in columns if is_numeric(c, rows)],
                    "flagged": [bool(r.get("flagged")) for r in rows]})
    return out
