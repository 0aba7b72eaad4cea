"""`pooler alloc`: the classic cases through `alloc solve --json`, and recorded runs end to end."""

from __future__ import annotations

import json

import pytest

from pooler.store import Writer
from tests.backends import tamper
from tests.conftest import EXAMPLES
from tests.test_cli import digest


def _manifest(members, pools, projects, *, alpha="1.0"):
    """A one-type (rate 1) manifest: members [(id)], pools [(id, member, capacity, reserve)],
    projects [(id, {member: stake}, demand, weight)]."""
    lines = ["[policy]", f"contribution_weight = {alpha}", "usage_half_life_days = 0", "",
             "[[accelerators]]", 'id = "gpu"', "rate = 1", ""]
    for m in members:
        lines += ["[[members]]", f'id = "{m}"', f'name = "{m}"', ""]
    for pid, member, capacity, reserve in pools:
        lines += ["[[pools]]", f'id = "{pid}"', f'member = "{member}"', 'accelerator = "gpu"',
                  f"capacity = {capacity}", f"reserve = {reserve}", ""]
    for jid, sponsors, demand, weight in projects:
        stakes = ", ".join(f"{m} = {s}" for m, s in sponsors.items())
        lines += ["[[projects]]", f'id = "{jid}"', f"sponsors = {{ {stakes} }}", f"demand = {demand}",
                  f"weight = {weight}", ""]
    return "\n".join(lines)


CLASSIC = {
    "max-min water-filling": (
        _manifest(["a"], [("p", "a", 10, 0)],
                  [("j1", {"a": 1}, 2, 1), ("j2", {"a": 1}, 2.6, 1), ("j3", {"a": 1}, 4, 1),
                   ("j4", {"a": 1}, 5, 1)]),
        {"j1": 2, "j2": 2.6, "j3": 2.7, "j4": 2.7},
    ),
    "weighted max-min": (
        _manifest(["a"], [("p", "a", 16, 0)],
                  [("j1", {"a": 1}, 4, 2.5), ("j2", {"a": 1}, 2, 4), ("j3", {"a": 1}, 10, 0.5),
                   ("j4", {"a": 1}, 4, 1)]),
        {"j1": 4, "j2": 2, "j3": 6, "j4": 4},
    ),
    "contribution shares 20/10": (
        _manifest(["A", "B"], [("pa", "A", 20, 0), ("pb", "B", 10, 0)],
                  [("ja", {"A": 1}, 1e9, 1), ("jb", {"B": 1}, 1e9, 1)]),
        {"ja": 20, "jb": 10},
    ),
    "contribution shares 10/5": (
        _manifest(["A", "B"], [("pa", "A", 10, 0), ("pb", "B", 5, 0)],
                  [("ja", {"A": 1}, 1e9, 1), ("jb", {"B": 1}, 1e9, 1)]),
        {"ja": 10, "jb": 5},
    ),
    "idle capacity is lent": (
        _manifest(["A", "B"], [("pa", "A", 9, 0), ("pb", "B", 12, 0)], [("ja", {"A": 1}, 1000, 1)]),
        {"ja": 21},
    ),
    "reserve limits lending": (
        _manifest(["A", "B"], [("pa", "A", 9, 0), ("pb", "B", 12, "0.9166666666666666")],
                  [("ja", {"A": 1}, 1000, 1)]),
        {"ja": 10},
    ),
}


@pytest.mark.parametrize("name", list(CLASSIC))
def test_classic_cases_through_alloc_solve_json(cli, tmp_path, name):
    text, expected = CLASSIC[name]
    manifest = tmp_path / "case.toml"
    manifest.write_text(text.replace("1000000000.0", "1000000000"), encoding="utf-8")
    result = cli("alloc", "solve", manifest, "--json", db_path=None)
    assert result.exit_code == 0, result.stderr
    data = result.json()
    got = {j: v["allocated"] for j, v in data["projects"].items()}
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    for pool in data["pools"].values():
        assert pool["granted"] <= pool["capacity"]
    assert set(data) >= {"period", "unit", "members", "projects", "pools", "grants", "metrics", "solver"}


