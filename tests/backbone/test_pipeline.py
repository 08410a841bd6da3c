"""main.py end to end through mlflow.run: nested runs, registry, model store, reuse, errors."""
from __future__ import annotations

import os
import re
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
    store = ModelStore(StatePaths.of(tabular_chain).model("attrition_model").models_dir)
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

    model = mlflow.pyfunc.load_model(str(ModelStore(StatePaths.of(tabular_chain).model("attrition_model").models_dir).production_model_dir()))
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
    assert ModelStore(StatePaths.of(state).model("attrition_model").models_dir).production_version() == "attrition_model-v2"
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
        scores = ModelStore(StatePaths.of(state).model("attrition_model").models_dir).read_scores("attrition_model-v1")
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
    StatePaths.of(state).model("attrition_model").finaldata_csv.write_text("corporation,unexpected\nx,1\n")
    proc = run_main("main.steps='model_training,model_scoring,model_deployment'", state_dir=state,
                    check=False)
    assert proc.returncode != 0 and "step model_training failed" in proc.stderr
    assert ModelStore(StatePaths.of(state).model("attrition_model").models_dir).production_version() == "attrition_model-v1"


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
    assert (StatePaths.of(state).model("attrition_model").finaldata_csv).is_file()


def test_unsafe_model_name_is_refused_before_anything_is_written(state_dir):
    for name in ("../escape", "a b", "versions"):
        proc = run_main(f"task.model_name='{name}'", state_dir=state_dir, check=False)
        assert proc.returncode == 1 and "not a safe model name" in proc.stderr, proc.stderr[-2000:]
    assert not (state_dir / "models").exists() and not (state_dir / "mlflow.db").exists()


@pytest.mark.slow
def test_multirun_tracks_every_job_and_the_best_ends_in_production(tmp_path):
    """`main.py -m training.C=...`: three jobs, three parent runs and candidates; the gate keeps the best."""
    state = tmp_path / "state"
    state.mkdir()
    proc = run_main("-m", "training.C=0.001,1,1000", CORE, state_dir=state, timeout=1200)
    store = ModelStore(StatePaths.of(state).model("attrition_model").models_dir)
    versions = store.list_versions()
    assert versions == [f"attrition_model-v{n}" for n in (1, 2, 3)], proc.stderr[-3000:]
    scores = {v: store.read_score(v) for v in versions}
    assert store.production_version() == max(scores, key=scores.get)
    parents = parent_runs(client_for(state))
    assert len(parents) == 3 and all(r.info.status == "FINISHED" for r in parents)
    assert sorted(float(r.data.params["training.C"]) for r in _training_runs(client_for(state))) == [
        0.001, 1.0, 1000.0]
    jobs = sorted(p.name for p in (state / "logs" / "multirun").iterdir())
    assert len(jobs) == 1 and sorted(p.name for p in (state / "logs" / "multirun" / jobs[0]).iterdir()
                                     if p.is_dir()) == ["0", "1", "2"]
    manifest = (state / "models" / "attrition_model" / "model.json").read_text()
    assert "training.C" not in manifest          # the swept key is not part of the model's definition


def _training_runs(client: mlflow.MlflowClient) -> list:
    return [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if r.data.tags.get("pipeline.step") == "model_training"]


# ---- what an operator sees: the finished report, the summary, the MLflow conventions ----------
STEP_ROW = re.compile(r'<tr><td>(\w+)</td><td>([^<]+)</td>\s*<td class="n">([^<]+)</td>\s*<td class="n">([^<]+)</td>')


def seconds(text: str) -> float:
    """ "1,234 s" -> 1234.0 (the report's duration cells)."""
    return float(text.replace(",", "").split()[0])


def test_report_of_a_finished_chain_shows_every_step_finished(tabular_chain):
    html = (tabular_chain / "reports" / "attrition_model" / "report.html").read_text()
    table = html[html.index('<table id="steps">'):]
    table = table[:table.index("</table>")]
    rows = {m.group(1): m.groups()[1:] for m in STEP_ROW.finditer(table)}
    assert list(rows) == ["data_ingestion", "model_training", "model_scoring", "model_deployment",
                          "diagnostics", "reporting"]
    assert {status for status, _, _ in rows.values()} == {"FINISHED"}
    client = client_for(tabular_chain)
    [parent] = parent_runs(client)
    parent_wall = (parent.info.end_time - parent.info.start_time) / 1000
    walls = [seconds(wall) for _, _, wall in rows.values()]
    durations = [seconds(d) for _, d, _ in rows.values()]
    assert all(d > 0 for d in durations)
    assert sum(durations) <= sum(walls) <= parent_wall
    assert "written while the run was going" not in html
    shown = re.search(r"pipeline wall time <b>([^<]+)</b>", html).group(1)
    assert seconds(shown) == pytest.approx(parent_wall, rel=2e-3)   # 4 significant digits


def test_summary_names_the_candidate_and_production(tabular_chain):
    stdout = (tabular_chain / "main_stdout.txt").read_text()
    assert re.search(r"candidate model:   attrition_model-v1 \(f1 0\.\d{4} on the test data\); "
                     r"gate: deployed \(no champion yet\)", stdout), stdout[-2000:]


def test_mlflow_shows_datasets_names_and_description(tabular_chain):
    client = client_for(tabular_chain)
    [parent] = parent_runs(client)
    assert parent.info.run_name.startswith("attrition_model ")
    assert parent.data.tags["mlflow.note.content"].startswith("Pipeline run of `attrition_model`")
    children = {r.data.tags["pipeline.step"]: r for r in client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")}
    for run in (parent, children["data_ingestion"], children["model_training"]):
        assert [d.dataset.name for d in run.inputs.dataset_inputs][:1] == ["finaldata.csv"], run.info.run_name
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "parent run" in experiment.tags["mlflow.note.content"]


def test_training_and_scoring_only_names_the_new_candidate(tabular_chain, tmp_path):
    state = tmp_path / "state"
    shutil.copytree(tabular_chain, state, symlinks=True)
    proc = run_main("main.steps='model_training,model_scoring'", "training.C=0.5", state_dir=state)
    assert re.search(r"candidate model:   attrition_model-v2 \(f1 0\.\d{4} on the test data\); gate: not run",
                     proc.stdout), proc.stdout
    assert "production model:  attrition_model-v1" in proc.stdout
    [name] = [r.info.run_name for r in parent_runs(client_for(state)) if "training.C=0.5" in r.info.run_name]
    assert "[model_training,model_scoring]" in name
    assert "Downloading artifacts" not in proc.stderr and "UserWarning" not in proc.stderr
