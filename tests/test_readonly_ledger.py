"""Read-only ledgers: an auditor's copy in a folder pooler may not write to, on read-only media.

Every command that only reads opens the ledger read-only (SQLite `mode=ro`, no migration, no switch
to WAL, nothing written) and must work on a ledger whose folder is not writable: with the write-ahead
log's files absent (a ledger closed cleanly), and with them present (a copy taken while a writer had
it open, committed entries still only in the -wal file). Commands that write say so in one line.

The folder is made unwritable with chmod (0555, the files 0444). That stops every user but root,
and the tests may run as root (`.ci/run` runs as whoever starts it): then the pooler processes run
under `setpriv` without the capabilities that let root ignore file permissions (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH, CAP_FOWNER), so they meet the permissions as any other user would. Where that
cannot be done (no setpriv, or not allowed to drop capabilities), the cases are skipped with that
reason, and only for root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pooler.store import MIGRATIONS, SCHEMA_VERSION, Ledger, Migration, StoreError
from tests.backends import postgres_database
from tests.conftest import EXAMPLES, ROOT

SMALL = EXAMPLES / "small.toml"
USAGE = ("project,pool,device_hours,start,end\n"
         "lingnan-llm,gz-lab-910b,100,2026-10-02T00:00:00Z,2026-10-03T00:00:00Z\n"
         "cantonese-asr,scut-a800,50,2026-10-05T00:00:00Z,2026-10-06T00:00:00Z\n")

# Every command that only reads, with the arguments the test ledger answers (a CHECKPOINT and OUT are
# filled in per run). The ones marked False print the time or the solver's seconds: only their exit
# code is compared with a run on a writable copy.
READ_COMMANDS: list[tuple[list[str], bool]] = [
    (["ledger", "verify", "--json"], True),
    (["ledger", "verify", "--checkpoint", "CHECKPOINT", "--json"], True),
    (["ledger", "log", "--all", "--json"], True),
    (["ledger", "export", "--format", "toml"], True),
    (["ledger", "export", "--format", "jsonl", "--rows"], True),
    (["ledger", "checkpoint"], False),
    (["member", "list", "--json"], True),
    (["member", "show", "gz-lab", "--json"], True),
    (["pool", "list", "--all", "--json"], True),
    (["project", "show", "lingnan-llm", "--json"], True),
    (["accelerator", "show", "a800", "--json"], True),
    (["alloc", "show", "--json"], True),
    (["alloc", "show", "--period", "2026-10", "--json"], True),
    (["alloc", "list", "--json"], True),
    (["alloc", "explain", "lingnan-llm", "--json"], True),
    (["alloc", "diff", "2026-10", "2026-11", "--json"], True),
    (["alloc", "inputs", "--period", "2026-11"], True),
    (["alloc", "inputs", "--period", "2026-11", "-o", "OUT/in.toml"], True),
    (["alloc", "run", "--period", "2026-12", "--dry-run", "--json"], False),
    (["apply", str(SMALL), "--dry-run"], True),
    (["usage", "fairshare", "--period", "2026-11", "--json"], True),
    (["report", "audit", "--period", "2026-11", "--format", "json"], True),
    (["report", "member", "gz-lab", "--period", "2026-11"], True),
    (["export", "slurm", "--period", "2026-11"], True),
    (["export", "kueue", "--period", "2026-11"], True),
]

# Runs pooler commands in one process (the CLI as the tests' runner calls it) and prints the results.
DRIVER = r"""
import json, sys
from typer.testing import CliRunner
from pooler.cli.main import app
db, commands = sys.argv[1], json.loads(sys.argv[2])
results = []
for args in commands:
    r = CliRunner().invoke(app, ["--db", db, *args])
    crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
    results.append({"args": args, "exit": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                    "crashed": repr(r.exception) if crashed else None})
