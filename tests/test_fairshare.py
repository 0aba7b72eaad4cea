"""Decayed usage and fair share: the decay and charging maths by hand, `alloc run` using the ledger's
usage history, and `usage fairshare`."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pooler.core.usage import ChargedLine, decay_factor, fairshare_rows, member_usage, shares

DAY = 86_400
AS_OF = 1_000 * DAY


@pytest.mark.parametrize("age_days,half_life,factor", [
    (0, 30, "1"), (30, 30, "0.5"), (60, 30, "0.25"), (15, 30, "0.7071067811865475244008443621"),
    (-5, 30, "1"),  # a line ending at the very start counts fully
])
def test_decay_factor(age_days, half_life, factor):
    got = decay_factor(age_days * DAY, Decimal(half_life))
    assert abs(got - Decimal(factor)) < Decimal("1e-26")


def _rate(pool: str, period: str) -> Decimal:
    # Pool p1 is on a type whose rate went from 2 to 3 in 2026-11.
    return {"2026-10": Decimal(2), "2026-11": Decimal(3)}[period] if pool == "p1" else Decimal(1)


def test_member_usage_charges_stakes_at_the_period_rate_and_decays():
    lines = [
        ChargedLine("j", "p1", "2026-10", Decimal(8), AS_OF - 30 * DAY),  # 16 units, one half-life: 8
        ChargedLine("j", "p1", "2026-11", Decimal(1), AS_OF),             # 3 units, no decay
        ChargedLine("k", "p2", "2026-10", Decimal(4), AS_OF - 60 * DAY),  # 4 units, two half-lives: 1
        ChargedLine("k", "p2", "2026-11", Decimal(100), AS_OF + 1),       # ended after: not counted
    ]
    stakes = {"j": {"a": Decimal(3), "b": Decimal(1)}, "k": {"b": Decimal(2)}}
    usage = member_usage(lines, stakes=stakes, rate=_rate, as_of=AS_OF, half_life_days=Decimal(30),
                         members=["a", "b", "c"])
    assert usage.lines == 3
    assert usage.raw == {"a": Decimal("14.25"), "b": Decimal("8.75"), "c": 0}      # 19 x 3/4; 19/4 + 4
    assert abs(usage.decayed["a"] - Decimal("8.25")) < Decimal("1e-25")            # 11 x 3/4
    assert abs(usage.decayed["b"] - Decimal("3.75")) < Decimal("1e-25")            # 11/4 + 1
    assert usage.decayed["c"] == 0


def test_half_life_zero_means_no_history():
    lines = [ChargedLine("j", "p2", "2026-10", Decimal(8), AS_OF - DAY)]
    usage = member_usage(lines, stakes={"j": {"a": Decimal(1)}}, rate=_rate, as_of=AS_OF,
                         half_life_days=Decimal(0))
    assert usage.raw == {"a": Decimal(8)} and usage.decayed == {"a": Decimal(0)}


def test_fairshare_rows_like_sshare():
    usage = member_usage([ChargedLine("j", "p2", "2026-10", Decimal(10), AS_OF)],
                         stakes={"j": {"a": Decimal(1)}}, rate=_rate, as_of=AS_OF, half_life_days=Decimal(30),
                         members=["a", "b", "z"])
    rows = {r.member: r for r in fairshare_rows({"a": Decimal(50), "b": Decimal(50), "z": Decimal(0)},
                                                Decimal(1), usage)}
    assert rows["a"].norm_shares == Decimal("0.5") and rows["a"].effective_usage == 1
    assert abs(rows["a"].fairshare - Decimal("0.25")) < Decimal("1e-26")   # 2^(-1/0.5)
    assert rows["b"].fairshare == 1 and rows["b"].effective_usage == 0
    assert rows["z"].norm_shares == 0 and rows["z"].fairshare == 0         # a share of 0 stays 0
    assert shares({"a": Decimal(0), "b": Decimal(0)}, Decimal("0.9")) == {"a": Decimal("0.5"), "b": Decimal("0.5")}


# --- through the ledger ------------------------------------------------------------------------------

LEDGER = """
[consortium]
name = "Test"

[policy]
contribution_weight = 1
usage_half_life_days = 30

[[accelerators]]
id = "gpu"
rate = 2

[[members]]
id = "A"
name = "A"

[[members]]
id = "B"
name = "B"

[[pools]]
id = "pa"
member = "A"
accelerator = "gpu"
capacity = 100

