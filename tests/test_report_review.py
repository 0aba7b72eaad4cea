"""The audit report after an auditor's review, on the ledger the reviewer built: `examples/small.toml`,
the 2026-11 run, a CSV and a Slurm import of 2026-11 usage, then the 2026-12 run. Every derived figure
follows from figures shown beside it, in every format; usage of projects outside the run's snapshot
is settled by their last recorded sponsors; a member's per-project parts add up to its statement."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLES, SHARED, Run

PERIOD = "2026-11"

# The reviewer's CSV import: every pool, thirds of an hour, and a line of one micro device-hour.
USAGE_CSV = """project,pool,device_hours,start,end
lingnan-llm,gz-lab-910b,30000,2026-11-01T00:00:00,2026-11-29T00:00:00
lingnan-llm,scut-a800,4000.5,2026-11-02T00:00:00,2026-11-20T12:00:00
cantonese-asr,scut-a800,4500.25,2026-11-03T00:00:00,2026-11-25T00:00:00
cantonese-asr,lingxi-a800,500.333333,2026-11-05T00:00:00,2026-11-15T00:00:00
lingxi-agent,lingxi-a800,1500,2026-11-01T00:00:00,2026-11-28T00:00:00
lingxi-agent,gz-lab-910b,1000.333333,2026-11-10T00:00:00,2026-11-20T00:00:00
lingnan-llm,lingxi-a800,0.000001,1795000000,1795003600
"""
SLURM_MAP = """[projects]
"pcl-mind" = "lingnan-llm"
"pcl-cloud" = "cantonese-asr"
"baidu-ernie" = "lingxi-agent"
"baidu" = "lingxi-agent"
"ali" = "lingnan-llm"
"iflytek" = "cantonese-asr"
[pools]
"gpuhub/hub-gz/ascend910b" = "gz-lab-910b"
"gpuhub/hub-gz/a800" = "scut-a800"
"gpuhub/hub-nm/a800" = "lingxi-a800"
"gpuhub/hub-nm/ascend910b" = "gz-lab-910b"
"""
SACCT = SHARED / "fixtures" / "slurm" / "gpu" / "sacct_gpu_epoch.txt"
D = Decimal


def pooler(db: Path, *args, ok: bool = True) -> Run:
    """Run pooler on the SQLite ledger `db`; with `ok`, insist that it succeeds."""
    from pooler.cli.main import app

    result = CliRunner().invoke(app, ["--db", str(db), *map(str, args)], env={"COLUMNS": "200",
                                                                             "POOLER_ACTOR": "auditor@test"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"pooler {args} raised {result.exception!r}") from result.exception
    run = Run(result.exit_code, result.stdout, result.stderr)
    if ok:
        assert run.exit_code == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory) -> Path:
    """The reviewer's ledger (`repro_base.sh`): small.toml, the 2026-11 run, CSV and sacct usage of
    2026-11, the 2026-12 run."""
    if not SACCT.exists():
        pytest.skip(f"{SACCT} is missing")
    folder = tmp_path_factory.mktemp("reviewed")
    db = folder / "ledger.db"
    (folder / "u1.csv").write_text(USAGE_CSV, encoding="utf-8")
    (folder / "map.toml").write_text(SLURM_MAP, encoding="utf-8")
    pooler(db, "init")
    pooler(db, "apply", EXAMPLES / "small.toml")
    pooler(db, "alloc", "run", "--period", PERIOD)
    pooler(db, "usage", "import", folder / "u1.csv", "--format", "csv")
    pooler(db, "usage", "import", SACCT, "--format", "sacct", "--map", folder / "map.toml", "--skip-bad")
    pooler(db, "alloc", "run", "--period", "2026-12")
    return db


def _copy(db: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ledger.db"
    shutil.copy(db, target)
    return target


def _audit_json(db: Path, period: str = PERIOD) -> dict:
    return json.loads(pooler(db, "report", "audit", "--period", period, "--format", "json").stdout)


def _csv_sections(text: str) -> dict[str, list[dict[str, str]]]:
    by_section: dict[str, list[dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        by_section.setdefault(row["section"], []).append(row)
    return by_section


def _key_values(text: str) -> dict[str, str]:
    """The item/value rows of a Markdown key-value table, or of the terminal's: item -> value."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") \
            else re.split(r"\s{2,}", line.strip())
        if len(cells) == 2:
            found.setdefault(cells[0], cells[1])
    return found


# --- 1. idle follows from the figures shown beside it ------------------------------------------------


