"""`pooler export slurm|kueue`: exact script lines, a fake sacctmgr run twice, Kueue YAML against the CRDs."""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
import shlex
import shutil
import stat
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from pooler.io.export_kueue import DNS_LABEL, dns_names, weight
from pooler.io.export_slurm import fairshare, slurm_names
from tests.conftest import EXAMPLES

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
KUEUE = FIXTURES / "kueue"

# Three members, two accelerator types, ids that Slurm and Kubernetes cannot take as they are.
# Demand is well under capacity, so every project gets exactly its demand, all on the free pool where
# it can run there: proj-1 1500 and "Big Project" 800 device-hours on a-pool; proj-2 (H800 only,
# rate 2) 200 NCU = 100 device-hours on b-pool.
MANIFEST = """
[consortium]
name = "Test Alliance"
unit = "NCU"
period_hours = 720

[policy]
contribution_weight = 0.5
usage_half_life_days = 0

[[accelerators]]
id = "gpu-a"
rate = 1

[[accelerators]]
id = "H800 SXM"
rate = 2

[[members]]
id = "a-lab"
name = "A Lab"

[[members]]
id = "B.Corp"
name = "B Corp Ltd."

[[members]]
id = "root"
name = "Root's \\"Co-op\\""

[[pools]]
id = "a-pool"
member = "a-lab"
accelerator = "gpu-a"
capacity = 10000

[[pools]]
id = "b-pool"
member = "B.Corp"
accelerator = "H800 SXM"
capacity = 5000
cost = 1

[[projects]]
id = "proj-1"
sponsors = { a-lab = 1, "B.Corp" = 1 }
demand = 1500
speed = { gpu-a = 1 }

[[projects]]
id = "proj-2"
sponsors = { root = 1 }
demand = 200
speed = { "H800 SXM" = 1 }

[[projects]]
id = "Big Project"
sponsors = { a-lab = 3, root = 1 }
demand = 800
"""


def h(key: str, n: int = 10) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:n]


B_SLURM = f"b-corp-{h('member:B.Corp')}"
ROOT_SLURM = f"root-{h('member:root')}"
BIG_SLURM = f"big-project-{h('project:Big Project')}"
# "H800 SXM" cannot be a GRES type (a space): the Slurm export needs its gres.conf name.
GRES = ("--gres-type", "H800 SXM=h800")
SLURM = ("export", "slurm", "--period", "2026-11", *GRES)


@pytest.fixture
def ledger(cli, tmp_path):
    manifest = tmp_path / "m.toml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    assert cli("init").exit_code == 0
    applied = cli("apply", manifest)
    assert applied.exit_code == 0, applied.stderr
    ran = cli("alloc", "run", "--period", "2026-11", "--json")
    assert ran.exit_code == 0, ran.stderr
    grants = {(g["project"], g["pool"]): g["device_hours"] for g in ran.json()["grants"]}
    assert grants == {("proj-1", "a-pool"): 1500, ("Big Project", "a-pool"): 800, ("proj-2", "b-pool"): 100}
    cli.run_seq = ran.json()["recorded"]
    return cli


def _commands(script: str) -> list[str]:
    """The script's command lines after the helper functions: no comments, no blanks."""
    body = script[script.index("\n# member "):]
    return [line for line in body.splitlines() if line and not line.startswith("#")]


# --- Slurm ------------------------------------------------------------------------------------------


