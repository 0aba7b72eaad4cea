"""`pooler usage import`: the Slurm fixtures against their hand-checked truth, CSV validation with line
numbers, all-or-nothing recording, duplicates, --include-running, and the pure usage rules."""

from __future__ import annotations


import json
import re
from decimal import Decimal

import pytest

from pooler.core.usage import device_hours_from_seconds, line_problem
from pooler.io.usage import parse_gpus, parse_time
from tests.conftest import SHARED
from tests.test_cli import digest

GPU = SHARED / "fixtures" / "slurm" / "gpu"
TRUTH = json.loads((GPU / "truth.json").read_text(encoding="utf-8"))

# A small ledger for the gpuhub cluster: one pool per (partition, GPU type), one project per account.
LEDGER = """
[consortium]
name = "Test"

[policy]
contribution_weight = 1
usage_half_life_days = 30

[[accelerators]]
id = "ascend910b"
rate = 1

[[accelerators]]
id = "a800"
rate = 2

[[accelerators]]
id = "h800"
rate = 4

[[members]]
id = "pcl"
name = "PCL"

[[members]]
id = "baidu"
name = "Baidu"

[[members]]
id = "ali"
name = "Ali"

[[members]]
id = "iflytek"
name = "iFlytek"
""" + "".join(
    f'\n[[pools]]\nid = "{part}-{acc}"\nmember = "{owner}"\naccelerator = "{acc}"\ncapacity = 1000\n'
    for part, owner in (("gz", "pcl"), ("nm", "baidu")) for acc in ("ascend910b", "a800", "h800")
) + "".join(
    f'\n[[projects]]\nid = "{pid}"\nsponsors = {{ {member} = 1 }}\ndemand = 1000\n'
    for pid, member in (("mind", "pcl"), ("cloud", "pcl"), ("ernie", "baidu"), ("baidu", "baidu"),
                        ("ali", "ali"), ("iflytek", "iflytek"))
)

# Accounts -> projects (ali, iflytek and baidu keep their names); typed pools per partition.
MAP = """
[projects]
"pcl-mind" = "mind"
"pcl-cloud" = "cloud"
"baidu-ernie" = "ernie"

[pools]
"gpuhub/hub-gz/ascend910b" = "gz-ascend910b"
"gpuhub/hub-gz/a800" = "gz-a800"
"gpuhub/hub-gz/h800" = "gz-h800"
"gpuhub/hub-nm/ascend910b" = "nm-ascend910b"
"gpuhub/hub-nm/a800" = "nm-a800"
"gpuhub/hub-nm/h800" = "nm-h800"
"""
PROJECT_OF = {"pcl-mind": "mind", "pcl-cloud": "cloud", "baidu-ernie": "ernie"}
POOL_OF = {"hub-gz": "gz", "hub-nm": "nm"}


@pytest.fixture
def ledger(cli, tmp_path):
    manifest = tmp_path / "ledger.toml"
    manifest.write_text(LEDGER, encoding="utf-8")
    assert cli("init").exit_code == 0
    result = cli("apply", manifest)
    assert result.exit_code == 0, result.stderr
    (tmp_path / "map.toml").write_text(MAP, encoding="utf-8")
    return cli


def _expected(include_running: bool) -> dict[tuple[str, str], Decimal]:
    """Device-hours per (project, pool) from truth.json's per-type seconds, by hand."""
    totals: dict[tuple[str, str], Decimal] = {}
    for job in TRUTH["jobs"]:
        if job["state"] == "RUNNING" and not include_running:
            continue
        for gpu_type, count in job["alloc_gpu_by_type"].items():
            key = (PROJECT_OF.get(job["account"], job["account"]), f"{POOL_OF[job['partition']]}-{gpu_type}")
            totals[key] = totals.get(key, Decimal(0)) + Decimal(count * job["elapsed_raw"]) / 3600
    return totals


def _got(data) -> dict[tuple[str, str], Decimal]:
    return {(r["project"], r["pool"]): Decimal(str(r["device_hours"])) for r in data["by_project_pool"]}


def _close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in want:
        assert abs(got[key] - want[key]) < Decimal("1e-8"), key


@pytest.mark.parametrize("name", ["sacct_gpu_epoch.txt", "sacct_gpu_iso_header.txt", "sacct_gpu_steps.txt",
                                  "sacct_gpu_all.txt"])
