"""Test data for the diagnostics and reporting tests: a state dir with ingested data, a test
set and a deployed production model, built here so every expected number is known.

Tabular: a scikit-learn Pipeline fitted on generated rows (the real model type).
NLU: a rule-based MLflow pyfunc with the documented NLU contract (DataFrame with a ``text``
column in; ``intent, confidence, tags, slots`` out), so the expected predictions are exact
without training a transformer.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from tests.conftest import tracking_at  # noqa: F401 (re-exported for the step tests)
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_config import TaskConfig

TABULAR_TASK = TaskConfig(
    name="tabular", model_name="attrition_model", primary_metric="f1", id_column="corporation",
    label_column="exited", label_values=[0, 1],
    features={"lastmonth_activity": {"min": 0, "max": None}, "lastyear_activity": {"min": 0, "max": None},
              "number_of_employees": {"min": 0, "max": None}})
NLU_TASK = TaskConfig(name="nlu", model_name="query_model", primary_metric="intent_accuracy")


# ---------------------------------------------------------------------------------- tabular
def tabular_frame(n: int, seed: int, prefix: str = "c") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    month = rng.integers(0, 120, n).astype(float)
    year = month * 10 + rng.integers(0, 200, n)
    employees = rng.integers(2, 500, n).astype(float)
    exited = ((month < 40) ^ (rng.random(n) < 0.15)).astype(int)
    return pd.DataFrame({"corporation": [f"{prefix}{i}" for i in range(n)], "lastmonth_activity": month,
                         "lastyear_activity": year, "number_of_employees": employees, "exited": exited})


def add_tabular_version(store: ModelStore, number: int, train: pd.DataFrame, score: float,
                        deploy: bool) -> str:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    features = list(TABULAR_TASK.features)
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(random_state=number))])
    model.fit(train[features], train["exited"])
    version = f"attrition_model-v{number}"
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.sklearn.save_model(model, f"{tmp}/model", pip_requirements=["scikit-learn"])
        store.add_version(version, Path(tmp) / "model", {"model_name": "attrition_model",
                                                          "registry_version": number, "task": "tabular",
                                                          "validation_metrics": {"f1": score - 0.01}})
    store.write_score(version, {"f1": score, "accuracy": score + 0.1}, "f1")
    if deploy:
        store.deploy(version, metric="f1", score=score, reason="test")
    return version


def build_tabular_state(state_dir: Path) -> dict[str, Any]:
    """Ingested data (with a missing value), a test CSV, and versions v1..v3 (v1, v3 deployed)."""
    paths = StatePaths.of(state_dir).model("attrition_model")
    ingested = tabular_frame(300, seed=1)
    ingested.loc[[3, 7], "number_of_employees"] = np.nan   # 2 of 300 missing: 0.6667 %
    paths.ingested_dir.mkdir(parents=True, exist_ok=True)
    ingested.to_csv(paths.finaldata_csv, index=False)
    test = tabular_frame(60, seed=2, prefix="t")
    test_path = state_dir / "testdata.csv"
    test.to_csv(test_path, index=False)
    store = ModelStore(paths.models_dir)
    train = tabular_frame(200, seed=3)
    add_tabular_version(store, 1, train, 0.60, deploy=True)
    add_tabular_version(store, 2, train.iloc[:120], 0.55, deploy=False)
    add_tabular_version(store, 3, train, 0.70, deploy=True)
    return {"paths": paths, "store": store, "ingested": ingested, "test": test, "test_path": test_path,
            "production": "attrition_model-v3"}


# -------------------------------------------------------------------------------------- nlu
NLU_INGESTED = [
    {"text": "find modis data for kenya", "intent": "search_dataset",
     "tags": ["O", "B-dataset", "O", "O", "B-location"]},
    {"text": "find sentinel data for east africa", "intent": "search_dataset",
     "tags": ["O", "B-dataset", "O", "O", "B-location", "I-location"]},
    {"text": "help me", "intent": "get_help", "tags": ["O", "O"]},
    {"text": "Help please", "intent": "get_help", "tags": ["O", "O"]},
    {"text": "alert me about floods in kenya", "intent": "subscribe_alert",
     "tags": ["O", "O", "O", "B-theme", "O", "B-location"]},
    {"text": "", "intent": "get_help", "tags": []},              # empty text and tags
    {"text": "modis", "intent": "search_dataset", "tags": []},   # empty tags only
    {"text": "what now", "tags": ["O", "O"]},                    # no intent
]

NLU_TEST = [
    {"text": "find modis data for kenya", "intent": "search_dataset",
     "tags": ["O", "B-dataset", "O", "O", "B-location"]},
    {"text": "find landsat data for ghana", "intent": "search_dataset",
     "tags": ["O", "B-dataset", "O", "O", "B-location"]},
    {"text": "help me", "intent": "get_help", "tags": ["O", "O"]},
    {"text": "alert me about floods in kenya", "intent": "subscribe_alert",
     "tags": ["O", "O", "O", "B-theme", "O", "B-location"]},
    {"text": "alert me about fires", "intent": "subscribe_alert", "tags": ["O", "O", "O", "B-theme"]},
    {"text": "show modis help", "intent": "search_dataset", "tags": ["O", "B-dataset", "O"]},
]

DATASETS = {"modis", "sentinel"}          # the fake model knows these datasets (not landsat)
PLACES = {"kenya", "ghana"}
THEMES = {"floods"}                       # ... and this theme (not fires)


def rule_predict(text: str) -> dict[str, Any]:
    """The fake NLU model's answer for one text (exact expectations for the tests)."""
    tokens = text.split()
    lower = [t.lower() for t in tokens]
    if "help" in lower:
        intent, confidence = "get_help", 0.9
    elif "alert" in lower:
        intent, confidence = "subscribe_alert", 0.8
    else:
        intent, confidence = "search_dataset", 0.7
    tags = ["B-dataset" if t in DATASETS else "B-location" if t in PLACES else "B-theme" if t in THEMES
            else "O" for t in lower]
    slots, pos = [], 0
    for token, tag in zip(tokens, tags):
        start = text.index(token, pos)
        pos = start + len(token)
        if tag != "O":
            slots.append({"text": token, "type": tag[2:], "start": start, "end": pos})
    return {"intent": intent, "confidence": confidence, "tags": tags, "slots": slots}


