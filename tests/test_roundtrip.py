"""The ledger and the manifest agree: export then apply into a new ledger gives the same state.

Also: several `pooler` processes adding records to one SQLite file at once all land, and the chain
verifies afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from hypothesis import HealthCheck, given, settings

from pooler.io.manifest import dump_manifest, parse_manifest
from pooler.services import ledger as ledger_service
from pooler.services import registry
from pooler.services.context import Context
from tests.strategies import snapshots


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=snapshots(usage=False))
def test_export_then_apply_into_a_new_ledger_gives_the_same_state(tmp_path, state):
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    first = Context(db=str(folder / "a.db"), actor="tester")
    registry.init(first)
    manifest = folder / "state.toml"
    manifest.write_text(dump_manifest(state, "toml"), encoding="utf-8")
    registry.apply(first, manifest)
    assert registry.snapshot(first) == state

    exported = "".join(ledger_service.export(first, "toml"))
    assert parse_manifest(exported, "export.toml") == state
    second = Context(db=str(folder / "b.db"), actor="tester")
    registry.init(second)
    (folder / "export.toml").write_text(exported, encoding="utf-8")
    registry.apply(second, folder / "export.toml")
    assert registry.snapshot(second) == state
    assert "".join(ledger_service.export(second, "toml")) == exported
    # And applying it again records nothing.
    assert registry.apply(second, folder / "export.toml").plan.empty
    assert ledger_service.verify(second).ok


def test_several_pooler_processes_write_one_file_at_once(tmp_path):
    db = tmp_path / "shared.db"
    env = {**os.environ, "POOLER_DB": str(db), "POOLER_ACTOR": "tester"}
    pooler = [sys.executable, "-m", "pooler.cli"]
    subprocess.run([*pooler, "init"], env=env, check=True, capture_output=True)
    def script(w: int) -> str:
        return " && ".join(
            f"{' '.join(pooler)} member add w{w}-m{i} --name 'Worker {w} member {i}'" for i in range(3)
        )

    procs = [subprocess.Popen(["bash", "-c", script(w)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for w in range(4)]
    for w, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "locked" not in err
    listed = subprocess.run([*pooler, "member", "list", "--json"], env=env, check=True,
                            capture_output=True, text=True)
    ids = sorted(m["id"] for m in json.loads(listed.stdout))
    assert ids == sorted(f"w{w}-m{i}" for w in range(4) for i in range(3))
    verify = subprocess.run([*pooler, "ledger", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
