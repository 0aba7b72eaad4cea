"""Every command through Typer's runner: output, exit codes 0/1/2, and no traceback on failure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.backends import db_digest, tamper
from tests.conftest import EXAMPLES

SMALL = """
[consortium]
name = "Test Alliance"
unit = "NCU"

[policy]
contribution_weight = 0.9

[[accelerators]]
id = "a800"
rate = 1.2

[[members]]
id = "pcl"
name = "Peng Cheng Laboratory"
kind = "state-lab"
region = "greater-bay"

[[members]]
id = "tiny"
name = "Tiny AI"
region = "guizhou"

[[pools]]
id = "pcl-a800"
member = "pcl"
accelerator = "a800"
devices = 10
reserve = 0.25

[[datasets]]
id = "corpus"
member = "pcl"
access = ["pcl"]
residency = ["greater-bay"]
credit = 100

[[projects]]
id = "mind"
sponsors = { pcl = 1 }
demand = 5000
datasets = ["corpus"]
"""


def digest(db) -> str:
    """A digest of everything the ledger holds (the SQLite file's bytes, or PostgreSQL's rows)."""
    return db_digest(db)


@pytest.fixture
def applied(cli, tmp_path):
    manifest = tmp_path / "m.toml"
    manifest.write_text(SMALL, encoding="utf-8")
    assert cli("init").exit_code == 0
    result = cli("apply", manifest)
    assert result.exit_code == 0, result.stderr
    return manifest


def test_help_lists_every_command_group(cli):
    result = cli("--help", db_path=None)
    assert result.exit_code == 0
    for name in ("init", "apply", "demo", "member", "pool", "dataset", "model", "project",
                 "accelerator", "ledger", "alloc", "usage", "report", "export"):
        assert name in result.stdout


@pytest.mark.parametrize("args", [
    ["init"], ["apply"], ["demo"],
    *[[kind, verb] for kind in ("member", "pool", "dataset", "model", "project")
      for verb in ("add", "list", "show", "retire")],
    ["accelerator", "add"], ["accelerator", "list"],
    ["ledger", "log"], ["ledger", "verify"], ["ledger", "export"], ["ledger", "checkpoint"],
    ["ledger", "keygen"],
    *[["alloc", verb] for verb in ("solve", "run", "show", "list", "explain", "diff")],
    ["usage", "import"], ["usage", "fairshare"],
    ["report", "audit"], ["report", "member"], ["report", "fairshare"],
    ["export", "slurm"], ["export", "kueue"],
])
def test_every_command_has_help_with_an_example(cli, args):
    result = cli(*args, "--help", db_path=None)
    assert result.exit_code == 0
    assert "Example" in result.stdout, f"{args} help has no example"


def _command_paths():
    """Every command's path below the root, leaves and groups, from the command tree itself."""
    import typer
    from typer import _click

    from pooler.cli.app import app

    def walk(cmd, path):
        yield path
        if hasattr(cmd, "list_commands"):
            ctx = _click.Context(cmd)
            for name in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, name), [*path, name])

    return list(walk(typer.main.get_command(app), []))


def test_help_shows_what_an_option_takes_and_no_value_for_a_flag(cli):
    """Typer 0.29 shows `<bool>` beside every flag (as if `--dry-run` took a value) and the Python
    type beside other options (`--period <str>`): every help page shows a metavar for what an option
    takes (PERIOD, FILE, ...) and nothing beside a flag."""
    paths = _command_paths()
    assert len(paths) > 40
    for path in paths:
        out = cli(*path, "--help", db_path=None).stdout
        assert not re.search(r"<(str|bool|path|int|float|list)\b", out), (path, out)
    run = cli("alloc", "run", "--help", db_path=None).stdout
    assert re.search(r"--period +PERIOD ", run) and re.search(r"--reason +TEXT ", run)
    assert re.search(r"--dry-run +Solve and show", run) and re.search(r"--json +Print", run)
    assert re.search(r"--format +-f +FORMAT ", cli("report", "audit", "--help", db_path=None).stdout)


def test_version(cli):
    result = cli("--version", db_path=None)
    assert result.exit_code == 0 and result.stdout.startswith("pooler ")


def test_init_creates_and_refuses_twice(cli):
    assert cli("init").exit_code == 0
    assert cli("ledger", "verify").exit_code == 0
    again = cli("init")
    assert again.exit_code == 1
    assert again.stderr.startswith("Error:")


def test_a_table_renamed_behind_pooler_s_back_is_one_error_not_a_traceback(cli):
    """A ledger whose table of project sponsors was renamed: `ledger verify` and `project show` say
    in one line what the database refused (SQLite's "no such table" through the store's wording,
    PostgreSQL's "relation ... does not exist" through the command line's), exit 1, and leave the
    ledger as it was."""
    assert cli("init").exit_code == 0 and cli("apply", EXAMPLES / "small.toml").exit_code == 0
    tamper(cli.db, "ALTER TABLE project_sponsor RENAME TO project_sponsor_old")
    before = cli.digest()
    for args in (("ledger", "verify"), ("project", "show", "lingnan-llm")):
        res = cli(*args)
        assert res.exit_code == 1, (args, res.stdout, res.stderr)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert lines and lines[0].startswith("Error: ") and "project_sponsor" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    assert cli.digest() == before