class RuleNluModel(mlflow.pyfunc.PythonModel):
    """Stands in for the NLU pyfunc: same input and output columns."""

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        texts = model_input["text"].tolist() if isinstance(model_input, pd.DataFrame) else list(model_input)
        rows = [rule_predict(t) for t in texts]
        return pd.DataFrame({k: [r[k] for r in rows] for k in ("intent", "confidence", "tags", "slots")})


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def build_nlu_state(state_dir: Path) -> dict[str, Any]:
    """Ingested JSONL (with empty fields), a test JSONL and the rule model deployed as v1."""
    paths = StatePaths.of(state_dir).model("query_model")
    write_jsonl(paths.finaldata_jsonl, NLU_INGESTED)
    test_path = write_jsonl(state_dir / "test.jsonl", NLU_TEST)
    store = ModelStore(paths.models_dir)
    version = "query_model-v1"
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.save_model(f"{tmp}/model", python_model=RuleNluModel(), pip_requirements=["mlflow"])
        store.add_version(version, Path(tmp) / "model", {"model_name": "query_model", "registry_version": 1,
                                                          "task": "nlu",
                                                          "validation_metrics": {"intent_accuracy": 0.8}})
    store.write_score(version, {"intent_accuracy": 5 / 6, "slot_f1": 0.8}, "intent_accuracy")
    store.deploy(version, metric="intent_accuracy", score=5 / 6, reason="test")
    return {"paths": paths, "store": store, "test_path": test_path, "production": version}


def drift_doc(drift: bool, seed: int = 3) -> dict[str, Any]:
    """A drift.json as utils/tick/drift_check.py writes it, from real statistics on generated
    rows: with ``drift`` the new rows' lastmonth_activity is shifted up by 60 (clear KS drift)."""
    from utils.monitoring.drift import DriftSettings, tabular_drift

    reference = tabular_frame(300, seed)
    new = tabular_frame(250, seed + 1, prefix="n")
    if drift:
        new["lastmonth_activity"] = new["lastmonth_activity"] + 60
    report = tabular_drift(reference, new, ["lastmonth_activity", "lastyear_activity", "number_of_employees"],
                           ["exited"], DriftSettings())
    perf = {"production": "attrition_model-v3", "metric": "f1", "drift": False, "n_examples": 250,
            "rule": "lower", "relative_tolerance": 0.0, "new_score": 0.71, "recorded_score": 0.70,
            "reason": "new score 0.7100 >= recorded 0.7000"}
    return {"time": "2026-01-02T03:04:05+0000", "tick": "20260102T030405-abc123", "task": "tabular",
            "n_reference": 300, "n_new": 250, "drift": report.drift,
            "signals": {"performance": False, "distribution": report.drift},
            "performance": perf, "distribution": report.to_dict(), "prediction_inputs": None, "duration_s": 0.2}


