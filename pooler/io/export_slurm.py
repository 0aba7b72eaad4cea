"""Exporting a recorded run to Slurm: an idempotent `sacctmgr -i` shell script.

One account per member, with `Fairshare` from the member's entitlement (its share before usage history:
Slurm weighs usage itself); one sub-account per project under its lead sponsor (the largest stake, ties
by id), limited by `GrpTRESMins` to the project's granted device-hours: `gres/gpu=<total minutes>` and
`gres/gpu:<type>=<minutes>` for every accelerator type among the run's pools, 0 where nothing of that
type was granted, so that no limit of an earlier period stays behind (sacctmgr changes only the TRES
it is given). Projects retired by the time the run was solved have every one of those limits set to 0,
and members retired by then `Fairshare=0` (no share: Slurm ranks them last) and every limit 0 on their
own account (which holds for the accounts under it too), if their account exists; none is created for
them. Accelerator types of the runs recorded before this one that its pools no longer have get their
limits set to 0 on every account the script touches, in a command of their own (see
`_PRELUDE_GONE`), so no limit of a type gone stays behind.

Names are claimed in the order the records were added to the ledger, retired ones included
(`RunExport.seniority`): a member or project added with the id of an older one (a retired project
whose account still holds its usage, or a project added before a member) gets a hashed name, never
the older record's account.

GRES type names are the accelerator ids themselves, or what `--gres-type ACCEL=TYPE` says; Slurm
compares TRES names without regard to case, so ids that differ only in case count as one type.

The script is safe to run again: an account is added only when `sacctmgr show` finds none, and its
settings are then set with `modify`, which sacctmgr answers with "Nothing modified" (and a non-zero
exit) when they already hold; that answer alone is tolerated.

This module also holds what both exporters share: `RunExport` (the plain values of one run) and
`assign_names` (deterministic, collision-free names for systems with stricter naming rules).
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Callable, Iterable, Mapping, Sequence

from pooler.core.contrib import pool_capacity
from pooler.core.model import Project, Snapshot, dec_str
from pooler.errors import PoolerError, UsageError

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
# A GRES type as it can stand in `gres/gpu:<type>=N` and in gres.conf: sacctmgr splits TRES lists at
# ',' and '=' and a GRES request at ':', so only letters, digits, '_', '.' and '-'; and at least one
# letter, since `--gres=gpu:100` reads 100 as a count, never as a type.
GRES_TYPE = re.compile(r"^[A-Za-z0-9_.-]*[A-Za-z][A-Za-z0-9_.-]*$")
# Member accounts are named first, then projects: a project can never take a member's name.
SLURM_PRIORITY = ("member", "project")


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
    retired_projects: tuple[str, ...] = ()        # retired as of the state the run was solved from, sorted
    retired_members: tuple[str, ...] = ()         # likewise
    # (kind, id) -> the journal entry that added it, for every member and project of that state,
    # retired ones too: names are claimed in that order (`assign_names`). None: by kind alone.
    seniority: Mapping[tuple[str, str], int] | None = None
    # Accelerator types of the pools of the runs recorded before this one (any period), sorted.
    earlier_types: tuple[str, ...] = ()
    # Members and projects that were in a run recorded before this one, as (kind, id).
    in_earlier_runs: frozenset[tuple[str, str]] = frozenset()

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

    def type_capacity(self, accelerator: str) -> Decimal:
        """Device-hours per period of the run's pools of one accelerator type."""
        return sum((pool_capacity(self.snapshot, p) for p in self.snapshot.pools if p.accelerator == accelerator),
                   Decimal(0))

    def entitlement(self) -> dict[str, Decimal]:
        """Each member's share before usage history (DESIGN section 3 without the usage factor), from the
        state the run was solved from. The run's own `shares` carry pooler's usage factor; a scheduler
        that weighs usage itself must get this one, or heavy users are penalised twice."""
        from pooler.core.alloc import entitlement  # NumPy and the solver load only when exporting

        computed = entitlement(self.snapshot)
        missing = sorted(set(self.shares) - set(computed))
        if missing:
            raise ExportError(f"member(s) {', '.join(missing)} of the {self.period} run are not in the state "
                              "it was solved from")
        # Shortest text that reads back to the same float, as the run's shares are stored.
        return {m: Decimal(repr(computed[m])) for m in self.member_ids()}


# --- names ------------------------------------------------------------------------------------------


