"""`pooler member|pool|dataset|model|project add|list|show|retire` and `pooler accelerator add|list`."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

import typer

# The listing (columns, cells, table) is shared with the quick path of `pooler.cli.fast`.
from pooler.cli.listing import LIST_COLUMNS, NUMERIC, cell, render_list  # noqa: F401
from pooler.cli.output import message, print_json, show, table, when
from pooler.errors import UsageError


# Decimal notation in ASCII digits, underscores between digits as TOML allows them: Python's Decimal
# also takes "inf", "sNaN" and other scripts' digits ("٣"), which no admin means on a command line
_DIGITS = "[0-9](?:_?[0-9])*"
_NUMBER = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")


def number(option: str, value: Optional[str]) -> Optional[Decimal]:
    """A CLI number, exactly; a bad one (not decimal notation, or not finite) is a usage error naming
    the option."""
    if value is None:
        return None
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        what = "a finite number" if text.lower().lstrip("+-") in ("inf", "infinity", "nan", "snan") else "a number"
        raise UsageError(f"{option}: {value!r} is not {what}")
    try:
        result = Decimal(text)
    except InvalidOperation:  # an exponent beyond Decimal's range
        raise UsageError(f"{option}: {value!r} is out of range") from None
    if result and not -100 <= result.adjusted() <= 100:
        # (review: `--rate 1e999999999` was taken here and then written out digit by digit for the
        # checks, for minutes and gigabytes; 1e400 reaches them and is "absurdly large")
        raise UsageError(f"{option}: {value!r} is out of range")
    return result


def pairs(option: str, values: list[str]) -> Optional[dict[str, Decimal]]:
    """`KEY=NUMBER` options (e.g. `--sponsor pcl=0.7`) as a dict; None when none are given."""
    if not values:
        return None
    result: dict[str, Decimal] = {}
    for item in values:
        key, sep, val = item.rpartition("=")
        if not sep or not key:
            raise UsageError(f"{option}: expected KEY=NUMBER, got {item!r}")
        if key in result:
            raise UsageError(f"{option}: {key!r} given twice")
        result[key] = number(option, val)  # type: ignore[assignment]
    return result


def words(option: str, values: list[str], *, commas: bool = False) -> Optional[list[str]]:
    """A repeatable list option, each value one id (ids may hold commas: `--dataset` and `--model`),
    or with `commas` also comma-separated (regions, access lists); None when the option is not given.
    An empty value is a usage error (review: `--region ""` stored no region limit at all, where a
    manifest's `regions = [""]` is refused)."""
    items = [w.strip() for v in values for w in (v.split(",") if commas else [v])]
    if any(not w for w in items):
        raise UsageError(f"{option}: an empty value (leave the option out for none)")
    return items or None


def rate_versions(versions: list[dict[str, Any]]) -> str:
    """An accelerator's rate versions in words: "1.2 from the start (#3); 2.4 from 2026-12 (#15)"."""
    return "; ".join(f"{v['rate']} from {v['from'] or 'the start'} (#{v['seq']})" for v in versions)


def render_show(kind: str, record: dict[str, Any]) -> None:
    rows = [(k, rate_versions(v) if k == "rates" else cell(v)) for k, v in record.items() if k != "history"]
    show(table(f'{kind} "{record["id"]}"', ["field", "value"], rows))
    history = record.get("history") or []
    show(table("History", ["seq", "time (UTC)", "actor", "entry"],
                    [(e["seq"], when(e["time"]), e["actor"], e["kind"]) for e in history],
                    numeric=["seq", "time (UTC)"]))


def _common(app: typer.Typer, kind: str, *, retire: bool = True) -> None:
    from pooler.cli.main import context

    plural = f"{kind}s"

    @app.command("list")
    def list_cmd(
        ctx: typer.Context,
        include_retired: bool = typer.Option(False, "--all", help="Include retired records."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        from pooler.services import registry

        records = registry.list_records(context(ctx), kind, include_retired=include_retired)
        if as_json:
            print_json(records)
        else:
            render_list(kind, records, include_retired)

    list_cmd.__doc__ = f"List the {plural} in the ledger.\n\nExample: pooler {kind} list --json"

    @app.command("show")
    def show_cmd(
        ctx: typer.Context,
        record_id: str = typer.Argument(..., metavar="ID"),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        from pooler.services import registry

        record = registry.show(context(ctx), kind, record_id)
        if as_json:
            print_json(record)
        else:
            render_show(kind, record)

    show_cmd.__doc__ = (
        f"Show one {kind}, with the journal entries that made it.\n\n"
        f"Example: pooler {kind} show ID --json"
    )

    if retire:
        @app.command("retire")
        def retire_cmd(ctx: typer.Context, record_id: str = typer.Argument(..., metavar="ID")) -> None:
            from pooler.services import registry

            registry.retire(context(ctx), kind, record_id)
            message(f'Retired {kind} "{record_id}".')

        retire_cmd.__doc__ = (
            f"Retire a {kind}: it stays in the journal but takes no further part.\n\n"
            f"Refused while live records still use it. Example: pooler {kind} retire ID"
        )


def _added(ctx: typer.Context, kind: str, fields: dict[str, Any]) -> None:
    from pooler.cli.main import context
    from pooler.services import registry

    registry.add(context(ctx), kind, fields)
    message(f'Added {kind} "{fields["id"]}".')


def register(app: typer.Typer) -> None:
    groups = {}
    for kind in ("member", "accelerator", "pool", "dataset", "model", "project"):
        verbs = "Add to, list and show the catalogue of" if kind == "accelerator" else \
            "Register, list, show and retire"
        sub = typer.Typer(help=f"{verbs} {kind}s.", no_args_is_help=True)
        app.add_typer(sub, name=kind)
        groups[kind] = sub

    @groups["member"].command("add")
    def member_add(
        ctx: typer.Context,
        member_id: str = typer.Argument(..., metavar="ID"),
        name: str = typer.Option(..., "--name", help="The organisation's name."),
        kind: Optional[str] = typer.Option(None, "--kind", help="e.g. state-lab, cloud, university."),
        region: Optional[str] = typer.Option(None, "--region", help="Home region of its pools."),
    ) -> None:
        """Register a member organisation.

        Example: pooler member add pcl --name "Peng Cheng Laboratory" --kind state-lab --region greater-bay
        """
        _added(ctx, "member", {"id": member_id, "name": name, "kind": kind, "region": region})

    @groups["accelerator"].command("add")
    def accelerator_add(
        ctx: typer.Context,
        accelerator_id: str = typer.Argument(..., metavar="ID"),
        rate: str = typer.Option(..., "--rate", metavar="NUMBER", help="Normalised units per device-hour."),
        name: Optional[str] = typer.Option(None, "--name", help="A readable name."),
    ) -> None:
        """Add an accelerator type to the catalogue.

        Example: pooler accelerator add ascend-910b --rate 1.0 --name "Huawei Ascend 910B"
        """
        _added(ctx, "accelerator", {"id": accelerator_id, "rate": number("--rate", rate), "name": name})

    @groups["pool"].command("add")
    def pool_add(
        ctx: typer.Context,
        pool_id: str = typer.Argument(..., metavar="ID"),
        member: str = typer.Option(..., "--member", help="The owner."),
        accelerator: str = typer.Option(..., "--accelerator", help="Accelerator type id."),
        capacity: Optional[str] = typer.Option(None, "--capacity", metavar="NUMBER", help="Device-hours per period."),
        devices: Optional[str] = typer.Option(None, "--devices", metavar="NUMBER", help="Devices (instead of --capacity)."),
        hours: Optional[str] = typer.Option(None, "--hours", metavar="NUMBER", help="Hours per period (with --devices)."),
        region: Optional[str] = typer.Option(None, "--region", help="Default: the owner's region."),
        reserve: Optional[str] = typer.Option(None, "--reserve", metavar="NUMBER", help="Fraction kept for the owner's projects."),
        cost: Optional[str] = typer.Option(None, "--cost", metavar="NUMBER", help="Price per device-hour (tie-breaker)."),
    ) -> None:
        """Register a compute pool: one accelerator type in one region.

        Example: pooler pool add pcl-cloudbrain --member pcl --accelerator ascend-910b --devices 4096 --reserve 0.2
        """
        _added(ctx, "pool", {
            "id": pool_id, "member": member, "accelerator": accelerator,
            "capacity": number("--capacity", capacity), "devices": number("--devices", devices),
            "hours": number("--hours", hours), "region": region,
            "reserve": number("--reserve", reserve), "cost": number("--cost", cost),
        })

    def _asset_add(kind: str):
        def add_asset(
            ctx: typer.Context,
            asset_id: str = typer.Argument(..., metavar="ID"),
            member: str = typer.Option(..., "--member", help="The owner."),
            access: str = typer.Option(
                "consortium", "--access", help='"open", "consortium" or member ids, comma-separated.'
            ),
            residency: list[str] = typer.Option(
                [], "--residency", help="Regions where it may be processed (repeatable, or comma-separated)."
            ),
            credit: Optional[str] = typer.Option(None, "--credit", metavar="NUMBER", help="Units credited per period."),
        ) -> None:
            access_value: Any = access if access in ("open", "consortium") else words("--access", [access], commas=True)
            _added(ctx, kind, {
                "id": asset_id, "member": member, "access": access_value,
                "residency": words("--residency", residency, commas=True), "credit": number("--credit", credit),
            })

        add_asset.__doc__ = (
            f"Register a {kind}: who may use it, where it may be processed, its credit.\n\n"
            f"Example: pooler {kind} add wudao --member baai --access consortium --residency "
            "beijing-tianjin-hebei --credit 5000"
        )
        groups[kind].command("add")(add_asset)

    _asset_add("dataset")
    _asset_add("model")

    @groups["project"].command("add")
    def project_add(
        ctx: typer.Context,
        project_id: str = typer.Argument(..., metavar="ID"),
        sponsor: list[str] = typer.Option(..., "--sponsor", metavar="MEMBER=STAKE", help="MEMBER=STAKE (repeatable)."),
        demand: str = typer.Option(..., "--demand", metavar="NUMBER", help="Normalised units per period."),
        weight: Optional[str] = typer.Option(None, "--weight", metavar="NUMBER", help="Default 1."),
        speed: list[str] = typer.Option([], "--speed", metavar="TYPE=SPEED", help="ACCELERATOR=SPEED (repeatable)."),
        region: list[str] = typer.Option([], "--region", help="Allowed regions (repeatable, or comma-separated)."),
        dataset: list[str] = typer.Option([], "--dataset", help="A dataset used (repeatable; each value one id)."),
        model: list[str] = typer.Option([], "--model", help="A model used (repeatable; each value one id)."),
    ) -> None:
        """Register a pooled project.

        Example: pooler project add mind-2 --sponsor pcl=0.7 --sponsor huawei=0.3 --demand 1500000 --speed ascend-910b=1
        """
        _added(ctx, "project", {
            "id": project_id, "sponsors": pairs("--sponsor", sponsor),
            "demand": number("--demand", demand), "weight": number("--weight", weight),
            "speed": pairs("--speed", speed), "regions": words("--region", region, commas=True),
            "datasets": words("--dataset", dataset) or [], "models": words("--model", model) or [],
        })

    for kind, sub in groups.items():
        _common(sub, kind, retire=kind != "accelerator")
