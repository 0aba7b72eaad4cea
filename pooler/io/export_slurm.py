"""Exporting a recorded run to Slurm: an idempotent `sacctmgr -i` shell script.

One account per member, with `Fairshare` from the member's share; one sub-account per project under
its lead sponsor (the largest stake, ties by id), limited by `GrpTRESMins` to the project's granted
device-hours: `gres/gpu=<total minutes>` and one `gres/gpu:<type>=<minutes>` per accelerator type it
was granted (a pool has exactly one type, so every grant has one).

The script is safe to run again: an account is added only when `sacctmgr show` finds none, and its
settings are then set with `modify`, which sacctmgr answers with "Nothing modified" (and a non-zero
exit) when they already hold; that answer alone is tolerated.

This module also holds what both exporters share: `RunExport` (the plain values of one run) and
`assign_names` (deterministic, collision-free names for systems with stricter naming rules).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Callable, Iterable, Mapping

from pooler.core.model import Project, Snapshot, dec_str
from pooler.errors import PoolerError

# Fairshare is an integer: shares (which sum to 1) are scaled to parts per ten thousand.
FAIRSHARE_SCALE = Decimal(10000)
SLURM_NAME_MAX = 64
# Hash suffixes are tried at these lengths; a longer one only when two shorter ones collide.
_DIGEST_LENGTHS = (10, 16, 24, 32)
# An id that already ends like a hash suffix is hashed too, so a plain name can never equal a hashed one.
_HASH_TAIL = re.compile(r"-[0-9a-f]{10,}$")
_SLURM_SAFE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Accounts Slurm itself owns.
_SLURM_RESERVED = frozenset({"root"})


class ExportError(PoolerError):
    """A run that cannot be exported as asked."""


@dataclass(frozen=True)
class RunExport:
    """What an exporter needs of one recorded run, as plain values (no ledger).

    `snapshot` is the registry as it stood when the run was solved (its pools name the accelerator
    types, its projects the sponsors); `shares` and `grants` are the run's stored rows.
    """

    snapshot: Snapshot
    period: str
    run_seq: int
    head_seq: int
    head_hash: str
    shares: Mapping[str, Decimal]                 # member -> share (the run's, summing to 1)
    projects: tuple[str, ...]                     # the run's projects, sorted
    grants: tuple[tuple[str, str, int], ...]      # (project, pool, device_hours)

    @property
    def consortium(self) -> str:
        return self.snapshot.consortium.name

    @property
    def period_hours(self) -> Decimal:
        return self.snapshot.consortium.hours

    def member_ids(self) -> list[str]:
        return sorted(self.shares)

    def lead_sponsor(self, project_id: str) -> str:
        """The sponsor with the largest stake; ties go to the smallest id."""
        project: Project | None = self.snapshot.by_id("project").get(project_id)
        if project is None or not project.sponsors:
            raise ExportError(f'project "{project_id}" of the {self.period} run is not in the state it '
                              "was solved from")
        return min(project.sponsors, key=lambda kv: (-kv[1], kv[0]))[0]

    def granted_by_type(self, project_id: str) -> dict[str, int]:
        """Device-hours granted to a project per accelerator type, sorted by type."""
        pools = self.snapshot.by_id("pool")
        out: dict[str, int] = {}
        for project, pool_id, device_hours in self.grants:
            if project != project_id or device_hours <= 0:
                continue
            pool = pools.get(pool_id)
            if pool is None:
                raise ExportError(f'pool "{pool_id}" of the {self.period} run is not in the state it '
                                  "was solved from")
            out[pool.accelerator] = out.get(pool.accelerator, 0) + device_hours
        return dict(sorted(out.items()))

    def accelerator_types(self) -> list[str]:
        """Every accelerator type among the run's pools (granted or not), sorted."""
        return sorted({p.accelerator for p in self.snapshot.pools})


# --- names ------------------------------------------------------------------------------------------


def assign_names(keys: Iterable[tuple[str, str]], plain: Callable[[str], bool],
                 hashed: Callable[[str, str], str]) -> dict[tuple[str, str], str]:
    """A name for each (kind, id) key in one namespace: the id itself when `plain(id)` accepts it and
    no other key wants the same name; otherwise `hashed(id, digest)`, a sanitised id with a hash of
    "kind:id". `plain` must refuse ids ending like a hash suffix, so the two kinds never meet; two hashed
    names that collide get longer digests. Deterministic: the same keys always give the same names.
    """
    keys = sorted(set(keys))
    wanted: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        if plain(key[1]) and not _HASH_TAIL.search(key[1]):
            wanted.setdefault(key[1], []).append(key)
    names = {group[0]: name for name, group in wanted.items() if len(group) == 1}
    pending = [k for k in keys if k not in names]
    for length in _DIGEST_LENGTHS:
        if not pending:
            break
        trial = {k: hashed(k[1], hashlib.sha256(f"{k[0]}:{k[1]}".encode("utf-8")).hexdigest()[:length])
                 for k in pending}
        taken = set(names.values())
        counts: dict[str, int] = {}
        for name in trial.values():
            counts[name] = counts.get(name, 0) + 1
        settled = {k: n for k, n in trial.items() if counts[n] == 1 and n not in taken}
        names.update(settled)
        pending = [k for k in pending if k not in settled]
    if pending:  # would need a SHA-256 prefix collision; never emit two things under one name
        raise ExportError("cannot give distinct names to " + ", ".join(f"{k} {i!r}" for k, i in pending))
    return names