def _idle(delivered: Decimal, capacity: Decimal) -> Decimal:
    return max(D(0), 1 - delivered / capacity).quantize(D("0.000001"))


def test_idle_share_is_recomputed_from_the_figures_beside_it_in_json_and_csv(reviewed):
    """Review: `used units` was the settlement's (x speed, settled lines only) while the idle share
    came from device-hours x rate: 1 - 43,302 / 60,960 is 29.0%, the summary said 28.5%."""
    data = _audit_json(reviewed)
    s = data["summary"][0]
    assert s["idle_basis"] == "used"
    assert D(s["idle_share"]) == _idle(D(s["used_capacity_units"]), D(s["capacity_units"]))
    # the two figures of use differ here (speeds), and each says what it is
    assert D(s["used_units"]) == sum(D(m["used"]) for m in data["members"])
    assert D(s["used_capacity_units"]) != D(s["used_units"])
    rates = {r["name"]: D(r["units"]) / D(r["device_hours"]) for r in data["by_accelerator"]}
    assert D(s["used_capacity_units"]) == sum(D(p["used"]) * rates[p["accelerator"]] for p in data["pools"])
    for section in ("by_region", "by_accelerator"):
        assert sum(D(r["used_capacity_units"]) for r in data[section]) == D(s["used_capacity_units"])
        for r in data[section]:
            assert D(r["used_share"]) == (D(r["used_capacity_units"]) / D(r["units"])).quantize(D("0.000001"))
    assert D(s["granted_units"]) == sum(D(r["granted_units"]) for r in data["by_region"])
    [row] = _csv_sections(pooler(reviewed, "report", "audit", "--period", PERIOD, "--format", "csv").stdout)["summary"]
    assert D(row["idle_share"]) == _idle(D(row["used_capacity_units"]), D(row["capacity_units"]))
    # before any usage, idle follows from the grants, shown beside it too
    december = _audit_json(reviewed, "2026-12")["summary"][0]
    assert december["idle_basis"] == "granted"
    assert D(december["idle_share"]) == _idle(D(december["granted_units"]), D(december["capacity_units"]))


@pytest.mark.parametrize("fmt", ["table", "md", "html"])
def test_idle_share_is_recomputed_from_the_figures_shown_for_people(reviewed, fmt):
    text = pooler(reviewed, "report", "audit", "--period", PERIOD, "--format", fmt).stdout
    if fmt == "html":
        text = re.sub(r'<tr><th scope="row">([^<]*)</th><td[^>]*>([^<]*)</td></tr>', r"\n| \1 | \2 |\n", text)
    shown = _key_values(text)
    used, capacity = (D(shown[k].replace(",", "")) for k in ("used capacity units", "capacity units"))
    assert f"{(1 - used / capacity) * 100:.1f}%" == shown["idle share"]
    assert "used units" in shown


# --- 2. usage of projects outside the run's snapshot ---------------------------------------------------

LATE_USAGE = """project,pool,device_hours,start,end
lingxi-agent,gz-lab-910b,200,2027-01-03T00:00:00,2027-01-04T00:00:00
lingnan-llm,gz-lab-910b,1000,2027-01-03T00:00:00,2027-01-04T00:00:00
"""


