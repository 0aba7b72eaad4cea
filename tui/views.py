"""The six views' contents: what each table shows, built from the services' values, and the Overview
and Allocate panes. Rows carry plain values; `TableView` renders one page of them."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.cells import cell_len
from rich.console import Group as RichGroup
from rich.table import Table
from rich.text import Text

from tui.format import compact, full, pct, short_hash, stacked_bar
from tui.model import Column, Row, Sort, row

# --- table definitions ---------------------------------------------------------------------------

MEMBER_COLUMNS = (
    Column("member", "member"), Column("share", "share", numeric=True),
    Column("contributed", "contrib.", numeric=True), Column("entitled", "entitled", numeric=True),
    Column("allocated", "allocated", numeric=True), Column("used", "used", numeric=True),
    Column("balance", "balance", numeric=True), Column("quota_bar", "quota: allocated/entitled"),
)
MEMBER_SORTS = (Sort("share", True), Sort("allocated", True), Sort("balance", True),
                Sort("quota", False, "quota"), Sort("member", False))

PROJECT_COLUMNS = (
    Column("project", "project"), Column("demand", "demand", numeric=True),
    Column("allocated", "allocated", numeric=True), Column("served_bar", "served"),
    Column("bottleneck", "bottleneck"), Column("sponsors", "sponsors (stakes)"),
)
PROJECT_SORTS = (Sort("allocated", True), Sort("served", False), Sort("demand", True),
                 Sort("bottleneck", False), Sort("project", False))

# In device-hours, as `alloc show` and the member statement give pools (a pool's hours, not the
# consortium's unit: review, greater-bay's pools added to 3.15M under headings the Overview's 3.72M
# NCU seemed to share), and the headings say so.
POOL_NOUN = "pools, in device-hours (dev-h)"
POOL_COLUMNS = (
    Column("pool", "pool"), Column("member", "owner"), Column("accelerator", "accelerator"),
    Column("capacity", "capacity\ndev-h", numeric=True), Column("granted", "granted\ndev-h", numeric=True),
    Column("used", "used\ndev-h", numeric=True), Column("idle", "idle", numeric=True),
    Column("use_bar", "of capacity:\n█ used ▒ granted"),
)
POOL_SORTS = (Sort("pool", False), Sort("capacity", True, "capacity"), Sort("idle", True),
              Sort("member", False), Sort("accelerator", False))

LEDGER_COLUMNS = (
    Column("seq", "#", numeric=True), Column("time", "time"), Column("kind", "kind"),
    Column("subject", "subject"), Column("actor", "actor"), Column("hash", "hash"),
)
LEDGER_SORTS = (Sort("seq", True), Sort("seq", False), Sort("kind", False), Sort("actor", False))

def diff_columns(first: str = "committed", second: str = "preview") -> tuple[Column, ...]:
    """The Allocate view's table: the committed run against the preview, or, once the preview is
    committed, the preview against the run recorded."""
    return (Column("what", "what"), Column("id", "id"), Column("first", first, numeric=True),
            Column("second", second, numeric=True), Column("change", "change", numeric=True))


DIFF_COLUMNS = diff_columns()
DIFF_SORTS = (Sort("abs_change", True, "size of change"), Sort("id", False), Sort("second", True))


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def member_rows(report: Mapping[str, Any], has_usage: bool = True) -> list[Row]:
    """Without usage imported, used and balance are "-", as on the Overview (review: 0 here, "no
    usage imported for the period yet" there)."""
    out = []
    for m in report["members"]:
        entitled, allocated = _f(m["entitled"]), _f(m["allocated"])
        quota = allocated / entitled if entitled else None
        used, balance = (_f(m["used"]), _f(m["balance"])) if has_usage else (None, None)
        out.append(row(m["member"], (
            m["member"], pct(m["share"]), _f(m["contributed"]), entitled, allocated, used,
            balance, (quota, quota),
        ), {"member": m["member"], "share": _f(m["share"]), "allocated": allocated,
            "balance": balance, "quota": quota},
            text=lambda m=m: f"{m['member']} {m.get('name') or ''}"))
    return out


def project_rows(report: Mapping[str, Any]) -> list[Row]:
    out = []
    for p in report["projects"]:
        served = _f(p["served"])
        out.append(row(p["project"], (
            p["project"], _f(p["demand"]), _f(p["allocated"]), (served, served), p["bottleneck"],
            p["sponsors"],
        ), {"project": p["project"], "served": served, "demand": _f(p["demand"]),
            "allocated": _f(p["allocated"]), "bottleneck": p["bottleneck"]},
            text=lambda p=p: f"{p['project']} {p['sponsors']} {p['bottleneck']}"))
    return out


def pool_rows(report: Mapping[str, Any], has_usage: bool = True) -> list[Row]:
    """Without usage imported, used is "-" (and idle, as in the audit, is what was not granted)."""
    out = []
    for p in report["pools"]:
        capacity, granted = _f(p["capacity"]), _f(p["granted"])
        idle = _f(p["idle_share"])
        used = _f(p["used"]) if has_usage else None
        share = (granted / capacity if capacity and granted is not None else None,
                 used / granted if granted and used else 0.0)
        # a pool idle over 30% is marked in words, as in the audit, not by bold alone
        idle_text = (Text(f"{pct(idle)} IDLE", justify="right", style="bold") if p.get("flagged")
                     else Text(pct(idle), justify="right"))
        out.append(row(p["pool"], (
            p["pool"], p["member"], p["accelerator"], capacity, granted, used, idle_text, share,
        ), {"pool": p["pool"], "capacity": capacity, "idle": idle, "member": p["member"],
            "accelerator": p["accelerator"]}, group=p["region"] or "(no region)",
            text=lambda p=p: f"{p['pool']} {p['member']} {p['accelerator']} {p['region']}"))
    return out


def ledger_rows(entries: Sequence[Any], subject) -> list[Row]:
    out = []
    for e in entries:
        what = subject(e)
        out.append(row(str(e.seq), (
            str(e.seq), e.time[:19].replace("T", " "), e.kind, what, e.actor, short_hash(e.hash),
        ), {"seq": e.seq, "kind": e.kind, "actor": e.actor},
            text=lambda e=e, what=what: f"#{e.seq} {e.kind} {what} {e.actor} {e.hash} {e.time}"))
    return out


def diff_rows(diff: Mapping[str, Any]) -> list[Row]:
    """Rows of `diff` (as `alloc.preview_changes` or `dashboard.commit_changes` give it): the values
    under its "first" and "second" names, and the change."""
    first, second = diff.get("first", "committed"), diff.get("second", "preview")
    out = []
    for what, key in (("member", "member"), ("project", "project")):
        for d in diff[f"{key}s"]:
            change = d["change"]
            sign = Text(f"{'+' if change > 0 else ''}{compact(change)}" if abs(change) >= 0.5 else "0",
                        justify="right", style="bold" if abs(change) >= 0.5 else "dim")
            out.append(row(f"{what}:{d[key]}", (what, d[key], d[first], d[second], sign),
                           {"abs_change": abs(change), "id": d[key], "second": d[second]},
                           text=lambda what=what, d=d, key=key: f"{what} {d[key]}"))
    return out


# --- the Overview ---------------------------------------------------------------------------------


BAR_SIDE_BY_SIDE = 16  # the shortest bar for which the two panels go side by side


def _groups_table(title: str, groups, unit: str, width: int, colours: Mapping[str, str],
                  has_usage: bool, bar_width: int | None = None) -> RichGroup:
    """One row per region or accelerator: a bar as long as its capacity (against the largest) whose
    solid part is the share granted (or used, once usage is imported), under a heading line. The bar
    takes the `width` the other columns leave (6 to 30 cells), or is `bar_width` long."""
    if bar_width is None:
        bar_width = max(6, min(30, width - _panel_width(groups, unit, has_usage, 0)))
    largest = max((float(g.capacity_units) for g in groups), default=0.0)
    what = "used" if has_usage else "granted"
    # the heading is a line of its own: as the table's title it wrapped to the table's width (review:
    # "not granted" fell onto the column headings at 120 columns)
    heading = Text(f"{title}: capacity, █ {what} ▒ not {what}", style="bold", no_wrap=True,
                   overflow="ellipsis")
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    table.add_column("", no_wrap=True, overflow="ellipsis", max_width=26)
    table.add_column(f"{unit}", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True, min_width=bar_width)
    table.add_column("granted", justify="right", no_wrap=True)
    if has_usage:
        table.add_column("used", justify="right", no_wrap=True)
    for g in groups:
        extent = float(g.capacity_units) / largest if largest else 0.0
        cells = [g.name, compact(g.capacity_units),
                 Text(stacked_bar(extent, g.used_share if has_usage else g.granted_share, bar_width),
                      style=colours.get("bar", "")),
                 pct(g.granted_share)]
        if has_usage:
            cells.append(pct(g.used_share))
        table.add_row(*cells)
    if not groups:
        table.add_row("(no pools)", "", "", "")
    return RichGroup(heading, table)


def _panel_width(groups, unit: str, has_usage: bool, bar_width: int) -> int:
    """The cells a panel's table takes with its names whole (up to 26 cells) and a bar this long."""
    from rich.console import Console
    from rich.measure import Measurement

    table = _groups_table("", groups, unit, 0, {}, has_usage, bar_width).renderables[1]
    console = Console(width=1000, color_system=None)
    return Measurement.get(console, console.options, table).maximum


def groups_side_by_side(o, width: int) -> bool:
    """Whether the region and accelerator panels fit side by side in `width` cells, each with its
    names whole and a bar of 16 cells at least (review: at 120 columns they sat side by side with
    8-cell bars and cut names, while stacked at 100 they read better)."""
    if not o.by_accelerator:
        return False
    need = max(_panel_width(g, o.unit, o.has_usage, BAR_SIDE_BY_SIDE) for g in (o.by_region, o.by_accelerator))
    return width // 2 >= need


def overview_header(o, width: int | None = None) -> Text:
    """The consortium, the period and its run; in `width` cells the reason, then who ran it, then
    when, give way, then the consortium's name is shortened (to 12 cells), then the run's number
    goes, before anything else is cut: the period stays whole down to about 30 cells."""
    run = o.run or {}
    parts = [("", o.consortium)]
    if o.period is not None:
        parts += [("  ·  ", f"period {o.period}"), ("  ·  ", f"run #{run.get('seq')}"),
                  (" of ", run.get("time", "")[:10]), (" by ", str(run.get("actor")))]
        if run.get("reason"):
            parts.append((" ", f"({run['reason']})"))

    # in terminal cells: a Chinese name takes two a character (review: measured in characters, the
    # date stayed and was cut in the middle)
    def cells() -> int:
        return sum(cell_len(a) + cell_len(b) for a, b in parts)

    while width is not None and len(parts) > 3 and cells() > width:
        parts.pop()
    if width is not None and cells() > width and len(parts) > 1:
        # the name gives way before the period (review: at 60 columns "period 20…")
        room = max(12, cell_len(o.consortium) - (cells() - width))
        if room < cell_len(o.consortium):
            name = Text(o.consortium)
            name.truncate(room, overflow="ellipsis")
            parts[0] = ("", name.plain)
        if cells() > width and len(parts) > 2:
            parts.pop()
    text = Text(no_wrap=True, overflow="ellipsis")
    for n, (sep, piece) in enumerate(parts):
        text.append(sep)
        text.append(piece, style="bold" if n == 0 else "")
    if width is not None:
        text.truncate(width, overflow="ellipsis")
    return text


def overview_totals(o, colours: Mapping[str, str]) -> RichGroup:
    unit = o.unit
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(style=colours.get("muted", "dim"))
    cap = float(o.capacity_units)
    grid.add_row("capacity", f"{full(o.capacity_units)} {unit}",
                 f"{compact(o.capacity_device_hours)} device-hours, {o.pools} pools, {o.members} members")
    if o.period is None:
        return RichGroup(grid)
    grid.add_row("granted", f"{full(o.granted_units)} {unit}", f"{pct(o.granted_units, cap)} of capacity")
    grid.add_row("allocated", f"{full(o.allocated_units)} {unit}", "to projects, at their speed")
    if o.has_usage:
        grid.add_row("used", f"{full(o.used_units)} {unit}",
                     f"{pct(o.used_units, cap)} of capacity, {compact(o.used_device_hours)} device-hours")
    else:
        grid.add_row("used", "-", "no usage imported for the period yet")
    grid.add_row("idle", pct(o.idle_share), "of capacity " + ("unused" if o.has_usage else "not granted"))
    jain = "-" if o.jain_index is None else f"{o.jain_index:.3f}"
    grid.add_row("Jain's index", jain, "1 = members get equal units per unit of share")
    grid.add_row("satisfied", f"{o.satisfied_projects} of {o.projects}", "projects got all they asked for")
    return RichGroup(grid)


def overview_groups(o, width: int, colours: Mapping[str, str]) -> tuple[RichGroup, RichGroup]:
    return (_groups_table("By region", o.by_region, o.unit, width, colours, o.has_usage),
            _groups_table("By accelerator", o.by_accelerator, o.unit, width, colours, o.has_usage))


def verify_status(verification: Mapping[str, Any] | None, colours: Mapping[str, str],
                  count: bool = True) -> Text:
    """Whether the ledger verifies, in words: "verifying…", "✓ verifies (74 entries)" (without the
    count: "✓ verifies"), or why not."""
    text = Text()
    if verification is None:
        text.append("verifying…", style=colours.get("muted", "dim"))
    elif verification.get("error"):
        text.append(f"could not verify: {verification['error']}", style=colours.get("error", "red"))
    elif verification["ok"]:
        n = verification["entries"]
        text.append(f"✓ verifies ({n:,} {'entry' if n == 1 else 'entries'})" if count else "✓ verifies",
                    style=colours.get("ok", "green"))
    else:
        text.append(f"✗ DOES NOT VERIFY: {verification['problem']}", style=f"bold {colours.get('error', 'red')}")
    return text


def ledger_status(o, verification: Mapping[str, Any] | None, colours: Mapping[str, str],
                  name: str | None = None, width: int | None = None) -> Text:
    """The Overview's ledger line. In `width` cells the head's hash gets shorter, then goes, then
    the start of the ledger's name (to its file name), then the head's number: the verification
    stays whole (review: at 80 columns "✓ verifies (79" / "entries)" wrapped). A failure (the
    ledger does not verify, or could not be verified) too long for that goes on lines of its own
    below, whole, and the first line keeps the name and the head as it can (review: "Ledger ….db
    ·  ✗ DOES NOT VERIFY: ...", without the head)."""
    status = verify_status(verification, colours)
    name = name or o.ledger
    failed = verification is not None and (bool(verification.get("error")) or not verification["ok"])
    if failed and width is not None and _ledger_line(o, name, status, None).cell_len > width:
        text = _ledger_line(o, name, None, width)
        text.append("\n")
        text.append_text(status)
        return text
    return _ledger_line(o, name, status, width)


def _ledger_line(o, name: str, status: Text | None, width: int | None) -> Text:
    """"Ledger NAME  ·  head #N HASH  ·  STATUS" (without the status when None) in `width` cells."""
    tail = name.replace("\\", "/").rsplit("/", 1)[-1]
    shortest = min(cell_len(name), cell_len(tail) + 1)  # "…pooler.db"
    status_cells = 0 if status is None else cell_len("  ·  ") + status.cell_len

    def head_and_room(hash_cells: int | None) -> tuple[str, int]:
        head = ("" if hash_cells is None else f"head #{o.head_seq}"
                + (f" {short_hash(o.head_hash, hash_cells)}" if hash_cells else ""))
        room = (width or 0) - cell_len("Ledger ") - (cell_len(f"  ·  {head}") if head else 0) - status_cells
        return head, room

    head, room = head_and_room(16)
    if width is not None and room < cell_len(name):
        # the name whole with less of the hash; else its file name with as much as fits
        variants = [head_and_room(n) for n in (16, 8, 0, None)]
        head, room = next((v for v in variants[1:3] if v[1] >= cell_len(name)), None) \
            or next((v for v in variants if v[1] >= shortest), variants[-1])
    if width is not None and cell_len(name) > room:
        room = max(4, room)
        while cell_len(name) > room - 1 and len(name) > 1:
            name = name[1:]
        name = "…" + name
    text = Text()
    text.append("Ledger ", style="bold")
    text.append(name)
    if head:
        text.append(f"  ·  {head}")
    if status is not None:
        text.append("  ·  ")
        text.append_text(status)
    return text