def test_sacct_fixtures_match_the_hand_checked_truth(ledger, tmp_path, name):
    result = ledger("usage", "import", GPU / name, "--format", "sacct", "--map", tmp_path / "map.toml", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    _close(_got(data), _expected(include_running=False))
    # Grand total without the running job: 666 GPU-seconds less its 186 (truth.json's grand total).
    assert TRUTH["grand_total"]["gpu_seconds"] == 666
    assert abs(Decimal(str(data["device_hours"])) - Decimal(480) / 3600) < Decimal("1e-8")
    assert data["skipped"] == []
    assert data["ignored"]["jobs without GPUs"] == 1  # job 1011, CPU only
    assert data["ignored"]["unfinished jobs"] == 1    # job 1001, still running
    if name in ("sacct_gpu_steps.txt", "sacct_gpu_all.txt"):
        assert data["ignored"]["job steps"] > 0
    # Jobs 1009 (a800 + ascend910b) and 1013 (a800 + h800) give two lines each: 15 GPU jobs ended.
    assert data["recorded"] == 15 + 2
    assert data["lines"] >= 17
    assert ledger("ledger", "verify").exit_code == 0


def test_sacct_include_running_counts_the_elapsed_time(ledger, tmp_path):
    result = ledger("usage", "import", GPU / "sacct_gpu_epoch.txt", "--format", "sacct",
                    "--map", tmp_path / "map.toml", "--include-running", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    _close(_got(data), _expected(include_running=True))
    assert abs(Decimal(str(data["device_hours"])) - Decimal(TRUTH["grand_total"]["gpu_seconds"]) / 3600) \
        < Decimal("1e-8")
    assert "unfinished jobs" not in data["ignored"]


def test_sacct_unknown_account_or_pool_is_a_bad_line(ledger, tmp_path):
    partial = tmp_path / "partial-map.toml"
    partial.write_text(MAP.replace('"pcl-cloud" = "cloud"\n', "").replace(
        '"gpuhub/hub-gz/h800" = "gz-h800"\n', ""), encoding="utf-8")
    before = digest(ledger.db)
    result = ledger("usage", "import", GPU / "sacct_gpu_epoch.txt", "--format", "sacct", "--map", partial)
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    # pcl-cloud jobs 1003, 1005, 1017 (lines 3, 5, 17); baidu's h800 job 1015 on hub-gz (line 15).
    for line in (3, 5, 15, 17):
        assert f"line {line}: job 10{line:02d}" in text
    assert "account 'pcl-cloud'" in text and "gpuhub/hub-gz/h800 maps to no pool" in text
    assert digest(ledger.db) == before
    skipped = ledger("usage", "import", GPU / "sacct_gpu_epoch.txt", "--format", "sacct", "--map", partial,
                     "--skip-bad", "--json")
    assert skipped.exit_code == 0, skipped.stderr
    assert [s["line"] for s in skipped.json()["skipped"]] == [3, 5, 15, 17]


def test_typed_gpus_charged_to_a_pool_of_another_accelerator_are_warned_of(ledger, tmp_path):
    """Review: a map key without a type (`gpuhub/hub-gz`) charged a job's H800 hours to an A800 pool in
    silence. The import still records them (Slurm's type names are the site's own), and warns, once
    per (type, pool), naming the key that chose the pool; a typed key, or a type the pool's
    accelerator names, is no warning."""
    loose = tmp_path / "loose.toml"
    loose.write_text(MAP.replace('"gpuhub/hub-gz/ascend910b" = "gz-ascend910b"\n"gpuhub/hub-gz/a800" = "gz-a800"\n'
                                 '"gpuhub/hub-gz/h800" = "gz-h800"\n', '"gpuhub/hub-gz" = "gz-a800"\n'),
                     encoding="utf-8")
    result = ledger("usage", "import", GPU / "sacct_gpu_epoch.txt", "--format", "sacct", "--map", loose, "--json")
    assert result.exit_code == 0, result.stderr
    warned = result.json()["type_warnings"]
    assert {(w["gpu_type"], w["pool"], w["accelerator"]) for w in warned} == {
        ("ascend910b", "gz-a800", "a800"), ("h800", "gz-a800", "a800")}
    assert all(w["via"] == "map key 'gpuhub/hub-gz'" and w["lines"] >= 1 for w in warned)
    expected = sum(1 for job in TRUTH["jobs"] if job["partition"] == "hub-gz" and job["state"] != "RUNNING"
                   and "h800" in job["alloc_gpu_by_type"])
    assert next(w["lines"] for w in warned if w["gpu_type"] == "h800") == expected
    # the same on a terminal, and nothing at all with the typed map
    again = tmp_path / "again.txt"
    # (other jobs: the same ones are recorded once only)
    again.write_text(re.sub(r"(?m)^1(\d{3})\|", r"9\1|", (GPU / "sacct_gpu_epoch.txt").read_text(encoding="utf-8")),
                     encoding="utf-8")
    words = ledger("usage", "import", again, "--format", "sacct", "--map", loose)
    assert words.exit_code == 0 and "Warning: " in words.stderr
    assert "GPUs of type 'h800' were charged to pool 'gz-a800', whose accelerator is 'a800'" in " ".join(words.stderr.split())
    typed = tmp_path / "typed.txt"
    typed.write_text(again.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    clean = ledger("usage", "import", typed, "--format", "sacct", "--map", tmp_path / "map.toml", "--json")
    assert clean.exit_code == 0 and clean.json()["type_warnings"] == []


def test_the_type_warning_counts_recorded_lines_only(ledger, tmp_path):
    """Review: the warning counted a job's line before its other checks, so lines skipped as bad (or
    a file with nothing to record) were said to be charged."""
    loose = tmp_path / "loose.toml"
    loose.write_text(MAP.replace('"gpuhub/hub-gz/h800" = "gz-h800"\n', '"gpuhub/hub-gz" = "gz-a800"\n'),
                     encoding="utf-8")
    h800 = [line for line in (GPU / "sacct_gpu_epoch.txt").read_text(encoding="utf-8").splitlines()
            if "|hub-gz|" in line and "gpu:h800" in line and "|COMPLETED" in line]
    assert len(h800) >= 2
    bad = h800[0].split("|")
    bad[2] = "nobody"  # an account no project has: a bad line
    path = tmp_path / "some.txt"
    path.write_text("\n".join(["|".join(bad), *h800[1:]]) + "\n", encoding="utf-8")
    result = ledger("usage", "import", path, "--format", "sacct", "--map", loose, "--skip-bad", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert [s["line"] for s in data["skipped"]] == [1]
    [warned] = data["type_warnings"]
    assert warned["gpu_type"] == "h800" and warned["lines"] == len(h800) - 1 == data["recorded"]


@pytest.mark.parametrize("gpu_type, accelerator, same", [
    ("h800", "nvidia-h800-80g", True), ("ascend910b", "ascend-910b", True), ("910b", "ascend-910b", True),
    ("nvidia_a100-sxm4-80gb", "a100-80g", True), ("h20", "h200", False), ("a10", "a100", False),
    ("l4", "l40s", False), ("a100", "a800", False), ("gpu", "a800", None), ("tesla", "h800", None),
])
def test_which_slurm_types_name_an_accelerator(gpu_type, accelerator, same):
    """Review: a substring test took h20 for h200 and a10 for a100, and warned of Slurm's own
    detected names (nvidia_a100-sxm4-80gb) and of the plain type gpu."""
    from pooler.io.usage import same_accelerator

    assert same_accelerator(gpu_type, accelerator) is same


def test_the_log_names_an_import_by_its_file_and_lines(ledger, tmp_path):
    """Review: `ledger log` and the dashboard's Ledger view gave a usage import the subject "None"."""
    path = tmp_path / "usage.csv"
    path.write_text(CSV_GOOD, encoding="utf-8")
    assert ledger("usage", "import", path, "--format", "csv").exit_code == 0
    from pooler.services import ledger as service
    from pooler.services.context import Context

    [entry] = service.log(Context(db=str(ledger.db), actor="t"), limit=1)
    assert entry.kind == "usage.import" and service.subject(entry) == "usage.csv (3 lines)"
    assert "usage.csv (3 lines)" in ledger("ledger", "log", "--limit", "1").stdout


def test_a_nul_in_a_job_id_is_a_bad_line_on_every_database(ledger, tmp_path):
    """Review: a NUL in a Slurm JobIDRaw (or a CSV job column) was recorded on SQLite and, on
    PostgreSQL, whose text takes none, the whole import failed with "the database refused a
    statement ... may be damaged". It is now a bad line on both, with its number."""
    lines = (GPU / "sacct_gpu_epoch.txt").read_text(encoding="utf-8").splitlines()
    lines[1] = "10\x0002" + lines[1][4:]
    sacct = tmp_path / "nul.txt"
    sacct.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = tmp_path / "map.toml"
    mapping.write_text(MAP, encoding="utf-8")
    csv_file = tmp_path / "nul.csv"
    csv_file.write_text("project,pool,device_hours,start,end,job\nmind,gz-a800,1,1790000000,1790003600,a\x00b\n"
                        "mind,gz-a800,1,2026-10-01T00:00:00,2026-10-01T01:00:00,c\x00d\n", encoding="utf-8")
    before = digest(ledger.db)
    refused = ledger("usage", "import", sacct, "--format", "sacct", "--map", mapping)
    assert refused.exit_code == 1 and "line 2: job '10\\x0002': JobIDRaw holds a NUL character" in refused.stderr
    refused = ledger("usage", "import", csv_file, "--format", "csv")
    text = " ".join(refused.stderr.split())
    assert refused.exit_code == 1 and "line 2: the job holds a NUL character" in text
    assert "line 3: the job holds a NUL character" in text
    assert digest(ledger.db) == before
    kept = ledger("usage", "import", sacct, "--format", "sacct", "--map", mapping, "--skip-bad", "--json")
    assert kept.exit_code == 0, kept.stderr
    assert [s["line"] for s in kept.json()["skipped"]] == [2]
    assert ledger("ledger", "verify").exit_code == 0


def _fairshare_usage(ledger) -> dict[str, float]:
    result = ledger("usage", "fairshare", "--period", "2026-12", "--json")
    assert result.exit_code == 0, result.stderr
    return {row["member"]: row["raw_usage"] for row in result.json()["members"]}


def test_the_same_slurm_jobs_are_recorded_once(ledger, tmp_path):
    """Review (twice): only a byte-identical file was refused, so overlapping `sacct` windows, the same
    jobs saved in another form (ISO times, a header, with steps) or a job twice in one file counted
    again. A job is known by its JobIDRaw and Start, per pool: recorded once."""
    mapping = tmp_path / "map.toml"
    first = ledger("usage", "import", GPU / "sacct_gpu_epoch.txt", "--format", "sacct", "--map", mapping, "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json()["recorded"] == 17
    usage_before = _fairshare_usage(ledger)
    for name in ("sacct_gpu_iso_header.txt", "sacct_gpu_steps.txt", "sacct_gpu_all.txt"):
        again = ledger("usage", "import", GPU / name, "--format", "sacct", "--map", mapping, "--json")
        assert again.exit_code == 0, again.stderr
        data = again.json()
        assert data["recorded"] == 0 and data["seq"] is None, name
        assert data["ignored"]["jobs already recorded"] == 15, name
    words = ledger("usage", "import", GPU / "sacct_gpu_iso_header.txt", "--format", "sacct", "--map", mapping)
    assert words.exit_code == 0 and "15 jobs already recorded ignored; " in " ".join(words.stderr.split())
    assert _fairshare_usage(ledger) == usage_before
    # one job twice in one file, beside a new one: the new one alone is recorded
    lines = (GPU / "sacct_gpu_epoch.txt").read_text(encoding="utf-8").splitlines()
    twice = tmp_path / "twice.txt"
    twice.write_text("\n".join([lines[1].replace("1002|", "2002|", 1)] * 2 + [lines[2]]) + "\n", encoding="utf-8")
    data = ledger("usage", "import", twice, "--format", "sacct", "--map", mapping, "--json").json()
    assert data["recorded"] == 1 and data["ignored"]["jobs already recorded"] == 2
    assert ledger("ledger", "verify").exit_code == 0


def test_a_job_recorded_while_running_gets_only_the_rest_once_it_ended(ledger, tmp_path):
    """Review: `--include-running` recorded a running job's hours so far, and the finished job later
    counted again in full. Now only the rest is recorded, charged to the period of the job's end;
    a later import of the same running job records only what it ran since."""
    mapping = tmp_path / "map.toml"
    job = "1001|gpuhub|iflytek|dave|hub-nm|normal|billing=1,cpu=1,gres/gpu:ascend910b=2,gres/gpu=2,node=1"
    start = 1795677402  # 2026-11-26
    files = {"early": f"{job}|1800|{start}|Unknown|RUNNING", "later": f"{job}|3600|{start}|Unknown|RUNNING",
             "ended": f"{job}|86400|{start}|{start + 86400}|COMPLETED"}
    got = {}
    for name, text in files.items():
        (tmp_path / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
        result = ledger("usage", "import", tmp_path / f"{name}.txt", "--format", "sacct", "--map", mapping,
                        "--include-running", "--json")
        assert result.exit_code == 0, result.stderr
        got[name] = result.json()
    assert got["early"]["device_hours"] == 1.0 and got["early"]["topped_up"] == 0
    assert got["later"]["device_hours"] == 1.0 and got["later"]["topped_up"] == 1
    assert got["ended"]["device_hours"] == 46.0 and got["ended"]["topped_up"] == 1
    assert set(got["ended"]["periods"]) == {"2026-11"}
    assert _fairshare_usage(ledger)["iflytek"] == 48.0  # 2 GPUs x 24 hours, ascend910b's rate 1
    words = ledger("usage", "import", tmp_path / "ended.txt", "--format", "sacct", "--map", mapping)
    assert words.exit_code == 1 and "already imported" in words.stderr  # the same file: refused as ever
    (tmp_path / "ended2.txt").write_text(files["ended"] + "\n\n", encoding="utf-8")
    words = ledger("usage", "import", tmp_path / "ended2.txt", "--format", "sacct", "--map", mapping)
    assert words.exit_code == 0 and "1 jobs already recorded ignored" in " ".join(words.stderr.split())


def test_every_attempt_of_a_requeued_job_counts(ledger, tmp_path):
    """Review: `sacct -D` lists every attempt of a requeued job; the attempts that ended are in state
    REQUEUED with an End, and were dropped as unfinished. Each attempt held its GPUs: each counts
    (they differ by Start), and a requeued record without an End is still unfinished."""
    mapping = tmp_path / "map.toml"
    job = "2020|gpuhub|ali|dave|hub-gz|normal|billing=1,cpu=1,gres/gpu:a800=1,gres/gpu=1,node=1"
    lines = [f"{job}|3600|2026-11-10T00:00:00|2026-11-10T01:00:00|REQUEUED",
             f"{job}|1800|2026-11-10T02:00:00|2026-11-10T02:30:00|REQUEUED",
             f"{job}|7200|2026-11-10T03:00:00|2026-11-10T05:00:00|COMPLETED",
             f"{job}|0|Unknown|Unknown|REQUEUED"]
    attempts = tmp_path / "attempts.txt"
    attempts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = ledger("usage", "import", attempts, "--format", "sacct", "--map", mapping, "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["recorded"] == 3 and data["device_hours"] == 3.5
    assert data["ignored"] == {"unfinished jobs": 1}


@pytest.mark.parametrize("elapsed", ["1" + "0" * 400, "9" * 5000, "221845392001"])
def test_an_elapsed_time_beyond_any_job_is_a_bad_line(ledger, tmp_path, elapsed):
    """Hypothesis (hostile usage, 2026-11-29): an ElapsedRaw of 400 digits was a traceback from the
    device-hours' arithmetic (and one of 5,000 digits would be from int()); it is a bad line."""
    sacct = tmp_path / "long.txt"
    sacct.write_text(f"1005|gpuhub|pcl-cloud|bob|hub-gz|normal|gres/gpu:a800=1|{elapsed}|1795677415|1795677429|"
                     "COMPLETED\n", encoding="utf-8")
    before = digest(ledger.db)
    result = ledger("usage", "import", sacct, "--format", "sacct", "--map", tmp_path / "map.toml")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "line 1: job 1005: ElapsedRaw" in result.stderr and "is longer than any job runs" in result.stderr
    assert digest(ledger.db) == before


def test_a_file_that_is_not_sacct_output_is_refused(ledger, tmp_path):
    """Review: sshare's output imported with --format sacct read as 17 jobs without GPUs, exit 0.
    A first line that is neither sacct's header nor a job line is one error; a job id that is not
    Slurm's is a bad line."""
    mapping = tmp_path / "map.toml"
    before = digest(ledger.db)
    refused = ledger("usage", "import", GPU / "sshare_gpu.txt", "--format", "sacct", "--map", mapping)
    assert refused.exit_code == 1, refused.stdout
    assert "sshare_gpu.txt: line 1 is neither a sacct header" in " ".join(refused.stderr.split())
    assert "Traceback" not in refused.stderr
    lines = (GPU / "sacct_gpu_epoch.txt").read_text(encoding="utf-8").splitlines()
    odd = tmp_path / "odd.txt"
    odd.write_text("\n".join([lines[0], "x" + lines[1], lines[2].replace("1003|", "1003 |", 1)]) + "\n",
                   encoding="utf-8")
    refused = ledger("usage", "import", odd, "--format", "sacct", "--map", mapping)
    text = " ".join(refused.stderr.split())
    assert refused.exit_code == 1 and "line 2: JobIDRaw 'x1002' is not a Slurm job id" in text
    assert digest(ledger.db) == before
    # every form of job id sacct prints is one
    from pooler.io.usage import _JOB_ID
    for job in ("1", "123_4", "123_[4-9%2]", "123+0", "123.batch", "123.0", "123_4.extern", "123+1.0"):
        assert _JOB_ID.match(job), job
    for job in ("", "a1", "1a", "1_", "1.", "-1", "1 2"):
        assert not _JOB_ID.match(job), job


CSV_GOOD = """project,pool,device_hours,start,end
mind,gz-a800,10,2026-10-01T00:00:00,2026-10-02T00:00:00
ernie,nm-h800,2.5,1790000000,1790003600
cloud,gz-ascend910b,0.25,2026-10-31T23:00:00+08:00,2026-10-31T23:30:00+08:00
"""


def test_csv_import_records_one_entry_with_its_lines(ledger, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(CSV_GOOD, encoding="utf-8")
    result = ledger("usage", "import", path, "--format", "csv", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["lines"] == 3 and data["recorded"] == 3 and data["skipped"] == []
    assert data["device_hours"] == 12.75
    # 1790003600 is 2026-09-21; +08:00 23:30 on Oct 31 is 15:30 UTC, still October.
    assert data["periods"] == {"2026-09": {"lines": 1, "device_hours": 2.5},
                               "2026-10": {"lines": 2, "device_hours": 10.25}}
    log = ledger("ledger", "log", "--json").json()
    assert log[0]["kind"] == "usage.import"
    assert ledger("ledger", "verify").exit_code == 0


def test_csv_human_summary(ledger, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(CSV_GOOD, encoding="utf-8")
    result = ledger("usage", "import", path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert "mind" in result.stdout and "12.75" in result.stdout
    assert "Recorded 3 usage line(s) of 3 read as entry" in result.stderr


CSV_BAD = """project,pool,device_hours,start,end
mind,gz-a800,10,2026-10-01T00:00:00,2026-10-02T00:00:00
nobody,gz-a800,1,2026-10-01T00:00:00,2026-10-01T01:00:00
mind,nowhere,1,2026-10-01T00:00:00,2026-10-01T01:00:00
mind,gz-a800,-1,2026-10-01T00:00:00,2026-10-01T01:00:00
mind,gz-a800,20000,2026-10-01T00:00:00,2026-10-01T01:00:00
mind,gz-a800,1,yesterday,2026-10-01T01:00:00
mind,gz-a800,1,2026-10-02T00:00:00,2026-10-01T00:00:00
mind,gz-a800,1
ernie,nm-a800,4,1790000000,1790003600
"""


def test_csv_bad_lines_are_all_reported_and_nothing_is_recorded(ledger, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(CSV_BAD, encoding="utf-8")
    before = digest(ledger.db)
    result = ledger("usage", "import", path, "--format", "csv")
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    assert "7 bad line(s)" in text
    for line, reason in ((3, "project 'nobody' is not in the ledger"), (4, "pool 'nowhere' is not in the ledger"),
                         (5, "device_hours -1 is negative"), (6, "device_hours 20000 is more than 10,000 devices could use"),
                         (7, "start 'yesterday' is not an ISO 8601 time"), (8, "the end is before the start"),
                         (9, "expected 5 columns, found 3")):
        assert f"line {line}: {reason}" in text, (line, text)
    assert "line 2:" not in text and "line 10:" not in text
    assert digest(ledger.db) == before


def test_a_time_after_the_year_9000_is_called_that(ledger, tmp_path):
    """Review: 9999-12-31T22:00:00 is an ISO 8601 time, but was "not an ISO 8601 time or epoch
    seconds"; the line is refused because pooler takes no time after the year 9000, and says so."""
    path = tmp_path / "late.csv"
    path.write_text("project,pool,device_hours,start,end\n"
                    "mind,gz-a800,1,9999-12-31T22:00:00,9999-12-31T23:00:00\n", encoding="utf-8")
    result = ledger("usage", "import", path, "--format", "csv")
    text = " ".join(result.stderr.split())
    assert result.exit_code == 1
    assert "line 2: start '9999-12-31T22:00:00' is after the year 9000, the last pooler takes" in text
    assert "end '9999-12-31T23:00:00' is after the year 9000" in text and "not an ISO 8601" not in text
    sacct = tmp_path / "late.txt"
    sacct.write_text("1|gpuhub|ali|u|hub-gz|normal|gres/gpu:a800=1|3600|9999-12-31T22:00:00|9999-12-31T23:00:00|"
                     "COMPLETED\n", encoding="utf-8")
    result = ledger("usage", "import", sacct, "--format", "sacct", "--map", tmp_path / "map.toml")
    assert result.exit_code == 1 and "Start '9999-12-31T22:00:00' is after the year 9000" in result.stderr


def test_tz_reads_times_without_a_zone_in_that_zone(ledger, tmp_path):
    """Review: sacct prints ISO times in the cluster's local time, and pooler read them as UTC, so a
    job that ended at 05:00 on 1 December in Shanghai (21:00 UTC on 30 November) went to December.
    `--tz` names the zone of times written without one: an IANA name or an offset; the entry records
    it. Times with a zone and epoch seconds are as they were."""
    job = "3000|gpuhub|ali|dave|hub-gz|normal|gres/gpu:a800=1|3600"
    sacct = tmp_path / "local.txt"
    sacct.write_text(f"{job}|2026-12-01T04:00:00|2026-12-01T05:00:00|COMPLETED\n", encoding="utf-8")
    mapping = tmp_path / "map.toml"
    read = ledger("usage", "import", sacct, "--format", "sacct", "--map", mapping, "--tz", "Asia/Shanghai", "--json")
    assert read.exit_code == 0, read.stderr
    assert set(read.json()["periods"]) == {"2026-11"}
    entry = ledger("ledger", "log", "--limit", "1", "--json").json()[0]
    assert entry["payload"]["tz"] == "Asia/Shanghai"
    csv_file = tmp_path / "local.csv"
    csv_file.write_text("project,pool,device_hours,start,end\n"
                        "mind,gz-a800,1,2026-12-01T04:00:00,2026-12-01T05:00:00\n"
                        "mind,gz-a800,1,2026-12-01T04:00:00Z,2026-12-01T05:00:00Z\n", encoding="utf-8")
    read = ledger("usage", "import", csv_file, "--format", "csv", "--tz", "+08:00", "--json")
    assert read.exit_code == 0, read.stderr
    assert {k: v["lines"] for k, v in read.json()["periods"].items()} == {"2026-11": 1, "2026-12": 1}
    before = digest(ledger.db)
    for bad in ("Mars/Olympus", "+25:00", "8", ""):
        refused = ledger("usage", "import", csv_file, "--format", "csv", "--tz", bad)
        assert refused.exit_code == 2 and "--tz: " in refused.stderr and "is not a time zone" in refused.stderr, bad
    assert digest(ledger.db) == before
    from pooler.services.usage import time_zone
    assert time_zone("-0500").utcoffset(None).total_seconds() == -5 * 3600
    assert time_zone("UTC+08:00").utcoffset(None).total_seconds() == 8 * 3600


def test_csv_skip_bad_records_the_good_lines(ledger, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(CSV_BAD, encoding="utf-8")
    result = ledger("usage", "import", path, "--format", "csv", "--skip-bad", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["recorded"] == 2 and data["lines"] == 9
    assert [s["line"] for s in data["skipped"]] == [3, 4, 5, 6, 7, 8, 9]
    assert data["by_project_pool"] == [{"project": "ernie", "pool": "nm-a800", "device_hours": 4.0},
                                       {"project": "mind", "pool": "gz-a800", "device_hours": 10.0}]
    assert ledger("ledger", "verify").exit_code == 0


def test_the_same_file_is_refused_the_second_time(ledger, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(CSV_GOOD, encoding="utf-8")
    assert ledger("usage", "import", path, "--format", "csv").exit_code == 0
    before = digest(ledger.db)
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(path.read_bytes())
    again = ledger("usage", "import", copy, "--format", "csv")
    assert again.exit_code == 1
    assert "already imported as entry" in again.stderr
    assert digest(ledger.db) == before


def test_period_option_charges_every_line_to_that_period(ledger, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(CSV_GOOD, encoding="utf-8")
    result = ledger("usage", "import", path, "--format", "csv", "--period", "2026-08", "--json")
    assert result.exit_code == 0, result.stderr
    assert list(result.json()["periods"]) == ["2026-08"]
    assert ledger("usage", "import", path, "--format", "csv", "--period", "2026-Q3").exit_code == 2


def test_usage_errors(ledger, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(CSV_GOOD, encoding="utf-8")
    assert ledger("usage", "import", path, "--format", "xml").exit_code == 2
    assert ledger("usage", "import", tmp_path / "missing.csv", "--format", "csv").exit_code == 2
    assert ledger("usage", "import", path, "--format", "csv", "--map", tmp_path / "map.toml").exit_code == 2
    header = tmp_path / "header.csv"
    header.write_text("who,where,hours\n", encoding="utf-8")
    wrong = ledger("usage", "import", header, "--format", "csv")
    assert wrong.exit_code == 1 and "line 1: the header must be" in wrong.stderr


def test_help_has_an_example(cli):
    for command in ("import", "fairshare"):
        result = cli("usage", command, "--help", db_path=None)
        assert result.exit_code == 0 and "Example: pooler usage" in result.stdout


# --- pure rules --------------------------------------------------------------------------------------

def test_gres_parsing_counts_typed_entries_once():
    assert parse_gpus("billing=4,cpu=4,gres/gpu:ascend910b=2,gres/gpu=2,node=1") == {"ascend910b": 2}
    assert parse_gpus("gres/gpu:a800=1,gres/gpu:h800=1,gres/gpu=2") == {"a800": 1, "h800": 1}
    assert parse_gpus("cpu=2,gres/gpu=3") == {None: 3}
    assert parse_gpus("billing=1,cpu=1,node=1") == {}
    with pytest.raises(ValueError):
        parse_gpus("gres/gpu=two")


def test_times_epoch_iso_and_zones():
    assert parse_time("1795677402") == 1795677402
    assert parse_time("2026-11-26T07:16:42") == 1795677402
    assert parse_time("2026-11-26T15:16:42+08:00") == 1795677402
    assert parse_time("2026-11-26T07:16:42Z") == 1795677402
    with pytest.raises(ValueError):
        parse_time("Unknown")


@pytest.mark.parametrize("hours,start,end,problem", [
    ("1", 0, 3600, None),
    ("0", 10, 10, None),
    ("10000", 0, 3600, None),               # 10,000 devices for an hour: the limit itself
    ("10000.001", 0, 3600, "devices could use"),
    ("0.001", 10, 10, "devices could use"),  # hours in no time at all
    ("-0.5", 0, 3600, "negative"),
    ("10000001", 0, 10**7, "more than 10,000,000"),
    ("1", 100, 50, "end is before the start"),
])
def test_line_rules(hours, start, end, problem):
    found = line_problem(Decimal(hours), start, end)
    assert (found is None) if problem is None else (problem in found)


def test_device_hours_from_seconds_is_exact_to_the_nanohour():
    assert device_hours_from_seconds(2, 20) == Decimal("0.011111111")
    assert device_hours_from_seconds(4, 40) * 3600 - 160 < Decimal("1e-5")
    assert device_hours_from_seconds(1, 3600) == 1
