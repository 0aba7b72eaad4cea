"""A usage file read by a second process (`pooler.services.usage_read`) is recorded exactly as one read
by the importing process: the same rows, digest, totals and problems with their line numbers; bad
lines, bad text and refused imports still write nothing; progress is reported. On SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from pooler.services import registry, usage, usage_read
from pooler.services.context import Context
from pooler.services.registry import open_ledger
from tests.backends import db_digest
from tests.test_usage_bulk import LEDGER, OCT, _mixed_csv


@pytest.fixture
def ctx(db_target, tmp_path):
    context = Context(db=str(db_target), actor="test@read")
    registry.init(context)
    (tmp_path / "bulk.toml").write_text(LEDGER, encoding="utf-8")
    registry.apply(context, tmp_path / "bulk.toml")
    return context


@pytest.fixture
def second_process(monkeypatch):
    """Every file, however small, is read by a second process."""
    monkeypatch.setattr(usage_read, "SECOND_PROCESS_BYTES", 0)
    assert usage_read.second_process_pays(Path(__file__))


def _entry(ctx, seq):
    with open_ledger(ctx) as ledger:
        entry = ledger.entry(seq)
        return entry.payload, ledger.attachment_rows(seq, "usage_line")


def _comparable(outcome):
    data = outcome.to_json_dict()
    for key in ("seq", "file", "file_digest"):
        data.pop(key)
    return data


@pytest.mark.parametrize("job", [False, True])
def test_a_second_process_records_what_the_importing_process_records(ctx, tmp_path, monkeypatch, job):
    here = usage.import_usage(ctx, _mixed_csv(tmp_path / "here.csv", repeat=40, job=job), "csv")
    # The same lines in another file (a trailing blank line changes the file, not its rows).
    there_path = _mixed_csv(tmp_path / "there.csv", repeat=40, job=job)
    there_path.write_text(there_path.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    monkeypatch.setattr(usage_read, "SECOND_PROCESS_BYTES", 0)
    there = usage.import_usage(ctx, there_path, "csv")
    assert _comparable(there) == _comparable(here) and here.recorded == 40 * 11
    (here_payload, here_rows), (there_payload, there_rows) = _entry(ctx, here.seq), _entry(ctx, there.seq)
    assert there_rows == here_rows
    assert there_payload["attachments"] == here_payload["attachments"]  # same row count and digest
    with open_ledger(ctx) as ledger:
        assert ledger.verify().ok


def test_bad_lines_read_by_a_second_process_are_all_listed_and_nothing_is_written(ctx, tmp_path, second_process):
    path = tmp_path / "bad.csv"
    good = [f"j1,pa,1.5,{OCT + i},{OCT + i + 3600}" for i in range(12_000)]
    path.write_text("\n".join(["project,pool,device_hours,start,end", *good, f"j1,pa,-1,{OCT},{OCT + 3600}",
                               *good[:10], f"nope,pa,1,{OCT},{OCT + 3600}"]) + "\n", encoding="utf-8")
    before = db_digest(ctx.db)
    with pytest.raises(usage.UsageImportError) as info:
        usage.import_usage(ctx, path, "csv")
    assert [p.line for p in info.value.problems] == [12_002, 12_013]
    assert "negative" in info.value.problems[0].reason and "'nope'" in info.value.problems[1].reason
    assert db_digest(ctx.db) == before
    outcome = usage.import_usage(ctx, path, "csv", skip_bad=True)
    assert (outcome.lines, outcome.recorded, [p.line for p in outcome.skipped]) == (12_012, 12_010, [12_002, 12_013])
    assert len(_entry(ctx, outcome.seq)[1]) == 12_010


def test_a_file_that_is_not_utf8_is_refused_from_a_second_process(ctx, tmp_path, second_process):
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"project,pool,device_hours,start,end\nj1,pa,1,{OCT},{OCT + 3600}\n".encode() + b"\xff\xfe\n")
    before = db_digest(ctx.db)
    with pytest.raises(usage.UsageImportError, match="is not UTF-8 text"):
        usage.import_usage(ctx, path, "csv")
    assert db_digest(ctx.db) == before


def test_a_second_process_reports_progress_to_the_end(ctx, tmp_path, second_process, monkeypatch):
    monkeypatch.setattr(usage_read, "BLOCK_CHARS", 4096)
    path = _mixed_csv(tmp_path / "u.csv", repeat=60)
    seen: list[int] = []
    usage.import_usage(ctx, path, "csv", progress=seen.append)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == len(path.read_text(encoding="utf-8"))


def test_slurm_output_read_by_a_second_process(ctx, tmp_path, monkeypatch):
    def sacct(first_job: int) -> list[str]:
        lines = ["JobIDRaw|Cluster|Account|User|Partition|QOS|AllocTRES|ElapsedRaw|Start|End|State"]
        for i in range(200):
            job = first_job + i
            lines += [f"{job}|c|j1|u|pa|normal|cpu=8,gres/gpu=2|3600|{OCT + i}|{OCT + i + 3600}|COMPLETED",
                      f"{job}.batch|c|j1|u|pa|normal|cpu=8|3600|{OCT + i}|{OCT + i + 3600}|COMPLETED"]
        return lines

    # other jobs in each file (the same jobs are recorded once), the same figures
    here_path, there_path = tmp_path / "here.txt", tmp_path / "there.txt"
    here_path.write_text("\n".join(sacct(100)) + "\n", encoding="utf-8")
    there_path.write_text("\n".join(sacct(1000)) + "\n\n", encoding="utf-8")
    here = usage.import_usage(ctx, here_path, "sacct")
    monkeypatch.setattr(usage_read, "SECOND_PROCESS_BYTES", 0)
    there = usage.import_usage(ctx, there_path, "sacct")
    assert _comparable(there) == _comparable(here) and here.recorded == 200
    assert here.ignored == {"job steps": 200}
    rows_here, rows_there = _entry(ctx, here.seq)[1], _entry(ctx, there.seq)[1]
    assert [r["job"] for r in rows_there] == [str(1000 + i) for i in range(200)]
    assert [{**r, "job": None} for r in rows_there] == [{**r, "job": None} for r in rows_here]
    # and a second process skips jobs recorded before as the importing process does
    again_path = tmp_path / "again.txt"
    again_path.write_text("\n".join(sacct(100)[:101]) + "\n" + "\n".join(sacct(5000)[1:21]) + "\n", encoding="utf-8")
    again = usage.import_usage(ctx, again_path, "sacct")
    assert again.recorded == 10 and again.ignored == {"job steps": 60, "jobs already recorded": 50}


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _running(pid: int) -> bool:
    """Whether `pid` is alive and not a zombie (an orphan may never be reaped in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.sqlite_only  # the pipe is the same whatever the database: once is enough
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.skipif((__import__("os").cpu_count() or 1) < 2, reason="one core: the file is read in one process")
def test_a_reader_whose_importer_is_killed_ends(ctx, tmp_path):
    """SIGKILL the importing process while its second process is still reading a file several
    times the pipe's size: the reader must end on its own. It used to keep a copy of the pipe's
    receiving end, so it filled the pipe and waited for ever, holding the importer's database
    connection (on PostgreSQL, an open transaction that blocked every later writer)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = _mixed_csv(tmp_path / "big.csv", repeat=6_000)  # 66,000 lines, several MB of rows to send
    script = ("import sys, pooler.services.usage_read as u\n"
              "u.SECOND_PROCESS_BYTES = 0\n"
              "from pooler.cli.main import main\n"
              f"sys.argv = ['pooler', '--db', {str(ctx.db)!r}, 'usage', 'import', {str(path)!r}, '--format', 'csv']\n"
              "main()\n")
    importer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    readers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not readers and importer.poll() is None and time.monotonic() < deadline:
            readers = _children(importer.pid)
            time.sleep(0.005)
        assert readers, "the importer never started its reading process"
        os.kill(importer.pid, signal.SIGKILL)
        importer.wait()
        deadline = time.monotonic() + 20
        while any(_running(r) for r in readers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(r) for r in readers), "the reader outlived its importer"
    finally:
        if importer.poll() is None:
            importer.kill()
        for r in readers:
            if _running(r):
                os.kill(r, signal.SIGKILL)