def test_commands_on_a_missing_ledger_say_so(cli):
    before = cli.digest()  # "absent" for SQLite: no file; an empty database on PostgreSQL
    result = cli("member", "list")
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "pooler init" in result.stderr
    assert cli.digest() == before


def test_pooler_db_environment_variable(cli, tmp_path, monkeypatch):
    path = tmp_path / "env.db"
    monkeypatch.setenv("POOLER_DB", str(path))
    assert cli("init", db_path=None).exit_code == 0
    assert path.exists()


def test_apply_records_plan_then_nothing_the_second_time(cli, applied):
    again = cli("apply", applied)
    assert again.exit_code == 0
    assert "No changes" in again.stderr
    log = cli("ledger", "log", "--all", "--json").json()
    kinds = [e["kind"] for e in log]
    assert kinds.count("member.add") == 2 and kinds[-1] == "ledger.init"
    seqs = [e["seq"] for e in log]
    assert seqs == sorted(seqs, reverse=True)


def test_apply_dry_run_shows_plan_and_writes_nothing(cli, tmp_path):
    manifest = tmp_path / "m.toml"
    manifest.write_text(SMALL, encoding="utf-8")
    cli("init")
    before = digest(cli.db)
    result = cli("apply", manifest, "--dry-run")
    assert result.exit_code == 0
    assert "+ member pcl" in result.stdout and "Plan: 6 to add" in result.stdout
    assert digest(cli.db) == before


def test_apply_shows_changes_with_before_and_after(cli, applied):
    applied.write_text(SMALL.replace("reserve = 0.25", "reserve = 0.5"), encoding="utf-8")
    result = cli("apply", applied, "--json")
    assert result.exit_code == 0
    plan = result.json()
    assert plan["summary"] == {"add": 0, "change": 1, "retire": 0}
    change = plan["changes"][0]
    assert (change["kind"], change["id"], change["keys"]) == ("pool", "pcl-a800", ["reserve"])
    assert change["before"]["reserve"] == "0.25" and change["after"]["reserve"] == "0.5"
    shown = cli("pool", "show", "pcl-a800", "--json").json()
    assert shown["reserve"] == "0.5"
    assert [h["kind"] for h in shown["history"]] == ["pool.add", "pool.change"]


def test_apply_prune_retires_what_the_file_drops(cli, applied):
    text = SMALL.replace('[[members]]\nid = "tiny"\nname = "Tiny AI"\nregion = "guizhou"\n', "")
    applied.write_text(text, encoding="utf-8")
    kept = cli("apply", applied)
    assert kept.exit_code == 0 and "No changes" in kept.stderr
    pruned = cli("apply", applied, "--prune")
    assert pruned.exit_code == 0 and "- member tiny" in pruned.stdout
    assert [m["id"] for m in cli("member", "list", "--json").json()] == ["pcl"]
    everyone = cli("member", "list", "--all", "--json").json()
    assert [m["id"] for m in everyone] == ["pcl", "tiny"]


def test_refused_apply_leaves_the_ledger_byte_for_byte_unchanged(cli, applied, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("reserve = 0.25", "reserve = 1.5").replace("rate = 1.2", "rate = -1"),
                   encoding="utf-8")
    before = digest(cli.db)
    result = cli("apply", bad)
    assert result.exit_code == 1
    assert "reserve" in result.stderr and "rate" in result.stderr
    assert digest(cli.db) == before


def test_apply_missing_file_is_a_usage_error(cli):
    cli("init")
    result = cli("apply", "nowhere.toml")
    assert result.exit_code == 2


@pytest.mark.parametrize("args,words", [
    (["usage", "import", "{tmp}", "--format", "csv"], "is a folder, not a usage file"),
    (["usage", "import", "{tmp}/none.csv", "--format", "csv"], "no usage file at"),
    (["usage", "import", "{csv}", "--format", "sacct", "--map", "{tmp}"], "is a folder, not a map file"),
    (["usage", "import", "{csv}", "--format", "sacct", "--map", "{tmp}/none.toml"], "no map file at"),
    (["report", "audit", "--format", "md", "-o", "{tmp}"], "it is a directory"),
    (["ledger", "export", "--format", "toml", "-o", ""], "cannot write .: it is a directory"),
    (["ledger", "checkpoint", "-o", ""], "cannot write .: it is a directory"),
])
def test_a_missing_input_or_a_folder_is_one_error_line(cli, applied, tmp_path, args, words):
    (tmp_path / "use.csv").write_text("project,pool,device_hours,start,end\n", encoding="utf-8")
    if args[0] == "report":
        assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    before = digest(cli.db)
    result = cli(*[a.format(tmp=tmp_path, csv=tmp_path / "use.csv") for a in args])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and words in result.stderr
    assert result.stderr.count("\n") == 1 and "╭" not in result.stderr
    assert digest(cli.db) == before


