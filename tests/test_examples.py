"""The examples run as documented: a short year of monthly periods through the real command line."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import EXAMPLES


def test_year_script_runs_allocation_usage_and_reports(tmp_path):
    folder = tmp_path / "year"
    done = subprocess.run([sys.executable, str(EXAMPLES / "year.py"), "--dir", str(folder),
                           "--months", "2", "--start", "2026-05"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2026-05: utilisation" in done.stdout and "2026-06: H800 rate revised" in done.stdout
    assert (folder / "audit-2026-06.md").read_text(encoding="utf-8").startswith("#")
    assert "<svg" in (folder / "audit-2026-06.html").read_text(encoding="utf-8")
    verify = subprocess.run([sys.executable, "-m", "pooler.cli", "--db", str(folder / "pooler.db"),
                             "ledger", "verify"], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
