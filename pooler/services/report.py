"""Audit reports and member statements: read a period's run and usage, settle, build, render, write.

Everything a report says comes from the ledger in one read transaction: the committed run of the
period (its rows, never a fresh solve), the registry state the run was solved from (`state_seq`), the
usage recorded for the period, and the head of the journal; the verification runs on the whole ledger
just before, and its outcome is part of the report.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from pooler.core.period import PeriodError, parse_period
from pooler.core.settle import MemberFigures, settle
from pooler.errors import NotFound, UsageError
from pooler.reports.audit import build_audit, build_member, sections
from pooler.reports.render_csv import render_csv, render_json
from pooler.reports.render_html import render_html
from pooler.reports.render_md import render_markdown
from pooler.reports.text import human, is_numeric, label
from pooler.services.alloc import pick_run
from pooler.services.context import Context
from pooler.services.registry import open_ledger

USAGE_KIND = "usage.import"
USAGE_TABLE = "usage_line"
FORMATS = ("table", "md", "json", "csv", "html")
RENDERERS = {"md": render_markdown, "json": render_json, "csv": render_csv, "html": render_html}


def used_device_hours(reader, period: str) -> dict[tuple[str, str], Decimal]:
    """Device-hours used per (project, pool) in `period`, from every `usage.import` entry: the lines
    whose `period` column is that period, summed exactly by the database (never loaded row by row)."""
    return {(str(project), str(pool)): hours for (project, pool), _, hours in reader.attachment_sums(
        USAGE_TABLE, "device_hours", ("project", "pool"), kind=USAGE_KIND, equal={"period": period})}


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
    _check_period(period)
    with open_ledger(ctx) as ledger:
        verification = ledger.verify()
        with ledger.reader() as reader:
            view = pick_run(reader, period)
            snapshot = reader.state_at(view.payload["state_seq"]).snapshot(view.period)
            used = used_device_hours(reader, view.period)
            head = reader.head()
    return audit_of(view, snapshot, used, head, verification), snapshot


def audit_of(view, snapshot, used: Mapping[tuple[str, str], Decimal], head: tuple[int, str],
             verification=None) -> dict[str, Any]:
    """The audit report of a run already read: its rows, the snapshot it was solved from, the period's
    usage and the journal head. Without a `verification` the report's ledger section says `verified`
    None (not checked)."""
    figures = {m["member"]: MemberFigures(Decimal(m["share"]), Decimal(m["contributed"]),
                                          Decimal(m["allocated"])) for m in view.members}
    granted = {p["pool"]: Decimal(p["granted"]) for p in view.pools}
    settlement = settle(snapshot, view.period, figures, granted, used)
    problems = [str(p) for p in verification.problems] if verification is not None else []
    head_seq, head_hash = head
    ledger_info = {
        "head_seq": head_seq, "head_hash": head_hash,
        "entries": verification.entries if verification is not None else None,
        "verified": verification.ok if verification is not None else None,
        "verified_through": verification.head_seq if verification is not None else None,
        "problems": "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
    }
    entry = view.entry
    run = {"metrics": view.payload.get("metrics", {}),
           "provenance": {"seq": entry.seq, "time": entry.time, "actor": entry.actor,
                          "state_seq": view.payload["state_seq"],
                          "inputs_digest": view.payload.get("inputs_digest"),
                          "reason": view.payload.get("reason"), "supersedes": view.payload.get("supersedes")}}
    return build_audit(snapshot=snapshot, period=view.period, unit=view.payload.get("unit") or "units",
                       run=run, members=view.members, projects=view.projects, grants=view.grants,
                       settlement=settlement, used=used, ledger=ledger_info)


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