def test_manifest_with_usage_is_refused_by_apply(cli, tmp_path):
    cli("init")
    manifest = tmp_path / "u.toml"
    manifest.write_text(SMALL + "\n[usage]\npcl = 10\n", encoding="utf-8")
    result = cli("apply", manifest)
    assert result.exit_code == 1 and "usage import" in result.stderr


def test_member_add_list_show_retire(cli):
    cli("init")
    added = cli("member", "add", "pcl", "--name", "Peng Cheng Lab", "--kind", "state-lab",
                "--region", "greater-bay")
    assert added.exit_code == 0, added.stderr
    listed = cli("member", "list", "--json").json()
    assert listed == [{"id": "pcl", "name": "Peng Cheng Lab", "kind": "state-lab",
                       "region": "greater-bay"}]
    table = cli("member", "list")
    assert "Peng Cheng Lab" in table.stdout
    assert cli("member", "show", "pcl").exit_code == 0
    assert cli("member", "retire", "pcl").exit_code == 0
    assert cli("member", "list", "--json").json() == []
    reuse = cli("member", "add", "pcl", "--name", "Again")
    assert reuse.exit_code == 1
    assert reuse.stderr.startswith('Error: pooler member add: [[members]] "pcl": id: was retired; ids are never reused')


def test_a_manifest_re_adding_a_retired_id_names_the_file_and_table(cli, applied):
    """Review: `apply` of a manifest that adds a retired id said `project "x" was retired...`,
    naming neither the file nor the table."""
    assert cli("project", "retire", "mind").exit_code == 0
    before = digest(cli.db)
    again = cli("apply", applied)
    assert again.exit_code == 1
    assert again.stderr.startswith(f'Error: {applied}: [[projects]] "mind": id: was retired; ids are never reused')
    assert digest(cli.db) == before


def test_an_actor_that_is_not_one_printable_line_is_refused(cli, applied, monkeypatch):
    """Review: POOLER_ACTOR with a newline was recorded in the journal, breaking every line showing it.
    It is refused where an entry would be written; commands that write nothing still run."""
    before = digest(cli.db)
    for actor in ("ana\nmallory", "ana\x1b[31m", " ana"):
        monkeypatch.setenv("POOLER_ACTOR", actor)
        result = cli("member", "add", "x", "--name", "X")
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: the actor {actor!r} is not one line of printable text")
        assert cli("ledger", "verify").exit_code == 0 and cli("member", "list").exit_code == 0
    assert digest(cli.db) == before
    monkeypatch.setenv("POOLER_ACTOR", "ana@pcl (lab)")
    assert cli("member", "add", "x", "--name", "X").exit_code == 0


def test_duplicate_add_is_refused(cli):
    cli("init")
    cli("member", "add", "pcl", "--name", "PCL")
    result = cli("member", "add", "pcl", "--name", "PCL")
    assert result.exit_code == 1 and "already exists" in result.stderr


def test_pool_dataset_model_project_accelerator_add(cli):
    cli("init")
    assert cli("member", "add", "pcl", "--name", "PCL", "--region", "greater-bay").exit_code == 0
    assert cli("member", "add", "hw", "--name", "Huawei").exit_code == 0
    assert cli("accelerator", "add", "ascend-910b", "--rate", "1.0").exit_code == 0
    assert cli("pool", "add", "p1", "--member", "pcl", "--accelerator", "ascend-910b",
               "--devices", "8", "--reserve", "0.2").exit_code == 0
    assert cli("dataset", "add", "d1", "--member", "pcl", "--access", "pcl,hw",
               "--residency", "greater-bay", "--credit", "50").exit_code == 0
    assert cli("model", "add", "m1", "--member", "hw", "--access", "open").exit_code == 0
    result = cli("project", "add", "j1", "--sponsor", "pcl=0.7", "--sponsor", "hw=0.3",
                 "--demand", "100", "--speed", "ascend-910b=1", "--dataset", "d1", "--model", "m1")
    assert result.exit_code == 0, result.stderr
    project = cli("project", "show", "j1", "--json").json()
    assert project["sponsors"] == {"hw": "0.3", "pcl": "0.7"}
    assert project["datasets"] == ["d1"] and project["models"] == ["m1"]
    accelerators = cli("accelerator", "list", "--json").json()
    assert accelerators[0]["id"] == "ascend-910b" and accelerators[0]["rate"] == "1"
    assert cli("ledger", "verify").exit_code == 0