def test_alloc_solve_touches_no_ledger(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("alloc", "solve", EXAMPLES / "c2net.toml", db_path=None)
    assert result.exit_code == 0, result.stderr
    assert "Projects" in result.stdout and "Utilisation" in result.stdout
    assert not (tmp_path / "pooler.db").exists()


TINY = """
[consortium]
name = "Tiny"
[[accelerators]]
id = "gpu"
rate = 1
[[members]]
id = "m"
name = "M"
[[pools]]
id = "p"
member = "m"
accelerator = "gpu"
capacity = 1000000000
[[projects]]
id = "big"
sponsors = { m = 1 }
demand = 2000000000
[[projects]]
id = "small"
sponsors = { m = 1 }
demand = 1
weight = 0.000000001
"""


def test_a_resolution_warning_is_printed_recorded_and_shown(cli, tmp_path):
    """`solver.warnings` (see `pooler.core.alloc._resolution_warnings`) reach the person: a `Warning:`
    line after the tables of `alloc solve` and `alloc run`, the run's payload, and `alloc show`."""
    manifest = tmp_path / "tiny.toml"
    manifest.write_text(TINY, encoding="utf-8")
    solved = cli("alloc", "solve", manifest)
    assert solved.exit_code == 0, solved.stderr
    text = " ".join(solved.stderr.split())
    assert "Warning: 1 project(s) short of a demand below a millionth of the largest pool class" in text
    assert cli("init").exit_code == 0 and cli("apply", manifest).exit_code == 0
    ran = cli("alloc", "run", "--period", "2026-11", "--json")
    assert ran.exit_code == 0, ran.stderr
    (warning,) = ran.json()["solver"]["warnings"]
    assert warning.endswith("small (0 of 1)")
    assert cli("alloc", "show", "--json").json()["solver"]["warnings"] == [warning]
    shown = cli("alloc", "show")
    assert "Warning: 1 project(s) short" in " ".join(shown.stderr.split())


def test_alloc_solve_with_usage_table_lowers_a_heavy_user(cli, tmp_path):
    text, _ = CLASSIC["contribution shares 20/10"]
    base = tmp_path / "base.toml"
    base.write_text(text.replace("usage_half_life_days = 0", "usage_half_life_days = 30")
                    .replace("1000000000.0", "1000000000"), encoding="utf-8")
    heavy = tmp_path / "heavy.toml"
    heavy.write_text(base.read_text() + "\n[usage]\nA = 1000\nB = 0\n", encoding="utf-8")
    before = cli("alloc", "solve", base, "--json", db_path=None).json()
    after = cli("alloc", "solve", heavy, "--json", db_path=None).json()
    assert after["members"]["A"]["share"] < before["members"]["A"]["share"]
    assert after["projects"]["ja"]["allocated"] < before["projects"]["ja"]["allocated"]


@pytest.mark.parametrize("command", [("alloc", "solve"), ("apply",)])
def test_a_missing_manifest_or_a_folder_is_one_error_line(cli, tmp_path, command):
    """Not Typer's framed usage box: one `Error:` line naming the path, exit 2 (README, Exit codes)."""
    if command == ("apply",):
        assert cli("init").exit_code == 0
    for path, words in ((tmp_path / "missing.toml", "no manifest file at"),
                        (tmp_path, "is a folder, not a manifest file")):
        result = cli(*command, path) if command == ("apply",) else cli(*command, path, db_path=None)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith("Error: ") and words in result.stderr
        assert result.stderr.count("\n") == 1 and "╭" not in result.stderr


def test_alloc_solve_bad_manifest_is_one_clear_error(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[pools]]\nid = 3\n", encoding="utf-8")
    result = cli("alloc", "solve", bad, db_path=None)
    assert result.exit_code == 1 and result.stderr.startswith("Error:")


@pytest.fixture
def ledger(cli):
    assert cli("init").exit_code == 0
    assert cli("apply", EXAMPLES / "c2net.toml").exit_code == 0
    return cli


def test_run_records_one_entry_and_show_reads_it_back(ledger):
    cli = ledger
    ran = cli("alloc", "run", "--period", "2026-11", "--json")
    assert ran.exit_code == 0, ran.stderr
    run = ran.json()
    assert run["period"] == "2026-11" and isinstance(run["recorded"], int)
    log = cli("ledger", "log", "--limit", "1", "--json").json()
    assert log[0]["kind"] == "alloc.run" and log[0]["seq"] == run["recorded"]
    shown = cli("alloc", "show", "--period", "2026-11", "--json").json()
    for key in ("members", "projects", "pools", "grants", "metrics"):
        assert shown[key] == run[key]
    assert shown["run"]["seq"] == run["recorded"]
    # the run as `alloc show` names it (review: `run` had `recorded` and `supersedes`, `show` a `run`
    # object, so a script read the time and digest of the run it just made with a second command)
    assert run["run"] == shown["run"] and run["run"]["time"] == log[0]["time"]
    assert run["run"]["inputs_digest"] == log[0]["payload"]["inputs_digest"]
    assert cli("ledger", "verify").exit_code == 0
    table = cli("alloc", "show")
    assert table.exit_code == 0 and "pengcheng-mind-2" in table.stdout


def test_a_run_s_inputs_are_rebuilt_as_a_manifest_that_solves_to_the_run(ledger, tmp_path):
    """An auditor recomputes a recorded run without trusting the ledger's figures: `alloc inputs`
    writes the manifest it was solved from (the registry as of the run, its period's rates, the
    decayed usage it used), whose JSON form hashes to the run's inputs_digest, and `alloc solve` of
    it gives the run's allocation again, whatever the ledger recorded since."""
    import hashlib

    cli = ledger
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    grants = cli("alloc", "show", "--json").json()["grants"]
    lines = tmp_path / "used.csv"
    lines.write_text("project,pool,device_hours,start,end\n" + "".join(
        f"{g['project']},{g['pool']},{g['device_hours'] * (0.3 + 0.1 * (n % 5))},"
        "2026-11-02T00:00:00Z,2026-11-20T00:00:00Z\n" for n, g in enumerate(grants)), encoding="utf-8")
    assert cli("usage", "import", lines, "--format", "csv", "--period", "2026-11").exit_code == 0
    ran = cli("alloc", "run", "--period", "2026-12", "--json").json()
    assert ran["run"]["inputs_digest"]
    # the ledger moves on: a new project, a rate from 2027-01, more usage
    assert cli("project", "add", "late", "--sponsor", "pcl=1", "--demand", "5000").exit_code == 0
    changed = tmp_path / "rate.toml"
    changed.write_text((EXAMPLES / "c2net.toml").read_text(encoding="utf-8").replace("rate = 1.0", "rate = 1.7", 1),
                       encoding="utf-8")
    assert cli("apply", changed, "--rates-from", "2027-01").exit_code == 0
    lines.write_text(lines.read_text(encoding="utf-8").replace("2026-11-", "2026-12-"), encoding="utf-8")
    assert cli("usage", "import", lines, "--format", "csv", "--period", "2026-12").exit_code == 0

    as_json = tmp_path / "inputs.json"
    wrote = cli("alloc", "inputs", "--period", "2026-12", "-f", "json", "-o", as_json)
    assert wrote.exit_code == 0, wrote.stderr
    assert hashlib.sha256(as_json.read_bytes()).hexdigest() == ran["run"]["inputs_digest"]
    toml_text = cli("alloc", "inputs", "--period", "2026-12").stdout
    assert "[usage]" in toml_text and '"late"' not in toml_text
    as_toml = tmp_path / "inputs.toml"
    as_toml.write_text(toml_text, encoding="utf-8")
    shown = cli("alloc", "show", "--period", "2026-12", "--json").json()
    for path in (as_json, as_toml):
        solved = cli("alloc", "solve", path, "--period", "2026-12", "--json", db_path=None)
        assert solved.exit_code == 0, solved.stderr
        solved = solved.json()
        for key in ("members", "projects", "pools", "grants", "metrics"):
            assert solved[key] == shown[key], key
    # the usage made a difference (else the check above would not show that [usage] is carried)
    without = json.loads(as_json.read_text(encoding="utf-8"))
    assert without.pop("usage")
    as_json.write_text(json.dumps(without), encoding="utf-8")
    unused = cli("alloc", "solve", as_json, "--json", db_path=None).json()
    assert any(unused["members"][m]["share"] != v["share"] for m, v in shown["members"].items())


def test_inputs_of_no_run_or_a_bad_format_are_one_error(ledger):
    cli = ledger
    none = cli("alloc", "inputs")
    assert none.exit_code == 1 and none.stderr.startswith("Error: no allocation has been recorded yet")
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    for args, code, words in ((("--period", "2026-10"), 1, "no recorded run for 2026-10"),
                              (("--period", "2026-13"), 2, "--period"),
                              (("--format", "yaml"), 2, "--format: 'yaml' is not one of toml, json")):
        result = cli("alloc", "inputs", *args)
        assert result.exit_code == code and words in result.stderr and result.stdout == ""


def test_inputs_that_no_longer_hash_to_the_run_s_digest_are_refused(ledger):
    """The check behind `alloc inputs`: should the journal not rebuild what the run hashed (a damaged
    run entry, say), it says so instead of writing a manifest that would solve to something else."""
    cli = ledger
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    seq = cli("alloc", "show", "--json").json()["run"]["seq"]
    tamper(cli.db, "UPDATE journal SET payload = replace(payload, '\"inputs_digest\":\"', "
                   f"'\"inputs_digest\":\"00') WHERE seq = {seq}")
    result = cli("alloc", "inputs")
    assert result.exit_code == 1 and result.stdout == ""
    assert f"the inputs of run #{seq} (2026-11) rebuilt from the journal hash to" in result.stderr
    assert "ledger verify" in result.stderr


def test_second_run_needs_a_reason_and_both_stay(ledger):
    cli = ledger
    first = cli("alloc", "run", "--period", "2026-11", "--json").json()["recorded"]
    refused = cli("alloc", "run", "--period", "2026-11")
    assert refused.exit_code == 1 and "--reason" in refused.stderr and f"#{first}" in refused.stderr
    second = cli("alloc", "run", "--period", "2026-11", "--reason", "pool outage fixed", "--json").json()
    assert second["supersedes"] == first
    assert second["run"]["supersedes"] == first and second["run"]["reason"] == "pool outage fixed"
    runs = cli("alloc", "list", "--json").json()
    assert [(r["seq"], r["committed"]) for r in runs] == [(first, False), (second["recorded"], True)]
    assert cli("alloc", "show", "--json").json()["run"]["reason"] == "pool outage fixed"


def test_dry_run_records_nothing(ledger):
    cli = ledger
    before = digest(cli.db)
    result = cli("alloc", "run", "--period", "2026-11", "--dry-run", "--json")
    assert result.exit_code == 0 and result.json()["recorded"] is None and result.json()["run"] is None
    assert digest(cli.db) == before


def test_bad_period_is_a_usage_error(ledger):
    assert ledger("alloc", "run", "--period", "2026-13").exit_code == 2
    assert ledger("alloc", "run", "--period", "2026-W47").exit_code == 2  # months, not weeks


@pytest.mark.parametrize("label", ["0000-01", "9999-12", ""])
def test_a_period_beyond_the_calendar_or_empty_is_one_error_line(ledger, tmp_path, label):
    """Python's dates end in the year 9999 (9999-12 ends in 10000) and begin in the year 1: such a
    label was a traceback from `run` and `solve`; an empty one ran the current period."""
    cli = ledger
    before = digest(cli.db)
    for args in (("alloc", "run", "--period", label, "--dry-run"), ("alloc", "run", "--period", label),
                 ("alloc", "solve", EXAMPLES / "small.toml", "--period", label)):
        result = cli(*args)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith("Error: --period: ") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr
    assert digest(cli.db) == before


def test_show_explain_and_diff_check_the_period_labels_as_run_does(ledger):
    cli = ledger
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    for args, what in ((("alloc", "show", "--period", "bogus"), "--period"),
                       (("alloc", "show", "--period", ""), "--period"),
                       (("alloc", "explain", "legal-llm", "--period", "2026-W47"), "--period"),
                       (("alloc", "diff", "2026-13", "2026-11"), "P1"),
                       (("alloc", "diff", "2026-11", "2026-W47"), "P2"),
                       (("tui", "--period", "2026-13"), "--period")):  # before the screen opens
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr.startswith(f"Error: {what}: "), result.stderr
    assert "is a week, but this consortium's periods are months" in cli(
        "alloc", "diff", "2026-11", "2026-W47").stderr
    # a well-formed label without a run is still "not found" (1), saying which periods have one
    missing = cli("alloc", "show", "--period", "2026-10")
    assert missing.exit_code == 1 and "recorded: 2026-11" in missing.stderr


def test_run_on_an_empty_ledger_says_what_to_do(cli):
    cli("init")
    result = cli("alloc", "run", "--period", "2026-11")
    assert result.exit_code == 1 and "pooler apply" in result.stderr


def test_show_without_runs(ledger):
    result = ledger("alloc", "show")
    assert result.exit_code == 1 and "alloc run" in result.stderr


def test_a_failure_mid_run_leaves_no_trace(ledger, monkeypatch):
    cli = ledger
    before = digest(cli.db)
    real_append = Writer.append

    def crash_after_writing(self, kind, payload=None, attachments=None):
        real_append(self, kind, payload, attachments)
        raise RuntimeError("power cut")

    monkeypatch.setattr(Writer, "append", crash_after_writing)
    with pytest.raises(AssertionError, match="power cut"):
        cli("alloc", "run", "--period", "2026-11")
    monkeypatch.undo()
    assert digest(cli.db) == before
    assert cli("alloc", "list", "--json").json() == []


def test_verify_covers_grant_rows(ledger):
    cli = ledger
    cli("alloc", "run", "--period", "2026-11")
    tamper(cli.db, "update alloc_grant set device_hours = device_hours + 1 where line = 1")
    result = cli("ledger", "verify")
    assert result.exit_code == 1 and "alloc_grant" in result.stderr


def test_explain_in_words_and_numbers(ledger):
    cli = ledger
    cli("alloc", "run", "--period", "2026-11")
    words = cli("alloc", "explain", "pengcheng-mind-2")
    assert words.exit_code == 0, words.stderr
    assert "It asked for" in words.stdout and "sponsors" in words.stdout
    assert "pcl-cloudbrain-2" in words.stdout
    data = cli("alloc", "explain", "pengcheng-mind-2", "--json").json()
    assert {s["member"] for s in data["sponsors"]} == {"pcl", "huawei"}
    assert data["bottleneck"] in ("demand", "capacity", "fairness")
    assert sum(p["to_this_project"] for p in data["pools"]) > 0
    missing = cli("alloc", "explain", "no-such-project")
    assert missing.exit_code == 1


def test_explain_says_what_holds_a_project_its_pools_holders_stand_above(ledger):
    """huaxin-drug-discovery gets nothing: every project holding a pool it can use stands higher, so
    what holds it is further on (their needs, the members' totals of step 1), not projects with an
    equal or lower claim; glm-finetune shares pools with projects below it."""
    cli = ledger
    cli("alloc", "run", "--period", "2026-11")
    data = cli("alloc", "explain", "huaxin-drug-discovery", "--json").json()
    # frozen at nothing by the engine: reported as 0, not weight x a level of the solver's noise
    assert data["bottleneck"] == "fairness" and data["allocated"] == 0
    holders = [h for p in data["pools"] for h in p["holders"]]
    assert holders and all(h["level"] > data["level"] for h in holders)
    words = cli("alloc", "explain", "huaxin-drug-discovery").stdout.replace("\n", " ")
    assert "got 0 (0.0%)" in words
    # all its pools' holders stand higher: the counterfactual LPs find what stops it, the members'
    # totals of step 1 (with them held it cannot gain; without, it gains all it asks)
    limit = data["limit"]
    assert limit["kind"] == "members" and limit["gain"] == pytest.approx(25_000, rel=1e-6)
    assert limit["losers"] and all(x["amount"] > 0 for x in limit["losers"])
    assert "within the members' totals" in words and "all stand higher" not in words
    assert f"(for instance: {limit['losers'][0]['id']} " in words
    glm = cli("alloc", "explain", "glm-finetune", "--json").json()
    assert glm["bottleneck"] == "fairness"
    assert min(h["level"] for p in glm["pools"] for h in p["holders"]) < glm["level"]
    words = cli("alloc", "explain", "glm-finetune").stdout.replace("\n", " ")
    assert "all stand higher" not in words and "got 37,114" in words


def test_explain_lists_the_pools_that_matter_of_hundreds_and_all_with_all(cli, tmp_path):
    """Of more than 20 pools a project may use, `explain` lists those it holds and the 10 whose other
    holders stand lowest, then says how many it left out; `--all` lists every pool and `--json`
    always has them all."""
    pools = [(f"p{i:02d}", "A" if i % 2 else "B", 10 + 3 * i, 0) for i in range(30)]
    projects = [("ja1", {"A": 1}, 10_000, 1), ("ja2", {"A": 1}, 10_000, 3), ("jb1", {"B": 1}, 10_000, 1),
                ("jb2", {"B": 1}, 40, 1), ("jab", {"A": 1, "B": 1}, 10_000, 2)]
    manifest = tmp_path / "wide.toml"
    manifest.write_text(_manifest(["A", "B"], pools, projects), encoding="utf-8")
    assert cli("init").exit_code == 0 and cli("apply", manifest).exit_code == 0
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    for project in ("ja1", "jb2", "jab"):
        data = cli("alloc", "explain", project, "--period", "2026-11", "--json").json()
        assert sorted(p["pool"] for p in data["pools"]) == [p[0] for p in pools]
        held = {p["pool"] for p in data["pools"] if p["to_this_project"] > 0}

        def lowest(pool):
            levels = [h["level"] for h in pool["holders"] if h["project"] != project]
            return min((float("inf") if v is None else v for v in levels), default=float("-inf"))

        others = sorted((p for p in data["pools"] if p["pool"] not in held), key=lambda p: (lowest(p), p["pool"]))
        listed = lambda out: {w for w in out.replace("\n", " ").split() if w in {p[0] for p in pools}}  # noqa: E731
        out = cli("alloc", "explain", project, "--period", "2026-11").stdout
        assert listed(out) == held | {p["pool"] for p in others[:10]}, project
        assert f"and {30 - len(held) - 10} more pools it may use, none granted to it" in " ".join(out.split())
        every = cli("alloc", "explain", project, "--period", "2026-11", "--all").stdout
        assert listed(every) == {p[0] for p in pools} and "more pools it may use" not in every


def test_explain_puts_the_pools_of_a_weight_0_project_among_the_contested_and_idle_ones_last(cli, tmp_path):
    """A project whose weight counts as 0 (1e-9) is served last, so the pools it holds are the most contested for
    another project: listed; a pool nobody holds (here of capacity 0) comes after every pool others
    hold, and is left out."""
    pools = [(f"p{i:02d}", "A" if i % 2 else "B", 0 if i >= 26 else 10 + 3 * i, 0) for i in range(30)]
    projects = [("ja1", {"A": 1}, 200, 1), ("ja2", {"A": 1}, 300, 3), ("jb1", {"B": 1}, 200, 1),
                ("jab", {"A": 1, "B": 1}, 300, 2), ("jz", {"B": 1}, 100_000, "1e-9")]
    manifest = tmp_path / "wide.toml"
    manifest.write_text(_manifest(["A", "B"], pools, projects), encoding="utf-8")
    assert cli("init").exit_code == 0 and cli("apply", manifest).exit_code == 0
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    data = cli("alloc", "explain", "ja1", "--period", "2026-11", "--json").json()
    zero = {p["pool"] for p in data["pools"] for h in p["holders"] if h["project"] == "jz"}
    mine = {p["pool"] for p in data["pools"] if p["to_this_project"] > 0}
    assert 0 < len(zero - mine) <= 10
    out = " ".join(cli("alloc", "explain", "ja1", "--period", "2026-11").stdout.split())
    listed = {w for w in out.split() if w in {p[0] for p in pools}}
    assert zero <= listed and mine <= listed
    assert not listed & {"p26", "p27", "p28", "p29"}  # capacity 0: nobody holds them


def test_a_long_solve_shows_its_progress_on_a_terminal_only():
    """`solving()` shows a line on standard error while a solve runs: nothing before `after`
    seconds, nothing at all when standard error is not a terminal (scripts, pipes)."""
    import io

    from rich.console import Console

    from pooler.cli.alloc import solving
    from pooler.core.alloc_fair import Progress

    now = [0.0]
    for console in (Console(file=io.StringIO(), force_terminal=False),
                    Console(file=io.StringIO(), force_terminal=True)):  # FORCE_COLOR into a file or pipe
        with solving(console, after=0.0, clock=lambda: now[0]) as progress:
            assert progress is None
        assert console.file.getvalue() == ""
    # a display that fails is dropped, the solve goes on
    broken = Console(file=io.StringIO(), force_terminal=True)
    broken.file.write = lambda text: (_ for _ in ()).throw(OSError("terminal gone"))
    with solving(broken, after=0.0, clock=lambda: now[0], tty=True) as progress:
        progress(Progress("members", 1, 4, 2))
        progress(Progress("members", 2, 4, 3))
    for update, line in [(Progress("projects", 5, 10, 17), "step 2, projects: 5 of 10 settled · 17 LPs · 3 s"),
                         (Progress("placement", 0, 1, 30), "step 3, placing the grants · 30 LPs · 3 s")]:
        now[0] = 0.0
        shown = io.StringIO()
        with solving(Console(file=shown, force_terminal=True, width=120), after=0.5,
                     clock=lambda: now[0], tty=True) as progress:
            progress(Progress("members", 1, 4, 2))
            assert shown.getvalue() == ""  # before half a second: nothing
            now[0] = 3.0
            progress(update)
        # the line as last drawn (the terminal's line is cleared when the solve ends)
        assert f"Solving the allocation · {line}" in shown.getvalue() and "members" not in shown.getvalue()


_RESERVE_AND_ZERO = """
[consortium]
name = "Two members, one pool with a reserve"
[policy]
entitlement = "equal"
[[accelerators]]
id = "a800"
name = "A800"
rate = 1.0
[[members]]
id = "a"
name = "A"
kind = "university"
region = "r1"
[[members]]
id = "b"
name = "B"
kind = "university"
region = "r1"
[[pools]]
id = "pa"
member = "a"
accelerator = "a800"
capacity = 10
reserve = 0.8
[[projects]]
id = "k"
demand = 100
sponsors = { a = 1 }
[[projects]]
id = "j"
demand = 100
weight = 0.00000001
sponsors = { a = 1 }
[[projects]]
id = "bp"
demand = 100
sponsors = { b = 1 }
"""


def test_explain_words_a_reserve_and_a_weight_that_counts_as_zero(cli, tmp_path):
    """bp may borrow only the 2 of 10 device-hours that a does not reserve: what holds it is the
    reserve, not k (at level 16, above bp's 4), so it stopped at capacity (before 2026-11-28:
    `fairness`, as k holds the pool with a stronger claim), and the text must say that only the
    lent part counts. j's weight counts as 0: it
    is served after the weighted projects, and its level is not comparable with theirs, so it gets
    no 'all stand higher' sentence; its sliver of solver noise is reported as 0."""
    manifest = tmp_path / "reserve.toml"
    manifest.write_text(_RESERVE_AND_ZERO)
    assert cli("init").exit_code == 0 and cli("apply", manifest).exit_code == 0
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    bp = cli("alloc", "explain", "bp", "--json").json()
    assert bp["bottleneck"] == "capacity" and abs(bp["allocated"] - 2) < 1e-6
    words = cli("alloc", "explain", "bp").stdout.replace("\n", " ")
    assert "pools it can use are exhausted" in words and "only the part the owner lends" in words
    assert "pa (a, who keeps 80% for its own projects;" in words
    j = cli("alloc", "explain", "j", "--json").json()
    assert j["weight"] == 0 and j["allocated"] == 0
    words = cli("alloc", "explain", "j").stdout.replace("\n", " ")
    assert "counts as 0" in words and "served last" in words.replace("projects last", "served last")
    assert "all stand higher" not in words and "Its level" not in words and "got 0 (0.0%)" in words


def test_diff_two_periods(ledger):
    cli = ledger
    cli("alloc", "run", "--period", "2026-10")
    cli("pool", "add", "extra", "--member", "zju", "--accelerator", "a800", "--capacity", "100000")
    cli("alloc", "run", "--period", "2026-11")
    data = cli("alloc", "diff", "2026-10", "2026-11", "--json").json()
    total_change = sum(r["change"] for r in data["projects"])
    assert total_change > 0  # added capacity is handed out
    words = cli("alloc", "diff", "2026-10", "2026-11")
    assert words.exit_code == 0 and "Members" in words.stdout
    assert cli("alloc", "diff", "2026-10", "2025-01").exit_code == 1


def test_diff_json_has_the_same_keys_whatever_the_periods(ledger):
    """Rows carry "first" and "second", not the period labels (a script would have to read them
    first, and a period compared with itself lost one of its two values)."""
    cli = ledger
    cli("alloc", "run", "--period", "2026-10")
    cli("alloc", "run", "--period", "2026-11")
    for first, second in (("2026-10", "2026-11"), ("2026-11", "2026-11")):
        data = cli("alloc", "diff", first, second, "--json").json()
        assert (data["first"], data["second"]) == (first, second)
        for row in data["members"] + data["projects"]:
            assert set(row) - {"member", "project"} == {"first", "second", "change"}
            assert row["change"] == pytest.approx(row["second"] - row["first"])
    same = cli("alloc", "diff", "2026-11", "2026-11", "--json").json()
    assert all(r["first"] == r["second"] and r["change"] == 0 for r in same["projects"])


def test_json_output_of_a_real_process_is_pure_json(tmp_path):
    """Through a real process: nothing (such as a solver's banner on the C-level stdout) may precede
    or follow the JSON on stdout."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pooler.cli", "alloc", "solve",
                           str(EXAMPLES / "small.toml"), "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["projects"]


# --- the solve runs outside the write transaction -------------------------------------------------


def _writes_meanwhile(monkeypatch, write, times: int = 1) -> list[int]:
    """Make each of the first `times` solves of `alloc run` first do `write()` in another thread and
    wait for it (20 s at most): were the solve inside the write transaction, that write would wait
    for it (SQLite's busy timeout, PostgreSQL's advisory lock) and so never finish in time. Returns
    the list that counts the solves."""
    import threading

    from pooler.services import alloc

    real, solves = alloc._allocate, []

    def allocate(snapshot, progress=None):
        solves.append(1)
        if len(solves) <= times:
            failed = []

            def other_admin():
                try:
                    write()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failed.append(exc)
            thread = threading.Thread(target=other_admin)
            thread.start()
            thread.join(20)
            assert not thread.is_alive(), "another admin's write waited for the solve"
            assert not failed, failed
        return real(snapshot, progress)
    monkeypatch.setattr(alloc, "_allocate", allocate)
    return solves


def _ctx(cli):
    from pooler.services.context import Context

    return Context(db=str(cli.db), actor="other@admin")


def test_others_write_while_a_run_solves_and_the_run_is_the_state_it_names(ledger, monkeypatch):
    """A member added during the solve changes the inputs: the period is solved again from the new
    state, and the run names that state (its inputs digest and head)."""
    from pooler.services import alloc, registry

    cli = ledger
    added = []
    solves = _writes_meanwhile(monkeypatch, lambda: added.append(
        registry.add(_ctx(cli), "member", {"id": "late-lab", "name": "Late Lab"})))
    told = []
    run = alloc.run(_ctx(cli), "2026-11", progress=told.append)
    assert len(solves) == 2 and added
    # the progress of the second solve says it is one: "solving again ..., attempt 2 of 3"
    assert sorted({p.attempt for p in told}) == [1, 2] and told[-1].attempt == 2
    assert alloc.progress_text(told[-1]).startswith("solving again (the ledger changed meanwhile), attempt 2 of 3: ")
    assert not alloc.progress_text(told[0]).startswith("solving again")
    with registry.open_ledger(_ctx(cli)) as led, led.reader() as reader:
        entry = reader.entry(run.seq)
        assert entry.payload["state_seq"] == run.seq - 1 == reader.entries_of_kind("member.add")[-1].seq
        assert entry.payload["inputs_digest"] == alloc.inputs_digest(reader.snapshot("2026-11"))
        assert "late-lab" in {m.id for m in reader.snapshot("2026-11").members}
    assert cli("ledger", "verify").exit_code == 0


def test_a_run_recorded_meanwhile_is_superseded_only_with_a_reason(ledger, monkeypatch):
    from pooler.services import alloc

    cli = ledger
    first = []
    _writes_meanwhile(monkeypatch, lambda: first.append(alloc.run(_ctx(cli), "2026-11").seq), times=1)
    with pytest.raises(alloc.AllocError, match=r"already has a recorded run \(entry #"):
        alloc.run(_ctx(cli), "2026-11")
    assert len(first) == 1 and [r["seq"] for r in cli("alloc", "list", "--json").json()] == first
    second = []
    _writes_meanwhile(monkeypatch, lambda: second.append(alloc.run(_ctx(cli), "2026-12").seq), times=1)
    last = alloc.run(_ctx(cli), "2026-12", reason="recount")
    assert last.supersedes == second[0]


def test_a_run_gives_up_when_the_inputs_change_at_every_solve(ledger, monkeypatch):
    from pooler.services import alloc, registry

    cli = ledger
    n = iter(range(100))
    solves = _writes_meanwhile(monkeypatch, lambda: registry.add(_ctx(cli), "member", {"id": f"m{next(n)}", "name": "M"}),
                               times=alloc.SOLVE_ATTEMPTS)
    with pytest.raises(alloc.AllocError, match="changed during each of 3 solves"):
        alloc.run(_ctx(cli), "2026-11")
    assert len(solves) == alloc.SOLVE_ATTEMPTS
    assert cli("alloc", "list", "--json").json() == [] and cli("ledger", "verify").exit_code == 0


WIDE_RANGE = """\
[consortium]
name = "wide"
period = "quarter"
period_hours = 0.098

[[accelerators]]
id = "big"
rate = 26.4

[[accelerators]]
id = "small"
rate = 0.0519

[[members]]
id = "a"
name = "A"

[[members]]
id = "b"
name = "B"

[[pools]]
id = "tiny"
member = "a"
accelerator = "small"
devices = 21.24
reserve = 0.8

[[pools]]
id = "huge"
member = "b"
accelerator = "big"
capacity = 14053690  # 1.247 devices x 11,270,000 hours, which a period of 0.098 hours no longer allows

[[projects]]
id = "fast"
sponsors = { b = 1 }
demand = 37986356100000
speed = { small = 30000 }
"""


def test_capacities_ten_orders_apart_give_one_error_line_not_a_traceback(cli, tmp_path):
    """Found by a random sweep: the only pool a project can use holds 1e-10 of the largest pool's
    units, so its placement flow fell below the LP's resolution and `alloc solve` ended in a
    ValueError traceback from the grant assembly. Now it is the solver's one `Error:` line."""
    path = tmp_path / "wide.toml"
    path.write_text(WIDE_RANGE)
    result = cli("alloc", "solve", path, "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: the allocation could not be computed (numerical failure: "
                                    "placement found no pool for deliveries of 648.18")


def test_a_solver_that_fails_gives_one_error_line_and_writes_nothing(ledger, monkeypatch):
    """An LP solver that stops short of optimal (here: no time at all; in life, the numerical
    trouble `NumericalFailure` names) is pooler's fault, not the input's: `alloc solve` and
    `alloc run` say so in one `Error:` line with exit code 1, no traceback (the `cli` fixture
    asserts that), and the run writes nothing."""
    from tests.test_alloc_cases import _with_solver_option

    cli = ledger
    before = digest(cli.db)
    _with_solver_option(monkeypatch, ("time_limit", 0.0))
    for args in (("alloc", "solve", EXAMPLES / "c2net.toml", "--json"),
                 ("alloc", "run", "--period", "2026-11", "--json")):
        result = cli(*args)
        assert result.exit_code == 1, result.stdout
        assert result.stderr.startswith("Error: the allocation could not be computed (numerical failure:")
        assert "fault in pooler" in result.stderr and result.stdout == ""
    assert digest(cli.db) == before


def test_quota_bars_give_way_at_80_columns_instead_of_being_cut():
    """At 80 columns (any pipe) the projects table was 87 wide and Rich cut its last column: a bar
    of 60% showed four full blocks. Now the bar is drawn shorter, to scale, and nothing is cut."""
    from rich.console import Console

    from pooler.cli.output import bar, table

    rows = [("medical-imaging-foundation", "3,000,000", "2,000,000", "66.7%", "fairness", bar(2 / 3, 10)),
            ("a-project-served-whole", "1,500,000", "1,500,000", "100.0%", "demand", bar(1.0, 10)),
            ("a-project-given-nothing", "200,000", "0", "0.0%", "fairness", bar(0.0, 10))]
    columns = ["project", "demand", "allocated", "served", "bottleneck", ""]

    def bars(width: int) -> list[str]:
        console = Console(width=width, record=True, color_system=None)
        console.print(table("Projects", columns, rows, numeric=["demand", "allocated", "served"]))
        lines = console.export_text().splitlines()
        assert all(len(line) <= width for line in lines)
        body = [line for line in lines if line.lstrip().startswith(("medical", "a-project"))]
        assert len(body) == 3 and all("fairness" in b or "demand" in b for b in body)  # never cut
        return [b.rstrip().rsplit(" ", 1)[-1] for b in body]

    wide = bars(200)
    assert wide == ["██████▋···", "██████████", "··········"]
    narrow = bars(80)
    assert len({len(b) for b in narrow}) == 1 and 3 <= len(narrow[0]) < 10
    assert set(narrow[1]) == {"█"} and set(narrow[2]) == {"·"}
    assert "█" in narrow[0] and "·" in narrow[0]  # two thirds: part full, part empty


def test_tables_and_explain_show_small_amounts_and_stakes_as_they_are(cli, tmp_path):
    """A consortium counting in units: demand 2.6 showed as "3" and 2.7 allocated as "3"; a stake of
    0.0001% as "0%"; a zero-demand project had a full bar beside "-"; "1 pools qualify"."""
    text, _ = CLASSIC["max-min water-filling"]
    text += '\n[[projects]]\nid = "idle"\nsponsors = { a = 1 }\ndemand = 0\nweight = 1\n'
    manifest = tmp_path / "case.toml"
    manifest.write_text(text, encoding="utf-8")
    shown = cli("alloc", "solve", manifest, db_path=None)
    assert shown.exit_code == 0, shown.stderr
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line.strip()[:2] in ("j1", "j2", "j3", "j4", "id")}
    assert rows["j2"][1:3] == ["2.6", "2.6"] and rows["j3"][1:3] == ["4", "2.7"] and rows["j4"][1:3] == ["5", "2.7"]
    assert rows["idle"] == ["idle", "0", "0", "-", "demand"]  # no bar for a demand of nothing

    unequal = tmp_path / "unequal.toml"
    unequal.write_text("""[policy]
contribution_weight = 1
[[accelerators]]
id = "g"
rate = 1
[[members]]
id = "big"
name = "Big"
[[members]]
id = "zero"
name = "Zero"
[[pools]]
id = "big-g"
member = "big"
accelerator = "g"
capacity = 1000
[[projects]]
id = "big-main"
sponsors = { big = 1 }
demand = 5000
[[projects]]
id = "unequal"
sponsors = { big = 1000, zero = 0.001 }
demand = 400
[[projects]]
id = "nowhere"
sponsors = { big = 1 }
demand = 10
speed = { h100 = 1 }
[[accelerators]]
id = "h100"
rate = 2
""", encoding="utf-8")
    assert cli("init").exit_code == 0
    assert cli("apply", unequal).exit_code == 0
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    words = " ".join(cli("alloc", "explain", "unequal").stdout.split())
    assert "zero (stake 0.0001%, share 0.00%)" in words
    assert "a share of 0: served from what the members with a share leave" in words
    assert "1 pool qualifies" in words and "level per unit of share -" not in words
    # its 0.1 units are the solver's tolerance times the stake ratio: not a tie with big-main at
    # level 2,000 (review: "level with others ... whose claim is as strong as its own")
    limit = cli("alloc", "explain", "unequal", "--json").json()["limit"]
    assert limit["kind"] == "tie" and [x["id"] for x in limit["losers"]] == ["big-main"]
    assert limit["losers"][0]["level"] > 1000
    assert "level with others" not in words
    assert ("It stopped where the solver's tolerance leaves it, amplified by its sponsors' very unequal "
            "stakes (one 1,000,000 times another)") in words
    nowhere = " ".join(cli("alloc", "explain", "nowhere").stdout.split())
    assert "It got nothing: no pool qualifies for it" in nowhere and "0 pools qualify" in nowhere
    assert "are exhausted" not in nowhere