def write_drift(paths: StatePaths, drift: bool) -> dict[str, Any]:
    doc = drift_doc(drift)
    paths.reports_dir.mkdir(parents=True, exist_ok=True)
    (paths.reports_dir / "drift.json").write_text(json.dumps(doc))
    return doc


# ------------------------------------------------------------------------------ step runs
def load_steps() -> tuple[Any, Any]:
    """(diagnostics module, reporting module), imported from their step folders."""
    from tests.conftest import load_step_module

    return load_step_module("diagnostics/diagnostics.py"), load_step_module("06_reporting/reporting.py")


def run_in_pipeline(go: Any, config: Any, step: str, experiment_id: str) -> tuple[int, str]:
    """Run a step's go() as main.py would: a nested run under a parent whose model_deployment
    step finished 4 s earlier. Returns (exit code, the step's run id)."""
    client = mlflow.MlflowClient()
    parent = client.create_run(experiment_id, run_name="pipeline", tags={
        "pipeline.kind": "parent", "pipeline.steps": f"model_deployment,{step}"}).info.run_id
    deploy = client.create_run(experiment_id, run_name="model_deployment",
                               tags={"mlflow.parentRunId": parent, "pipeline.step": "model_deployment"})
    client.set_terminated(deploy.info.run_id, end_time=deploy.info.start_time + 4000)
    client.set_tag(parent, "pipeline.run.model_deployment", deploy.info.run_id)
    client.log_metric(parent, "duration_s.model_deployment", 4.5)
    with mlflow.start_run(run_id=parent):
        with mlflow.start_run(run_name=step, nested=True) as run:
            code = go(config)
    return code, run.info.run_id


def diagnostics_config(state: dict[str, Any], task: TaskConfig, latency_calls: int = 25) -> Any:
    diagnostics, _ = load_steps()
    return diagnostics.DiagnosticsConfig(
        state_dir=str(state["paths"].state_dir), task=task,
        data=diagnostics.DiagnosticsData(test_path=str(state["test_path"])),
        diagnostics=diagnostics.DiagnosticsSection(latency_calls=latency_calls, pypi_url=None))


def reporting_config(state_dir: Path, task: TaskConfig) -> Any:
    _, reporting = load_steps()
    return reporting.ReportingConfig(state_dir=str(state_dir), task=task)


def built_and_reported(root: Path, task_name: str, empty_db: Path) -> dict[str, Any]:
    """A state dir after the diagnostics and reporting steps (both run as in the pipeline)."""
    diagnostics, reporting = load_steps()
    root.mkdir(parents=True, exist_ok=True)
    task = TABULAR_TASK if task_name == "tabular" else NLU_TASK
    with tracking_at(root, empty_db) as experiment_id:
        state = build_tabular_state(root) if task_name == "tabular" else build_nlu_state(root)
        code, run_id = run_in_pipeline(diagnostics.go, diagnostics_config(state, task), "diagnostics",
                                       experiment_id)
        state.update(diagnostics_exit=code, diagnostics_run=run_id, task=task)
        state["report_exit"], state["report_run"] = run_in_pipeline(
            reporting.go, reporting_config(root, task), "reporting", experiment_id)
        client = mlflow.MlflowClient()
        state["artifacts"] = {
            "diagnostics": [a.path for a in client.list_artifacts(run_id)],
            "reporting": [a.path for a in client.list_artifacts(state["report_run"], "reports")],
        }
        state["metrics"] = client.get_run(run_id).data.metrics
    diag_file = state["paths"].reports_dir / "diagnostics.json"
    state["diagnostics"] = json.loads(diag_file.read_text()) if diag_file.is_file() else None
    return state