print(json.dumps(results))
"""


# --- running as a user whom permissions stop --------------------------------------------------------

_DROPPED = "-dac_override,-dac_read_search,-fowner"


def _unprivileged_prefix(scratch: Path) -> list[str]:
    """The command prefix under which a process cannot write into a 0555 folder (nothing for a user
    other than root); skips the test when root cannot be made to respect permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, where chmod does not stop writes, and setpriv (util-linux) is missing")
    prefix = [setpriv, f"--bounding-set={_DROPPED}", "--"]
    probe = scratch / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"],
                              capture_output=True, text=True)
    finally:
        probe.chmod(0o755)
    if done.returncode == 0 or "Permission denied" not in done.stderr:
        pytest.skip("running as root, where chmod does not stop writes, and root's capabilities could not "
                    f"be dropped: {done.stderr.strip()[-200:] or 'the write succeeded'}")
    return prefix


def run_pooler(db: Path, commands: list[list[str]], prefix: list[str]) -> list[dict]:
    env = {**os.environ, "COLUMNS": "200", "POOLER_ACTOR": "auditor@test", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("POOLER_DB", None)
    done = subprocess.run([*prefix, sys.executable, "-c", DRIVER, str(db), json.dumps(commands)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def pooler(db: Path, *args: str) -> None:
    """A command on a writable ledger, in this process."""
    from pooler.cli.main import app

    result = CliRunner().invoke(app, ["--db", str(db), *args], env={"POOLER_ACTOR": "admin@test"})
    assert result.exit_code == 0, result.output


@contextlib.contextmanager
def read_only(folder: Path):
    """The folder 0555 and its files 0444, as an auditor's copy on read-only media; restored after
    (pytest must be able to remove it)."""
    files = [p for p in folder.iterdir()]
    for p in files:
        p.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield
    finally:
        folder.chmod(0o755)
        for p in files:
            p.chmod(0o644)


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file in the folder and the digest of its bytes: what a read must leave as it was."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- the ledger the cases read ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A ledger with records, usage, runs for two periods and a checkpoint, closed cleanly."""
    folder = tmp_path_factory.mktemp("source")
    db = folder / "ledger.db"
    usage = folder / "usage.csv"
    usage.write_text(USAGE)
    pooler(db, "init")
    pooler(db, "apply", str(SMALL))
    pooler(db, "usage", "import", str(usage), "--format", "csv")
    pooler(db, "alloc", "run", "--period", "2026-10")
    pooler(db, "alloc", "run", "--period", "2026-11")
    pooler(db, "ledger", "checkpoint", "-o", str(folder / "checkpoint.json"))
    usage.unlink()
    return folder


def commands_for(checkpoint: Path, out: Path) -> list[list[str]]:
    return [[str(checkpoint) if a == "CHECKPOINT" else a.replace("OUT", str(out)) for a in args]
            for args, _ in READ_COMMANDS]


def copy_ledger(source: Path, folder: Path, names: tuple[str, ...] = ("ledger.db",)) -> Path:
    folder.mkdir()
    for name in names:
        shutil.copyfile(source / name, folder / name)
    return folder / "ledger.db"


def copy_while_open(source: Path, then: list[str], *folders: Path) -> Path:
    """Copies of the ledger, its -wal and -shm taken while another connection held it open, after
    the commands `then` ran: their entries are only in the -wal file of the copies. The first."""
    work = copy_ledger(source, folders[0].with_name(folders[0].name + "-work"))
    holder = sqlite3.connect(work, isolation_level=None)
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM journal").fetchone()  # a read snapshot: no checkpoint passes it
    pooler(work, *then)
    for folder in folders:
        folder.mkdir()
        for suffix in ("", "-wal", "-shm"):
            shutil.copyfile(f"{work}{suffix}", folder / f"ledger.db{suffix}")
    holder.rollback()
    holder.close()
    return folders[0] / "ledger.db"


def assert_same_answers(got: list[dict], expected: list[dict]) -> None:
    for (args, compare), g, e in zip(READ_COMMANDS, got, expected):
        shown = " ".join(args)
        assert g["crashed"] is None and "Traceback" not in g["stderr"], (shown, g)
        assert g["exit"] == 0, (shown, g["stderr"])
        if compare:
            assert (g["stdout"], g["stderr"]) == (e["stdout"], e["stderr"]), shown


# --- the cases --------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["closed", "open"])
def test_every_read_command_works_on_a_ledger_in_a_read_only_folder(source, tmp_path, state):
    """`closed`: no -wal or -shm beside the file (SQLite could not create them: it opens the file as
    immutable). `open`: a copy with its -wal and -shm, the last run only in the -wal (read through
    them, with SQLite's own read-only WAL support). The answers are those of a writable copy, and
    not a byte of the folder changes."""
    prefix = _unprivileged_prefix(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    if state == "closed":
        db = copy_ledger(source, tmp_path / "audit")
        reference = copy_ledger(source, tmp_path / "reference")
    else:
        then = ["alloc", "run", "--period", "2026-11", "--reason", "after the copy"]
        db = copy_while_open(source, then, tmp_path / "audit", tmp_path / "reference")
        reference = tmp_path / "reference" / "ledger.db"
        assert (tmp_path / "audit" / "ledger.db-wal").stat().st_size > 0
    commands = commands_for(source / "checkpoint.json", out)
    expected = run_pooler(reference, commands, [])
    before = fingerprint(db.parent)
    with read_only(db.parent):
        got = run_pooler(db, commands, prefix)
        assert fingerprint(db.parent) == before
    assert_same_answers(got, expected)
    if state == "open":  # the run that is only in the -wal file was read
        runs = json.loads(got[READ_COMMANDS.index((["alloc", "list", "--json"], True))]["stdout"])
        assert [r["reason"] for r in runs if r["period"] == "2026-11"] == [None, "after the copy"]
    assert (out / "in.toml").is_file()


def test_reads_in_a_writable_folder_leave_no_files_behind(source, tmp_path):
    """Where pooler may write (an admin's own ledger), the commands that only read leave the folder
    as they found it: a `mode=ro` connection cannot remove SQLite's -wal and -shm files, so every
    `member list` left two files beside the ledger until the next write. Such reads open the file
    as a writer would, with `PRAGMA query_only`, and SQLite removes them on closing."""
    out = tmp_path / "out"
    out.mkdir()
    db = copy_ledger(source, tmp_path / "admin")
    before = fingerprint(db.parent)
    got = run_pooler(db, commands_for(source / "checkpoint.json", out), [])
    assert all(r["exit"] == 0 and r["crashed"] is None for r in got), [r for r in got if r["exit"]]
    assert fingerprint(db.parent) == before


def test_an_unreadable_write_ahead_log_is_one_clear_error(source, tmp_path):
    """A -wal file holding entries, without its -shm, in a folder SQLite may not write to: SQLite
    cannot read the log, and reading the file alone would silently miss those entries. Refused,
    naming the file and what to do; nothing written."""
    prefix = _unprivileged_prefix(tmp_path)
    db = copy_while_open(source, ["alloc", "run", "--period", "2026-12"], tmp_path / "audit")
    (tmp_path / "audit" / "ledger.db-shm").unlink()
    before = fingerprint(db.parent)
    with read_only(db.parent):
        got = run_pooler(db, [["ledger", "verify"], ["member", "list"]], prefix)
        assert fingerprint(db.parent) == before
    for result in got:
        assert result["exit"] == 1 and result["crashed"] is None and result["stdout"] == ""
        lines = result["stderr"].strip().splitlines()
        assert len(lines) == 1, result["stderr"]
        assert lines[0].startswith(f"Error: cannot read the ledger {db}: its write-ahead log {db}-wal holds ")
        assert "copy" in lines[0]


def test_an_empty_write_ahead_log_without_its_shm_is_read(source, tmp_path):
    """An empty -wal (left by a reader) holds no entries: the file alone is the ledger."""
    prefix = _unprivileged_prefix(tmp_path)
    db = copy_ledger(source, tmp_path / "audit")
    Path(f"{db}-wal").write_bytes(b"")
    with read_only(db.parent):
        got = run_pooler(db, [["ledger", "verify", "--json"]], prefix)
    assert got[0]["exit"] == 0 and json.loads(got[0]["stdout"])["ok"] is True, got[0]["stderr"]


@pytest.mark.parametrize("state", ["closed", "open"])
def test_a_write_command_on_a_read_only_ledger_is_one_clear_line(source, tmp_path, state):
    prefix = _unprivileged_prefix(tmp_path)
    if state == "closed":
        db = copy_ledger(source, tmp_path / "audit")
    else:
        db = copy_while_open(source, ["alloc", "run", "--period", "2026-12"], tmp_path / "audit")
    before = fingerprint(db.parent)
    with read_only(db.parent):
        got = run_pooler(db, [["project", "retire", "lingxi-agent"], ["alloc", "run", "--period", "2027-01"],
                              ["alloc", "run", "--period", "2026-11", "--reason", "again"]], prefix)
        assert fingerprint(db.parent) == before
    for result in got:
        assert result["exit"] == 1 and result["crashed"] is None, result
        lines = result["stderr"].strip().splitlines()
        assert len(lines) == 1, result["stderr"]
        assert lines[0] == (f"Error: cannot write to the ledger {db}: pooler may not write to it or to its "
                            f"folder {db.parent} (commands that only read, such as `ledger verify`, work)")


def test_an_immutable_read_notices_a_ledger_changed_meanwhile(source, tmp_path):
    """Opened as immutable (no -wal, a folder it may not write to), SQLite takes no lock and trusts
    that nobody changes the file. Someone who may write (here root) changing it between two reads
    is noticed: an error, not answers from a torn file."""
    prefix = _unprivileged_prefix(tmp_path)
    if not prefix:
        pytest.skip("needs root to write where the reader may not")
    db = copy_ledger(source, tmp_path / "audit")
    script = (
        "import sys\n"
        "from pooler.store import Ledger, StoreError\n"
        f"ledger = Ledger.open({str(db)!r}, read_only=True)\n"
        "print(ledger.head()[0], flush=True)\n"
        "sys.stdin.readline()\n"
        "try:\n"
        "    ledger.head()\n"
        "except StoreError as exc:\n"
        "    print('StoreError:', exc)\n"
    )
    with read_only(db.parent):
        reader = subprocess.Popen([*prefix, sys.executable, "-c", script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        first = reader.stdout.readline()
        assert first.strip().isdigit(), reader.stderr.read()
        db.chmod(0o644)
        pooler(db, "alloc", "run", "--period", "2026-12")  # root: the folder's mode does not stop it
        out, err = reader.communicate("\n", timeout=120)
    assert out.startswith(f"StoreError: the ledger {db} changed while pooler read it"), (out, err)


def test_a_read_only_open_reads_on_when_the_write_ahead_log_goes_away_meanwhile(source, tmp_path):
    """Review (a reader looping while a writer ran): in a folder the reader may not write to, a read
    found the ledger open elsewhere (its -wal and -shm beside it) and chose `mode=ro`; the writer
    then closed it, SQLite removed both files, and the reader's own connection could not make a
    -shm: "Error: cannot use the ledger ...: attempt to write a readonly database" from `ledger log`,
    about 1 read in 70. The file alone now holds every entry, so it is read as immutable."""
    prefix = _unprivileged_prefix(tmp_path)
    if not prefix:
        pytest.skip("needs root to hold the ledger open where the reader may not write")
    db = copy_ledger(source, tmp_path / "audit")
    with Ledger.open(db, read_only=True) as expected:
        head = expected.head()[0]
    holder = sqlite3.connect(db, isolation_level=None)  # a writer's connection: the -wal and -shm beside it
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("SELECT count(*) FROM journal").fetchone()
    assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()
    script = (
        "import sys\n"
        "import pooler.store.db as db\n"
        "decide = db.read_only_file\n"
        "def told(path):\n"
        "    db.read_only_file = decide  # the first choice only\n"
        "    file = decide(path)\n"
        "    print(file.uri.rpartition('?')[2], flush=True)\n"
        "    sys.stdin.readline()  # the writer closes the ledger meanwhile\n"
        "    return file\n"
        "db.read_only_file = told\n"
        "from pooler.store import Ledger, StoreError\n"
        "try:\n"
        f"    with Ledger.open({str(db)!r}, read_only=True) as ledger:\n"
        "        print('head', ledger.head()[0])\n"
        "except StoreError as exc:\n"
        "    print('StoreError:', exc)\n"
    )
    db.parent.chmod(0o555)  # the folder only: the -wal and -shm go away while it is so
    try:
        reader = subprocess.Popen([*prefix, sys.executable, "-c", script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        chosen = reader.stdout.readline().strip()
        holder.close()  # the last connection: SQLite removes the -wal and -shm (root may, in 0555)
        assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
        out, err = reader.communicate("\n", timeout=120)
    finally:
        db.parent.chmod(0o755)
    assert chosen == "mode=ro", (chosen, err)  # what the race needs: mode=ro chosen with the files there
    assert out.strip() == f"head {head}", (out, err)


# --- the read-only open itself (each backend) ---------------------------------------------------------


def test_a_read_only_open_cannot_write(db_target):
    """Writes through a read-only open are impossible: pooler's writer is refused, and so is SQL
    that writes (SQLite opened with mode=ro; PostgreSQL transactions READ ONLY)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    Ledger.init(db_target, actor="t").close()
    with Ledger.open(db_target, read_only=True) as ledger:
        head = ledger.head()
        with pytest.raises(StoreError, match="opened read-only"), ledger.writer("t"):
            pass
        with pytest.raises((DBAPIError, StoreError), match="(?i)read-?only"), ledger.reader() as reader:
            reader._conn.execute(text("INSERT INTO meta (key, value) VALUES ('x', 'y')"))
        assert ledger.verify().ok
    with Ledger.open(db_target) as ledger:
        assert ledger.head() == head


@pytest.mark.sqlite_only
def test_a_read_only_open_changes_no_byte_and_switches_no_journal_mode(tmp_path):
    """A ledger in the rollback-journal mode (as another tool may leave it) stays so when read, and
    the file's bytes stay as they were."""
    db = tmp_path / "ledger.db"
    Ledger.init(db, actor="t").close()
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("PRAGMA journal_mode = DELETE")
    raw.close()
    before = db.read_bytes()
    with Ledger.open(db, read_only=True) as ledger:
        assert ledger.verify().ok
    assert db.read_bytes() == before
    raw = sqlite3.connect(db, isolation_level=None)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    raw.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_read_only_open_reads_an_older_schema_without_migrating(backend, tmp_path):
    """Every migration so far leaves what readers read as it was (`Migration.readable_unmigrated`), so a
    read-only open reads a version-1 ledger as it is: no `ledger.migrate` entry, the same answers as
    after migrating, and it verifies."""
    with contextlib.ExitStack() as stack:
        target = tmp_path / "v1.db" if backend == "sqlite" else stack.enter_context(postgres_database())
        with Ledger.init(target, actor="t", migrations=MIGRATIONS[:1]) as old:
            with old.writer("t") as w:
                w.append("usage.import", {"file": "a.csv"}, attachments={"usage_line": [{
                    "project": "p", "pool": "q", "period": "2026-11", "device_hours": "2.5",
                    "start": 1_793_491_200, "end": 1_793_500_200, "job": "77"}]})
            head = old.head()
        with Ledger.open(target, read_only=True) as ledger:
            assert ledger.schema_version() == 1 and ledger.head() == head
            report = ledger.verify()
            assert report.ok, report.problem
            unmigrated = (ledger.state(), ledger.usage_of_jobs(["77"]), list(ledger.entries()))
        with Ledger.open(target) as migrated:
            assert migrated.schema_version() == SCHEMA_VERSION and migrated.head()[0] == head[0] + 1
            assert (migrated.state(), migrated.usage_of_jobs(["77"])) == unmigrated[:2]
            assert list(migrated.entries())[:-1] == unmigrated[2]


def _add_note_table(conn, backend) -> None:
    conn.exec_driver_sql("CREATE TABLE note (seq INTEGER PRIMARY KEY, text TEXT)")


def test_a_read_only_open_refuses_a_schema_it_cannot_read_unmigrated(db_target):
    """A future migration that changes what readers read: a read-only open does not migrate (that
    writes), and says so in one sentence; nothing is written."""
    Ledger.init(db_target, actor="t").close()
    future = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "add the note table", _add_note_table))
    with pytest.raises(StoreError) as info:
        Ledger.open(db_target, read_only=True, migrations=future)
    name = str(db_target) if isinstance(db_target, Path) else None
    message = str(info.value)
    assert (f"has schema version {SCHEMA_VERSION}, older than this pooler's ({SCHEMA_VERSION + 1})"
            in message and "only reads" in message and "migrat" in message), message
    if name:
        assert message.startswith(f"the ledger {name} ")
    with Ledger.open(db_target) as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION and ledger.head()[0] == 1