def test_tables_show_journal_times_to_the_second_and_an_empty_list_says_so(ledger):
    """ISO times with microseconds (27 characters) wrapped mid-value at 80 columns; the JSON keeps them."""
    import re

    cli = ledger
    empty = cli("alloc", "list")
    assert empty.exit_code == 0 and empty.stdout == "" and "No allocation has been recorded yet" in empty.stderr
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    for args in (("alloc", "list"), ("ledger", "log", "--limit", "3"), ("alloc", "show")):
        text = cli(*args).stdout
        assert re.search(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b", text), args
        assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}Z", text), args
    [run] = cli("alloc", "list", "--json").json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", run["time"])


def test_a_table_too_wide_for_the_terminal_is_printed_whole_never_cut(monkeypatch):
    """At 80 columns Rich cut the audit's tables as a last resort: `own use` 29,312 read "29,", a
    fair-share factor "0.", ids lost their ends without a sign. Now text other than the ids folds
    (to 16 characters at least) and what still does not fit is printed wider than the terminal,
    every figure and id whole."""
    import io

    from rich.console import Console

    from pooler.cli import output

    console = Console(width=80, file=io.StringIO(), color_system=None, soft_wrap=False)
    monkeypatch.setattr(output, "out", console)
    columns = ["member", "name", "share", "contributed", "entitled", "allocated", "used", "own use",
               "lent", "borrowed", "balance"]
    figures = ["11.1%", "1,446,912", "1,359,823", "1,500,000", "1,265,177", "29,312", "310,417",
               "2,998,839", "-2,688,422"]
    rows = [("tencent-cloud-shenzhen", "Tencent Cloud Computing (Beijing) Co.", *figures)]
    output.show(output.table("Member statements", columns, rows, numeric=columns[2:]))
    text = console.file.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) > 80  # wider than the terminal, as it must be
    body = "".join(lines[3:])
    for figure in figures:
        assert f" {figure}" in body
    assert "tencent-cloud-shenzhen" in body  # the id whole, on one line
    assert "Tencent Cloud" in body and "Co." in body  # other text folds
    assert console.width == 80  # the console is left as it was
    # a text column whose heading is longer than the 16 characters text folds to (review: `pooler
    # demo` at 60 columns cut 1,367,040 to "1,367")
    console.file = io.StringIO()
    console.width = 60
    output.show(output.table("Capacity by region", ["region", "device-hours by accelerator", "NCU"],
                             [("beijing-tianjin-hebei", "a100 76,800, h800 368,640, mlu370 737,280", "1,367,040")],
                             numeric=["NCU"]))
    assert "1,367,040" in console.file.getvalue() and console.width == 60
    console.width = 80
    # a table that fits is printed as before, within the terminal
    console.file = io.StringIO()
    output.show(output.table("Small", ["member", "share"], [("pcl", "24.4%")], numeric=["share"]))
    assert max(len(line) for line in console.file.getvalue().splitlines()) <= 80


