"""Exporting a recorded run to Kueue (`kueue.x-k8s.io/v1beta2`): multi-document YAML.

- one ResourceFlavor per accelerator type of the run's pools, selecting nodes labelled
  `pooler.io/accelerator: <flavor name>`;
- a root Cohort for the consortium, and one Cohort per member under it whose
  `fairSharing.weight` is the member's share;
- one ClusterQueue per project in its lead sponsor's cohort (the largest stake, ties by id), open to
  every namespace, with a nominal quota per accelerator type it was granted: the granted device-hours
  over the consortium's period hours, rounded up to whole devices.

Every accelerator type counts as the extended resource `nvidia.com/gpu` unless a resource name is given
for it (e.g. `huawei.com/Ascend910` for an Ascend type). Types sharing a resource name form one resource
group, so each flavor appears in exactly one group and lists exactly the group's one resource, as
Kueue requires. Names are DNS-1123 labels; ids that are not are sanitised with a hash suffix, and the
original id is kept in the `pooler.io/id` annotation.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Mapping

import yaml

from pooler.core.model import dec_str
from pooler.io.export_slurm import ExportError, RunExport, one_line, assign_names

API_VERSION = "kueue.x-k8s.io/v1beta2"
DEFAULT_RESOURCE = "nvidia.com/gpu"
ACCELERATOR_LABEL = "pooler.io/accelerator"
ID_ANNOTATION = "pooler.io/id"
DNS_LABEL_MAX = 63
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Kubernetes qualified name with an optional DNS-subdomain prefix, as extended resources are named.
RESOURCE_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Fair-sharing weights keep six decimals: finer than any share worth telling apart.
_WEIGHT_STEP = Decimal("0.000001")


def _dns_plain(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and bool(DNS_LABEL.match(value))


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")


def _dns_hashed(value: str, digest: str) -> str:
    slug = _slug(value)[:DNS_LABEL_MAX - len(digest) - 1].rstrip("-")
    return f"{slug}-{digest}" if slug else digest


def dns_names(keys) -> dict[tuple[str, str], str]:
    """DNS-1123 label names (lower case, [a-z0-9-], alphanumeric ends, at most 63) for (kind, id) keys."""
    return assign_names(keys, _dns_plain, _dns_hashed)


def weight(share: Decimal) -> str:
    """A share as a Kubernetes quantity string with six decimals at most; a share > 0 never reads 0."""
    rounded = Decimal(share).quantize(_WEIGHT_STEP, rounding=ROUND_HALF_EVEN)
    if share > 0 and rounded == 0:
        rounded = _WEIGHT_STEP
    return dec_str(rounded)


def devices(device_hours: int, period_hours: Decimal) -> int:
    """Whole devices that deliver `device_hours` in one period, rounded up."""
    if period_hours <= 0:  # a consortium cannot set this, but 0/0 must not reach the YAML
        raise ExportError("the consortium's period_hours must be positive to count devices")
    return math.ceil(Decimal(device_hours) / Decimal(period_hours))


def check_resources(resources: Mapping[str, str], types: list[str]) -> None:
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
    names = dns_names([root_key] + [("member", m) for m in members] + [("project", p) for p in run.projects])
    root = names[root_key]
    labels = {"app.kubernetes.io/managed-by": "pooler", "pooler.io/period": run.period}

    def metadata(name: str, original: str) -> dict[str, Any]:
        return {"name": name, "labels": dict(labels), "annotations": {ID_ANNOTATION: original}}

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
            "spec": {"parentName": root, "fairSharing": {"weight": weight(run.shares[member_id])}},
        })
    for project_id in run.projects:
        lead = run.lead_sponsor(project_id)
        if ("member", lead) not in names:
            raise ExportError(f'the lead sponsor "{lead}" of project "{project_id}" has no share in the '
                              f"{run.period} run")
        groups: dict[str, list[dict[str, Any]]] = {}
        for t, hours in run.granted_by_type(project_id).items():
            groups.setdefault(resource_of[t], []).append({
                "name": flavor[t],
                "resources": [{"name": resource_of[t], "nominalQuota": devices(hours, run.period_hours)}],
            })
        spec: dict[str, Any] = {"cohortName": names[("member", lead)], "namespaceSelector": {}}
        # A project granted nothing gets no resource group: it can admit no accelerator workload.
        spec["resourceGroups"] = [{"coveredResources": [resource], "flavors": flavors}
                                  for resource, flavors in sorted(groups.items())]
        docs.append({"apiVersion": API_VERSION, "kind": "ClusterQueue",
                     "metadata": metadata(names[("project", project_id)], project_id), "spec": spec})
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
        f"# nominal quotas: granted device-hours / {dec_str(run.period_hours)} period hours, rounded up\n"
    )
    body = yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True, allow_unicode=True,
                              default_flow_style=False)
    return header + body
