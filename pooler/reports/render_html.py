"""A report as one self-contained HTML page: inline CSS, inline SVG charts, no script, no external URL.

Every piece of text that comes from the ledger (ids, names, notes, actors) passes through
`html.escape`, in the page and in the SVGs alike: ids may contain `<script>`.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any, Mapping, Sequence

from pooler.reports.audit import KEY_VALUE, column_name, section_rows, sections
from pooler.reports.text import human, is_numeric, label
NUM = ' class="num"'
COLOURS = {"contributed": "#4e79a7", "allocated": "#f28e2b", "used": "#59a14f",
           "granted_share": "#f28e2b", "used_share": "#59a14f"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
       margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.flagged td { background: #fff1f0; }
span.flag { color: #b00020; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
svg text { font-family: inherit; font-size: 11px; fill: #333; }
code { font-size: .85em; word-break: break-all; }
.ok { color: #1b7f3b; font-weight: 600; } .bad { color: #b00020; font-weight: 600; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(key: str, rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    if key in KEY_VALUE and len(rows) == 1:
        body = "".join(
            f"<tr><th scope=\"row\">{_e(label(k))}</th>"
            f"<td{NUM if is_numeric(k, rows) else ''}>{_cell(k, v)}</td></tr>"
            for k, v in rows[0].items())
        return f'<table class="kv">{body}</table>'
    keys = list(rows[0])
    numeric = {k for k in keys if is_numeric(k, rows)}
    head = "".join(f'<th scope="col">{_e(label(column_name(key, k)))}</th>' for k in keys)
    body = []
    for r in rows:
        cls = ' class="flagged"' if r.get("flagged") else ""
        cells = "".join(f"<td{NUM if k in numeric else ''}>{_cell(k, r.get(k))}</td>"
                        for k in keys)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(key: str, value: Any) -> str:
    text = _e(human(key, value))
    if key == "flagged" and value:
        return f'<span class="flag">{text}</span>'
    if key in ("head_hash", "inputs_digest"):
        return f"<code>{text}</code>"
    if key == "verified":
        return f'<span class="{"ok" if value else "bad"}">{text}</span>'
    return text


# --- charts -------------------------------------------------------------------------------------


def _legend(series: Sequence[str], x: float, y: float) -> str:
    parts = []
    for i, name in enumerate(series):
        parts.append(f'<rect x="{x + i * 120:.0f}" y="{y - 9:.0f}" width="10" height="10" '
                     f'fill="{COLOURS[name]}"/><text x="{x + i * 120 + 14:.0f}" y="{y:.0f}">'
                     f'{_e(label(name))}</text>')
    return "".join(parts)


def grouped_bars(title: str, rows: Sequence[Mapping[str, Any]], name_key: str, series: Sequence[str], *,
                 percent: bool = False, unit: str = "") -> str:
    """Horizontal grouped bars: one group per row, one bar per series; an inline SVG figure."""
    label_w, bar_h, gap, width = 170, 9, 8, 640
    plot_w = width - label_w - 90
    group_h = bar_h * len(series) + gap
    height = 30 + len(rows) * group_h + 10
    values = [Decimal(r.get(s) or 0) for r in rows for s in series]
    top = Decimal(1) if percent else max([v for v in values if v > 0] or [Decimal(1)])
    if percent:
        top = max([top, *values])
    parts = [f'<svg role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{_e(title)}</title>',
             _legend(series, label_w, 14)]
    for i, r in enumerate(rows):
        y0 = 26 + i * group_h
        name = str(r.get(name_key))
        short = name if len(name) <= 26 else name[:25] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y0 + group_h / 2:.1f}" text-anchor="end" '
                     f'dominant-baseline="middle">{_e(short)}<title>{_e(name)}</title></text>')
        for j, s in enumerate(series):
            v = Decimal(r.get(s) or 0)
            w = float(max(v, Decimal(0)) / top) * plot_w if top > 0 else 0.0
            y = y0 + j * bar_h
            text = f"{v * 100:.1f}%" if percent else f"{v:,.0f}"
            parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 1}" '
                         f'fill="{COLOURS[s]}"><title>{_e(name)}: {_e(label(s))} {_e(text)}'
                         f'{" " + _e(unit) if unit and not percent else ""}</title></rect>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 1.5}" '
                         f'font-size="9">{_e(text)}</text>')
    parts.append(f'<line x1="{label_w}" y1="22" x2="{label_w}" y2="{height - 6}" stroke="#999"/>')
    parts.append("</svg>")
    return f'<figure><figcaption>{_e(title)}</figcaption>{"".join(parts)}</figure>'


def _charts(report: Mapping[str, Any]) -> str:
    unit = report.get("unit") or ""
    used = any(Decimal(r.get("used") or 0) for r in report.get("members", []))
    series = ("contributed", "allocated", "used") if used else ("contributed", "allocated")
    if report.get("report") == "audit":
        members = sorted(report["members"], key=lambda r: (-r["contributed"], r["member"]))
        figures = [
            grouped_bars(f"Contributed vs received per member ({unit})", members, "member", series, unit=unit),
            grouped_bars("Utilisation by region (share of capacity units)", report["by_region"], "name",
                         ("granted_share", "used_share"), percent=True),
            grouped_bars("Utilisation by accelerator (share of capacity units)", report["by_accelerator"],
                         "name", ("granted_share", "used_share"), percent=True),
        ]
    else:
        figures = [grouped_bars(f"Contributed vs received ({unit})", report["statement"], "member", series,
                                unit=unit)]
        if report.get("pools"):
            pools = [{**p, "granted_share": _share(p["granted"], p["capacity"]),
                      "used_share": _share(p["used"], p["capacity"])} for p in report["pools"]]
            figures.append(grouped_bars("Utilisation of its pools (share of capacity)", pools, "pool",
                                        ("granted_share", "used_share"), percent=True))
    return f'<section class="charts">{"".join(figures)}</section>'


def _share(part: Decimal, whole: Decimal) -> Decimal:
    return Decimal(0) if whole <= 0 else part / whole


def render_html(report: Mapping[str, Any]) -> str:
    run = report.get("run") or {}
    meta = ""
    if run:
        meta = (f'<p class="meta">Run #{_e(run.get("seq"))} recorded {_e(run.get("time"))} by '
                f'{_e(run.get("actor"))}, solved from ledger state #{_e(run.get("state_seq"))}. '
                f'Quantities in {_e(report.get("unit"))} unless marked device-hours; pools idle over '
                f'{_e(human("idle_share", report.get("idle_flag")))} of capacity are flagged.</p>')
    body = [f"<h1>{_e(report['title'])}</h1>", meta, _charts(report)]
    for key, title in sections(report):
        body.append(f'<section id="{_e(key)}"><h2>{_e(title)}</h2>{_table(key, section_rows(report, key))}</section>')
    if report.get("notes"):
        items = "".join(f"<li>{_e(n)}</li>" for n in report["notes"])
        body.append(f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(report['title'])}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