@pytest.mark.parametrize("args,fragment", [
    (["pool", "add", "p", "--member", "ghost", "--accelerator", "a800", "--capacity", "5"],
     'Error: pooler pool add: [[pools]] "p": member: unknown member "ghost"'),
    (["pool", "add", "p", "--member", "pcl", "--accelerator", "a800", "--capacity", "-5"], "capacity"),
    (["pool", "add", "p", "--member", "pcl", "--accelerator", "a800", "--capacity", "5",
      "--reserve", "2"], "reserve"),
    (["project", "add", "j", "--sponsor", "pcl=0", "--demand", "5"], "stake"),
    (["project", "add", "j", "--sponsor", "tiny=1", "--demand", "5", "--dataset", "corpus"], "corpus"),
    (["project", "add", "j", "--sponsor", "tiny=1", "--demand", "5", "--dataset", "nothing"],
     'Error: pooler project add: [[projects]] "j": datasets: unknown dataset "nothing"'),
])
def test_bad_adds_are_refused_and_write_nothing(cli, applied, args, fragment):
    before = digest(cli.db)
    result = cli(*args)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert fragment in result.stderr
    assert digest(cli.db) == before


@pytest.mark.parametrize("args", [
    ["pool", "add", "p", "--member", "pcl", "--accelerator", "a800", "--capacity", "lots"],
    ["project", "add", "j", "--sponsor", "pcl", "--demand", "5"],
    ["ledger", "export", "--format", "xml"],
    ["member", "frobnicate"],
    ["ledger", "log", "--limit", "0"],
])
def test_usage_errors_exit_2(cli, applied, args):
    result = cli(*args)
    assert result.exit_code == 2


@pytest.mark.parametrize("option, value", [
    ("--rate", "inf"), ("--rate", "sNaN"), ("--capacity", "-Infinity"), ("--devices", "inf"),
    ("--hours", "nan"), ("--reserve", "NaN"), ("--cost", "Infinity"), ("--demand", "inf"),
    ("--weight", "inf"), ("--sponsor", "pcl=inf"), ("--speed", "a800=inf"), ("--credit", "inf"),
    ("--rate", "\u0663"), ("--capacity", "0x10"), ("--demand", "1__0"),
    ("--rate", "1e1000000"), ("--demand", "1e-999999999"),
])
def test_non_finite_and_foreign_numbers_are_usage_errors(cli, applied, option, value):
    """Review: "inf" or "sNaN" given to any number option of an `add` command was a traceback
    (Python's Decimal takes them, and other scripts' digits too); each is now one Error line naming
    the option, exit 2, nothing written."""
    args = {
        "--rate": ["accelerator", "add", "x"],
        "--capacity": ["pool", "add", "p", "--member", "pcl", "--accelerator", "a800"],
        "--devices": ["pool", "add", "p", "--member", "pcl", "--accelerator", "a800"],
        "--hours": ["pool", "add", "p", "--member", "pcl", "--accelerator", "a800", "--devices", "2"],
        "--reserve": ["pool", "add", "p", "--member", "pcl", "--accelerator", "a800", "--capacity", "5"],
        "--cost": ["pool", "add", "p", "--member", "pcl", "--accelerator", "a800", "--capacity", "5"],
        "--demand": ["project", "add", "j", "--sponsor", "pcl=1"],
        "--weight": ["project", "add", "j", "--sponsor", "pcl=1", "--demand", "5"],
        "--sponsor": ["project", "add", "j", "--demand", "5"],
        "--speed": ["project", "add", "j", "--sponsor", "pcl=1", "--demand", "5"],
        "--credit": ["dataset", "add", "d", "--member", "pcl"],
    }[option]
    before = digest(cli.db)
    result = cli(*args, option, value)
    assert result.exit_code == 2, result.stdout + result.stderr
    number = value.rpartition("=")[2]
    assert result.stderr.strip() == f"Error: {option}: {number!r} is " + (
        "out of range" if "e" in number and number[0].isdigit() else
        "not a finite number" if number.isascii() and number.lstrip("+-").isalpha() else "not a number")
    assert digest(cli.db) == before
    # a number in decimal notation (underscores between digits, as TOML has them) is no usage error
    assert cli(*args, option, "1_0" if "=" not in value else value.replace("inf", "1")).exit_code != 2