def test_a_project_retired_before_the_run_is_settled_by_its_last_recorded_sponsors(reviewed, tmp_path):
    """Review: lingxi-agent, retired before the 2027-01 run, used 200 device-hours of gz-lab's pool;
    fair-share charged lingxi-ai for them, the settlement charged nobody and called it unknown."""
    db = _copy(reviewed, tmp_path)
    pooler(db, "project", "retire", "lingxi-agent")
    pooler(db, "alloc", "run", "--period", "2027-01")
    (tmp_path / "late.csv").write_text(LATE_USAGE, encoding="utf-8")
    pooler(db, "usage", "import", tmp_path / "late.csv", "--format", "csv")
    data = _audit_json(db, "2027-01")
    members = {m["member"]: m for m in data["members"]}
    # 200 device-hours x rate 1 x lingxi-agent's speed 0.7 on the 910B, all lingxi-ai's (100%)
    assert D(members["lingxi-ai"]["borrowed"]) == D(members["lingxi-ai"]["used"]) == 140
    assert {(f["lender"], f["borrower"]): D(f["units"]) for f in data["flows"]}[("gz-lab", "lingxi-ai")] == 140
    assert D(data["summary"][0]["balance_sum"]) == 0
    assert D(data["summary"][0]["used_units"]) == 140 + 1000
    [row] = [p for p in data["projects"] if p["project"] == "lingxi-agent"]
    assert (row["demand"], row["allocated"], D(row["used_units"])) == (None, None, 140)
    assert data["outside_run"] == [{"project": "lingxi-agent", "status": "retired", "stakes": {"lingxi-ai": "1"},
                                    "speed": {"a800": "1", "ascend-910b": "0.7"}}]
    [note] = [n for n in data["notes"] if "lingxi-agent" in n]
    assert "(retired)" in note and "lingxi-ai 100%" in note and "unknown" not in note
    # fair-share charges the same member for it
    fair = {m["member"]: m for m in json.loads(pooler(db, "usage", "fairshare", "--period", "2027-02",
                                                      "--json").stdout)["members"]}
    before = {m["member"]: m for m in json.loads(pooler(reviewed, "usage", "fairshare", "--period", "2027-02",
                                                        "--json").stdout)["members"]}
    assert fair["lingxi-ai"]["raw_usage"] == pytest.approx(before["lingxi-ai"]["raw_usage"] + 200)
    # the table report keeps the note on stdout (`report audit > FILE`), and names no unknown project
    table = pooler(db, "report", "audit", "--period", "2027-01")
    assert note in table.stdout and "unknown" not in table.stdout + table.stderr
    statement = json.loads(pooler(db, "report", "member", "lingxi-ai", "--period", "2027-01",
                                  "--format", "json").stdout)
    assert [(p["project"], D(p["member_used"])) for p in statement["projects"]] == [("lingxi-agent", 140)]


def test_an_auditor_recomputes_the_use_of_projects_outside_the_run_from_the_report(reviewed, tmp_path):
    """Review: the report said a project outside the run is settled by the stakes and speeds the ledger
    last recorded, and gave only the stakes: lingxi-agent's 200 device-hours on the 910B were charged
    140 units (its speed 0.7), which neither the report nor `alloc inputs` (the project is not in the
    run) explained. `outside_run` now gives the speeds too (null for a project without a table)."""
    db = _copy(reviewed, tmp_path)
    pooler(db, "project", "retire", "lingxi-agent")
    pooler(db, "alloc", "run", "--period", "2027-01")
    pooler(db, "project", "add", "late-asr", "--sponsor", "scut=1", "--demand", "10")  # no speed table
    (tmp_path / "late.csv").write_text(LATE_USAGE + "late-asr,scut-a800,30,2027-01-05T00:00:00,"
                                       "2027-01-06T00:00:00\n", encoding="utf-8")
    pooler(db, "usage", "import", tmp_path / "late.csv", "--format", "csv")
    data = _audit_json(db, "2027-01")
    assert data["outside_run"] == [
        {"project": "late-asr", "status": "added after the run", "stakes": {"scut": "1"}, "speed": None},
        {"project": "lingxi-agent", "status": "retired", "stakes": {"lingxi-ai": "1"},
         "speed": {"a800": "1", "ascend-910b": "0.7"}}]
    members = {m["member"]: D(m["used"]) for m in data["members"] if D(m["used"])}
    assert members["lingxi-ai"] == 140
    assert _recomputed_used(db, "pair", "2027-01") == members


def test_a_project_added_after_the_run_is_settled_by_its_sponsors(reviewed, tmp_path):
    db = _copy(reviewed, tmp_path)
    before = {m["member"]: m for m in _audit_json(db)["members"]}
    pooler(db, "project", "add", "scut-vision", "--sponsor", "scut=0.5", "--sponsor", "lingxi-ai=0.5",
           "--demand", "100")
    (tmp_path / "vision.csv").write_text("project,pool,device_hours,start,end\n"
                                         "scut-vision,gz-lab-910b,300,2026-11-20T00:00:00,2026-11-21T00:00:00\n",
                                         encoding="utf-8")
    pooler(db, "usage", "import", tmp_path / "vision.csv", "--format", "csv")
    data = _audit_json(db)
    after = {m["member"]: m for m in data["members"]}
    for member, units in (("scut", 150), ("lingxi-ai", 150)):
        assert D(after[member]["borrowed"]) - D(before[member]["borrowed"]) == units
    assert D(after["gz-lab"]["lent"]) - D(before["gz-lab"]["lent"]) == 300
    assert sum(D(m["balance"]) for m in after.values()) == 0
    [note] = [n for n in data["notes"] if "scut-vision" in n]
    assert "added to the ledger after this run" in note and "lingxi-ai 50%, scut 50%" in note
    for fmt in ("table", "md", "html", "csv"):
        assert "scut-vision is not in this run" in pooler(db, "report", "audit", "--period", PERIOD,
                                                          "--format", fmt).stdout


