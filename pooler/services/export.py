"""Exports of a recorded run to schedulers: Slurm (`sacctmgr` script) and Kueue (YAML).

A run is exported as recorded: its stored shares and grants, and the registry as it stood when it was
solved (replayed from the journal up to the run's `state_seq`), never the current state, so the same
run always exports the same objects. The ledger's head is named in the header so a reader can check
which journal the export came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from pooler.core.period import PeriodError, parse_period
from pooler.services.files import write_atomic
from pooler.errors import UsageError
from pooler.io.export_kueue import kueue_yaml
from pooler.io.export_slurm import RunExport, slurm_script
from pooler.services import alloc
from pooler.services.context import Context
from pooler.services.registry import open_ledger


def run_export(ctx: Context, period: str) -> RunExport:
    """The committed run of `period` with the state it was solved from, as exporters need it."""
    try:
        parse_period(period)
    except PeriodError as exc:
        raise UsageError(f"--period: {exc}") from None
    view = alloc.show(ctx, period)  # NotFound (exit 1) when the period has no recorded run
    with open_ledger(ctx) as ledger, ledger.reader() as reader:
        state = reader.state_at(view.payload["state_seq"])
        head_seq, head_hash = reader.head()
    return RunExport(
        snapshot=state.snapshot(view.period),
        period=view.period,
        run_seq=view.entry.seq,
        head_seq=head_seq,
        head_hash=head_hash,
        shares={m["member"]: m["share"] for m in view.members},
        projects=tuple(sorted(p["project"] for p in view.projects)),
        grants=tuple((g["project"], g["pool"], int(g["device_hours"])) for g in view.grants),
    )


def slurm(ctx: Context, period: str) -> str:
    """`export slurm`: the sacctmgr script for the period's committed run."""
    return slurm_script(run_export(ctx, period))


def kueue(ctx: Context, period: str, resources: Mapping[str, str] | None = None) -> str:
    """`export kueue`: the Kueue YAML for the period's committed run."""
    return kueue_yaml(run_export(ctx, period), resources)


def parse_resources(values: list[str]) -> dict[str, str]:
    """`--resource TYPE=NAME` options as a mapping; a malformed one is a usage error."""
    out: dict[str, str] = {}
    for value in values:
        accelerator, sep, name = value.partition("=")
        if not sep or not accelerator.strip() or not name.strip():
            raise UsageError(f"--resource: {value!r} is not TYPE=RESOURCE (e.g. ascend-910b=huawei.com/Ascend910)")
        out[accelerator.strip()] = name.strip()
    return out


def write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write `text` to `path` whole or not at all (see `pooler.services.files.write_atomic`)."""
    write_atomic(path, text, mode=mode)