def test_a_project_whose_speed_table_runs_it_nowhere_is_refused_when_added_or_changed(cli, applied, tmp_path):
    """Review: `speed = {}` or a table of zeros was taken, and `project list` showed it like no table
    (which runs on every type). It is refused where a project is added or its table changed; a
    ledger that holds one from before is not blocked on other changes, and `alloc solve` (which must
    solve a recorded run's inputs as they were) solves it: the project gets nothing."""
    before = digest(cli.db)
    refused = cli("project", "add", "z", "--sponsor", "pcl=1", "--demand", "5", "--speed", "a800=0")
    assert refused.exit_code == 1
    assert refused.stderr.startswith('Error: pooler project add: [[projects]] "z": speed: can run nowhere: no '
                                     "accelerator type in its speed table has a speed above 0")
    for table in ("speed = {}", "speed = { a800 = 0 }"):
        applied.write_text(SMALL.replace("demand = 5000\n", f"demand = 5000\n{table}\n"), encoding="utf-8")
        result = cli("apply", applied)
        assert result.exit_code == 1
        assert result.stderr.startswith(f'Error: {applied}: [[projects]] "mind": speed: can run nowhere')
    assert digest(cli.db) == before
    # a ledger holding one from before the rule (written as the store takes it)
    from pooler.services.context import Context
    from pooler.services.registry import open_ledger

    with open_ledger(Context(db=str(cli.db), actor="old@pooler")) as ledger, ledger.writer("old@pooler") as w:
        w.append("project.add", {"record": {"id": "old", "sponsors": {"pcl": "1"}, "demand": "5", "speed": {}}})
    applied.write_text(SMALL.replace("rate = 1.2", "rate = 1.4"), encoding="utf-8")
    assert cli("apply", applied).exit_code == 0  # not blocked by "old"
    solved = tmp_path / "state.json"
    assert cli("ledger", "export", "--format", "json", "-o", solved).exit_code == 0
    result = cli("alloc", "solve", solved, "--json", db_path=None)
    assert result.exit_code == 0 and result.json()["projects"]["old"]["allocated"] == 0


@pytest.mark.parametrize("args", [
    ["project", "add", "j", "--sponsor", "pcl=1", "--demand", "5", "--region", ""],
    ["project", "add", "j", "--sponsor", "pcl=1", "--demand", "5", "--region", "greater-bay,"],
    ["project", "add", "j", "--sponsor", "pcl=1", "--demand", "5", "--dataset", " "],
    ["project", "add", "j", "--sponsor", "pcl=1", "--demand", "5", "--model", ""],
    ["dataset", "add", "d", "--member", "pcl", "--residency", ""],
    ["dataset", "add", "d", "--member", "pcl", "--access", ""],
    ["model", "add", "m", "--member", "pcl", "--access", "pcl,,tiny"],
])
def test_an_empty_list_value_is_a_usage_error(cli, applied, args):
    """Review: `project add --region ""` stored a project with no region limit at all (a manifest's
    `regions = [""]` is refused), and `--access ""` made a dataset open to the consortium."""
    before = digest(cli.db)
    result = cli(*args)
    option = next(a for a in args if a.startswith("--") and a not in ("--sponsor", "--demand", "--member"))
    assert result.exit_code == 2 and result.stderr.strip() == f"Error: {option}: an empty value (leave the option out for none)"
    assert digest(cli.db) == before


def test_a_dataset_option_takes_each_value_as_one_id(cli, applied):
    """Ids may hold commas (a manifest takes them): `--dataset` and `--model` no longer split on them."""
    assert cli("dataset", "add", "corpus,v2", "--member", "pcl").exit_code == 0
    added = cli("project", "add", "j", "--sponsor", "pcl=1", "--demand", "5", "--dataset", "corpus,v2")
    assert added.exit_code == 0, added.stderr
    assert cli("project", "show", "j", "--json").json()["datasets"] == ["corpus,v2"]
    regions = cli("project", "add", "k", "--sponsor", "pcl=1", "--demand", "5", "--region", "a, b", "--region", "c")
    assert regions.exit_code == 0 and cli("project", "show", "k", "--json").json()["regions"] == ["a", "b", "c"]


def test_retire_refused_while_named_in_an_access_list(cli, applied):
    """A member named only in a dataset's or model's access list is still in use: retiring it left a
    list naming a member that no longer exists, and later adds and applies tripped over it."""
    assert cli("member", "add", "reader", "--name", "Reader").exit_code == 0
    assert cli("dataset", "add", "shared", "--member", "pcl", "--access", "reader").exit_code == 0
    assert cli("model", "add", "weights", "--member", "pcl", "--access", "reader").exit_code == 0
    before = digest(cli.db)
    result = cli("member", "retire", "reader")
    assert result.exit_code == 1
    assert 'member "reader" is still used by dataset "shared", model "weights"; retire those first' in result.stderr
    assert digest(cli.db) == before
    assert cli("dataset", "retire", "shared").exit_code == 0 and cli("model", "retire", "weights").exit_code == 0
    assert cli("member", "retire", "reader").exit_code == 0
    assert cli("ledger", "verify").exit_code == 0


def test_retire_refused_while_in_use(cli, applied):
    result = cli("member", "retire", "pcl")
    assert result.exit_code == 1 and "still used by" in result.stderr
    assert cli("project", "retire", "mind").exit_code == 0
    assert cli("dataset", "retire", "corpus").exit_code == 0
    assert cli("pool", "retire", "pcl-a800").exit_code == 0
    assert cli("member", "retire", "pcl").exit_code == 0


