"""The terminal summary of `usage import` stays short for big files; `--json` keeps every pair."""

from __future__ import annotations

from tests.test_usage import LEDGER

PROJECTS = ("mind", "cloud", "ernie", "baidu", "ali")
POOLS = ("gz-ascend910b", "gz-a800", "gz-h800", "nm-ascend910b", "nm-a800")


def test_usage_summary_shows_the_largest_pairs_and_counts_the_rest(cli, tmp_path):
    manifest = tmp_path / "ledger.toml"
    manifest.write_text(LEDGER, encoding="utf-8")
    assert cli("init").exit_code == 0 and cli("apply", manifest).exit_code == 0
    lines = ["project,pool,device_hours,start,end"]
    hours = {}
    for i, project in enumerate(PROJECTS):
        for k, pool in enumerate(POOLS):
            h = 1 + 5 * i + k  # 25 pairs with distinct totals 1..25
            hours[(project, pool)] = h
            lines.append(f"{project},{pool},{h},2026-11-02T00:00:00Z,2026-11-02T01:00:00Z")
    usage = tmp_path / "usage.csv"
    usage.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("usage", "import", usage, "--format", "csv", "--period", "2026-11")
    assert result.exit_code == 0, result.stderr
    body = [line.split() for line in result.stdout.splitlines()]
    shown = [row for row in body if len(row) == 3 and row[0] in PROJECTS]
    # the 20 largest, largest first; the 5 smallest (1..5, together 15) summed on one line
    assert [int(r[2]) for r in shown] == list(range(25, 5, -1))
    assert any(row[:3] == ["...", "5", "more"] and row[-1] == "15" for row in body)
    assert any(row[:1] == ["total"] and row[-1] == "325" for row in body)
    again = tmp_path / "again.csv"  # the same pairs again (a new file): --json lists all 25
    again.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    data = cli("usage", "import", again, "--format", "csv", "--period", "2026-11", "--json").json()
    assert len(data["by_project_pool"]) == 25
