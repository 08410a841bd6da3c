"""Model store: atomic versions and swaps, deploy history, rollback, crash safety."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from utils.models.model_store import ModelStore, ModelStoreError, parse_version_id, version_id


def fake_model(tmp_path: Path, name: str, size: int = 10) -> Path:
    folder = tmp_path / f"src-{name}"
    folder.mkdir()
    (folder / "MLmodel").write_text(f"name: {name}\n")
    (folder / "model.bin").write_bytes(os.urandom(size))
    return folder


def store_with(tmp_path: Path, *versions: str) -> ModelStore:
    store = ModelStore(tmp_path / "models")
    for v in versions:
        store.add_version(v, fake_model(tmp_path, v), {"model_name": parse_version_id(v)[0]})
    return store


def test_version_names_round_trip():
    assert version_id("attrition_model", 3) == "attrition_model-v3"
    assert parse_version_id("nlu-model-v12") == ("nlu-model", 12)
    with pytest.raises(ModelStoreError):
        parse_version_id("production")


def test_versions_sorted_by_number_and_per_model(tmp_path):
    store = store_with(tmp_path, "m-v2", "m-v10", "m-v1", "other-v5")
    assert store.list_versions("m") == ["m-v1", "m-v2", "m-v10"]
    assert store.latest_version("m") == "m-v10"
    assert store.latest_version("none") is None


def test_existing_version_is_never_overwritten(tmp_path):
    store = store_with(tmp_path, "m-v1")
    with pytest.raises(ModelStoreError, match="already has"):
        store.add_version("m-v1", fake_model(tmp_path, "again"), {})


def test_deploy_and_rollback_walk_back_through_history(tmp_path):
    store = store_with(tmp_path, "m-v1", "m-v2", "m-v3")
    assert store.production_version() is None
    for v in ("m-v1", "m-v2", "m-v3"):
        store.deploy(v)
    assert store.production_version() == "m-v3"
    assert os.readlink(store.production_link) == "versions/m-v3"   # relative: the dir can move
    assert store.rollback()["version"] == "m-v2"
    assert store.rollback()["version"] == "m-v1"
    with pytest.raises(ModelStoreError, match="nothing to roll back"):
        store.rollback()
    assert store.production_version() == "m-v1"
    assert [e["event"] for e in store.history()] == ["deploy"] * 3 + ["rollback"] * 2


def test_scores_are_written_atomically_and_read_back(tmp_path):
    store = store_with(tmp_path, "m-v1")
    store.write_score("m-v1", {"f1": 0.75, "accuracy": 0.8}, "f1")
    assert store.read_score("m-v1") == 0.75
    assert store.read_scores("m-v1")["metrics"]["accuracy"] == 0.8
    with pytest.raises(ModelStoreError, match="primary metric"):
        store.write_score("m-v1", {"accuracy": 0.8}, "f1")


def test_scores_are_stamped_with_the_pipeline_clock(tmp_path, monkeypatch):
    """Under MLOPS_NOW (a simulated week) a version's scoring time is the simulated one, so its
    backtest sits beside the monitoring records of the same day on the dashboard."""
    store = store_with(tmp_path, "m-v1")
    monkeypatch.setenv("MLOPS_NOW", "2031-03-04T05:06:07+00:00")
    store.write_score("m-v1", {"f1": 0.75}, "f1")
    scored = json.loads((store.version_dir("m-v1") / "scores.json").read_text())["scored"]
    from datetime import datetime

    assert datetime.strptime(scored, "%Y-%m-%dT%H:%M:%S%z").timestamp() == 1930367167


def test_torn_history_line_is_skipped(tmp_path):
    store = store_with(tmp_path, "m-v1")
    store.deploy("m-v1")
    with open(store.history_file, "a") as fh:
        fh.write('{"event": "dep')
    assert [e["version"] for e in store.history()] == ["m-v1"]


_WORKER = """
import sys, os
sys.path.insert(0, {root!r})
from pathlib import Path
from utils.models.model_store import ModelStore
store = ModelStore(Path({models!r}))
src = Path({src!r})
i = 2
print("ready", flush=True)
while True:
    v = f"m-v{{i}}"
    store.add_version(v, src, {{"model_name": "m"}})
    store.deploy(v)
    i += 1
"""


@pytest.mark.parametrize("seed", range(6))
def test_killed_mid_deployment_production_is_always_complete(tmp_path, seed):
    """SIGKILL a process that writes versions and swaps production, at random moments."""
    store = store_with(tmp_path, "m-v1")
    store.deploy("m-v1")
    src = fake_model(tmp_path, "big", size=8 << 20)   # copying takes a while: kills land mid-copy
    proc = subprocess.Popen([sys.executable, "-c", _WORKER.format(
        root=str(REPO_ROOT), models=str(store.root), src=str(src))], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.05, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    current = store.production_version()
    assert current is not None
    folder = store.version_dir(current)
    assert (folder / "metadata.json").is_file()
    assert (folder / "model" / "model.bin").stat().st_size == 8 << 20 or current == "m-v1"
    assert json.loads((folder / "metadata.json").read_text())["version"] == current
    # staging leftovers are invisible to readers and to list_versions
    assert all(not v.startswith(".") for v in store.list_versions())


# ---- a kill at every step of deploy and rollback -------------------------------------------
_STEP_WORKER = """
import json, os, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from utils.models import model_store as ms
K = {k}
count = [0]
def point():
    if count[0] == K:
        os.kill(os.getpid(), signal.SIGKILL)
    count[0] += 1
