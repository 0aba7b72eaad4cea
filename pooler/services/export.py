"""Exports of a recorded run to schedulers: Slurm (`sacctmgr` script) and Kueue (YAML).

A run is exported as recorded: its stored shares and grants, and the registry as it stood when it was
solved (replayed from the journal up to the run's `state_seq`), never the current state, so the same
run always exports the same objects. The ledger's head is named in the header so a reader can check
which journal the export came from. The members and projects retired by that state come along, so the
exports can take away the share and limits their accounts still hold, and so does what the runs
recorded before this one had (their accelerator types, their members and projects), the only record
of what earlier exports may have left on a cluster. All of it is read from entries up to the run's
own, so the same run still always exports the same thing.
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
from pooler.store.reducer import LedgerState, apply_entry, replaying

# The entries that change which accelerator type a pool has, or whether it is in the registry.
_POOL_KINDS = ("pool.add", "pool.change", "pool.retire")


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
        earlier_types, in_earlier = _earlier_runs(reader, state, view.entry.seq)
    retired = {kind: tuple(sorted(state.retired_ids(kind))) for kind in ("member", "project")}
    return RunExport(
        snapshot=state.snapshot(view.period),
        period=view.period,
        run_seq=view.entry.seq,
        head_seq=head_seq,
        head_hash=head_hash,
        shares={m["member"]: m["share"] for m in view.members},
        projects=tuple(sorted(p["project"] for p in view.projects)),
        grants=tuple((g["project"], g["pool"], int(g["device_hours"])) for g in view.grants),
        retired_projects=retired["project"],
        retired_members=retired["member"],
        seniority={(kind, i): rs.added_seq for kind in ("member", "project")
                   for i, rs in state.collection(kind).items()},
        earlier_types=earlier_types,
        in_earlier_runs=in_earlier,
    )


def _earlier_runs(reader, state, run_seq: int) -> tuple[tuple[str, ...], frozenset[tuple[str, str]]]:
    """What the runs recorded before entry `run_seq` (of any period, superseded ones too) had: the
    accelerator types of their pools, and which of the members and projects retired by `state` were
    in them. Each run was solved from the registry at its `state_seq` (every active member and
    project, every active pool), so one pass over the pool entries up to the last of those gives the
    types, and the records' own entries say whether they were active then."""
    checkpoints = sorted({int(e.payload["state_seq"]) for e in reader.entries_of_kind(alloc.RUN_KIND)
                          if e.seq < run_seq})
    if not checkpoints:
        return (), frozenset()
    entries = sorted((e for kind in _POOL_KINDS for e in reader.entries_of_kind(kind) if e.seq <= checkpoints[-1]),
                     key=lambda e: e.seq)
    types: set[str] = set()
    pools = LedgerState()
    with replaying() as freeze:
        done = 0
        for checkpoint in checkpoints:
            while done < len(entries) and entries[done].seq <= checkpoint:
                pools = apply_entry(pools, entries[done])
                done += 1
            types.update(rs.record.accelerator for rs in pools.records["pool"].values() if rs.active)
        freeze(pools)
    in_earlier = frozenset(
        (kind, i) for kind in ("member", "project") for i, rs in state.collection(kind).items()
        if not rs.active and any(rs.added_seq <= c < rs.retired_seq for c in checkpoints)
    )
    return tuple(sorted(types)), in_earlier


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