def test_slurm_script_lines(ledger):
    result = ledger(*SLURM)
    assert result.exit_code == 0, result.stderr
    script = result.stdout
    head = ledger("ledger", "log", "--limit", "1", "--json").json()[0]
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "# consortium: Test Alliance" in lines
    assert "# period: 2026-11" in lines
    assert f"# run entry: #{ledger.run_seq}" in lines
    assert f"# ledger head: #{head['seq']} {head['hash']}" in lines
    assert "set -euo pipefail" in lines
    # Shares: 0.5 x 10000/20000 + 0.5 / 3 for the two contributors, 0.5 / 3 for root.
    assert _commands(script) == [
        f"account_exists {B_SLURM} || sacctmgr -i add account {B_SLURM} Description='B Corp Ltd.' "
        f"Organization=B.Corp",
        f"set_account {B_SLURM} Fairshare=4167",
        "account_exists a-lab || sacctmgr -i add account a-lab Description='A Lab' Organization=a-lab",
        "set_account a-lab Fairshare=4167",
        f"account_exists {ROOT_SLURM} || sacctmgr -i add account {ROOT_SLURM} "
        "Description='Root'\"'\"'s \"Co-op\"' Organization=root",
        f"set_account {ROOT_SLURM} Fairshare=1667",
        f"account_exists {BIG_SLURM} || sacctmgr -i add account {BIG_SLURM} Parent=a-lab "
        "Description='project Big Project' Organization=a-lab",
        f"set_account {BIG_SLURM} Parent=a-lab GrpTRESMins=gres/gpu=48000,gres/gpu:gpu-a=48000,gres/gpu:h800=0",
        # A tie of stakes goes to the smaller id: "B.Corp" < "a-lab".
        f"account_exists proj-1 || sacctmgr -i add account proj-1 Parent={B_SLURM} "
        "Description='project proj-1' Organization=B.Corp",
        f"set_account proj-1 Parent={B_SLURM} GrpTRESMins=gres/gpu=90000,gres/gpu:gpu-a=90000,gres/gpu:h800=0",
        f"account_exists proj-2 || sacctmgr -i add account proj-2 Parent={ROOT_SLURM} "
        "Description='project proj-2' Organization=root",
        f"set_account proj-2 Parent={ROOT_SLURM} GrpTRESMins=gres/gpu=6000,gres/gpu:gpu-a=0,gres/gpu:h800=6000",
    ]
    for line in _commands(script):
        shlex.split(line)  # every line is well-quoted shell


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_slurm_script_is_valid_bash(ledger, tmp_path):
    out = tmp_path / "accounts.sh"
    result = ledger(*SLURM, "-o", out)
    assert result.exit_code == 0 and f"Wrote {out}" in result.stderr
    assert result.stdout == ""
    check = subprocess.run(["bash", "-n", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


# A stand-in for sacctmgr that keeps accounts in a folder and logs every call as one JSON line. Like
# the real one, `add` of an existing account fails; `modify` changes only the settings (and, in a TRES
# list, only the TRES) it is given, and says "Nothing modified" and exits 1 when none changes; and a
# TRES the database does not know (when a `tres` file lists those it knows) fails the whole command.
# `NAME.set` holds the settings of the last `modify` that changed anything, `NAME.assoc` all of them.
FAKE_SACCTMGR = r"""#!/usr/bin/env python3
import json, os, sys
state = os.environ["FAKE_SLURM"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as fh:
    fh.write(json.dumps(args) + "\n")
words = [a for a in args if a not in ("-i", "-n", "-P")]
if words[:2] == ["show", "account"]:
    name = words[3].split("=", 1)[1]
    if os.path.exists(os.path.join(state, name)):
        print(name)
elif words[:2] == ["add", "account"]:
    path = os.path.join(state, words[2])
    if os.path.exists(path):
        print(" Nothing new added.", file=sys.stderr); sys.exit(1)
    open(path, "w").write(json.dumps(words[3:]))
elif words[:2] == ["modify", "account"]:
    name = words[3].split("=", 1)[1]
    settings = words[words.index("set") + 1:]
    assoc_path = os.path.join(state, name + ".assoc")
    assoc = json.load(open(assoc_path)) if os.path.exists(assoc_path) else {}
    before = json.dumps(assoc, sort_keys=True)
    known = os.path.join(state, "tres")
    for setting in settings:
        key, value = setting.split("=", 1)
        if key == "GrpTRESMins":
            limits = assoc.setdefault(key, {})
            for item in value.split(","):
                tres, count = item.rsplit("=", 1)
                if os.path.exists(known) and tres.lower() not in open(known).read().lower().split():
                    print("sacctmgr: error: slurmdb_format_tres_str: no TRES known by type " + tres)
                    sys.exit(1)
                limits[tres.lower()] = count
        else:
            assoc[key] = value
    if json.dumps(assoc, sort_keys=True) == before:
        print(" Nothing modified"); sys.exit(1)
    json.dump(assoc, open(assoc_path, "w"))
    json.dump(settings, open(os.path.join(state, name + ".set"), "w"))
    print(" Modified account associations...")
else:
    sys.exit(2)
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_slurm_script_runs_twice_against_a_fake_sacctmgr(ledger, tmp_path):
    import json
    import sys

    out = tmp_path / "accounts.sh"
    assert ledger(*SLURM, "-o", out).exit_code == 0
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    fake = bin_dir / "sacctmgr"
    fake.write_text(FAKE_SACCTMGR.replace("/usr/bin/env python3", sys.executable), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM": str(state)}
    for attempt in (1, 2):
        done = subprocess.run(["bash", str(out)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, f"run {attempt}: {done.stderr}"
    calls = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]
    adds = [c for c in calls if "add" in c]
    assert len(adds) == 6  # once per account, on the first run only
    root_add = next(c for c in adds if ROOT_SLURM in c)
    assert 'Description=Root\'s "Co-op"' in root_add  # one argument, quotes intact
    assert json.loads((state / "proj-2.set").read_text()) == [
        f"Parent={ROOT_SLURM}", "GrpTRESMins=gres/gpu=6000,gres/gpu:gpu-a=0,gres/gpu:h800=6000"]
    # A failure other than "Nothing modified" stops the script.
    fake.write_text("#!/bin/sh\necho 'sacctmgr: error: Problem talking to the database' >&2\nexit 1\n")
    failed = subprocess.run(["bash", str(out)], capture_output=True, text=True, env=env)
    assert failed.returncode != 0 and "Problem talking" in failed.stderr


@pytest.mark.parametrize("share,expected", [
    (Decimal("0.41666666666666669"), 4167), (Decimal("0.00001"), 1), (Decimal(0), 0), (Decimal(1), 10000),
])
def test_fairshare_from_share(share, expected):
    assert fairshare(share) == expected


def test_slurm_names_are_safe_deterministic_and_distinct():
    ids = ["pcl", "PCL", "root", "a b", "a_b", "a-b", "x" * 80, "x" * 81, "项目", "-lead",
           f"pcl-{h('member:PCL')}", "ok-0123456789abcdef"]
    keys = [("member", i) for i in ids] + [("project", "pcl")]
    names = slurm_names(keys)
    assert names == slurm_names(list(reversed(keys)))
    assert len(set(names.values())) == len(keys)
    for key, name in names.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name), (key, name)
    assert names[("member", "a_b")] == "a_b" and names[("member", "a-b")] == "a-b"
    # The same id as member and project: the member keeps the bare name, the project is hashed.
    assert names[("member", "pcl")] == "pcl" and names[("project", "pcl")] == f"pcl-{h('project:pcl')}"
    assert names[("member", "root")] == f"root-{h('member:root')}"
    # An id that looks like a hashed name is hashed itself, so it cannot take another id's name.
    assert names[("member", f"pcl-{h('member:PCL')}")] != f"pcl-{h('member:PCL')}"


# --- Kueue ------------------------------------------------------------------------------------------


def _strip_extensions(node):
    if isinstance(node, dict):
        return {k: _strip_extensions(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [_strip_extensions(v) for v in node]
    return node


def _schemas() -> dict[str, dict]:
    if not KUEUE.is_dir():
        pytest.skip(f"the Kueue CRD fixtures are not at {KUEUE}")
    schemas = {}
    for path in sorted(KUEUE.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta2")
        schemas[crd["spec"]["names"]["kind"]] = _strip_extensions(version["schema"]["openAPIV3Schema"])
    assert set(schemas) >= {"ClusterQueue", "Cohort", "ResourceFlavor"}
    return schemas


def _validate_all(docs):
    import jsonschema

    schemas = _schemas()
    for doc in docs:
        validator = jsonschema.Draft7Validator(schemas[doc["kind"]])
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, f"{doc['kind']} {doc['metadata']['name']}: {errors[0].message}"
        assert DNS_LABEL.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
        # The CEL rule the schema check cannot run: each flavor lists exactly the covered resources.
        for group in doc["spec"].get("resourceGroups", []):
            for flavor in group["flavors"]:
                assert [r["name"] for r in flavor["resources"]] == group["coveredResources"]


def _kueue(cli, *extra):
    result = cli("export", "kueue", "--period", "2026-11", *extra)
    assert result.exit_code == 0, result.stderr
    return result.stdout, list(yaml.safe_load_all(result.stdout))


def test_kueue_documents_validate_against_the_crds(ledger):
    text, docs = _kueue(ledger)
    assert text.startswith("# Kueue objects") and f"# run entry: #{ledger.run_seq}" in text
    _validate_all(docs)
    by_kind = {}
    for doc in docs:
        assert doc["apiVersion"] == "kueue.x-k8s.io/v1beta2"
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["annotations"]["pooler.io/id"]] = doc
    h800 = f"h800-sxm-{h('accelerator:H800 SXM')}"
    assert {i: d["metadata"]["name"] for i, d in by_kind["ResourceFlavor"].items()} == {
        "gpu-a": "gpu-a", "H800 SXM": h800}
    assert by_kind["ResourceFlavor"]["H800 SXM"]["spec"] == {"nodeLabels": {"pooler.io/accelerator": h800}}
    cohorts = by_kind["Cohort"]
    assert cohorts["Test Alliance"]["metadata"]["name"] == "test-alliance"
    assert cohorts["Test Alliance"]["spec"] == {}
    b_corp = f"b-corp-{h('member:B.Corp')}"
    assert {i: (d["metadata"]["name"], d["spec"]) for i, d in cohorts.items() if i != "Test Alliance"} == {
        "a-lab": ("a-lab", {"parentName": "test-alliance", "fairSharing": {"weight": "0.416667"}}),
        "B.Corp": (b_corp, {"parentName": "test-alliance", "fairSharing": {"weight": "0.416667"}}),
        "root": ("root", {"parentName": "test-alliance", "fairSharing": {"weight": "0.166667"}}),
    }
    queues = by_kind["ClusterQueue"]
    gpu = "nvidia.com/gpu"
    assert queues["proj-1"]["metadata"]["name"] == "proj-1"
    assert queues["proj-1"]["spec"] == {
        "cohortName": b_corp, "namespaceSelector": {},
        "resourceGroups": [{"coveredResources": [gpu], "flavors": [
            # 1500 / 720 = 2.08 and 800 / 720 = 1.11 make 3.19 -> 3 devices: 2 and 1, not 3 and 2
            {"name": "gpu-a", "resources": [{"name": gpu, "nominalQuota": 2}]}]}],
    }
    assert queues["Big Project"]["metadata"]["name"] == f"big-project-{h('project:Big Project')}"
    assert queues["Big Project"]["spec"]["cohortName"] == "a-lab"
    assert queues["Big Project"]["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] == 1
    assert queues["proj-2"]["spec"]["cohortName"] == "root"
    # 100 / 720 = 0.14 device rounds to none: the flavor stays, with 0, so proj-2 can borrow.
    assert queues["proj-2"]["spec"]["resourceGroups"][0]["flavors"] == [
        {"name": h800, "resources": [{"name": gpu, "nominalQuota": 0}]}]
    # Every reference names an object of the export.
    names = {kind: {d["metadata"]["name"] for d in items.values()} for kind, items in by_kind.items()}
    for queue in queues.values():
        assert queue["spec"]["cohortName"] in names["Cohort"]
        for group in queue["spec"]["resourceGroups"]:
            assert {f["name"] for f in group["flavors"]} <= names["ResourceFlavor"]


def test_kueue_resource_per_accelerator_type(ledger):
    _, docs = _kueue(ledger, "--resource", "H800 SXM=example.com/h800")
    _validate_all(docs)
    queue = next(d for d in docs if d["kind"] == "ClusterQueue" and d["metadata"]["name"] == "proj-2")
    assert queue["spec"]["resourceGroups"][0]["coveredResources"] == ["example.com/h800"]
    bad = ledger("export", "kueue", "--period", "2026-11", "--resource", "nope=example.com/x")
    assert bad.exit_code == 1 and bad.stderr.startswith("Error:") and "nope" in bad.stderr
    malformed = ledger("export", "kueue", "--period", "2026-11", "--resource", "gpu-a")
    assert malformed.exit_code == 2 and "TYPE=RESOURCE" in malformed.stderr


def test_kueue_schema_check_catches_a_bad_document(ledger):
    _, docs = _kueue(ledger)
    broken = copy.deepcopy(docs)
    cohort = next(d for d in broken if d["kind"] == "Cohort" and d["spec"])
    cohort["spec"]["fairSharing"]["weight"] = "a lot"
    with pytest.raises(AssertionError, match="does not match"):
        _validate_all(broken)


def test_kueue_export_of_the_c2net_example_validates(cli):
    assert cli("init").exit_code == 0
    assert cli("apply", EXAMPLES / "c2net.toml").exit_code == 0
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    _, docs = _kueue(cli)
    _validate_all(docs)
    assert sum(d["kind"] == "ClusterQueue" for d in docs) > 5
    slurm = cli("export", "slurm", "--period", "2026-11")
    assert slurm.exit_code == 0 and "pengcheng-mind-2" in slurm.stdout


def test_dns_names_and_weights():
    keys = [("member", i) for i in ("ok", "Not OK", "a.b", "-x-", "x" * 70, "9lives")]
    names = dns_names(keys)
    assert names == dns_names(list(reversed(keys)))
    assert len(set(names.values())) == len(keys)
    assert all(DNS_LABEL.match(n) and len(n) <= 63 for n in names.values())
    assert names[("member", "ok")] == "ok" and names[("member", "9lives")] == "9lives"
    assert weight(Decimal("0.1234567")) == "0.123457"
    assert weight(Decimal("0.0000001")) == "0.000001"  # a positive share never reads as zero
    assert weight(Decimal(0)) == "0"


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["slurm", "kueue"])
def test_period_without_a_run_is_one_clear_error(ledger, kind):
    result = ledger("export", kind, "--period", "2026-12")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error:") and "no recorded run for 2026-12" in result.stderr
    assert ledger("export", kind, "--period", "2026-13").exit_code == 2


@pytest.mark.parametrize("kind", ["slurm", "kueue"])
def test_unwritable_output_is_a_clear_error(ledger, tmp_path, kind):
    extra = GRES if kind == "slurm" else ()
    missing = ledger("export", kind, "--period", "2026-11", *extra, "-o", tmp_path / "no" / "such" / "dir.txt")
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: cannot write")
    folder = ledger("export", kind, "--period", "2026-11", *extra, "-o", tmp_path)
    assert folder.exit_code == 2 and "directory" in folder.stderr
    assert list(tmp_path.glob(".*.tmp")) == []


@pytest.mark.parametrize("args", [["export"], ["export", "slurm"], ["export", "kueue"]])
def test_export_help_has_an_example(cli, args):
    result = cli(*args, "--help", db_path=None)
    assert result.exit_code == 0 and "Example" in result.stdout


# --- review fixes -----------------------------------------------------------------------------------
# Each test below failed before its fix (see the commit that brought it).

from pooler.core.alloc import entitlement  # noqa: E402
from pooler.errors import UsageError  # noqa: E402
from pooler.io.export_kueue import flavor_quotas  # noqa: E402
from pooler.io.export_slurm import ExportError, RunExport, gres_types, slurm_script  # noqa: E402
from pooler.io.manifest import parse_manifest  # noqa: E402


def _run_export(manifest: str = MANIFEST, *, shares=None, grants=(), projects=None, retired=()) -> RunExport:
    """A RunExport straight from a manifest, for tests that need no ledger."""
    snap = parse_manifest(manifest, "m.toml")
    return RunExport(
        snapshot=snap, period="2026-11", run_seq=9, head_seq=9, head_hash="0" * 64,
        shares=shares or {m.id: Decimal(1) / len(snap.members) for m in snap.members},
        projects=tuple(sorted(projects if projects is not None else (p.id for p in snap.projects))),
        grants=tuple(grants), retired_projects=tuple(sorted(retired)),
    )


def _fake_slurm(tmp_path):
    """A PATH and a state folder with the fake sacctmgr; returns (env, state)."""
    import sys

    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    fake = bin_dir / "sacctmgr"
    fake.write_text(FAKE_SACCTMGR.replace("/usr/bin/env python3", sys.executable), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM": str(state)}, state


# 1. Every project is limited on every type of the run; retired projects' limits go to 0.

@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_slurm_limits_cover_every_type_and_retired_projects_go_to_zero(ledger, tmp_path):
    """Review: a project got `gres/gpu:TYPE=` only for types it was granted, so it could spend its
    total on any other type, and the limits of a retired project (or of an earlier period) stayed."""
    import json

    env, state = _fake_slurm(tmp_path)
    november = tmp_path / "2026-11.sh"
    assert ledger(*SLURM, "-o", november).exit_code == 0
    assert subprocess.run(["bash", str(november)], capture_output=True, text=True, env=env).returncode == 0
    assert json.loads((state / "proj-2.set").read_text())[1] == \
        "GrpTRESMins=gres/gpu=6000,gres/gpu:gpu-a=0,gres/gpu:h800=6000"  # gpu-a capped at 0 too
    # proj-2 retires; "ghost" is added and retired before any export, so no account of it exists.
    assert ledger("project", "retire", "proj-2").exit_code == 0
    added = ledger("project", "add", "ghost", "--sponsor", "a-lab=1", "--demand", "10")
    assert added.exit_code == 0, added.stderr
    assert ledger("project", "retire", "ghost").exit_code == 0
    assert ledger("alloc", "run", "--period", "2026-12").exit_code == 0
    # Retired after December's run was solved: still a project of that run, not zeroed.
    assert ledger("project", "retire", "proj-1").exit_code == 0
    result = ledger("export", "slurm", "--period", "2026-12", *GRES)
    assert result.exit_code == 0, result.stderr
    commands = _commands(result.stdout)
    zero = "GrpTRESMins=gres/gpu=0,gres/gpu:gpu-a=0,gres/gpu:h800=0"
    assert commands[-1] == f"if account_exists proj-2; then set_account proj-2 {zero}; fi"
    assert not any("add account proj-2" in c for c in commands)
    # ghost was in no run, so no export can have made its account: an account of that name is
    # someone else's, and the script leaves it alone (review)
    assert not any("ghost" in c for c in commands)
    assert any(c.startswith("set_account proj-1 ") and "gres/gpu:h800=0" in c for c in commands)
    december = tmp_path / "2026-12.sh"
    december.write_text(result.stdout, encoding="utf-8")
    done = subprocess.run(["bash", str(december)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr  # a missing account is no failure, even on the last line
    assert json.loads((state / "proj-2.set").read_text()) == [zero]
    assert not (state / "ghost").exists() and not (state / "ghost.set").exists()  # never created


def test_slurm_limits_list_every_type_of_the_run_even_when_nothing_was_granted():
    run = _run_export(grants=[("proj-1", "a-pool", 10)])
    lines = [line for line in slurm_script(run, {"H800 SXM": "h800"}).splitlines()
             if line.startswith("set_account") and "GrpTRESMins" in line]
    assert lines == [
        f"set_account {BIG_SLURM} Parent=a-lab GrpTRESMins=gres/gpu=0,gres/gpu:gpu-a=0,gres/gpu:h800=0",
        f"set_account proj-1 Parent={B_SLURM} GrpTRESMins=gres/gpu=600,gres/gpu:gpu-a=600,gres/gpu:h800=0",
        f"set_account proj-2 Parent={ROOT_SLURM} GrpTRESMins=gres/gpu=0,gres/gpu:gpu-a=0,gres/gpu:h800=0",
    ]


# 2. Names: members before projects (Slurm), the root cohort before members before projects (Kueue).

def test_a_project_with_a_members_id_never_renames_the_member():
    """Review: a project added with a member's id made both hashed, renaming the member's account."""
    members = [("member", m) for m in ("pcl", "baai", "Big Lab", "root")]
    alone = slurm_names(members)
    both = slurm_names(members + [("project", "pcl"), ("project", "baai-x"), ("project", "Big Lab")])
    assert {k: both[k] for k in alone} == alone
    assert both[("member", "pcl")] == "pcl" and both[("project", "pcl")] == f"pcl-{h('project:pcl')}"
    assert both[("project", "baai-x")] == "baai-x"
    # Kueue: the root cohort wins over a member of the same name, a member over a project.
    keys = [("consortium", "pcl"), ("member", "pcl"), ("project", "pcl"), ("member", "ok")]
    names = dns_names(keys)
    assert names[("consortium", "pcl")] == "pcl"
    assert names[("member", "pcl")] == f"pcl-{h('member:pcl')}"
    assert names[("project", "pcl")] == f"pcl-{h('project:pcl')}"
    assert dns_names(keys[1:])[("member", "pcl")] == "pcl"


def test_names_stay_when_lower_kinds_are_added_on_random_ids():
    from hypothesis import given, settings, strategies as st

    ident = st.text(alphabet="abcAB9 _-.", min_size=1, max_size=12)

    @settings(max_examples=150, deadline=None)
    @given(st.lists(ident, max_size=8, unique=True), st.lists(ident, max_size=8, unique=True))
    def check(members, projects):
        for names_of, safe in ((slurm_names, r"[a-z0-9][a-z0-9_-]{0,63}"),
                               (dns_names, r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")):
            alone = names_of([("member", m) for m in members])
            keys = [("member", m) for m in members] + [("project", p) for p in projects]
            names = names_of(keys)
            assert {k: names[k] for k in alone} == alone          # stable
            assert names == names_of(list(reversed(keys)))        # deterministic
            assert len(set(names.values())) == len(keys)          # distinct
            assert all(re.fullmatch(safe, n) for n in names.values())
            plain = {n for (_, i), n in names.items() if n == i}
            hashed = set(names.values()) - plain
            assert not plain & hashed

    check()


def test_project_named_like_a_member_keeps_the_member_account_end_to_end(ledger):
    added = ledger("project", "add", "a-lab", "--sponsor", "a-lab=1", "--demand", "10")
    assert added.exit_code == 0, added.stderr
    assert ledger("alloc", "run", "--period", "2026-12").exit_code == 0
    script = ledger("export", "slurm", "--period", "2026-12", *GRES).stdout
    assert "account_exists a-lab || sacctmgr -i add account a-lab Description='A Lab'" in script
    assert f"account_exists a-lab-{h('project:a-lab')} || " in script
    text = ledger("export", "kueue", "--period", "2026-12").stdout
    cohort = next(d for d in yaml.safe_load_all(text) if d["kind"] == "Cohort"
                  and d["metadata"]["annotations"]["pooler.io/id"] == "a-lab")
    assert cohort["metadata"]["name"] == "a-lab"


# 3. GRES type names: the id itself, or --gres-type; never hashed.

@pytest.mark.parametrize("types,mapping,expected", [
    (["NVIDIA_A100", "ascend-910b", "v1.5"], {}, {"NVIDIA_A100": "NVIDIA_A100", "ascend-910b": "ascend-910b",
                                                   "v1.5": "v1.5"}),
    (["ascend-910b", "H800 SXM"], {"ascend-910b": "ascend910b", "H800 SXM": "h800"},
     {"ascend-910b": "ascend910b", "H800 SXM": "h800"}),
])
def test_gres_types_are_the_ids_or_the_mapping(types, mapping, expected):
    assert gres_types(types, mapping) == expected


@pytest.mark.parametrize("types,mapping,error,words", [
    (["H800 SXM", "a:b", "100", "ok"], {}, ExportError, ['"H800 SXM", "a:b", "100"', "--gres-type"]),
    (["é100"], {}, ExportError, ['"é100"', "--gres-type"]),
    (["ok"], {"nope": "x"}, UsageError, ['"nope" is not an accelerator type of the run (ok)']),
    (["ok"], {"ok": "a b"}, UsageError, ['"a b" is not a GRES type name']),
    (["ok"], {"ok": "gpu:x"}, UsageError, ['"gpu:x"']),
    (["ok"], {"ok": "x=1,gres/gpu"}, UsageError, ['"x=1,gres/gpu"']),
    (["ok"], {"ok": "910"}, UsageError, ['"910"']),  # digits alone read as a count in --gres=gpu:910
])
def test_gres_types_refuse_what_cannot_match_gres_conf(types, mapping, error, words):
    with pytest.raises(error) as caught:
        gres_types(types, mapping)
    assert type(caught.value) is error
    for word in words:
        assert word in str(caught.value)


def test_gres_types_that_differ_only_in_case_are_one_tres():
    """Slurm finds TRES names without regard to case: A100 and a100 are one limit, their sum."""
    manifest = MANIFEST.replace('id = "H800 SXM"', 'id = "GPU-A"').replace('"H800 SXM"', '"GPU-A"')
    run = _run_export(manifest, grants=[("proj-1", "a-pool", 10), ("proj-2", "b-pool", 5)])
    script = slurm_script(run)
    assert "#   gres/gpu:GPU-A: accelerator types GPU-A, gpu-a" in script
    assert f"set_account proj-1 Parent={B_SLURM} GrpTRESMins=gres/gpu=600,gres/gpu:GPU-A=600" in script
    assert f"set_account proj-2 Parent={ROOT_SLURM} GrpTRESMins=gres/gpu=300,gres/gpu:GPU-A=300" in script


def test_gres_type_option_on_the_command_line(ledger, tmp_path):
    out = tmp_path / "accounts.sh"
    unnamed = ledger("export", "slurm", "--period", "2026-11", "-o", out)
    assert unnamed.exit_code == 1 and not out.exists()
    assert unnamed.stderr.count("Error:") == 1 and unnamed.stderr.startswith("Error:")
    assert '"H800 SXM"' in unnamed.stderr and "--gres-type" in unnamed.stderr
    assert "h800-sxm-" not in unnamed.stderr  # no hashed name offered
    named = ledger(*SLURM, "--gres-type", "gpu-a=a100_40g", "-o", out)
    assert named.exit_code == 0, named.stderr
    assert "gres/gpu:a100_40g=90000,gres/gpu:h800=0" in out.read_text()
    for bad, words in [
        (["--gres-type", "nope=x"], ['"nope" is not an accelerator type of the run']),
        (["--gres-type", "gpu-a"], ["'gpu-a' is not ACCEL=TYPE"]),
        (["--gres-type", "=x"], ["'=x' is not ACCEL=TYPE"]),
        (["--gres-type", "gpu-a="], ["'gpu-a=' is not ACCEL=TYPE"]),
        (["--gres-type", "gpu-a=a b"], ['"a b" is not a GRES type name']),
        (["--gres-type", "gpu-a=x", "--gres-type", "gpu-a=y"], ['"gpu-a" is given twice (\'x\' and \'y\')']),
    ]:
        target = tmp_path / "bad.sh"
        result = ledger("export", "slurm", "--period", "2026-11", *bad, "-o", target)
        assert result.exit_code == 2, (bad, result.stderr)
        assert result.stderr.startswith("Error: --gres-type:") and result.stderr.count("Error:") == 1
        for word in words:
            assert word in result.stderr, (bad, result.stderr)
        assert not target.exists()


def test_kueue_resource_given_twice_is_a_usage_error(ledger, tmp_path):
    """Review: `--resource T=a --resource T=b` silently used b."""
    target = tmp_path / "q.yaml"
    twice = ledger("export", "kueue", "--period", "2026-11", "--resource", "gpu-a=example.com/a",
                   "--resource", "gpu-a=example.com/b", "-o", target)
    assert twice.exit_code == 2 and "--resource" in twice.stderr and '"gpu-a" is given twice' in twice.stderr
    assert not target.exists()
    same = ledger("export", "kueue", "--period", "2026-11", "--resource", "gpu-a=example.com/a",
                  "--resource", " gpu-a = example.com/a ")
    assert same.exit_code == 2  # even with the same value: one option per type


# 4. Fairshare and fair-sharing weights from the entitlement, before usage history.

@pytest.mark.parametrize("policy,contributed,expected", [
    ("contribution_weight = 0.5", {"a": 10000, "b": 10000, "c": 0}, {"a": 5 / 12, "b": 5 / 12, "c": 1 / 6}),
    ('entitlement = "equal"', {"a": 10000, "b": 0, "c": 0}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),
    ("contribution_weight = 1", {"a": 0, "b": 0, "c": 0}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),  # nobody
    # alpha = 1: c's 1e-9 of the largest is under the 1e-6 rule and counts as zero.
    ("contribution_weight = 1", {"a": 10 ** 9, "b": 10 ** 9, "c": 1}, {"a": 0.5, "b": 0.5, "c": 0.0}),
])
def test_entitlement_is_the_share_without_usage(policy, contributed, expected):
    pools = "".join(f'\n[[pools]]\nid = "{m}-pool"\nmember = "{m}"\naccelerator = "g"\ncapacity = {k}\n'
                    for m, k in contributed.items() if k)
    manifest = (f"[policy]\n{policy}\nusage_half_life_days = 30\n[[accelerators]]\nid = \"g\"\nrate = 1\n"
                + "".join(f'[[members]]\nid = "{m}"\nname = "{m}"\n' for m in contributed) + pools
                + "[usage]\na = 1000000\n")  # heavy usage by a: it must not matter
    got = entitlement(parse_manifest(manifest, "m.toml"))
    assert got == pytest.approx(expected, abs=1e-15)


def test_exports_weigh_members_by_entitlement_not_the_share_after_usage(cli, tmp_path):
    """Review: Fairshare and fairSharing.weight came from the run's share, which already carries
    pooler's usage factor; Slurm and Kueue weigh usage again, so heavy users paid twice."""
    manifest = tmp_path / "m.toml"
    manifest.write_text(MANIFEST.replace("usage_half_life_days = 0", "usage_half_life_days = 30"), encoding="utf-8")
    usage = tmp_path / "u.csv"
    usage.write_text("project,pool,device_hours,start,end\n"
                     "proj-1,a-pool,5000,2026-10-20T00:00:00,2026-10-21T00:00:00\n", encoding="utf-8")
    assert cli("init").exit_code == 0 and cli("apply", manifest).exit_code == 0
    assert cli("usage", "import", usage, "--format", "csv").exit_code == 0
    ran = cli("alloc", "run", "--period", "2026-11", "--json").json()
    assert ran["members"]["a-lab"]["share"] < 0.4  # the usage factor took a-lab's share down
    script = cli("export", "slurm", "--period", "2026-11", *GRES).stdout
    for name, fs in (("a-lab", 4167), (B_SLURM, 4167), (ROOT_SLURM, 1667)):  # 5/12, 5/12, 1/6
        assert f"set_account {name} Fairshare={fs}" in script
    assert "# member a-lab: entitlement 0.4166666666666667 (the run's share after usage history: 0.34" in script
    docs = list(yaml.safe_load_all(cli("export", "kueue", "--period", "2026-11").stdout))
    weights = {d["metadata"]["annotations"]["pooler.io/id"]: d["spec"]["fairSharing"]["weight"]
               for d in docs if d["kind"] == "Cohort" and d["spec"]}
    assert weights == {"a-lab": "0.416667", "B.Corp": "0.416667", "root": "0.166667"}


def test_entitlement_of_a_member_missing_from_the_state_is_an_export_error():
    run = _run_export(shares={"a-lab": Decimal("0.5"), "gone": Decimal("0.5")})
    with pytest.raises(ExportError, match="gone"):
        run.entitlement()


# 5. The header says how to keep GrpTRESMins from decaying.

def test_slurm_header_asks_for_no_decay_and_a_reset_per_period():
    script = slurm_script(_run_export(), {"H800 SXM": "h800"})
    header = " ".join(line[2:] for line in script.splitlines() if line.startswith("# "))
    assert "PriorityDecayHalfLife=0" in header and "PriorityUsageResetPeriod=MONTHLY" in header
    assert "NoDecay flag is a QOS flag" in header
    weekly = MANIFEST.replace('unit = "NCU"', 'unit = "NCU"\nperiod = "week"')
    assert "PriorityUsageResetPeriod=WEEKLY" in slurm_script(_run_export(weekly), {"H800 SXM": "h800"})


# 6. Kueue quotas: largest remainder per flavor, never above the flavor's devices.

@pytest.mark.parametrize("hours,capacity,expected", [
    ({"p1": 1500, "Big": 800}, 10000, {"p1": 2, "Big": 1}),           # 2.08 + 1.11 = 3.19 -> 3
    ({"b": 360, "a": 360}, 10000, {"a": 1, "b": 0}),                  # 0.5 + 0.5 = 1: the tie goes to "a"
    ({"a": 360}, 10000, {"a": 1}),                                    # 0.5 rounds half up
    ({"a": 359}, 10000, {"a": 0}),                                    # 0.499 rounds to no device
    ({"a": 719, "b": 719, "c": 719}, 2157, {"a": 1, "b": 1, "c": 0}),  # 2.996 -> 3, but 2157 h = 2.996 devices
    ({"a": 1440, "b": 0}, 1440, {"a": 2, "b": 0}),
    ({}, 720, {}),
])
def test_flavor_quotas(hours, capacity, expected):
    assert flavor_quotas(hours, Decimal(720), Decimal(capacity)) == expected


@pytest.mark.parametrize("period_hours", [Decimal(0), Decimal(-1)])
def test_flavor_quotas_need_positive_period_hours(period_hours):
    with pytest.raises(ExportError, match="period_hours"):
        flavor_quotas({"a": 1}, period_hours, Decimal(10))


def test_flavor_quotas_on_random_grants():
    import math
    from fractions import Fraction

    from hypothesis import given, settings, strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 5000), max_size=8),
           st.integers(1, 1000), st.integers(0, 3000))
    def check(hours, period, spare):
        capacity = sum(hours.values()) + spare  # grants never exceed the pools
        quotas = flavor_quotas(hours, Decimal(period), Decimal(capacity))
        exact = {p: Fraction(h, period) for p, h in hours.items()}
        total = sum(exact.values(), Fraction(0))
        assert set(quotas) == set(hours)
        assert sum(quotas.values()) == min(math.floor(total + Fraction(1, 2)), capacity // period)
        for p, q in quotas.items():
            assert math.floor(exact[p]) <= q <= math.floor(exact[p]) + 1

    check()


def test_kueue_quotas_of_the_c2net_example_never_exceed_the_devices(cli):
    """Review: rounding every project up gave ascend-910b 7170 devices of quota for 7168 devices."""
    assert cli("init").exit_code == 0
    assert cli("apply", EXAMPLES / "c2net.toml").exit_code == 0
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    _, docs = _kueue(cli)
    total: dict[str, int] = {}
    for doc in docs:
        if doc["kind"] == "ClusterQueue":
            for group in doc["spec"]["resourceGroups"]:
                for flavor in group["flavors"]:
                    total[flavor["name"]] = total.get(flavor["name"], 0) + flavor["resources"][0]["nominalQuota"]
    snapshot = parse_manifest((EXAMPLES / "c2net.toml").read_text(encoding="utf-8"), "c2net.toml")
    devices = {}
    for pool in snapshot.pools:
        devices[pool.accelerator] = devices.get(pool.accelerator, 0) + pool.device_hours(Decimal(720)) / 720
    assert total["ascend-910b"] == 7168 == devices["ascend-910b"]
    for flavor, quota in total.items():
        assert quota <= math.floor(devices[flavor]), flavor



# 7. What earlier runs left on the cluster: retired members, types no longer pooled, names of
#    retired records.

ZERO = "GrpTRESMins=gres/gpu=0,gres/gpu:gpu-a=0,gres/gpu:h800=0"


def _run_script(script: str, tmp_path, env, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(script, encoding="utf-8")
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env)


def _state_files(state) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(state.iterdir()) if p.name != "calls.jsonl"}


