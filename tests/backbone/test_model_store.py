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