[[pools]]
id = "pb"
member = "B"
accelerator = "gpu"
capacity = 100

[[projects]]
id = "ja"
sponsors = { A = 1 }
demand = 1000000

[[projects]]
id = "jb"
sponsors = { B = 1 }
demand = 1000000
"""

# A's project used 50 device-hours (100 units) ending 2026-10-02, 30 days before 2026-11 starts.
USAGE = """project,pool,device_hours,start,end
ja,pb,50,2026-10-01T00:00:00Z,2026-10-02T00:00:00Z
"""


@pytest.fixture
def ledger(cli, tmp_path):
    manifest = tmp_path / "ledger.toml"
    manifest.write_text(LEDGER, encoding="utf-8")
    assert cli("init").exit_code == 0
    assert cli("apply", manifest).exit_code == 0
    return cli


def _allocated(result) -> dict[str, float]:
    assert result.exit_code == 0, result.stderr
    return {p: v["allocated"] for p, v in result.json()["projects"].items()}


def test_alloc_run_lowers_the_share_of_a_heavy_past_user(ledger, tmp_path):
    before = _allocated(ledger("alloc", "run", "--period", "2026-11", "--dry-run", "--json"))
    assert before == pytest.approx({"ja": 200, "jb": 200})
    usage = tmp_path / "usage.csv"
    usage.write_text(USAGE, encoding="utf-8")
    assert ledger("usage", "import", usage, "--format", "csv").exit_code == 0
    result = ledger("alloc", "run", "--period", "2026-11", "--json")
    data = result.json()
    # S_A = 0.5 x 2^(-1/0.5) = 0.125, S_B = 0.5: shares 0.2 and 0.8 once normalised.
    assert data["members"]["A"]["share"] == pytest.approx(0.2)
    assert data["members"]["B"]["share"] == pytest.approx(0.8)
    # Every unit is still used; the heavy past user gets the smaller part.
    got = _allocated(result)
    assert got["ja"] < got["jb"] and got["ja"] + got["jb"] == pytest.approx(400)
    run = [e for e in ledger("ledger", "log", "--json").json() if e["kind"] == "alloc.run"][0]
    decayed = Decimal(run["payload"]["usage"]["A"])
    assert abs(decayed - 50) < Decimal("1e-20")  # 100 units, one half-life
    assert set(run["payload"]["usage"]) == {"A"}
    # October's allocation does not see usage that ended in October.
    october = ledger("alloc", "run", "--period", "2026-10", "--dry-run", "--json").json()
    assert october["members"]["A"]["share"] == pytest.approx(0.5)


def test_half_life_zero_ignores_history(ledger, tmp_path):
    usage = tmp_path / "usage.csv"
    usage.write_text(USAGE, encoding="utf-8")
    assert ledger("usage", "import", usage, "--format", "csv").exit_code == 0
    off = tmp_path / "off.toml"
    off.write_text(LEDGER.replace("usage_half_life_days = 30", "usage_half_life_days = 0"), encoding="utf-8")
    assert ledger("apply", off).exit_code == 0
    data = ledger("alloc", "run", "--period", "2026-11", "--dry-run", "--json").json()
    assert data["members"]["A"]["share"] == pytest.approx(0.5)
    fair = ledger("usage", "fairshare", "--period", "2026-11", "--json").json()
    assert [m["fairshare"] for m in fair["members"]] == [1.0, 1.0]


def test_usage_fairshare_json_and_table(ledger, tmp_path):
    usage = tmp_path / "usage.csv"
    usage.write_text(USAGE, encoding="utf-8")
    assert ledger("usage", "import", usage, "--format", "csv").exit_code == 0
    result = ledger("usage", "fairshare", "--period", "2026-11", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["period"] == "2026-11" and data["lines"] == 1
    a, b = data["members"]
    assert (a["member"], b["member"]) == ("A", "B")
    assert a["raw_shares"] == 200 and a["norm_shares"] == 0.5
    assert a["raw_usage"] == 100 and a["decayed_usage"] == pytest.approx(50)
    assert a["effective_usage"] == 1 and a["fairshare"] == pytest.approx(0.25)
    assert b["raw_usage"] == 0 and b["effective_usage"] == 0 and b["fairshare"] == 1
    table = ledger("usage", "fairshare", "--period", "2026-11")
    assert table.exit_code == 0
    assert "0.250000" in table.stdout and "effective usage" in table.stdout
    assert ledger("usage", "fairshare", "--period", "November").exit_code == 2