def test_show_unknown_record(cli, applied):
    result = cli("member", "show", "nobody")
    assert result.exit_code == 1 and "nobody" in result.stderr


def test_ids_with_quotes_markup_and_sql_are_verbatim(cli):
    cli("init")
    odd = "x'); DROP TABLE journal; -- [red]\"鹏城\""
    assert cli("member", "add", odd, "--name", "[bold]odd[/bold]").exit_code == 0
    assert cli("member", "list", "--json").json()[0]["id"] == odd
    table = cli("member", "list")
    assert "[bold]odd[/bold]" in table.stdout
    assert cli("member", "show", odd, "--json").json()["name"] == "[bold]odd[/bold]"
    assert cli("ledger", "verify").exit_code == 0


def test_verify_ok_and_tampering_exit_1(cli, applied):
    ok = cli("ledger", "verify")
    assert ok.exit_code == 0 and "OK" in ok.stdout
    tamper(cli.db, "update journal set payload = replace(payload, 'Tiny AI', 'Tiny Co') where kind = 'member.add'")
    bad = cli("ledger", "verify")
    assert bad.exit_code == 1
    assert "Error:" in bad.stderr and "#" in bad.stderr


def test_export_toml_round_trips_into_a_new_ledger(cli, applied, tmp_path):
    exported = tmp_path / "state.toml"
    assert cli("ledger", "export", "--format", "toml", "-o", exported).exit_code == 0
    other = tmp_path / "other.db"
    assert cli("init", db_path=other).exit_code == 0
    assert cli("apply", exported, db_path=other).exit_code == 0
    for kind in ("accelerator", "member", "pool", "dataset", "model", "project"):
        assert cli(kind, "list", "--json").json() == cli(kind, "list", "--json", db_path=other).json()
    again = cli("ledger", "export", "--format", "toml", db_path=other).stdout
    assert again == exported.read_text(encoding="utf-8")


def test_export_jsonl_is_the_whole_journal(cli, applied):
    lines = cli("ledger", "export", "--format", "jsonl").stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert all(len(e["hash"]) == 64 for e in entries)


def test_rates_that_change_over_time_are_shown_and_the_export_warns_of_them(cli, applied, tmp_path):
    """Review: `accelerator show` gave only the latest rate decided, even one that starts in a later
    period, and `ledger export` dropped the earlier rates without a word, so a ledger made from the
    export charged the later rate in every period."""
    quiet = cli("ledger", "export", "--format", "toml")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    applied.write_text(SMALL.replace("rate = 1.2", "rate = 1.3"), encoding="utf-8")
    assert cli("apply", applied).exit_code == 0  # (no --rates-from: from the current period)
    applied.write_text(SMALL.replace("rate = 1.2", "rate = 2.4"), encoding="utf-8")
    assert cli("apply", applied, "--rates-from", "2027-01").exit_code == 0
    shown = cli("accelerator", "show", "a800", "--json").json()
    assert shown["rate"] == "2.4"
    assert [(r["from"], r["rate"]) for r in shown["rates"]][-1] == ("2027-01", "2.4")
    assert shown["rates"][0] == {"from": None, "rate": "1.2", "seq": shown["history"][0]["seq"]}
    table = cli("accelerator", "show", "a800")
    assert "1.2 from the start (#" in table.stdout and "2.4 from 2027-01 (#" in table.stdout
    for fmt in ("toml", "json"):
        warned = cli("ledger", "export", "--format", fmt, "-o", tmp_path / f"state.{fmt}")
        assert warned.exit_code == 0
        assert warned.stderr.startswith("Warning: accelerator 'a800' has rates that change over time (1.2 from")
        assert "the latest decided (2.4)" in warned.stderr and "--rates-from" in warned.stderr
    assert "Warning" not in cli("ledger", "export", "--format", "jsonl").stderr