def test_grant_units_are_device_hours_times_the_decimal_rate_exactly(cli):
    """Review: a grant's units carried the binary product's noise (521,391 x 0.95 read
    495321.44999999995); an auditor recomputing them from the manifest's decimal rates and speeds
    now gets the very figure."""
    from decimal import Decimal

    from pooler.io.manifest import load_manifest

    snapshot = load_manifest(EXAMPLES / "c2net.toml")
    rate = {a.id: a.rate for a in snapshot.accelerators}
    accelerator = {p.id: p.accelerator for p in snapshot.pools}
    speed = {j.id: dict(j.speed) if j.speed is not None else None for j in snapshot.projects}
    data = cli("alloc", "solve", EXAMPLES / "c2net.toml", "--json", db_path=None).json()
    noisy = 0
    for g in data["grants"]:
        a = accelerator[g["pool"]]
        factor = Decimal(1) if speed[g["project"]] is None else speed[g["project"]][a]
        exact = Decimal(g["device_hours"]) * rate[a] * factor
        assert Decimal(repr(g["units"])) == exact.normalize() or float(exact) == g["units"]
        noisy += len(repr(g["units"]).split(".")[-1]) > 6
    assert noisy == 0 and any(rate[accelerator[g["pool"]]] % 1 for g in data["grants"])