def assign_names(keys: Iterable[tuple[str, str]], plain: Callable[[str], bool],
                 hashed: Callable[[str, str], str], priority: Sequence[str] = (),
                 seniority: Mapping[tuple[str, str], int] | None = None) -> dict[tuple[str, str], str]:
    """A name for each (kind, id) key in one namespace: the id itself when `plain(id)` accepts it and
    no key of a higher or equal rank wants the same name; otherwise `hashed(id, digest)`, a sanitised
    id with a hash of "kind:id".

    A key's rank is its kind's place in `priority` (unlisted kinds come after, all equal), then its
    `seniority` when one is given: the journal entry that added the record, so among kinds of equal
    priority the record added first keeps the name. A key keeps its name whatever keys of lower rank
    are added: with kinds alone, a project with a member's id never renames the member; with
    seniority over every record ever added (retired ones too), a new record never takes the name of
    an older one, of whatever kind, even one long retired, whose account still holds its usage and
    limits. Two claimants of equal rank both give the name up. Keys without a seniority rank after
    those with one. `plain` must refuse ids ending like a hash suffix, so the two kinds never meet;
    two hashed names that collide get longer digests (the higher rank keeps the shorter one).
    Deterministic: the same keys always give the same names.
    """
    tiers = {kind: i for i, kind in enumerate(priority)}
    order = seniority or {}

    def rank(key: tuple[str, str]) -> tuple[int, float]:
        return (tiers.get(key[0], len(tiers)), order.get(key, math.inf) if seniority is not None else 0)

    keys = sorted(set(keys), key=lambda k: (rank(k), k))

    def winners(claims: Mapping[tuple[str, str], str], taken: set[str]) -> dict[tuple[str, str], str]:
        """The claims that get their name: the only claimant of the best rank among those wanting it."""
        best: dict[str, list[tuple[str, str]]] = {}
        for key, name in claims.items():
            group = best.setdefault(name, [])
            if not group or rank(key) == rank(group[0]):
                group.append(key)  # `keys` is in rank order, so the first claimant has the best rank
        return {group[0]: name for name, group in best.items() if len(group) == 1 and name not in taken}

    names = winners({k: k[1] for k in keys if plain(k[1]) and not _HASH_TAIL.search(k[1])}, set())
    pending = [k for k in keys if k not in names]
    for length in _DIGEST_LENGTHS:
        if not pending:
            break
        trial = {k: hashed(k[1], hashlib.sha256(f"{k[0]}:{k[1]}".encode("utf-8")).hexdigest()[:length])
                 for k in pending}
        settled = winners(trial, set(names.values()))
        names.update(settled)
        pending = [k for k in pending if k not in settled]
    if pending:  # would need a SHA-256 prefix collision; never emit two things under one name
        raise ExportError("cannot give distinct names to " + ", ".join(f"{k} {i!r}" for k, i in pending))
    return names


def held_by(names: Mapping[tuple[str, str], str], key: tuple[str, str],
            plain: Callable[[str], bool]) -> tuple[str, str] | None:
    """The key that holds the name `key`'s id would have had, when `plain` accepts the id but another
    key got it (an older record, or one of a higher kind); None otherwise."""
    if names.get(key) == key[1] or not plain(key[1]) or _HASH_TAIL.search(key[1]):
        return None
    return next((k for k, n in names.items() if n == key[1] and k != key), None)


def _slurm_plain(value: str) -> bool:
    return (len(value) <= SLURM_NAME_MAX and bool(_SLURM_SAFE.match(value))
            and value not in _SLURM_RESERVED)


