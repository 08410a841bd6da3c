"""model_deployment: the gate, the champion alias, rollback through the CLI."""
from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest

from tests.conftest import REPO_ROOT, load_step_module
from tests.backbone.test_model_store import fake_model
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_config import TaskConfig

deployment = load_step_module("04_deployment/deployment.py")


@pytest.mark.parametrize("candidate, champion, tolerance, force, expected", [
    (0.80, None, 0.0, False, True),      # first model
    (0.80, 0.70, 0.0, False, True),      # better
    (0.70, 0.70, 0.0, False, True),      # equal
    (0.69, 0.70, 0.0, False, False),     # worse
    (0.69, 0.70, 0.02, False, True),     # worse, within tolerance
    (0.10, 0.90, 0.0, True, True),       # forced
])
def test_gate(candidate, champion, tolerance, force, expected):
    assert deployment.decide(candidate, champion, tolerance, force)[0] is expected


def registered_store(state_dir, tmp_path, scores: dict[int, float]) -> ModelStore:
    """Store versions m-v<N> with scores, each also a version of registered model `m`."""
    client = mlflow.MlflowClient()
    client.create_registered_model("m")
    store = ModelStore(StatePaths.of(state_dir).model("m").models_dir)
    for number, score in scores.items():
        src = fake_model(tmp_path, f"m{number}")
        client.create_model_version("m", str(src))
        store.add_version(f"m-v{number}", src, {"model_name": "m"})
        store.write_score(f"m-v{number}", {"f1": score}, "f1")
    return store


def deploy(state_dir, experiment_id, version, tolerance=0.0, force=False) -> int:
    config = deployment.DeploymentConfig(
        state_dir=str(state_dir), task=TaskConfig(model_name="m", primary_metric="f1"),
        deployment=deployment.DeploymentSection(tolerance=tolerance, force=force),
        model_version=version)
    with mlflow.start_run(experiment_id=experiment_id):
        return deployment.go(config)


def champion_alias() -> str:
    return str(mlflow.MlflowClient().get_model_version_by_alias("m", "champion").version)


def test_gate_keeps_champion_and_force_overrides(state_dir, tmp_path, tracking):
    store = registered_store(state_dir, tmp_path, {1: 0.70, 2: 0.60, 3: 0.75})
    assert deploy(state_dir, tracking, "m-v1") == 0
    assert store.production_version() == "m-v1" and champion_alias() == "1"
    assert deploy(state_dir, tracking, "m-v2") == 0                 # worse: rejected
    assert store.production_version() == "m-v1" and champion_alias() == "1"
    assert store.history()[-1]["event"] == "rejected"
    assert deploy(state_dir, tracking, "m-v2", tolerance=0.2) == 0  # within tolerance
    assert store.production_version() == "m-v2" and champion_alias() == "2"
    assert deploy(state_dir, tracking, "m-v3") == 0
    assert store.production_version() == "m-v3" and champion_alias() == "3"


def test_unscored_candidate_is_refused(state_dir, tmp_path, tracking, caplog):
    store = registered_store(state_dir, tmp_path, {1: 0.7})
    (store.version_dir("m-v1") / "latestscore.txt").unlink()
    assert deploy(state_dir, tracking, "m-v1") == 2
    assert "run model_scoring" in caplog.text
    assert store.production_version() is None


def test_rollback_cli_moves_production_and_alias(state_dir, tmp_path, tracking):
    store = registered_store(state_dir, tmp_path, {1: 0.7, 2: 0.8})
    deploy(state_dir, tracking, "m-v1")
    deploy(state_dir, tracking, "m-v2")
    cli = [sys.executable, str(REPO_ROOT / "04_deployment" / "deployment.py"), "--state-dir", str(state_dir)]
    proc = subprocess.run([*cli, "--rollback"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "production is now m-v1" in proc.stdout
    assert store.production_version() == "m-v1" and champion_alias() == "1"
    proc = subprocess.run([*cli, "--rollback"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "nothing to roll back" in proc.stderr
    status = subprocess.run([*cli, "--status"], capture_output=True, text=True, cwd=tmp_path)
    assert '"production": "m-v1"' in status.stdout