def test_runs_recorded_before_the_period_kind_changed_are_still_read(ledger, tmp_path):
    """Review: with labels checked against the consortium's kind, a ledger that moved from months to
    quarters could no longer show, explain or audit its recorded months. A recorded run's label is
    taken whatever the kind is now; other labels are checked against it."""
    cli = ledger
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    quarters = tmp_path / "quarters.toml"
    quarters.write_text('[consortium]\nname = "China Computing NET (illustrative)"\nperiod = "quarter"\n',
                        encoding="utf-8")
    changed = cli("apply", quarters)
    assert changed.exit_code == 0, changed.stderr
    for args in (("alloc", "show", "--period", "2026-11"), ("alloc", "explain", "aquila-3", "--period", "2026-11"),
                 ("alloc", "diff", "2026-11", " 2026-11"), ("report", "audit", "--period", "2026-11")):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
    other = cli("alloc", "show", "--period", "2026-10")
    assert other.exit_code == 2 and "is a month, but this consortium's periods are quarters" in other.stderr


def test_the_latest_period_is_the_latest_in_time_whatever_the_kind(ledger, tmp_path):
    """Review: "the latest recorded period" was the largest label as text, so after a move from months
    to weeks `alloc show` and `alloc inputs` picked 2026-W40 (September) over 2026-12."""
    cli = ledger
    assert cli("alloc", "run", "--period", "2026-12").exit_code == 0
    weeks = tmp_path / "weeks.toml"
    weeks.write_text('[consortium]\nname = "China Computing NET (illustrative)"\nperiod = "week"\n'
                     "period_hours = 720\n", encoding="utf-8")  # (the example's pools run up to 720 h)
    assert cli("apply", weeks).exit_code == 0
    assert cli("alloc", "run", "--period", "2026-W40").exit_code == 0
    assert cli("alloc", "show", "--json").json()["period"] == "2026-12"
    assert cli("alloc", "inputs", "-f", "json").stdout == cli("alloc", "inputs", "-f", "json", "--period", "2026-12").stdout
    missing = cli("alloc", "show", "--period", "2026-W41")
    assert missing.exit_code == 1 and "(recorded: 2026-W40, 2026-12)" in missing.stderr


