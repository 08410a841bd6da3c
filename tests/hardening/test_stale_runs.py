"""MLflow runs left RUNNING by killed processes are ended as KILLED; scoreless leftovers marked."""
from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest

from tests.backbone.test_model_store import fake_model
from tests.conftest import load_step_module, run_main
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.pipeline.stale_runs import HOST_TAG, PID_TAG, end_stale_runs, owner_tags

main = load_step_module("main.py")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def running_run(client, experiment_id: str, tags: dict[str, str]) -> str:
    return client.create_run(experiment_id, tags=tags).info.run_id


def status(client, run_id: str) -> str:
    return client.get_run(run_id).info.status


def test_runs_of_dead_owners_and_their_children_are_killed(tracking):
    client = mlflow.MlflowClient()
    dead = {**owner_tags(), PID_TAG: str(dead_pid())}
    parent = running_run(client, tracking, dead)
    child = running_run(client, tracking, {"mlflow.parentRunId": parent})   # never got an owner
    orphan = running_run(client, tracking, {"mlflow.parentRunId": "gone-parent"})
    alive = running_run(client, tracking, owner_tags())                      # this process: alive
    alive_child = running_run(client, tracking, {"mlflow.parentRunId": alive})
    foreign = running_run(client, tracking, {**dead, HOST_TAG: "another-host"})
    ended = end_stale_runs(client, [tracking])
    assert set(ended) == {parent, child, orphan}
    assert [status(client, r) for r in (parent, child, orphan)] == ["KILLED"] * 3
    assert [status(client, r) for r in (alive, alive_child, foreign)] == ["RUNNING"] * 3


def test_reused_pid_is_not_the_owner(tracking):
    client = mlflow.MlflowClient()
    tags = {**owner_tags(), "pipeline.owner.started": "12.00"}   # our pid, but another start time
    run = running_run(client, tracking, tags)
    assert end_stale_runs(client, [tracking]) == [run]


def test_next_chain_cleans_up_a_killed_chain(state_dir, tracking):
    """A chain killed between training and scoring: RUNNING runs and a scoreless version."""
    client = mlflow.MlflowClient()
    parent = running_run(client, tracking, {**owner_tags(), PID_TAG: str(dead_pid())})
    child = running_run(client, tracking, {"mlflow.parentRunId": parent})
    store = ModelStore(StatePaths.of(state_dir).model("m").models_dir)
    store.add_version("m-v1", fake_model(state_dir, "a"), {"model_name": "m", "run_id": child})
    store.add_version("m-v2", fake_model(state_dir, "b"), {"model_name": "m", "run_id": child})
    store.write_score("m-v1", {"f1": 0.5}, "f1")
    main.clean_up_after_killed_runs(tracking, store, "m")
    assert status(client, parent) == status(client, child) == "KILLED"
    assert store.is_abandoned("m-v2") and not store.is_abandoned("m-v1")
    assert store.latest_version("m") == "m-v1"


def test_version_of_a_live_chain_is_not_marked(state_dir, tracking):
    client = mlflow.MlflowClient()
    parent = running_run(client, tracking, owner_tags())
    child = running_run(client, tracking, {"mlflow.parentRunId": parent})
    store = ModelStore(StatePaths.of(state_dir).model("m").models_dir)
    store.add_version("m-v1", fake_model(state_dir, "a"), {"model_name": "m", "run_id": child})
    main.clean_up_after_killed_runs(tracking, store, "m")
    assert not store.is_abandoned("m-v1") and status(client, child) == "RUNNING"


@pytest.mark.timeout(300)
def test_failed_env_manager_leaves_no_running_run(state_dir):
    """main.env_manager=conda without conda: the step's run was RUNNING forever."""
    import shutil

    if shutil.which("conda") or shutil.which("mamba"):
        pytest.skip("conda is installed here: the failure this test needs cannot happen")
    proc = run_main("main.env_manager=conda", "main.steps=data_ingestion", state_dir=state_dir,
                    check=False, timeout=300)
    assert proc.returncode == 1 and "step data_ingestion failed" in proc.stderr
    client = mlflow.MlflowClient(f"sqlite:///{state_dir / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status != "RUNNING" for r in runs), [r.info.status for r in runs]