def _slurm_hashed(value: str, digest: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-_")
    slug = slug[:SLURM_NAME_MAX - len(digest) - 1].rstrip("-_")
    return f"{slug}-{digest}" if slug else digest


def slurm_names(keys: Iterable[tuple[str, str]],
                seniority: Mapping[tuple[str, str], int] | None = None) -> dict[tuple[str, str], str]:
    """Slurm-safe names (lower case, [a-z0-9_-], at most 64 characters) for (kind, id) keys: members
    before projects (`SLURM_PRIORITY`) or, given the `seniority` of every record, oldest first."""
    if seniority is not None:
        return assign_names(keys, _slurm_plain, _slurm_hashed, (), seniority)
    return assign_names(keys, _slurm_plain, _slurm_hashed, SLURM_PRIORITY)


def gres_types(types: Sequence[str], mapping: Mapping[str, str] | None = None,
               earlier: Sequence[str] = ()) -> dict[str, str]:
    """The Slurm GRES type of each accelerator type: its `mapping` entry (`--gres-type`), else the id
    itself, never sanitised or hashed (it must match gres.conf as it is). A mapping for a type that is
    neither among `types` nor among `earlier` (types of earlier runs that are no longer pooled), or to a
    name that cannot be a GRES type, is a `UsageError`; ids of `types` that cannot be type names and
    have no mapping are one `ExportError` naming them all. Types of `earlier` are in the result only
    when they have a name: an id that cannot be one was written, if ever, under a name that only
    `--gres-type` can tell again."""
    mapping = dict(mapping or {})
    problems = []
    for accelerator, name in sorted(mapping.items()):
        if accelerator not in types and accelerator not in earlier:
            known = ", ".join(types) or "none"
            if earlier:
                known += "; of earlier runs: " + ", ".join(earlier)
            problems.append(f'"{accelerator}" is not an accelerator type of the run ({known})')
        if not GRES_TYPE.match(name):
            problems.append(f'"{name}" is not a GRES type name (letters, digits, "_", "." and "-", with a letter)')
    if problems:
        raise UsageError("--gres-type: " + "; ".join(problems))
    unnamed = [t for t in types if t not in mapping and not GRES_TYPE.match(t)]
    if unnamed:
        listed = ", ".join(f'"{t}"' for t in unnamed)
        raise ExportError(
            f"accelerator type{'s' if len(unnamed) > 1 else ''} {listed} cannot be "
            f"{'Slurm GRES type names' if len(unnamed) > 1 else 'a Slurm GRES type name'} (letters, digits, "
            f'"_", "." and "-", with a letter): give the gres.conf Type of each with --gres-type '
            f'"{unnamed[0]}"=TYPE')
    named = {t: mapping.get(t, t) for t in types}
    named.update({t: mapping.get(t, t) for t in earlier if t not in named and (t in mapping or GRES_TYPE.match(t))})
    return named


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

# Only in scripts that zero the limits of accelerator types no longer pooled.
_PRELUDE_GONE = """\

# Limits of accelerator types that earlier runs had and this one has not go to 0 in a command of
# their own: sacctmgr refuses a whole TRES list that names a type its database never knew (one
# that was never in AccountingStorageTRES), and that must not cost the current limits. Such a
# refusal is reported as a warning and skipped; any other failure stops the script.
zero_gone_types() {
  local name=$1 out
  shift
  if out=$(sacctmgr -i modify account where name="$name" set "$@" 2>&1); then
    printf '%s\\n' "$out"
  elif [[ $out == *"no TRES known"* ]]; then
    printf 'warning: %s: a type no longer pooled is unknown to Slurm, its limit left as it is: %s\\n' \\
      "$name" "$out" >&2
  elif [[ $out != *"Nothing modified"* ]]; then
    printf '%s\\n' "$out" >&2
    return 1
  fi
}
"""


def _kv(key: str, value: str | int) -> str:
    return f"{key}={shlex.quote(str(value))}"


# Slurm's PriorityUsageResetPeriod for each kind of consortium period.
_RESET_PERIOD = {"week": "WEEKLY", "month": "MONTHLY", "quarter": "QUARTERLY"}


def _held_note(names: Mapping[tuple[str, str], str], key: tuple[str, str], retired: set[tuple[str, str]],
               plain: Callable[[str], bool]) -> str:
    """"; account X: the name ID belongs to ..." when an older record keeps the name this id would have."""
    holder = held_by(names, key, plain)
    if holder is None:
        return ""
    state = "retired " if holder in retired else ""
    return (f"; account {names[key]}: the name {one_line(key[1])} belongs to {state}{holder[0]} "
            f"{one_line(holder[1])}, added earlier")


def slurm_script(run: RunExport, gres_type_names: Mapping[str, str] | None = None) -> str:
    """The bash script that makes a Slurm cluster's accounts and limits match the run.

    `gres_type_names` maps accelerator types to the GRES type names of the cluster's gres.conf
    (`--gres-type`); unmapped types are written as they are (see `gres_types`).
    """
    members = run.member_ids()
    run_projects = set(run.projects)
    # only records that were in a run recorded before this one: no export can have made an account
    # for the others, and an account of their name is someone else's (review: a member added and
    # retired before any run zeroed a site's own account of that name)
    retired = [p for p in run.retired_projects
               if p not in run_projects and ("project", p) in run.in_earlier_runs]
    retired_members = [m for m in run.retired_members
                       if m not in run.shares and ("member", m) in run.in_earlier_runs]
    gone_keys = {("project", p) for p in retired} | {("member", m) for m in retired_members}
    names = slurm_names([("member", m) for m in members] + [("project", p) for p in run.projects]
                        + sorted(gone_keys) + list(run.seniority or ()), run.seniority)
    types = run.accelerator_types()
    earlier = [t for t in run.earlier_types if t not in types]
    named = gres_types(types, gres_type_names, earlier)
    gres_of = {t: named[t] for t in types}
    # Slurm finds TRES by name without regard to case: types that differ only in case (or that
    # --gres-type maps to one name) are one TRES, limited by their sum, written as the first spells it.
    tres_types: dict[str, str] = {}
    for accelerator, gres in gres_of.items():
        tres_types.setdefault(gres.lower(), gres)
    merged = {key: [t for t, g in gres_of.items() if g.lower() == key] for key in tres_types}
    # Types of earlier runs, no longer pooled: their limits go to 0 unless they are one TRES with a
    # type of this run (then they are limited as that type). Ids that cannot be GRES type names and
    # were given no --gres-type are left out (said in the header).
    gone: dict[str, str] = {}
    for accelerator in earlier:
        if accelerator in named and named[accelerator].lower() not in tres_types:
            gone.setdefault(named[accelerator].lower(), named[accelerator])
    gone_of = {key: [t for t in earlier if t in named and named[t].lower() == key] for key in gone}
    unnamed = [t for t in earlier if t not in named]
    entitled = run.entitlement()
    by_member = run.snapshot.by_id("member")
    q = shlex.quote
    reset = _RESET_PERIOD.get(run.snapshot.consortium.period, "the period")

    def limits(granted: Mapping[str, int]) -> str:
        minutes = {key: 0 for key in tres_types}
        for accelerator, hours in granted.items():
            minutes[gres_of[accelerator].lower()] += hours * 60
        tres = [f"gres/gpu={sum(minutes.values())}"]
        tres += [f"gres/gpu:{tres_types[key]}={value}" for key, value in sorted(minutes.items())]
        return ",".join(tres)

    def zero_gone(name: str) -> str:
        """The command that zeroes an account's limits of the types no longer pooled, or ""."""
        if not gone:
            return ""
        listed = ",".join(f"gres/gpu:{gone[key]}=0" for key in sorted(gone))
        return f"zero_gone_types {q(name)} {_kv('GrpTRESMins', listed)}"

    gone_lines = []
    if gone:
        gone_lines += ["#", "# GRES types of earlier runs that this run's pools no longer have: every account's limit",
                       "# of them goes to 0 (they stay known to Slurm's database once listed in",
                       "# AccountingStorageTRES, even after they leave it); a type that an earlier export named",
                       "# with --gres-type needs the same --gres-type here, or its old limit stays:"]
        gone_lines += [f"#   gres/gpu:{gone[key]}: accelerator type{'s' if len(accs) > 1 else ''} "
                       f"{', '.join(one_line(a) for a in accs)}" for key, accs in sorted(gone_of.items())]
    if unnamed:
        gone_lines += ["#", "# Types of earlier runs left as they are: their ids cannot be GRES type names, so give the",
                       "# name they had with --gres-type to set their limits to 0: "
                       + ", ".join(one_line(t) for t in unnamed)]
    lines = [
        "#!/usr/bin/env bash",
        "# Slurm accounts and limits for one period of a pooler allocation (pooler export slurm).",
        f"# consortium: {one_line(run.consortium)}",
        f"# period: {run.period}",
        f"# run entry: #{run.run_seq}",
        f"# ledger head: #{run.head_seq} {run.head_hash}",
        "#",
        "# Members are accounts with Fairshare = entitlement x 10000: the member's share before usage",
        "# history (contributions and the equal part), not the run's share, which already carries",
        "# pooler's usage factor; Slurm weighs usage into Fairshare itself, so it would count twice.",
        "# Projects are sub-accounts of their lead sponsor limited by GrpTRESMins to their granted",
        "# device-hours x 60: gres/gpu in total and gres/gpu:TYPE for every accelerator type of the",
        "# run's pools (0 where nothing of that type was granted, so no limit of an earlier period",
        "# stays). Projects and members retired by the time the run was solved, that were in an",
        "# earlier run, get every limit 0 (members also Fairshare=0, no share) if their account exists;",
        "# none is created for them.",
        "# A GrpTRESMins of 0 also ends the GPU jobs still running under such an account. Limits are",
        "# per accelerator type only: regions, dataset residency and owner reserves are not expressed.",
        "#",
        "# GrpTRESMins counts usage since the last reset, decayed by PriorityDecayHalfLife: set",
        "# PriorityDecayHalfLife=0 (no decay, else the caps leak as usage decays) and",
        f"# PriorityUsageResetPeriod={reset} in slurm.conf. (The NoDecay flag is a QOS flag: it keeps a",
        "# QOS's own GrpTRESMins from decaying, not these account limits.) PriorityDecayHalfLife=0 also",
        "# stops the decay of the usage Slurm weighs into Fairshare. List gres/gpu and gres/gpu:TYPE for",
        "# each type below in AccountingStorageTRES, and enforce limits (AccountingStorageEnforce=limits).",
        "#",
        "# GRES types (gres.conf Type; Slurm compares them without regard to case):",
        *[f"#   gres/gpu:{tres_types[key]}: accelerator type{'s' if len(accs) > 1 else ''} "
          f"{', '.join(one_line(a) for a in accs)}" for key, accs in sorted(merged.items())],
        *gone_lines,
        "set -euo pipefail",
        "",
        *_PRELUDE.splitlines(),
        *(_PRELUDE_GONE.splitlines() if gone else []),
    ]
    for member_id in members:
        name = names[("member", member_id)]
        member = by_member.get(member_id)
        label = member.name if member is not None and member.name else member_id
        lines += [
            "",
            f"# member {one_line(member_id)}: entitlement {dec_str(entitled[member_id])} "
            f"(the run's share after usage history: {dec_str(run.shares[member_id])})"
            f"{_held_note(names, ('member', member_id), gone_keys, _slurm_plain)}",
            f"account_exists {q(name)} || sacctmgr -i add account {q(name)} "
            f"{_kv('Description', label)} {_kv('Organization', member_id)}",
            f"set_account {q(name)} {_kv('Fairshare', fairshare(entitled[member_id]))}",
        ]
    for project_id in run.projects:
        name = names[("project", project_id)]
        lead = run.lead_sponsor(project_id)
        if ("member", lead) not in names or lead not in run.shares:
            raise ExportError(f'the lead sponsor "{lead}" of project "{project_id}" has no share in the '
                              f"{run.period} run")
        parent = names[("member", lead)]
        granted = run.granted_by_type(project_id)
        lines += [
            "",
            f"# project {one_line(project_id)}: lead sponsor {one_line(lead)}, "
            f"{sum(granted.values())} device-hours granted"
            f"{_held_note(names, ('project', project_id), gone_keys, _slurm_plain)}",
            f"account_exists {q(name)} || sacctmgr -i add account {q(name)} {_kv('Parent', parent)} "
            f"{_kv('Description', 'project ' + project_id)} {_kv('Organization', lead)}",
            f"set_account {q(name)} {_kv('Parent', parent)} {_kv('GrpTRESMins', limits(granted))}",
            *([zero_gone(name)] if gone else []),
        ]
    # `if`, not `&&`: a missing account must not leave the script's exit status non-zero.
    for project_id in retired:
        name = names[("project", project_id)]
        lines += [
            "",
            f"# project {one_line(project_id)}: retired, no grant: its limits go to 0 if its account exists",
            f"if account_exists {q(name)}; then set_account {q(name)} {_kv('GrpTRESMins', limits({}))}; "
            + (f"{zero_gone(name)}; " if gone else "") + "fi",
        ]
    for member_id in retired_members:
        name = names[("member", member_id)]
        lines += [
            "",
            f"# member {one_line(member_id)}: retired, no share: Fairshare 0 and every limit 0 (for the",
            "# accounts under it too) if its account exists",
            f"if account_exists {q(name)}; then set_account {q(name)} {_kv('Fairshare', 0)} "
            f"{_kv('GrpTRESMins', limits({}))}; " + (f"{zero_gone(name)}; " if gone else "") + "fi",
        ]
    return "\n".join(lines) + "\n"
