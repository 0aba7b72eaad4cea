"""`write_atomic`: whole files through a rename, and straight writes into devices and pipes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from pooler.errors import UsageError
from pooler.services.files import write_atomic


def test_a_file_is_replaced_whole(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    write_atomic(target, ["# new", "\n"])
    assert target.read_text() == "# new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary file left


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_a_named_pipe_is_written_into_not_replaced(tmp_path):
    # `-o /dev/null` once renamed a plain file over the device; a pipe shows the same mistake
    # without touching the machine's /dev/null
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    write_atomic(fifo, "through the pipe\n")
    reader.join(timeout=10)
    assert got == ["through the pipe\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_folder_is_refused_by_name(tmp_path):
    with pytest.raises(UsageError, match="cannot write .*: it is a directory"):
        write_atomic(tmp_path, "x")


def test_an_empty_path_is_the_current_folder_and_refused_by_name(tmp_path, monkeypatch):
    """Review: `-o ""` (a path of no characters, which is the current folder) was a ValueError
    traceback from every command that writes a file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"cannot write \.: it is a directory"):
        write_atomic(Path(""), "x")
    assert list(tmp_path.iterdir()) == []