def _docs_by_id(text: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["annotations"]["pooler.io/id"]): d for d in yaml.safe_load_all(text)}


def _export(cli, kind: str, period: str, *extra) -> str:
    result = cli("export", kind, "--period", period, *(GRES if kind == "slurm" else ()), *extra)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_a_retired_members_account_loses_its_share_and_limits(ledger, tmp_path):
    """Review: the script touched current members only, so a retired member's account kept its
    Fairshare (and nothing stopped the accounts under it); Kueue kept its cohort's weight."""
    import json

    env, state = _fake_slurm(tmp_path)
    assert ledger("member", "add", "gone-lab", "--name", "Gone Lab").exit_code == 0
    assert ledger("alloc", "run", "--period", "2026-12").exit_code == 0
    assert _run_script(_export(ledger, "slurm", "2026-12"), tmp_path, env, "12.sh").returncode == 0
    # 4 members, alpha 0.5, no contribution: 0.5 / 4 = 0.125
    assert json.loads((state / "gone-lab.set").read_text()) == ["Fairshare=1250"]
    # "never-lab" comes and goes between two runs: no export ever made anything of it.
    assert ledger("member", "add", "never-lab", "--name", "Never Lab").exit_code == 0
    assert ledger("member", "retire", "never-lab").exit_code == 0
    assert ledger("member", "retire", "gone-lab").exit_code == 0
    assert ledger("alloc", "run", "--period", "2027-01").exit_code == 0
    script = _export(ledger, "slurm", "2027-01")
    commands = _commands(script)
    assert commands[-1] == f"if account_exists gone-lab; then set_account gone-lab Fairshare=0 {ZERO}; fi"
    assert not any("add account gone-lab" in c for c in commands)
    # never-lab was in no run: an account of that name is not pooler's, and is left alone (review)
    assert not any("never-lab" in c for c in commands)
    for attempt in (1, 2):
        before = _state_files(state)
        done = _run_script(script, tmp_path, env, "01.sh")
        assert done.returncode == 0, done.stderr
        if attempt == 2:
            assert _state_files(state) == before  # the second run changes nothing
    assert json.loads((state / "gone-lab.set").read_text()) == ["Fairshare=0", ZERO]
    assert not (state / "never-lab").exists()
    check = subprocess.run(["bash", "-n", str(tmp_path / "01.sh")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # Kueue: the cohort an earlier export made gets weight 0; none is made for never-lab.
    text = _export(ledger, "kueue", "2027-01")
    docs = _docs_by_id(text)
    _validate_all(list(docs.values()))
    gone = docs[("Cohort", "gone-lab")]
    assert gone["spec"] == {"parentName": "test-alliance", "fairSharing": {"weight": "0"}}
    assert gone["metadata"]["labels"]["pooler.io/retired"] == "true"
    assert ("Cohort", "never-lab") not in docs
    assert "pooler.io/retired" not in docs[("Cohort", "a-lab")]["metadata"]["labels"]
    assert _export(ledger, "kueue", "2027-01") == text  # the same run, the same objects


def test_a_retired_projects_queue_is_held_with_no_quota(ledger):
    """Review: Kueue kept a retired project's ClusterQueue with its quotas, open to every namespace."""
    assert ledger("project", "retire", "proj-2").exit_code == 0
    added = ledger("project", "add", "ghost", "--sponsor", "a-lab=1", "--demand", "10")
    assert added.exit_code == 0, added.stderr
    assert ledger("project", "retire", "ghost").exit_code == 0
    assert ledger("alloc", "run", "--period", "2026-12").exit_code == 0
    docs = _docs_by_id(_export(ledger, "kueue", "2026-12"))
    _validate_all(list(docs.values()))
    held = docs[("ClusterQueue", "proj-2")]
    assert held["metadata"]["name"] == "proj-2"
    assert held["metadata"]["labels"]["pooler.io/retired"] == "true"
    assert held["spec"] == {"stopPolicy": "Hold"}  # no cohort, no namespaces, no quota
    assert ("ClusterQueue", "ghost") not in docs  # never in a run: no earlier export made it
    assert docs[("ClusterQueue", "proj-1")]["spec"].get("stopPolicy") is None


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_limits_of_types_no_longer_pooled_go_to_zero(ledger, tmp_path):
    """Review: a GPU type of an earlier run that the run's pools no longer have kept every project's
    limit of it on the cluster (the script listed only the run's types)."""
    import json

    env, state = _fake_slurm(tmp_path)
    assert _run_script(_export(ledger, "slurm", "2026-11"), tmp_path, env, "11.sh").returncode == 0
    assert json.loads((state / "proj-2.assoc").read_text())["GrpTRESMins"]["gres/gpu:h800"] == "6000"
    assert ledger("pool", "retire", "b-pool").exit_code == 0  # the only H800 pool
    assert ledger("alloc", "run", "--period", "2026-12").exit_code == 0
    script = _export(ledger, "slurm", "2026-12")
    assert "#   gres/gpu:h800: accelerator type H800 SXM" in script.split("set -euo pipefail")[0]
    commands = _commands(script)
    assert f"set_account proj-2 Parent={ROOT_SLURM} GrpTRESMins=gres/gpu=0,gres/gpu:gpu-a=0" in commands
    assert "zero_gone_types proj-2 GrpTRESMins=gres/gpu:h800=0" in commands
    assert "zero_gone_types proj-1 GrpTRESMins=gres/gpu:h800=0" in commands
    assert f"zero_gone_types {BIG_SLURM} GrpTRESMins=gres/gpu:h800=0" in commands
    for attempt in (1, 2):
        before = _state_files(state)
        done = _run_script(script, tmp_path, env, "12.sh")
        assert done.returncode == 0, done.stderr
        if attempt == 2:
            assert _state_files(state) == before
    for account in ("proj-1", "proj-2", BIG_SLURM):
        assert json.loads((state / f"{account}.assoc").read_text())["GrpTRESMins"]["gres/gpu:h800"] == "0"
    assert subprocess.run(["bash", "-n", str(tmp_path / "12.sh")]).returncode == 0
    # A type Slurm's database never knew is refused by sacctmgr: reported, and the rest goes on.
    (state / "tres").write_text("gres/gpu gres/gpu:gpu-a\n")
    (state / "proj-1.assoc").unlink()
    refused = _run_script(script, tmp_path, env, "12.sh")
    assert refused.returncode == 0, refused.stderr
    assert "warning: proj-1: a type no longer pooled is unknown to Slurm" in refused.stderr
    assert json.loads((state / "proj-1.assoc").read_text())["GrpTRESMins"]["gres/gpu:gpu-a"] == "90000"
    # Without --gres-type the id "H800 SXM" names no GRES type: left alone, and the header says so.
    plain = ledger("export", "slurm", "--period", "2026-12")
    assert plain.exit_code == 0, plain.stderr
    assert "zero_gone_types" not in "\n".join(_commands(plain.stdout))
    assert "give the\n# name they had with --gres-type to set their limits to 0: H800 SXM" in plain.stdout
    # The run of November is exported as before: a later run changes nothing of it.
    assert "zero_gone_types" not in _export(ledger, "slurm", "2026-11")


def test_a_type_that_was_never_pooled_before_is_not_zeroed():
    """Types of earlier runs only: a RunExport without history lists the run's own types alone."""
    run = _run_export(grants=[("proj-1", "a-pool", 10)])
    assert "zero_gone_types" not in slurm_script(run, {"H800 SXM": "h800"})
    earlier = RunExport(**{**run.__dict__, "earlier_types": ("gpu-a", "v100", "H800 SXM")})
    script = slurm_script(earlier, {"H800 SXM": "h800"})
    assert "zero_gone_types proj-1 GrpTRESMins=gres/gpu:v100=0" in script
    assert "gres/gpu:gpu-a=0\n" not in script  # a type of the run is never a type gone
    # A --gres-type for a type of an earlier run is accepted; for a type of no run it is not.
    assert "gres/gpu:V100_32G=0" in slurm_script(earlier, {"H800 SXM": "h800", "v100": "V100_32G"})
    with pytest.raises(UsageError, match='"k80" is not an accelerator type of the run .*of earlier runs: v100'):
        slurm_script(earlier, {"H800 SXM": "h800", "k80": "k80"})


def test_a_new_member_never_takes_a_retired_projects_account(ledger):
    """Review: a member added with a retired project's id took the project's Slurm account (its
    parent, usage and limits) and the project's limits went to a hashed name no account had."""
    assert ledger("project", "retire", "proj-2").exit_code == 0
    assert ledger("member", "add", "proj-2", "--name", "Proj Two Ltd").exit_code == 0
    assert ledger("alloc", "run", "--period", "2026-12").exit_code == 0
    script = _export(ledger, "slurm", "2026-12")
    member = f"proj-2-{h('member:proj-2')}"
    commands = _commands(script)
    assert f"account_exists {member} || sacctmgr -i add account {member} Description='Proj Two Ltd' " \
           "Organization=proj-2" in commands
    assert f"if account_exists proj-2; then set_account proj-2 {ZERO}; fi" in commands
    assert not any(c.startswith("set_account proj-2 ") for c in commands)
    assert (f"# member proj-2: entitlement 0.125 (the run's share after usage history: 0.125); account {member}: "
            "the name proj-2 belongs to retired project proj-2, added earlier") in script
    docs = _docs_by_id(_export(ledger, "kueue", "2026-12"))
    _validate_all(list(docs.values()))
    assert docs[("Cohort", "proj-2")]["metadata"]["name"] == f"proj-2-{h('member:proj-2')}"
    assert docs[("ClusterQueue", "proj-2")]["metadata"]["name"] == "proj-2"


def test_a_new_project_never_takes_a_retired_members_account(ledger):
    assert ledger("member", "add", "zed", "--name", "Zed").exit_code == 0
    assert ledger("alloc", "run", "--period", "2026-12").exit_code == 0
    assert ledger("member", "retire", "zed").exit_code == 0
    added = ledger("project", "add", "zed", "--sponsor", "a-lab=1", "--demand", "10")
    assert added.exit_code == 0, added.stderr
    assert ledger("alloc", "run", "--period", "2027-01").exit_code == 0
    commands = _commands(_export(ledger, "slurm", "2027-01"))
    project = f"zed-{h('project:zed')}"
    assert f"set_account {project} Parent=a-lab GrpTRESMins=gres/gpu=600,gres/gpu:gpu-a=600,gres/gpu:h800=0" \
        in commands
    assert f"if account_exists zed; then set_account zed Fairshare=0 {ZERO}; fi" in commands
    docs = _docs_by_id(_export(ledger, "kueue", "2027-01"))
    _validate_all(list(docs.values()))
    assert docs[("ClusterQueue", "zed")]["metadata"]["name"] == project
    assert docs[("Cohort", "zed")]["metadata"]["name"] == "zed"


def test_a_member_added_after_a_project_of_its_id_leaves_the_projects_account(ledger):
    """Members came first whatever their age: a member added with an active project's id took the
    project's account (a sub-account, with its usage) and moved the project to a new one."""
    assert ledger("member", "add", "proj-1", "--name", "Proj One Ltd").exit_code == 0
    assert ledger("alloc", "run", "--period", "2026-12").exit_code == 0
    commands = _commands(_export(ledger, "slurm", "2026-12"))
    assert f"set_account proj-1 Parent={B_SLURM} GrpTRESMins=gres/gpu=90000,gres/gpu:gpu-a=90000,gres/gpu:h800=0" \
        in commands
    assert f"set_account proj-1-{h('member:proj-1')} Fairshare=1250" in commands


def test_names_stay_when_newer_records_of_any_kind_are_added():
    from hypothesis import given, settings, strategies as st

    ident = st.text(alphabet="abcAB9 _-.", min_size=1, max_size=12)
    kind = st.sampled_from(["member", "project"])

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(kind, ident), max_size=8, unique=True),
           st.lists(st.tuples(kind, ident), max_size=8, unique=True))
    def check(old, new):
        new = [k for k in new if k not in old]
        seniority = {k: i for i, k in enumerate(old + new)}
        for names_of in (slurm_names, dns_names):
            alone = names_of(old, {k: seniority[k] for k in old})
            names = names_of(old + new, seniority)
            assert {k: names[k] for k in alone} == alone                   # stable
            assert names == names_of(list(reversed(old + new)), seniority)  # deterministic
            assert len(set(names.values())) == len(old + new)               # distinct

    check()