orig_append, orig_symlink, orig_replace = ms.ModelStore.append_history, os.symlink, os.replace
def append(self, event):
    point()
    if count[0] == K:   # torn: half a line on disk, then the kill
        with open(self.history_file, "a") as fh:
            fh.write(json.dumps(event)[:15]); fh.flush(); os.fsync(fh.fileno())
    point()
    orig_append(self, event)
    point()
def symlink(*a, **kw):
    point(); orig_symlink(*a, **kw); point()
def replace(*a, **kw):
    point(); orig_replace(*a, **kw); point()
ms.ModelStore.append_history, os.symlink, os.replace = append, symlink, replace
store = ms.ModelStore(Path({models!r}))
getattr(store, {action!r})(*{args!r})
print("done", count[0], flush=True)
"""

# deploy: intent (3 points incl. torn) + symlink (2) + replace (2) + commit (3) = 10 points
KILL_POINTS = range(11)


def killed_at(store: ModelStore, k: int, action: str, *args: str) -> bool:
    """Run ``store.<action>(*args)`` in a process SIGKILLed at its k-th step; True if killed."""
    proc = subprocess.run([sys.executable, "-c", _STEP_WORKER.format(
        root=str(REPO_ROOT), models=str(store.root), k=k, action=action, args=list(args))],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode == -signal.SIGKILL


def assert_consistent(store: ModelStore, allowed: set[str]) -> str:
    """Production complete and one of ``allowed``; the history's last commit names it."""
    current = store.production_version()
    assert current in allowed
    assert (store.version_dir(current) / "model" / "model.bin").is_file()
    commits = [e for e in store.history() if e["event"] in ("deploy", "rollback")]
    assert commits[-1]["version"] == current
    assert not list(store.root.glob(".production.*"))
    return current


@pytest.mark.parametrize("k", KILL_POINTS)
def test_kill_at_every_step_of_deploy(tmp_path, k):
    store = store_with(tmp_path, "m-v1", "m-v2", "m-v3")
    store.deploy("m-v1")
    store.deploy("m-v2")
    killed = killed_at(store, k, "deploy", "m-v3")
    assert killed or k >= 10
    store.recover_locked()          # what the next deploy, rollback or chain does first
    current = assert_consistent(store, {"m-v2", "m-v3"})
    event = store.rollback()        # rollback works, to the version before
    assert event["version"] == {"m-v3": "m-v2", "m-v2": "m-v1"}[current]
    assert store.production_version() == event["version"]


@pytest.mark.parametrize("k", KILL_POINTS)
def test_kill_at_every_step_of_rollback(tmp_path, k):
    store = store_with(tmp_path, "m-v1", "m-v2", "m-v3")
    for v in ("m-v1", "m-v2", "m-v3"):
        store.deploy(v)
    killed = killed_at(store, k, "rollback")
    assert killed or k >= 10
    # no explicit recovery: rollback() recovers by itself first
    before = store.production_version()
    assert before in {"m-v2", "m-v3"}
    event = store.rollback()
    assert event["version"] == {"m-v3": "m-v2", "m-v2": "m-v1"}[before]
    assert_consistent(store, {event["version"]})


def test_missing_production_link_is_restored_and_rollback_target_kept(tmp_path):
    store = store_with(tmp_path, "m-v1", "m-v2", "m-v3")
    store.deploy("m-v1")
    store.deploy("m-v2")
    store.production_link.unlink()
    assert store.production_version() is None
    assert [e["event"] for e in store.recover_locked()] == ["restored"]
    assert store.production_version() == "m-v2"
    store.production_link.unlink()
    event = store.deploy("m-v3")           # recovers first: never rollback_to null
    assert event["rollback_to"] == "m-v2"
    assert store.rollback()["version"] == "m-v2"


def test_production_unknown_to_history_is_recorded(tmp_path):
    """The old crash: link swapped, history not written (pre-intent code or a manual swap)."""
    store = store_with(tmp_path, "m-v1", "m-v2")
    store.deploy("m-v1")
    store.swap_production("m-v2")
    assert store.recover_locked()[0]["recovered"] is True
    assert store.rollback()["version"] == "m-v1"


def test_staging_debris_of_dead_writers_is_removed(tmp_path):
    store = store_with(tmp_path, "m-v1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    debris = store.versions_dir / f".staging-m-v2-p{dead}-0123abcd"
    alive = store.versions_dir / f".staging-m-v3-p{os.getpid()}-0123abcd"
    for d in (debris, alive):
        (d / "model").mkdir(parents=True)
    (store.root / ".production.deadbeef").symlink_to("versions/m-v1")
    store.deploy("m-v1")
    assert not debris.exists() and alive.exists()
    assert not list(store.root.glob(".production.*"))


def test_abandoned_version_is_not_the_default_candidate(tmp_path):
    store = store_with(tmp_path, "m-v1", "m-v2")
    store.mark_abandoned("m-v2", "no score: killed")
    assert store.latest_version("m") == "m-v1"
    assert store.list_versions("m") == ["m-v1", "m-v2"]


def test_torn_line_does_not_swallow_the_next_event(tmp_path):
    store = store_with(tmp_path, "m-v1", "m-v2")
    store.deploy("m-v1")
    with open(store.history_file, "a") as fh:
        fh.write('{"event": "dep')
    store.deploy("m-v2")
    assert [e["version"] for e in store.history() if e["event"] == "deploy"] == ["m-v1", "m-v2"]