# --- 2b. usage of pools outside the run's snapshot ------------------------------------------------------

WITHOUT_LINGXI_POOL = re.compile(r'\[\[pools\]\]\nid = "lingxi-a800"\n(?:[^\[\n][^\n]*\n|\n)*')
RETIRED_POOL_USAGE = """project,pool,device_hours,start,end
lingnan-llm,lingxi-a800,100,2027-01-02T00:00:00,2027-01-03T00:00:00
cantonese-asr,lingxi-a800,50.5,2027-01-02T00:00:00,2027-01-03T00:00:00
lingnan-llm,gz-lab-910b,1000,2027-01-03T00:00:00,2027-01-04T00:00:00
"""


def test_a_pool_retired_before_the_run_is_settled_by_its_last_recorded_facts(reviewed, tmp_path):
    """Review: lingxi-a800 was removed by a later `apply`; usage recorded on it in the next period
    was reported as "unknown pool ... is not settled", though the ledger knows its owner (lingxi-ai),
    its type (a800, rate 1.2) and region. It is settled as a pool of the run is, from those facts."""
    db = _copy(reviewed, tmp_path)
    manifest = (EXAMPLES / "small.toml").read_text(encoding="utf-8")
    (tmp_path / "smaller.toml").write_text(WITHOUT_LINGXI_POOL.sub("", manifest), encoding="utf-8")
    assert "lingxi-a800" not in (tmp_path / "smaller.toml").read_text(encoding="utf-8")
    pooler(db, "apply", tmp_path / "smaller.toml", "--prune")  # retires the pool it no longer lists
    assert [p["id"] for p in json.loads(pooler(db, "pool", "list", "--json").stdout)] == ["gz-lab-910b", "scut-a800"]
    pooler(db, "alloc", "run", "--period", "2027-01")
    (tmp_path / "late.csv").write_text(RETIRED_POOL_USAGE, encoding="utf-8")
    pooler(db, "usage", "import", tmp_path / "late.csv", "--format", "csv")
    data = _audit_json(db, "2027-01")
    members = {m["member"]: m for m in data["members"]}
    # 100 dh x 1.2 of lingnan-llm (gz-lab 60%, scut 40%) and 50.5 dh x 1.2 of cantonese-asr (scut)
    assert D(members["lingxi-ai"]["lent"]) == D("120") + D("60.6")
    assert {(f["lender"], f["borrower"]): D(f["units"]) for f in data["flows"]
            if f["lender"] == "lingxi-ai"} == {("lingxi-ai", "gz-lab"): 72, ("lingxi-ai", "scut"): D("48") + D("60.6")}
    assert D(data["summary"][0]["balance_sum"]) == 0
    assert D(data["summary"][0]["used_units"]) == 1000 + 120 + D("60.6")
    assert data["outside_pools"] == [{
        "pool": "lingxi-a800", "status": "retired", "member": "lingxi-ai", "accelerator": "a800",
        "region": "greater-bay", "rate": "1.2", "used_device_hours": "150.5", "used_capacity_units": "180.6"}]
    # the run's own pools keep their figures: capacity, use and idle are of the run's pools
    assert "lingxi-a800" not in {p["pool"] for p in data["pools"]}
    assert D(data["summary"][0]["used_capacity_units"]) == 1000
    [note] = [n for n in data["notes"] if "lingxi-a800" in n]
    assert note.startswith("pool lingxi-a800 is not in this run (retired)") and "unknown" not in note
    assert "1.2 per device-hour" in note and "lingxi-ai" in note
    # an auditor recomputes every member's `used` from the ledger's rows and the report's own figures
    assert _recomputed_used(db, "pair", "2027-01") == {m: D(r["used"]) for m, r in members.items() if D(r["used"])}
    # and every form says it, the CSV with the device-hours column of the other tables
    rows = _csv_sections(pooler(db, "report", "audit", "--period", "2027-01", "--format", "csv").stdout)
    assert [(r["pool"], r["member"], r["rate"], r["used_device_hours"]) for r in rows["outside_pools"]] == [
        ("lingxi-a800", "lingxi-ai", "1.2", "150.5")]
    for fmt in ("table", "md", "html"):
        text = pooler(db, "report", "audit", "--period", "2027-01", "--format", fmt).stdout
        assert "Pools outside the run" in text and "unknown pool" not in text, fmt
    statement = json.loads(pooler(db, "report", "member", "lingxi-ai", "--period", "2027-01",
                                  "--format", "json").stdout)
    assert [p["pool"] for p in statement["outside_pools"]] == ["lingxi-a800"]
    assert D(statement["statement"][0]["lent"]) == D("180.6")


