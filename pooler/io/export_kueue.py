"""Exporting a recorded run to Kueue (`kueue.x-k8s.io/v1beta2`): multi-document YAML.

- one ResourceFlavor per accelerator type of the run's pools, selecting nodes labelled
  `pooler.io/accelerator: <flavor name>`;
- a root Cohort for the consortium, and one Cohort per member under it whose
  `fairSharing.weight` is the member's entitlement: its share before usage history (the run's share
  carries pooler's usage factor, and Kueue's fair sharing weighs usage itself);
- one ClusterQueue per project in its lead sponsor's cohort (the largest stake, ties by id), open to
  every namespace, with a nominal quota per accelerator type it was granted: the granted device-hours
  over the consortium's period hours in whole devices, rounded per flavor by largest remainder so that
  a flavor's quotas add up to its rounded total and never exceed the devices its pools have. A project
  whose share of a flavor rounds to no device keeps the flavor with a quota of 0, so it can borrow;
- the objects an earlier export may have made for members and projects retired since (those that were
  in a run recorded before this one), turned off: a member's cohort with weight 0, a project's queue
  held (`stopPolicy: Hold`) with no quota, no cohort and no namespaces.

Every accelerator type counts as the extended resource `nvidia.com/gpu` unless a resource name is given
for it (e.g. `huawei.com/Ascend910` for an Ascend type). Types sharing a resource name form one resource
group, so each flavor appears in exactly one group and lists exactly the group's one resource, as
Kueue requires. Names are DNS-1123 labels; ids that are not are sanitised with a hash suffix, and the
original id is kept in the `pooler.io/id` annotation. Like Slurm account names, they are claimed in the
order the records were added (the root cohort first), so a new record never takes an older one's name.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any, Mapping

import yaml

from pooler.core.model import dec_str
from pooler.io.export_slurm import ExportError, RunExport, one_line, assign_names

API_VERSION = "kueue.x-k8s.io/v1beta2"
DEFAULT_RESOURCE = "nvidia.com/gpu"
ACCELERATOR_LABEL = "pooler.io/accelerator"
ID_ANNOTATION = "pooler.io/id"
# On the objects of retired members and projects, which an export lists only to turn them off.
RETIRED_LABEL = "pooler.io/retired"
DNS_LABEL_MAX = 63
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Kubernetes qualified name with an optional DNS-subdomain prefix, as extended resources are named.
RESOURCE_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Fair-sharing weights keep six decimals: finer than any share worth telling apart.
_WEIGHT_STEP = Decimal("0.000001")
# Cohorts and ClusterQueues share one namespace: the root cohort keeps its name first, then members,
# then projects, so adding a project never renames a member's cohort.
KUEUE_PRIORITY = ("consortium", "member", "project")


def _dns_plain(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and bool(DNS_LABEL.match(value))


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")


def _dns_hashed(value: str, digest: str) -> str:
    slug = _slug(value)[:DNS_LABEL_MAX - len(digest) - 1].rstrip("-")
    return f"{slug}-{digest}" if slug else digest


def dns_names(keys, seniority: Mapping[tuple[str, str], int] | None = None) -> dict[tuple[str, str], str]:
    """DNS-1123 label names (lower case, [a-z0-9-], alphanumeric ends, at most 63) for (kind, id) keys,
    claimed in `KUEUE_PRIORITY` order or, given the `seniority` of every member and project, the root
    cohort first and then the oldest record first."""
    if seniority is not None:
        return assign_names(keys, _dns_plain, _dns_hashed, KUEUE_PRIORITY[:1], seniority)
    return assign_names(keys, _dns_plain, _dns_hashed, KUEUE_PRIORITY)


def weight(share: Decimal) -> str:
    """A share as a Kubernetes quantity string with six decimals at most; a share > 0 never reads 0."""
    rounded = Decimal(share).quantize(_WEIGHT_STEP, rounding=ROUND_HALF_EVEN)
    if share > 0 and rounded == 0:
        rounded = _WEIGHT_STEP
    return dec_str(rounded)


def flavor_quotas(device_hours: Mapping[str, int], period_hours: Decimal, capacity: Decimal) -> dict[str, int]:
    """Whole devices per project for one flavor, from its granted `device_hours`: each project's exact
    devices (device-hours / period hours) rounded down, then one more for the largest remainders (ties
    by project id) until the flavor's total is its exact total rounded half up, but never above the
    devices the flavor's pools have (`capacity` device-hours / period hours, rounded down). Rounding
    every project up instead can promise more devices than exist."""
    if period_hours <= 0:  # a consortium cannot set this, but 0/0 must not reach the YAML
        raise ExportError("the consortium's period_hours must be positive to count devices")
    hours = Fraction(Decimal(period_hours))
    exact = {p: Fraction(h) / hours for p, h in device_hours.items()}
    quotas = {p: math.floor(x) for p, x in exact.items()}
    target = min(math.floor(sum(exact.values(), Fraction(0)) + Fraction(1, 2)),
                 math.floor(Fraction(Decimal(capacity)) / hours))
    by_remainder = sorted((p for p in exact if exact[p] > quotas[p]), key=lambda p: (-(exact[p] - quotas[p]), p))
    for p in by_remainder[:max(target - sum(quotas.values()), 0)]:
        quotas[p] += 1
    return quotas


def check_resources(resources: Mapping[str, str], types: list[str]) -> None:
    """A `--resource` for a type not in the run, or a name that is no resource name, is an `ExportError`."""
    problems = []
    for accelerator, name in sorted(resources.items()):
        if accelerator not in types:
            problems.append(f'"{accelerator}" is not an accelerator type of the run '
                            f"({', '.join(types) or 'none'})")
        if not RESOURCE_NAME.match(name):
            problems.append(f'"{name}" is not a Kubernetes resource name (e.g. nvidia.com/gpu)')
    if problems:
        raise ExportError("--resource: " + "; ".join(problems))


def kueue_documents(run: RunExport, resources: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The Kueue objects for the run: flavors, cohorts, then cluster queues, each sorted by id."""
    resources = dict(resources or {})
    types = run.accelerator_types()
    check_resources(resources, types)
    resource_of = {t: resources.get(t, DEFAULT_RESOURCE) for t in types}
    flavor = {t: n for (_, t), n in dns_names([("accelerator", t) for t in types]).items()}
    members = run.member_ids()
    # Cohorts and ClusterQueues live in one hierarchy, so they share one namespace of names.
    # The root cohort is named after the consortium (its name is free text, so its slug stands in for
    # an id); should a member or project want the same name, all of them get hash suffixes.
    root_key = ("consortium", _slug(run.consortium) or "consortium")
    # Members and projects retired by the run's state that were in an earlier run may have objects
    # from an earlier export: they are listed again, turned off (see below). Those never in a run
    # never had any, and none is made for them.
    gone_members = [m for m in sorted(run.retired_members)
                    if m not in run.shares and ("member", m) in run.in_earlier_runs]
    gone_projects = [p for p in sorted(run.retired_projects)
                     if p not in set(run.projects) and ("project", p) in run.in_earlier_runs]
    names = dns_names([root_key] + [("member", m) for m in members] + [("project", p) for p in run.projects]
                      + [("member", m) for m in gone_members] + [("project", p) for p in gone_projects]
                      + list(run.seniority or ()), run.seniority)
    root = names[root_key]
    entitled = run.entitlement()
    # Quotas are rounded per flavor, across the projects granted that type.
    granted = {p: run.granted_by_type(p) for p in run.projects}
    quota: dict[tuple[str, str], int] = {}
    for t in types:
        hours = {p: g[t] for p, g in granted.items() if t in g}
        for p, n in flavor_quotas(hours, run.period_hours, run.type_capacity(t)).items():
            quota[(p, t)] = n
    labels = {"app.kubernetes.io/managed-by": "pooler", "pooler.io/period": run.period}

    def metadata(name: str, original: str, retired: bool = False) -> dict[str, Any]:
        return {"name": name, "labels": {**labels, **({RETIRED_LABEL: "true"} if retired else {})},
                "annotations": {ID_ANNOTATION: original}}

    docs: list[dict[str, Any]] = []
    for t in types:
        docs.append({
            "apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": metadata(flavor[t], t),
            "spec": {"nodeLabels": {ACCELERATOR_LABEL: flavor[t]}},
        })
    docs.append({"apiVersion": API_VERSION, "kind": "Cohort",
                 "metadata": metadata(root, run.consortium), "spec": {}})
    for member_id in members:
        docs.append({
            "apiVersion": API_VERSION, "kind": "Cohort", "metadata": metadata(names[("member", member_id)], member_id),
            "spec": {"parentName": root, "fairSharing": {"weight": weight(entitled[member_id])}},
        })
    # A retired member's cohort has weight 0, no share: Kueue reads it as an infinite share, always
    # last for unused resources (its queues, if any were left, have nothing of their own to lend).
    for member_id in gone_members:
        docs.append({
            "apiVersion": API_VERSION, "kind": "Cohort",
            "metadata": metadata(names[("member", member_id)], member_id, retired=True),
            "spec": {"parentName": root, "fairSharing": {"weight": weight(Decimal(0))}},
        })
    for project_id in run.projects:
        lead = run.lead_sponsor(project_id)
        if ("member", lead) not in names or lead not in run.shares:
            raise ExportError(f'the lead sponsor "{lead}" of project "{project_id}" has no share in the '
                              f"{run.period} run")
        groups: dict[str, list[dict[str, Any]]] = {}
        for t in granted[project_id]:
            groups.setdefault(resource_of[t], []).append({
                "name": flavor[t],
                "resources": [{"name": resource_of[t], "nominalQuota": quota[(project_id, t)]}],
            })
        spec: dict[str, Any] = {"cohortName": names[("member", lead)], "namespaceSelector": {}}
        # A project granted nothing gets no resource group: it can admit no accelerator workload.
        spec["resourceGroups"] = [{"coveredResources": [resource], "flavors": flavors}
                                  for resource, flavors in sorted(groups.items())]
        docs.append({"apiVersion": API_VERSION, "kind": "ClusterQueue",
                     "metadata": metadata(names[("project", project_id)], project_id), "spec": spec})
    # A retired project's queue is held (it admits nothing new; what runs finishes), with no quota,
    # no cohort (nothing to borrow or lend) and no namespace selector (Kueue's default: no namespace).
    # Applied over the queue an earlier export made, these fields replace its own.
    for project_id in gone_projects:
        docs.append({"apiVersion": API_VERSION, "kind": "ClusterQueue",
                     "metadata": metadata(names[("project", project_id)], project_id, retired=True),
                     "spec": {"stopPolicy": "Hold"}})
    return docs


