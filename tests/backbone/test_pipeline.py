"""main.py end to end through mlflow.run: nested runs, registry, model store, reuse, errors."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from tests.conftest import REPO_ROOT, run_main
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths

CORE_STEPS = ["data_ingestion", "model_training", "model_scoring", "model_deployment"]
CORE = f"main.steps='{','.join(CORE_STEPS)}'"


def client_for(state: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")


def parent_runs(client: mlflow.MlflowClient) -> list:
    return [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if r.data.tags.get("pipeline.kind") == "parent"]


def test_chain_builds_parent_with_nested_step_runs(tabular_chain):
    client = client_for(tabular_chain)
    [parent] = parent_runs(client)
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    steps = {r.data.tags["pipeline.step"]: r for r in children}
    assert set(CORE_STEPS) <= set(steps)
    assert all(r.info.status == "FINISHED" for r in children)
    assert steps["data_ingestion"].data.metrics["rows_total"] > 0
    assert steps["model_training"].data.params["training.C"] == "1.0"
    assert steps["model_scoring"].data.metrics["test_f1"] > 0.3
    assert "scoring_report.json" in [a.path for a in client.list_artifacts(steps["model_scoring"].info.run_id)]
    assert all(f"duration_s.{s}" in parent.data.metrics for s in CORE_STEPS)


def test_chain_registers_and_deploys_champion(tabular_chain):
    client = client_for(tabular_chain)
    store = ModelStore(StatePaths.of(tabular_chain).models_dir)
    assert store.production_version() == "attrition_model-v1"
    champion = client.get_model_version_by_alias("attrition_model", "champion")
    assert str(champion.version) == "1"
    assert store.read_score("attrition_model-v1") == pytest.approx(
        float(champion.tags["test_f1"]), abs=1e-6)
    assert (store.model_dir("attrition_model-v1") / "MLmodel").is_file()
    stdout = (tabular_chain / "main_stdout.txt").read_text()
    assert "production model:  attrition_model-v1" in stdout and "mlflow ui --backend-store-uri" in stdout


def test_production_model_predicts(tabular_chain):
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(ModelStore(StatePaths.of(tabular_chain).models_dir).production_model_dir()))
    frame = pd.DataFrame({"lastmonth_activity": [0.0, 900.0], "lastyear_activity": [500.0, 600.0],
                          "number_of_employees": [3.0, 400.0]})
    assert set(model.predict(frame)) <= {0, 1}


@pytest.mark.slow
def test_second_run_reuses_steps_and_changed_params_retrain(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    run_main(CORE, state_dir=state)
    again = run_main(CORE, state_dir=state)
    assert "reused steps:      data_ingestion, model_training, model_scoring" in again.stdout
    client = client_for(state)
    assert len(client.search_model_versions("name = 'attrition_model'")) == 1
    changed = run_main(CORE, "training.C=0.01", "deployment.force=true", state_dir=state)
    assert "reused steps:      data_ingestion\n" in changed.stdout
    assert ModelStore(StatePaths.of(state).models_dir).production_version() == "attrition_model-v2"
    # rollback returns production and the alias to v1
    subprocess.run([sys.executable, str(REPO_ROOT / "04_deployment" / "deployment.py"), "--rollback",
                    "--state-dir", str(state)], check=True, capture_output=True)
    assert str(client.get_model_version_by_alias("attrition_model", "champion").version) == "1"


@pytest.mark.slow
def test_same_data_and_seed_give_same_metrics(tmp_path):
    metrics = []
    for name in ("a", "b"):
        state = tmp_path / name
        state.mkdir()
        run_main("main.steps='data_ingestion,model_training,model_scoring'", state_dir=state)
        scores = ModelStore(StatePaths.of(state).models_dir).read_scores("attrition_model-v1")
        metrics.append(scores["metrics"])
    assert metrics[0] == metrics[1]


def test_unknown_step_fails_at_once_with_valid_names(state_dir):
    proc = run_main("main.steps='data_ingestion,trainng'", state_dir=state_dir, check=False)
    assert proc.returncode != 0
    assert "unknown step(s) trainng" in proc.stderr and "model_training" in proc.stderr
    assert not (state_dir / "mlflow.db").exists(), "nothing may run before the steps are validated"


def test_missing_source_dir_fails_clearly(state_dir, tmp_path):
    proc = run_main(f"data.source_dir={tmp_path / 'missing'}", state_dir=state_dir, check=False)
    assert proc.returncode != 0
    assert "data.source_dir" in proc.stderr and "does not exist" in proc.stderr


def test_failed_step_leaves_production_serving(tabular_chain, tmp_path):
    """A crash in training (an ingested dataset without the label column) stops the chain;
    production is unchanged. (Bad hyperparameters never get this far: main.py rejects them.)"""
    state = tmp_path / "state"
    shutil.copytree(tabular_chain, state, symlinks=True)
    StatePaths.of(state).finaldata_csv.write_text("corporation,unexpected\nx,1\n")
    proc = run_main("main.steps='model_training,model_scoring,model_deployment'", state_dir=state,
                    check=False)
    assert proc.returncode != 0 and "step model_training failed" in proc.stderr
    assert ModelStore(StatePaths.of(state).models_dir).production_version() == "attrition_model-v1"


@pytest.mark.slow
def test_mlflow_run_cli_with_steps_and_hydra_options(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    state.mkdir()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(REPO_ROOT), "-P",
         "steps=data_ingestion,model_training", "-P",
         f"hydra_options=task=tabular training.C=0.5 paths.state_dir={state}", "--env-manager", "local"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    client = client_for(state)
    [version] = client.search_model_versions("name = 'attrition_model'")
    run = client.get_run(version.run_id)
    assert run.data.params["training.C"] == "0.5"
    assert run.data.tags["mlflow.parentRunId"]


@pytest.mark.slow
def test_step_runs_in_isolated_uv_environment(tmp_path):
    """main.env_manager=uv builds the step's own env from its conda.yml (PyPI, pinned)."""
    if shutil.which("uv", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("uv is not installed in this environment (pip install -e .[test] installs it)")
    state = tmp_path / "state"
    state.mkdir()
    proc = run_main("main.env_manager=uv", "main.steps=data_ingestion", state_dir=state, check=False,
                    timeout=900, env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    client = client_for(state)
    [run] = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
             if r.data.tags.get("pipeline.step") == "data_ingestion"]
    assert run.data.tags.get("mlflow.project.env") == "uv"
    assert (StatePaths.of(state).finaldata_csv).is_file()