def test_a_pool_added_after_the_run_is_settled_at_its_types_rate(reviewed, tmp_path):
    """A pool (and its accelerator type) added after the 2026-11 run, used in 2026-11: settled as a
    pool of its owner, at the rate the ledger gives the type for the period, and said so."""
    db = _copy(reviewed, tmp_path)
    before = {m["member"]: m for m in _audit_json(db)["members"]}
    pooler(db, "accelerator", "add", "h800", "--rate", "2.5")
    pooler(db, "pool", "add", "scut-h800", "--member", "scut", "--accelerator", "h800", "--capacity", "100")
    (tmp_path / "h800.csv").write_text("project,pool,device_hours,start,end\n"
                                       "lingnan-llm,scut-h800,10,2026-11-20T00:00:00,2026-11-21T00:00:00\n",
                                       encoding="utf-8")
    pooler(db, "usage", "import", tmp_path / "h800.csv", "--format", "csv")
    data = _audit_json(db)
    after = {m["member"]: m for m in data["members"]}
    # 10 dh x 2.5 = 25 units of lingnan-llm: gz-lab's 60% borrowed from scut, scut's 40% its own use
    assert D(after["gz-lab"]["borrowed"]) - D(before["gz-lab"]["borrowed"]) == 15
    assert D(after["scut"]["lent"]) - D(before["scut"]["lent"]) == 15
    assert D(after["scut"]["own_use"]) - D(before["scut"]["own_use"]) == 10
    assert sum(D(m["balance"]) for m in after.values()) == 0
    [row] = data["outside_pools"]
    assert (row["pool"], row["status"], row["rate"], row["region"]) == ("scut-h800", "added after the run", "2.5",
                                                                        "greater-bay")
    [note] = [n for n in data["notes"] if "scut-h800" in n]
    assert "added to the ledger after this run" in note and "the ledger's rate for the period, 2.5" in note
    assert _recomputed_used(db, "pair") == {m: D(r["used"]) for m, r in after.items() if D(r["used"])}


def test_members_outside_the_run_are_named_as_the_ledger_last_recorded(reviewed, tmp_path):
    """Review: a member added after the run whose pool lent, and the sponsor of a project added
    after the run, were listed with an empty name (the report named members from the run's
    snapshot only)."""
    db = _copy(reviewed, tmp_path)
    pooler(db, "member", "add", "late-lab", "--name", "Late Lab", "--region", "greater-bay")
    pooler(db, "member", "add", "later-lab", "--name", "Later Lab", "--region", "greater-bay")
    pooler(db, "pool", "add", "late-a800", "--member", "late-lab", "--accelerator", "a800", "--capacity", "100")
    pooler(db, "project", "add", "later-asr", "--sponsor", "later-lab=1", "--demand", "10")
    (tmp_path / "late.csv").write_text("project,pool,device_hours,start,end\n"
                                       "lingnan-llm,late-a800,10,2026-11-20T00:00:00,2026-11-21T00:00:00\n"
                                       "later-asr,scut-a800,5,2026-11-20T00:00:00,2026-11-21T00:00:00\n",
                                       encoding="utf-8")
    pooler(db, "usage", "import", tmp_path / "late.csv", "--format", "csv")
    rows = {m["member"]: m for m in _audit_json(db)["members"]}
    assert rows["late-lab"]["name"] == "Late Lab" and D(rows["late-lab"]["lent"]) > 0
    assert rows["later-lab"]["name"] == "Later Lab" and D(rows["later-lab"]["used"]) > 0
    assert all(r["name"] for r in rows.values())


# --- 2c. the summary's counts say what they count ---------------------------------------------------------