def kueue_yaml(run: RunExport, resources: Mapping[str, str] | None = None) -> str:
    """The documents as one YAML stream, after a comment header naming the run they come from."""
    docs = kueue_documents(run, resources)
    header = (
        "# Kueue objects for one period of a pooler allocation (pooler export kueue).\n"
        f"# consortium: {one_line(run.consortium)}\n"
        f"# period: {run.period}\n"
        f"# run entry: #{run.run_seq}\n"
        f"# ledger head: #{run.head_seq} {run.head_hash}\n"
        "# cohort weights: each member's entitlement, its share before usage history (the run's share\n"
        "#   carries pooler's usage factor; Kueue's fair sharing weighs usage itself)\n"
        f"# nominal quotas: granted device-hours / {dec_str(run.period_hours)} period hours in whole devices,\n"
        "#   rounded per flavor by largest remainder (ties by project id) to the flavor's total rounded\n"
        "#   half up, never above the devices of its pools; a project whose share rounds to 0 devices has\n"
        "#   nominalQuota 0 for that flavor (it stays listed, so the project can borrow)\n"
        "# per accelerator type only: regions, dataset residency and owner reserves are not expressed\n"
        "#   (a flavor matches that type's nodes in every region)\n"
        "# retired members and projects that were in an earlier run are listed again, turned off and\n"
        f"#   labelled {RETIRED_LABEL}=true: a member's cohort with weight 0 (no share), a project's\n"
        "#   queue with stopPolicy Hold, no quota, no cohort and no namespaces. Apply over the objects of\n"
        "#   earlier exports (kubectl apply replaces their fields); Hold lets admitted workloads finish,\n"
        "#   HoldAndDrain would evict them. Delete them (kubectl delete clusterqueue,cohort -l\n"
        f"#   {RETIRED_LABEL}=true) once their workloads are done; a later export lists them again, still off\n"
    )
    body = yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True, allow_unicode=True,
                              default_flow_style=False)
    return header + body
