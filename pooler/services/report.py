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

from pooler.core.period import PeriodError, parse_period
from pooler.core.settle import MemberFigures, settle
from pooler.core.usage import NANO, PairHours
from pooler.errors import NotFound, UsageError
from pooler.io.usage import EXACT
from pooler.reports.audit import build_audit, build_member, sections
from pooler.reports.render_csv import render_csv, render_json
from pooler.reports.render_html import render_html
from pooler.reports.render_md import render_markdown
from pooler.reports.text import human, is_numeric, label
from pooler.services.alloc import pick_run
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

    The lines are streamed (a few thousand in memory at a time) and summed here, per project and
    pool, in whole nanohours for the figures that are whole nanohours (nearly all) and as exact
    Decimals for the others. That is several times faster than the database's GROUP BY, which sorts
    every line of the period, and sorting the projects and then each one's pools is faster again
    than sorting (project, pool) pairs."""
    from pooler.store.ledger import stored_decimal  # SQLAlchemy: not on the dashboard's first path

    nano: dict[str, dict[str, int]] = {}
    fine: dict[tuple[str, str], Decimal] = {}
    nano_of: dict[str, int | None] = {}  # device-hours text -> nanohours (None: finer); texts repeat
    for project, pool, text in reader.attachment_stream(USAGE_TABLE, ("project", "pool", "device_hours"),
                                                        kind=USAGE_KIND, equal={"period": period}):
        n = nano_of.get(text, _UNSEEN)
        if n is _UNSEEN:
            n = _nanohours(text)
            if len(nano_of) < 100_000:
                nano_of[text] = n
        pools = nano.get(project)
        if pools is None:
            pools = nano[project] = {}
        if n is not None:
            pools[pool] = pools.get(pool, 0) + n
        else:
            pools.setdefault(pool, 0)
            fine[(project, pool)] = EXACT.add(fine.get((project, pool), ZERO), stored_decimal(text))
    pairs: dict[tuple[str, str], int] = {}
    for project in sorted(nano):
        pools = nano[project]
        for pool in sorted(pools):
            pairs[(str(project), str(pool))] = pools[pool]
    return PairHours(pairs, {(str(p), str(q)): h for (p, q), h in fine.items()}, ordered=True)


_UNSEEN = object()
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
        try:
            parse_period(period)
        except PeriodError as exc:
            raise UsageError(f"--period: {exc}") from None


def audit(ctx: Context, period: str | None = None) -> dict[str, Any]:
    """The audit report of `period` (default: the latest period with a recorded run)."""
    return _audit(ctx, period)[0]


def _audit(ctx: Context, period: str | None) -> tuple[dict[str, Any], Any]:
    # The whole ledger is verified (in a second process, see `Beside`) while the run and the usage
    # are read and settled; the report waits for the verification only to fill its ledger section.
    _check_period(period)
    with Beside(_verify, ctx) as verification, collector_paused():
        with open_ledger(ctx) as ledger, ledger.reader() as reader:
            view = pick_run(reader, period)
            snapshot = reader.state_at(view.payload["state_seq"]).snapshot(view.period)
            used = used_device_hours(reader, view.period)
            head = reader.head()
        report = audit_of(view, snapshot, used, head)
        report["ledger"] = [_ledger_info(head, verification.result())]
    return report, snapshot


def _verify(ctx: Context):
    with open_ledger(ctx) as ledger, collector_paused():
        return ledger.verify()


def audit_of(view, snapshot, used: Mapping[tuple[str, str], Decimal], head: tuple[int, str],
             verification=None) -> dict[str, Any]:
    """The audit report of a run already read: its rows, the snapshot it was solved from, the period's
    usage and the journal head. Without a `verification` the report's ledger section says `verified`
    None (not checked)."""
    figures = {m["member"]: MemberFigures(Decimal(m["share"]), Decimal(m["contributed"]),
                                          Decimal(m["allocated"])) for m in view.members}
    granted = {p["pool"]: Decimal(p["granted"]) for p in view.pools}
    settlement = settle(snapshot, view.period, figures, granted, used)
    entry = view.entry
    run = {"metrics": view.payload.get("metrics", {}),
           "provenance": {"seq": entry.seq, "time": entry.time, "actor": entry.actor,
                          "state_seq": view.payload["state_seq"],
                          "inputs_digest": view.payload.get("inputs_digest"),
                          "reason": view.payload.get("reason"), "supersedes": view.payload.get("supersedes")}}
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
        "verified_through": verification.head_seq if verification is not None else None,
        "problems": "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
    }


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
        rows = list(report.get(key) or [])
        if key in ("summary", "ledger", "statement") and len(rows) == 1:
            out.append({"title": title, "columns": ["item", "value"],
                        "rows": [(label(k), human(k, v)) for k, v in rows[0].items()], "numeric": []})
            continue
        columns = list(rows[0]) if rows else []
        out.append({"title": title, "columns": [label(c) for c in columns],
                    "rows": [tuple(human(c, r.get(c)) for c in columns) for r in rows],
                    "numeric": [label(c) for c in columns if is_numeric(c, rows)],
                    "flagged": [bool(r.get("flagged")) for r in rows]})
    return out