def test_the_summary_counts_the_run_and_what_was_settled_outside_it(reviewed, tmp_path):
    """Review: the summary said `projects: 3` while the projects table listed 4 and 4 projects'
    usage was settled: the count covered the run's projects only and did not say so."""
    db = _copy(reviewed, tmp_path)
    pooler(db, "project", "retire", "lingxi-agent")
    pooler(db, "alloc", "run", "--period", "2027-01")
    (tmp_path / "late.csv").write_text(LATE_USAGE, encoding="utf-8")
    pooler(db, "usage", "import", tmp_path / "late.csv", "--format", "csv")
    pooler(db, "project", "add", "scut-vision", "--sponsor", "scut=1", "--demand", "100")
    (tmp_path / "vision.csv").write_text("project,pool,device_hours,start,end\n"
                                         "scut-vision,scut-a800,3,2027-01-20T00:00:00,2027-01-21T00:00:00\n",
                                         encoding="utf-8")
    pooler(db, "usage", "import", tmp_path / "vision.csv", "--format", "csv")
    data = _audit_json(db, "2027-01")
    [s] = data["summary"]
    want = {"members_in_run": 3, "members_outside_run": 0, "projects_in_run": 2, "projects_outside_run": 2,
            "projects_with_settled_usage": 3, "pools_in_run": 3, "pools_outside_run": 0}
    assert {k: s[k] for k in want} == want
    assert not {"members", "projects", "pools"} & set(s)  # the old names, which did not say it
    # each count follows from the tables beside it
    assert len(data["projects"]) == s["projects_in_run"] + s["projects_outside_run"]
    assert len(data["pools"]) == s["pools_in_run"] and len(data["outside_pools"]) == s["pools_outside_run"]
    assert len(data["members"]) == s["members_in_run"] + s["members_outside_run"]
    assert s["projects_with_settled_usage"] == sum(1 for p in data["projects"] if D(p["used_units"]))
    # the same counts, under the same names, in the CSV and the forms for people
    [row] = _csv_sections(pooler(db, "report", "audit", "--period", "2027-01", "--format", "csv").stdout)["summary"]
    assert {k: int(row[k]) for k in want} == want
    for fmt in ("table", "md"):
        shown = _key_values(pooler(db, "report", "audit", "--period", "2027-01", "--format", fmt).stdout)
        assert {k: int(shown[k.replace("_", " ")]) for k in want} == want, fmt
    html = pooler(db, "report", "audit", "--period", "2027-01", "--format", "html").stdout
    assert "projects with settled usage" in html and "projects in run" in html


# --- 3. the rounding, as documented: once per (project, pool) pair --------------------------------------


def _recomputed_used(db: Path, per: str, period: str = PERIOD) -> dict[str, Decimal]:
    """Each member's `used` as an auditor recomputes it from `ledger export --rows` and `alloc inputs`
    by the rule in core/settle.py (README, Settlement): the period's device-hours summed per (project,
    pool) (`per="pair"`; `per="line"` rounds each line instead), x rate x speed, rounded half-even to
    1e-6, split by stakes into whole 1e-6 by largest remainder (ties to the smaller id). A pool outside
    the run is taken as the report's `outside_pools` gives it (owner, accelerator, rate), a project
    outside the run as its `outside_run` gives it (stakes and speeds)."""
    from decimal import ROUND_HALF_EVEN

    inputs = json.loads(pooler(db, "alloc", "inputs", "--period", period, "-f", "json").stdout,
                        parse_float=D, parse_int=D)
    rates = {a["id"]: a["rate"] for a in inputs["accelerators"]}
    pools = {p["id"]: (p["member"], p["accelerator"]) for p in inputs["pools"]}
    for p in _audit_json(db, period)["outside_pools"]:
        pools[p["pool"]] = (p["member"], p["accelerator"])
        assert rates.setdefault(p["accelerator"], D(p["rate"])) == D(p["rate"])  # one type, one rate
    projects = {p["id"]: p for p in inputs["projects"]}
    for o in _audit_json(db, period)["outside_run"]:
        # as the inputs give a project: "speed" only when it has a table
        projects[o["project"]] = {"sponsors": {m: D(s) for m, s in o["stakes"].items()},
                                  **({} if o["speed"] is None else
                                     {"speed": {t: D(v) for t, v in o["speed"].items()}})}
    items: dict = {}  # (project, pool) or the line's number -> [project, pool, device-hours]
    for i, line in enumerate(pooler(db, "ledger", "export", "--format", "jsonl", "--rows").stdout.splitlines()):
        row = json.loads(line).get("row")
        if json.loads(line).get("table") == "usage_line" and row["period"] == period:
            key = (row["project"], row["pool"]) if per == "pair" else i
            items.setdefault(key, [row["project"], row["pool"], D(0)])[2] += D(row["device_hours"])
    used: dict[str, Decimal] = {}
    for project_id, pool_id, hours in items.values():
        project = projects[project_id]
        speed = (project.get("speed") or {}).get(pools[pool_id][1], D(1) if "speed" not in project else D(0))
        quanta = int((hours * rates[pools[pool_id][1]] * (speed if speed > 0 else 1) * 10 ** 6)
                     .to_integral_value(ROUND_HALF_EVEN))
        stakes = sorted(project["sponsors"].items())
        total = sum(s for _, s in stakes)
        exact = [(m, quanta * s / total) for m, s in stakes]
        parts = {m: int(x) for m, x in exact}
        for m, _ in sorted(exact, key=lambda e: (-(e[1] - int(e[1])), e[0]))[:quanta - sum(parts.values())]:
            parts[m] += 1
        for m, q in parts.items():
            used[m] = used.get(m, D(0)) + D(q).scaleb(-6)
    return used


