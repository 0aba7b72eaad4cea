"""`pooler export slurm|kueue`: exact script lines, a fake sacctmgr run twice, Kueue YAML against the CRDs."""

from __future__ import annotations

import copy
import hashlib
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
H800_SLURM = f"h800-sxm-{h('accelerator:H800 SXM')}"


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
    result = ledger("export", "slurm", "--period", "2026-11")
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
        f"set_account {BIG_SLURM} Parent=a-lab GrpTRESMins=gres/gpu=48000,gres/gpu:gpu-a=48000",
        # A tie of stakes goes to the smaller id: "B.Corp" < "a-lab".
        f"account_exists proj-1 || sacctmgr -i add account proj-1 Parent={B_SLURM} "
        "Description='project proj-1' Organization=B.Corp",
        f"set_account proj-1 Parent={B_SLURM} GrpTRESMins=gres/gpu=90000,gres/gpu:gpu-a=90000",
        f"account_exists proj-2 || sacctmgr -i add account proj-2 Parent={ROOT_SLURM} "
        "Description='project proj-2' Organization=root",
        f"set_account proj-2 Parent={ROOT_SLURM} GrpTRESMins=gres/gpu=6000,gres/gpu:{H800_SLURM}=6000",
    ]
    for line in _commands(script):
        shlex.split(line)  # every line is well-quoted shell


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_slurm_script_is_valid_bash(ledger, tmp_path):
    out = tmp_path / "accounts.sh"
    result = ledger("export", "slurm", "--period", "2026-11", "-o", out)
    assert result.exit_code == 0 and f"Wrote {out}" in result.stderr
    assert result.stdout == ""
    check = subprocess.run(["bash", "-n", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


# A stand-in for sacctmgr that keeps accounts in a folder and logs every call as one JSON line. Like
# the real one, `add` of an existing account fails, and `modify` that changes nothing says
# "Nothing modified" and exits 1.
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
    path = os.path.join(state, name + ".set")
    if os.path.exists(path) and json.load(open(path)) == settings:
        print(" Nothing modified"); sys.exit(1)
    json.dump(settings, open(path, "w"))
    print(" Modified account associations...")
else:
    sys.exit(2)
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_slurm_script_runs_twice_against_a_fake_sacctmgr(ledger, tmp_path):
    import json
    import sys

    out = tmp_path / "accounts.sh"
    assert ledger("export", "slurm", "--period", "2026-11", "-o", out).exit_code == 0
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
        f"Parent={ROOT_SLURM}", f"GrpTRESMins=gres/gpu=6000,gres/gpu:{H800_SLURM}=6000"]
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
    # The same id as member and project: neither keeps the bare name.
    assert names[("member", "pcl")] != "pcl" and names[("project", "pcl")] != "pcl"
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
            {"name": "gpu-a", "resources": [{"name": gpu, "nominalQuota": 3}]}]}],  # 1500 / 720 -> 3
    }
    assert queues["Big Project"]["metadata"]["name"] == f"big-project-{h('project:Big Project')}"
    assert queues["Big Project"]["spec"]["cohortName"] == "a-lab"
    assert queues["Big Project"]["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] == 2
    assert queues["proj-2"]["spec"]["cohortName"] == "root"
    assert queues["proj-2"]["spec"]["resourceGroups"][0]["flavors"] == [
        {"name": h800, "resources": [{"name": gpu, "nominalQuota": 1}]}]
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
    missing = ledger("export", kind, "--period", "2026-11", "-o", tmp_path / "no" / "such" / "dir.txt")
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: cannot write")
    folder = ledger("export", kind, "--period", "2026-11", "-o", tmp_path)
    assert folder.exit_code == 2 and "directory" in folder.stderr
    assert list(tmp_path.glob(".*.tmp")) == []


@pytest.mark.parametrize("args", [["export"], ["export", "slurm"], ["export", "kueue"]])
def test_export_help_has_an_example(cli, args):
    result = cli(*args, "--help", db_path=None)
    assert result.exit_code == 0 and "Example" in result.stdout