def test_a_damaged_period_kind_is_one_error_line_and_recorded_runs_still_read(ledger):
    """Review: a consortium row whose period reads 'decade' (behind pooler's back) made `alloc show
    --period` a KeyError traceback."""
    cli = ledger
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    tamper(cli.db, "update consortium set period = 'decade'")
    assert cli("alloc", "show", "--period", "2026-11").exit_code == 0
    for args in (("alloc", "run", "--dry-run"), ("alloc", "show", "--period", "2026-10")):
        result = cli(*args)
        assert result.exit_code in (1, 2) and result.stderr.startswith("Error: ")
        assert "'decade'" in result.stderr and result.stderr.count("\n") == 1


def test_alloc_solve_of_a_file_without_consortium_checks_hours_against_the_default_period(cli, tmp_path):
    """Review: the file is the whole consortium to `alloc solve`; without [consortium] its pools'
    hours were not checked, and 8 devices x 5,000 h gave 40,000 device-hours in a 720-hour month."""
    path = tmp_path / "nocons.toml"
    path.write_text('[[accelerators]]\nid = "g"\nrate = 1\n[[members]]\nid = "a"\nname = "A"\n'
                    '[[pools]]\nid = "p"\nmember = "a"\naccelerator = "g"\ndevices = 8\nhours = 5000\n'
                    '[[projects]]\nid = "j"\nsponsors = { a = 1 }\ndemand = 10\n', encoding="utf-8")
    result = cli("alloc", "solve", path, "--json", db_path=None)
    assert result.exit_code == 1 and result.stdout == ""
    assert '"p": hours: 5000 is more than the 720 hours of a period' in result.stderr
