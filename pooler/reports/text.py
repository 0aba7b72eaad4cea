"""Figures as people read them: shared by the Markdown, HTML and terminal renderers.

Quantities are shown to whole units with thousands separators, every one of them (`0.00` beside
`12,000` read as a different kind of figure); a figure that is not zero but would show as 0 shows as
`<1` (`>-1` when negative), never as a zero it is not. Ratios are shown as percentages, missing
ratios as "-", an accelerator's rate (units per device-hour) exactly. The exact figures are in the JSON and CSV forms.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

RATIO_KEYS = frozenset({"share", "served", "idle_share", "granted_share", "used_share", "stake"})
TEXT_KEYS = frozenset({"period", "unit", "idle_basis", "head_hash", "inputs_digest", "time", "actor"})


def human(key: str, value: Any) -> str:
    """One cell as text."""
    if key == "supersedes":  # a run's: the entry of the run it replaced, if any
        return "no earlier run" if value is None else f"run #{value}"
    if value is None:
        return "-"
    if isinstance(value, bool):
        if key == "flagged":
            return "IDLE" if value else ""
        return "yes" if value else "no"
    if key in RATIO_KEYS and isinstance(value, (Decimal, float)):
        return f"{Decimal(value) * 100:.1f}%"
    if key == "jain_index" and isinstance(value, (Decimal, float)):
        return f"{Decimal(value):.4f}"
    if key == "rate" and isinstance(value, Decimal):  # units per device-hour: 1.2 is not 1
        from pooler.core.model import dec_str

        return dec_str(value)
    if isinstance(value, Decimal):
        text = f"{value:,.0f}"  # (half-even: 0.5 shows as 0, so the test is on the text)
        if value != 0 and text in ("0", "-0"):
            return "<1" if value > 0 else ">-1"
        return "0" if text == "-0" else text
    if isinstance(value, int):
        return f"{value:,}" if key not in ("head_seq", "seq", "state_seq", "entries") else str(value)
    return str(value)


def is_numeric(key: str, rows: list[Mapping[str, Any]]) -> bool:
    """Whether a column is right-aligned: numbers and ratios, not text or flags."""
    values = [r.get(key) for r in rows if r.get(key) is not None]
    return bool(values) and all(isinstance(v, (Decimal, int, float)) and not isinstance(v, bool)
                                for v in values)


def label(key: str) -> str:
    """A column heading: `granted_device_hours` -> `granted device-hours`; a run's `seq` -> `entry`."""
    if key == "seq":
        return "entry"
    return key.replace("device_hours", "device-hours").replace("_", " ")
