"""Numbers and bars as short text for table cells: pure functions, no Textual."""

from __future__ import annotations

from decimal import Decimal

BLOCKS = " ▏▎▍▌▋▊▉█"  # eighths of a cell


def compact(value: float | Decimal | int | None) -> str:
    """A quantity in at most about six characters: 950, 12.3k, 4.51M, 1.66G; "-" for none."""
    if value is None:
        return "-"
    x = float(value)
    sign = "-" if x < 0 else ""
    x = abs(x)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= limit:
            scaled = x / limit
            digits = 2 if scaled < 10 else 1 if scaled < 100 else 0
            return f"{sign}{scaled:.{digits}f}{suffix}"
    return f"{sign}{x:.0f}" if x >= 10 or x == int(x) else f"{sign}{x:.1f}"


def full(value: float | Decimal | int | None, places: int = 0) -> str:
    """A quantity with thousands separators, for detail screens."""
    return "-" if value is None else f"{float(value):,.{places}f}"


def pct(part: float | Decimal | None, whole: float | Decimal | None = None) -> str:
    """`part` as a percentage (of `whole` when given); "-" when there is no ratio (0/0)."""
    if part is None:
        return "-"
    if whole is not None:
        if float(whole) <= 0:
            return "-"
        part = float(part) / float(whole)
    return f"{float(part) * 100:.1f}%"


def bar(fraction: float | Decimal | None, width: int) -> str:
    """A horizontal bar `width` cells wide, filled to `fraction` (clamped to [0, 1]) in eighths of
    a cell, padded with light shade so an empty bar still shows its extent."""
    if width <= 0:
        return ""
    f = 0.0 if fraction is None else min(1.0, max(0.0, float(fraction)))
    eighths = round(f * width * 8)
    whole, part = divmod(eighths, 8)
    out = "█" * whole
    if part and whole < width:
        out += BLOCKS[part]
    return out + "░" * (width - len(out))


def stacked_bar(extent: float | Decimal | None, filled: float | Decimal | None, width: int) -> str:
    """A bar whose length is `extent` of `width` (e.g. capacity against the largest) and whose solid
    part is the `filled` fraction of that length (e.g. the share granted); the rest is shaded."""
    if width <= 0:
        return ""
    e = 0.0 if extent is None else min(1.0, max(0.0, float(extent)))
    f = 0.0 if filled is None else min(1.0, max(0.0, float(filled)))
    cells = max(1, round(e * width)) if e > 0 else 0
    solid = round(f * cells)
    return "█" * solid + "▒" * (cells - solid) + " " * (width - cells)


def short_hash(value: str | None, n: int = 12) -> str:
    return "" if not value else value[:n]