def _slurm_plain(value: str) -> bool:
    return (len(value) <= SLURM_NAME_MAX and bool(_SLURM_SAFE.match(value))
            and value not in _SLURM_RESERVED)


def _slurm_hashed(value: str, digest: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-_")
    slug = slug[:SLURM_NAME_MAX - len(digest) - 1].rstrip("-_")
    return f"{slug}-{digest}" if slug else digest


def slurm_names(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Slurm-safe names (lower case, [a-z0-9_-], at most 64 characters) for (kind, id) keys."""
    return assign_names(keys, _slurm_plain, _slurm_hashed)


# --- numbers ----------------------------------------------------------------------------------------


def fairshare(share: Decimal) -> int:
    """Slurm's integer Fairshare for a share: parts per ten thousand, at least 1 for any share > 0."""
    value = int((Decimal(share) * FAIRSHARE_SCALE).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return max(value, 1) if share > 0 else 0


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# --- the script -------------------------------------------------------------------------------------

_PRELUDE = """\
# sacctmgr exits non-zero with "Nothing modified" when every value is already set: a re-run is
# harmless, so that answer is accepted and any other failure stops the script.
set_account() {
  local name=$1 out
  shift
  if out=$(sacctmgr -i modify account where name="$name" set "$@" 2>&1); then
    printf '%s\\n' "$out"
  elif [[ $out != *"Nothing modified"* ]]; then
    printf '%s\\n' "$out" >&2
    return 1
  fi
}

# grep reads the whole answer (no -q): an early exit would break sacctmgr's pipe under pipefail.
account_exists() {
  sacctmgr -i -n -P show account where name="$1" format=account | grep . >/dev/null
}
"""


def _kv(key: str, value: str | int) -> str:
    return f"{key}={shlex.quote(str(value))}"


def slurm_script(run: RunExport) -> str:
    """The bash script that makes a Slurm cluster's accounts and limits match the run."""
    members = run.member_ids()
    names = slurm_names([("member", m) for m in members] + [("project", p) for p in run.projects])
    types = sorted({t for p in run.projects for t in run.granted_by_type(p)})
    type_names = {t: n for (_, t), n in slurm_names([("accelerator", t) for t in types]).items()}
    by_member = run.snapshot.by_id("member")
    q = shlex.quote

    lines = [
        "#!/usr/bin/env bash",
        "# Slurm accounts and limits for one period of a pooler allocation (pooler export slurm).",
        f"# consortium: {one_line(run.consortium)}",
        f"# period: {run.period}",
        f"# run entry: #{run.run_seq}",
        f"# ledger head: #{run.head_seq} {run.head_hash}",
        "#",
        "# Members are accounts with Fairshare = share x 10000; projects are sub-accounts of their lead",
        "# sponsor limited by GrpTRESMins to their granted device-hours x 60. The limits count usage",
        "# since the last reset: set PriorityUsageResetPeriod to match the period, and list gres/gpu",
        "# and its types in AccountingStorageTRES. GPU type names are the pooler accelerator ids",
        "# (sanitised like account names); they must match the Type names in gres.conf.",
        "set -euo pipefail",
        "",
        *_PRELUDE.splitlines(),
    ]
    for member_id in members:
        name = names[("member", member_id)]
        member = by_member.get(member_id)
        label = member.name if member is not None and member.name else member_id
        share = run.shares[member_id]
        lines += [
            "",
            f"# member {one_line(member_id)}: share {dec_str(share)}",
            f"account_exists {q(name)} || sacctmgr -i add account {q(name)} "
            f"{_kv('Description', label)} {_kv('Organization', member_id)}",
            f"set_account {q(name)} {_kv('Fairshare', fairshare(share))}",
        ]
    for project_id in run.projects:
        name = names[("project", project_id)]
        lead = run.lead_sponsor(project_id)
        if ("member", lead) not in names:
            raise ExportError(f'the lead sponsor "{lead}" of project "{project_id}" has no share in the '
                              f"{run.period} run")
        parent = names[("member", lead)]
        granted = run.granted_by_type(project_id)
        tres = [f"gres/gpu={sum(granted.values()) * 60}"]
        tres += [f"gres/gpu:{type_names[t]}={hours * 60}" for t, hours in granted.items()]
        lines += [
            "",
            f"# project {one_line(project_id)}: lead sponsor {one_line(lead)}, "
            f"{sum(granted.values())} device-hours granted",
            f"account_exists {q(name)} || sacctmgr -i add account {q(name)} {_kv('Parent', parent)} "
            f"{_kv('Description', 'project ' + project_id)} {_kv('Organization', lead)}",
            f"set_account {q(name)} {_kv('Parent', parent)} {_kv('GrpTRESMins', ','.join(tres))}",
        ]
    return "\n".join(lines) + "\n"