def test_an_auditor_recomputes_used_by_rounding_once_per_project_and_pool(reviewed):
    """Review: README and settle.py said each usage line is rounded once; the settlement rounds each
    (project, pool) pair's summed device-hours. The documented rule now gives the report's figures."""
    shown = {m["member"]: D(m["used"]) for m in _audit_json(reviewed)["members"]}
    assert _recomputed_used(reviewed, "pair") == shown
    assert _recomputed_used(reviewed, "line") != shown  # the old wording does not


# --- 4. a member's per-project parts add up to its statement ----------------------------------------


@pytest.mark.parametrize("member", ["gz-lab", "lingxi-ai", "scut"])
def test_member_used_per_project_adds_up_to_the_statement(reviewed, member):
    """Review: scut's member_used values added up to 19920.991667, its statement said 19920.991668."""
    data = json.loads(pooler(reviewed, "report", "member", member, "--period", PERIOD, "--format", "json").stdout)
    used = D(data["statement"][0]["used"])
    assert sum(D(p["member_used"]) for p in data["projects"]) == used
    for p in data["projects"]:  # each part is its project's used units x the stake, to a few 1e-6
        assert abs(D(p["member_used"]) - D(p["used_units"]) * D(p["stake"])) <= D("0.00001")
        assert D(p["member_used"]) == D(p["member_used"]).quantize(D("0.000001"))
    rows = _csv_sections(pooler(reviewed, "report", "member", member, "--period", PERIOD, "--format", "csv").stdout)
    assert sum(D(r["member_used"]) for r in rows["projects"]) == D(rows["statement"][0]["used"])


# --- 5. which run the report describes ------------------------------------------------------------------


def test_every_format_says_which_run_it_describes_and_what_it_supersedes(reviewed, tmp_path):
    """Review: only the JSON said which run an audit describes (`supersedes`, `reason`); a table or a
    CSV of a superseding run could not be told from one of the run it replaced."""
    db = _copy(reviewed, tmp_path)
    first = _audit_json(db)["run"]
    pooler(db, "alloc", "run", "--period", PERIOD, "--reason", "pool outage fixed")
    run = _audit_json(db)["run"]
    assert (run["supersedes"], run["reason"]) == (first["seq"], "pool outage fixed") and run["seq"] > first["seq"]
    [row] = _csv_sections(pooler(db, "report", "audit", "--period", PERIOD, "--format", "csv").stdout)["run"]
    assert (int(row["seq"]), int(row["supersedes"]), row["reason"]) == (run["seq"], first["seq"], "pool outage fixed")
    assert row["inputs_digest"] == run["inputs_digest"]
    for fmt in ("table", "md", "html"):
        text = pooler(db, "report", "audit", "--period", PERIOD, "--format", fmt).stdout
        if fmt == "html":
            text = re.sub(r'<tr><th scope="row">([^<]*)</th><td[^>]*>([^<]*)</td></tr>', r"\n| \1 | \2 |\n", text)
        shown = _key_values(text)
        assert (shown["entry"], shown["supersedes"], shown["reason"]) == (
            str(run["seq"]), f"run #{first['seq']}", "pool outage fixed"), fmt
    member = pooler(db, "report", "member", "scut", "--period", PERIOD, "--format", "md").stdout
    assert f"| supersedes | run #{first['seq']} |" in member
    # a first run says it supersedes none
    assert _key_values(pooler(reviewed, "report", "audit", "--period", PERIOD).stdout)["supersedes"] == "no earlier run"


# --- 6. one unit per CSV column ----------------------------------------------------------------------------


