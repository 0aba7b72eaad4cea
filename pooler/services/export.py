"""Exports of a recorded run to schedulers: Slurm (`sacctmgr` script) and Kueue (YAML).

A run is exported as recorded: its stored shares and grants, and the registry as it stood when it was
solved (replayed from the journal up to the run's `state_seq`), never the current state, so the same
run always exports the same objects. The ledger's head is named in the header so a reader can check
which journal the export came from. The projects retired by that state come along, so the Slurm
script can set the limits their accounts still hold to 0.
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
    with open_ledger(ctx, read_only=True) as ledger, ledger.reader() as reader:
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
        retired_projects=tuple(sorted(state.retired_ids("project"))),
    )


def slurm(ctx: Context, period: str, gres_types: Mapping[str, str] | None = None) -> str:
    """`export slurm`: the sacctmgr script for the period's committed run; `gres_types` maps
    accelerator types to the cluster's GRES type names (`--gres-type`)."""
    return slurm_script(run_export(ctx, period), gres_types)


def kueue(ctx: Context, period: str, resources: Mapping[str, str] | None = None) -> str:
    """`export kueue`: the Kueue YAML for the period's committed run."""
    return kueue_yaml(run_export(ctx, period), resources)


def _pairs(option: str, values: list[str], shape: str) -> dict[str, str]:
    """Repeated `KEY=VALUE` options as a mapping. A malformed value, or the same key given twice (which
    would otherwise let the last one win unseen), is a usage error; every problem is reported at once."""
    out: dict[str, str] = {}
    problems = []
    for value in values:
        key, sep, name = value.partition("=")
        key, name = key.strip(), name.strip()
        if not sep or not key or not name:
            problems.append(f"{value!r} is not {shape}")
        elif key in out:
            problems.append(f'"{key}" is given twice ({out[key]!r} and {name!r})')
        else:
            out[key] = name
    if problems:
        raise UsageError(f"{option}: " + "; ".join(problems))
    return out


def parse_resources(values: list[str]) -> dict[str, str]:
    """`--resource TYPE=RESOURCE` options as a mapping; a malformed or repeated one is a usage error."""
    return _pairs("--resource", values, "TYPE=RESOURCE (e.g. ascend-910b=huawei.com/Ascend910)")


def parse_gres_types(values: list[str]) -> dict[str, str]:
    """`--gres-type ACCEL=TYPE` options as a mapping; a malformed or repeated one is a usage error (the
    type names themselves are checked against the run by `pooler.io.export_slurm.gres_types`)."""
    return _pairs("--gres-type", values, "ACCEL=TYPE (e.g. ascend-910b=ascend910b)")


def write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write `text` to `path` whole or not at all (see `pooler.services.files.write_atomic`)."""
    write_atomic(path, text, mode=mode)