def test_a_file_without_consortium_or_policy_keeps_each_and_dates_rates_in_the_ledger_s_periods(cli, tmp_path):
    """Review: on a weekly consortium, a manifest without [consortium] could not change a rate (its
    change was dated by months, and `--rates-from 2026-W50` was refused as "periods are months"),
    and a manifest with only [policy] reset the consortium's name, unit and period kind to the
    defaults."""
    cli("init")
    week = tmp_path / "week.toml"
    week.write_text('[consortium]\nname = "W"\nperiod = "week"\nunit = "GPUh"\n'
                    '[[accelerators]]\nid = "a100"\nrate = 1\n', encoding="utf-8")
    assert cli("apply", week).exit_code == 0
    rate = tmp_path / "rate.toml"
    rate.write_text('[[accelerators]]\nid = "a100"\nrate = 2\n', encoding="utf-8")
    changed = cli("apply", rate, "--rates-from", "2026-W50")
    assert changed.exit_code == 0, changed.stderr
    rates = cli("accelerator", "show", "a100", "--json").json()["rates"]
    assert [(r["from"], r["rate"]) for r in rates] == [(None, "1"), ("2026-W50", "2")]
    month = cli("apply", rate, "--rates-from", "2026-12")
    assert month.exit_code == 2 and "this consortium's periods are weeks" in month.stderr
    policy = tmp_path / "policy.toml"
    policy.write_text("[policy]\ncontribution_weight = 0.5\n", encoding="utf-8")
    assert cli("apply", policy).exit_code == 0
    state = json.loads(cli("ledger", "export", "--format", "json").stdout)
    assert state["consortium"]["name"] == "W" and state["consortium"]["period"] == "week"
    assert state["consortium"]["unit"] == "GPUh" and state["policy"]["contribution_weight"] == 0.5
    assert cli("ledger", "verify").exit_code == 0


def test_init_names_a_postgresql_ledger_without_its_password(cli):
    """Review: `init` printed the --db URL with its password, twice."""
    if not str(cli.db).startswith("postgresql"):
        pytest.skip("a PostgreSQL URL")
    from sqlalchemy.engine import make_url

    url = make_url(str(cli.db)).set(password="Sekr1tPW").render_as_string(hide_password=False)
    result = cli("init", db_path=url)  # (the test server trusts loopback: any password is let in)
    assert result.exit_code == 0, result.stderr
    assert "Sekr1tPW" not in result.stderr and result.stderr.count(":***@") == 1
    assert "Next: pooler --db THE-SAME-URL apply MANIFEST.toml" in result.stderr


def test_demo_builds_the_example_and_says_what_next(cli, tmp_path):
    folder = tmp_path / "demo"
    result = cli("demo", "--dir", folder, db_path=None)
    assert result.exit_code == 0, result.stderr
    assert "Contributions" in result.stdout and "Projects" in result.stdout
    assert str(folder / "pooler.db") in result.stderr and "Try next" in result.stderr
    assert cli("ledger", "verify", db_path=folder / "pooler.db").exit_code == 0
    again = cli("demo", "--dir", folder, db_path=None)
    assert again.exit_code == 2


@pytest.mark.parametrize("name", ["small.toml", "c2net.toml"])
def test_examples_apply_cleanly_and_verify(cli, name):
    cli("init")
    result = cli("apply", EXAMPLES / name)
    assert result.exit_code == 0, result.stderr
    assert cli("apply", EXAMPLES / name).stderr.startswith("No changes")
    assert cli("ledger", "verify").exit_code == 0


def test_rate_changes_apply_from_a_period_on(cli, applied):
    from pooler.services import registry
    from pooler.services.context import Context

    applied.write_text(SMALL.replace("rate = 1.2", "rate = 1.5"), encoding="utf-8")
    bad = cli("apply", applied, "--rates-from", "2026-W48")
    assert bad.exit_code == 2 and "--rates-from" in bad.stderr
    assert cli("apply", applied, "--rates-from", "2027-01").exit_code == 0
    ctx = Context(db=str(cli.db), actor="tester")
    rate = lambda period: registry.snapshot(ctx, period).by_id("accelerator")["a800"].rate  # noqa: E731
    assert str(rate("2026-12")) == "1.2" and str(rate("2027-01")) == "1.5" and str(rate(None)) == "1.5"
    assert cli("ledger", "verify").exit_code == 0


def test_export_to_an_unwritable_place_is_a_usage_error(cli, applied, tmp_path):
    result = cli("ledger", "export", "-o", tmp_path / "missing" / "state.toml")
    assert result.exit_code == 2 and "cannot write" in result.stderr
    result = cli("ledger", "export", "-o", tmp_path)
    assert result.exit_code == 2 and "directory" in result.stderr


def _recheck(lines) -> list[str]:
    """An auditor's own check of `ledger export --format jsonl --rows`, as README (The ledger) gives
    it: every entry's hash from the one before, every attached table's row count and digest."""
    import hashlib

    def canon(value) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    problems, prev, entries, rows = [], "0" * 64, {}, {}
    for line in lines:
        item = json.loads(line)
        if "attached_to" in item:
            rows.setdefault((item["attached_to"], item["table"]), []).append(canon(item["row"]))
            continue
        body = {k: item[k] for k in ("seq", "time", "actor", "kind", "payload")}
        if item["prev_hash"] != prev or hashlib.sha256((prev + canon(body)).encode()).hexdigest() != item["hash"]:
            problems.append(f"entry #{item['seq']}: hash")
        prev, entries[item["seq"]] = item["hash"], item
    for seq, item in entries.items():
        payload = item["payload"] if isinstance(item["payload"], dict) else {}
        for table, declared in (payload.get("attachments") or {}).items():
            got = rows.get((seq, table), [])
            digest = hashlib.sha256("".join(r + "\n" for r in got).encode()).hexdigest()
            if len(got) != declared["rows"] or digest != declared["digest"]:
                problems.append(f"entry #{seq}: {table}")
    return problems