def test_a_csv_column_holds_one_unit(reviewed):
    """Review: the CSV's `used` column held members' NCU and pools' device-hours, one above the other."""
    rows = _csv_sections(pooler(reviewed, "report", "audit", "--period", PERIOD, "--format", "csv").stdout)

    def filled(column):
        return {section for section, found in rows.items() for r in found if r.get(column)}

    assert filled("used") == {"members"}
    assert filled("used_device_hours") == {"projects", "pools"}
    assert filled("capacity_device_hours") == {"summary", "pools"}
    assert "capacity" not in rows["pools"][0] and "granted" not in rows["pools"][0]
    # a spreadsheet's sums by column now mean something: the pools' device-hours are the projects'
    data = _audit_json(reviewed)
    assert sum(D(r["used_device_hours"]) for r in rows["pools"]) == sum(D(p["used"]) for p in data["pools"]) \
        == sum(D(r["used_device_hours"]) for r in rows["projects"])
    assert sum(D(r["capacity_device_hours"]) for r in rows["pools"]) == D(rows["summary"][0]["capacity_device_hours"])
    member = _csv_sections(pooler(reviewed, "report", "member", "scut", "--period", PERIOD, "--format", "csv").stdout)
    assert member["pools"][0]["used_device_hours"] and not member["pools"][0].get("used")
    # the tables for people name the unit too
    md = pooler(reviewed, "report", "audit", "--period", PERIOD, "--format", "md").stdout
    assert "| capacity device-hours | granted device-hours | used device-hours |" in md


# --- 7. one number format for people --------------------------------------------------------------------

HUMAN = {  # Decimal quantity -> as the table, Markdown and HTML forms show it
    "12000.010334": "12,000", "0.6": "1", "1.5": "2", "0": "0", "-99.82222": "-100",
    "0.004401": "<1", "0.5": "<1", "0.000001": "<1", "-0.3": ">-1", "-0.000001": ">-1",
}


@pytest.mark.parametrize("value", list(HUMAN))
def test_a_quantity_is_shown_whole_and_a_tiny_one_is_not_shown_as_zero(value):
    from pooler.reports.text import human

    assert human("units", D(value)) == HUMAN[value]


def test_the_lending_table_shows_every_figure_in_one_format(reviewed):
    """Review: "lingxi-ai -> gz-lab 0.00" (0.004401 units) beside whole numbers in every other row."""
    table = pooler(reviewed, "report", "audit", "--period", PERIOD).stdout
    lending = table[table.index("Lending between members"):table.index("Ledger")]
    figures = [row for row in re.findall(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s*$", lending, re.M)
               if row != ("lender", "borrower", "units") and row[0] != "Lending"]
    flows = {(f["lender"], f["borrower"]): D(f["units"]) for f in _audit_json(reviewed)["flows"]}
    assert {(a, b) for a, b, _ in figures} == set(flows)
    for lender, borrower, shown in figures:
        assert re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})*|<1", shown), shown
        assert shown == ("<1" if flows[(lender, borrower)] < D("0.5") else f"{flows[(lender, borrower)]:,.0f}")
    assert "| lingxi-ai | gz-lab | \\<1 |" in pooler(reviewed, "report", "audit", "--period", PERIOD, "--format", "md").stdout


def test_markdown_shows_names_and_reasons_as_text_not_markup(reviewed, tmp_path):
    """Review: a member named `<script>...</script> [x](http://e)` went into `--format md` as it was,
    so a Markdown viewer ran raw HTML or showed a link. Rendered by a CommonMark parser (the one
    Rich uses), the report shows the name and the run's reason as the text typed, with no HTML tag
    or link of theirs."""
    from markdown_it import MarkdownIt

    db = _copy(reviewed, tmp_path)
    name = "<script>alert(1)</script> [x](http://e) *b* `c` a|b"
    reason = "<img src=x onerror=alert(1)> ![i](http://f) ~~s~~ &amp;"
    pooler(db, "member", "add", "evil", "--name", name)
    pooler(db, "alloc", "run", "--period", PERIOD, "--reason", reason)
    md = pooler(db, "report", "audit", "--period", PERIOD, "--format", "md").stdout
    html = MarkdownIt("commonmark").enable("table").enable("strikethrough").render(md)
    for tag in ("<script", "<img", "<a ", "<em>", "<code>", "<s>", "<del>"):
        assert tag not in html, tag
    shown = html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [x](http://e) *b* `c` a|b" in shown
    assert "&lt;img src=x onerror=alert(1)&gt; ![i](http://f) ~~s~~ &amp;amp;" in shown
