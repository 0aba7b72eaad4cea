"""Calendar periods named by ISO labels: months (`2026-11`), ISO weeks (`2026-W47`), quarters (`2026-Q4`).

Periods are half-open UTC intervals [start, end). The clock is never read here: callers pass the moment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


_EXAMPLE = {"month": "2026-11", "week": "2026-W47", "quarter": "2026-Q4"}


class PeriodError(ValueError):
    """A period label that is malformed or of the wrong kind."""


@dataclass(frozen=True, order=True)
class Period:
    start: datetime
    end: datetime
    label: str
    kind: str

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def next(self) -> "Period":
        return period_of(self.end, self.kind)

    def previous(self) -> "Period":
        return period_of(self.start - timedelta(seconds=1), self.kind)


def _utc(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def parse_period(label: str, kind: str | None = None) -> Period:
    """The period named by `label`; when `kind` is given the label must be of that kind."""
    text = label.strip()
    try:
        found, start, end = _bounds(label, text)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, PeriodError):
            raise
        # date() knows the years 1 to 9999 only: 0000-01, or 9999-12 (whose end is in 10000)
        raise PeriodError(f"{label!r} is out of range (a period must start in the year 0001 or later and end "
                          "before the year 10000)") from None
    if kind is not None and kind not in _EXAMPLE:
        raise PeriodError(f"the consortium's period kind {kind!r} is none of month, week and quarter "
                          "(a damaged ledger? pooler ledger verify says)")
    if kind is not None and found != kind:
        example = _EXAMPLE[kind]
        raise PeriodError(f"{label!r} is a {found}, but this consortium's periods are {kind}s (e.g. {example})")
    return Period(_utc(start), _utc(end), text, found)


def _bounds(label: str, text: str) -> tuple[str, date, date]:
    """The kind, first day and day after the period `text` names (`label` as given, for messages)."""
    if text.startswith("0000-") and any(p.match(text) for p in (_MONTH, _WEEK, _QUARTER)):
        raise ValueError("year 0")  # out of range (see `parse_period`)
    if m := _MONTH.match(text):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"{label!r} is not a month (months are 01 to 12)")
        return "month", date(year, month, 1), date(year + (month == 12), month % 12 + 1, 1)
    if m := _WEEK.match(text):
        year, week = int(m[1]), int(m[2])
        try:
            start = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise PeriodError(f"{label!r} is not an ISO week of {year}") from None
        return "week", start, start + timedelta(days=7)
    if m := _QUARTER.match(text):
        year, quarter = int(m[1]), int(m[2])
        return ("quarter", date(year, 3 * quarter - 2, 1),
                date(year + (quarter == 4), (3 * quarter) % 12 + 1, 1))
    raise PeriodError(f"{label!r} is not a period label (expected e.g. 2026-11, 2026-W47 or 2026-Q4)")


def period_of(moment: datetime, kind: str) -> Period:
    """The period of `kind` that contains `moment` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    if kind == "month":
        return parse_period(f"{moment.year:04d}-{moment.month:02d}")
    if kind == "week":
        year, week, _ = moment.date().isocalendar()
        return parse_period(f"{year:04d}-W{week:02d}")
    if kind == "quarter":
        return parse_period(f"{moment.year:04d}-Q{(moment.month - 1) // 3 + 1}")
    raise PeriodError(f"unknown period kind {kind!r} (month, week or quarter)")