def test_the_journal_export_with_rows_lets_an_auditor_recompute_every_hash_and_digest(cli, applied, tmp_path,
                                                                                       monkeypatch):
    """Review: the jsonl export had the attachments' digests but not their rows, so grants and usage
    could not be checked from it. With --rows they can, by the recipe README gives."""
    assert cli("alloc", "run", "--period", "2026-11").exit_code == 0
    usage = tmp_path / "use.csv"
    usage.write_text("project,pool,device_hours,start,end\n"
                     "mind,pcl-a800,12.5,2026-11-02T00:00:00Z,2026-11-02T10:00:00Z\n"
                     "mind,pcl-a800,3,2026-11-03T00:00:00Z,2026-11-03T01:00:00Z\n", encoding="utf-8")
    assert cli("usage", "import", usage, "--format", "csv").exit_code == 0
    target = tmp_path / "journal.jsonl"
    assert cli("ledger", "export", "--format", "jsonl", "--rows", "-o", target).exit_code == 0
    lines = target.read_text(encoding="utf-8").splitlines()
    # README's recipe, as printed there, runs on it
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    recipe = re.search(r"Checking a ledger without pooler.*?```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(recipe, "README.md", "exec"), scope)  # noqa: S102 - the documented recipe itself
    assert scope["prev"] == [json.loads(x) for x in lines if '"attached_to"' not in x][-1]["hash"]
    tables = {json.loads(line)["table"] for line in lines if "attached_to" in json.loads(line)}
    assert {"alloc_grant", "alloc_member", "alloc_project", "alloc_pool", "usage_line"} <= tables
    assert _recheck(lines) == []
    # the recipe finds an edited row, and an edited entry
    row = next(i for i, line in enumerate(lines) if '"table": "usage_line"' in line and '"12.5"' in line)
    edited = lines[:row] + [lines[row].replace('"12.5"', '"125"')] + lines[row + 1:]
    assert edited != lines and _recheck(edited) == [f"entry #{json.loads(lines[row])['attached_to']}: usage_line"]
    first = json.loads(lines[1])
    first["actor"] = "mallory"
    assert _recheck([lines[0], json.dumps(first)] + lines[2:])[0] == f"entry #{first['seq']}: hash"
    # without --rows the journal alone, as before; --rows is for jsonl only
    plain = cli("ledger", "export", "--format", "jsonl").stdout.splitlines()
    assert plain == [line for line in lines if '"attached_to"' not in line]
    assert cli("ledger", "export", "--format", "toml", "--rows").exit_code == 2


@pytest.mark.sqlite_only
def test_verify_gives_the_head_hash_on_one_line_in_a_narrow_terminal(cli, applied):
    """Review: at 80 columns (a pipe) the OK line was broken before the hash, so a hash copied from
    it missed a part. Through a real process, whose console takes the width from COLUMNS."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pooler.cli", "--db", str(cli.db), "ledger", "verify"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    head = cli("ledger", "log", "--limit", "1", "--json").json()[0]["hash"]
    assert line.startswith("OK: ") and line.endswith(f"head {head}") and len(line) > 80


def test_a_ledger_that_already_holds_a_pool_beyond_the_period_can_be_put_right(cli, applied, tmp_path):
    """Pools of `devices` with `hours` beyond the period's are refused now; one recorded before
    (here written past the registry's checks) does not lock the ledger: adds that check pools name
    it, and `apply` of a manifest with its hours corrected puts it right."""
    from pooler.core.model import Pool
    from pooler.services.context import Context
    from pooler.services.registry import open_ledger

    with open_ledger(Context(db=str(cli.db))) as ledger, ledger.writer("before@old") as w:
        w.append("pool.add", {"record": Pool("old-gz", member="pcl", accelerator="a800", devices=8,
                                             hours=5000)})
    assert cli("member", "add", "newcomer", "--name", "Newcomer").exit_code == 0
    refused = cli("project", "add", "later", "--sponsor", "pcl=1", "--demand", "5")
    assert refused.exit_code == 1 and '"old-gz": hours: 5000 is more than the 720 hours' in refused.stderr
    fixed = tmp_path / "fix.toml"
    fixed.write_text(applied.read_text(encoding="utf-8") + '\n[[pools]]\nid = "old-gz"\nmember = "pcl"\n'
                     'accelerator = "a800"\ndevices = 8\nhours = 700\n', encoding="utf-8")
    result = cli("apply", fixed)
    assert result.exit_code == 0, result.stderr
    assert "Recorded 1 journal entry (#" in result.stderr
    assert cli("project", "add", "later", "--sponsor", "pcl=1", "--demand", "5").exit_code == 0
