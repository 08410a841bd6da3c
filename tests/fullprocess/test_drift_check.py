"""The tick's drift check on a real state dir: production model, reference, new rows, MLflow."""
from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.conftest import REPO_ROOT
from tests.fullprocess.helpers import generate
from tests.fullprocess.test_drift_stats import utterances
from utils.pipeline.config import load_config
from utils.tick.drift_check import new_tabular_rows, run_drift_check
from utils.models.model_store import ModelStore
from utils.data.nlu_data import NluExample, write_jsonl
from utils.pipeline.paths import StatePaths
from utils.monitoring.prediction_log import LoggedBatch, PredictionLog


@pytest.fixture
def paths(state_dir: Path, empty_tracking_db: Path) -> StatePaths:
    paths = StatePaths.of(state_dir).model("attrition_model")
    shutil.copy(empty_tracking_db, paths.mlflow_db)
    paths.ingested_dir.mkdir(parents=True)
    return paths


def deploy(store: ModelStore, version: str, model_dir: Path, metric: str, score: float) -> None:
    store.add_version(version, model_dir, {"model_name": version.rsplit("-v", 1)[0]})
    store.write_score(version, {metric: score}, metric)
    store.deploy(version)


def tabular_production(paths: StatePaths, train: pd.DataFrame, tmp_path: Path) -> float:
    """A LogisticRegression on ``train`` in the store as production; returns its recorded F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(train[features].astype(float), train["exited"])
    recorded = f1_score(train["exited"], model.predict(train[features].astype(float)))
    mlflow.sklearn.save_model(model, tmp_path / "sk", pip_requirements=["scikit-learn"])  # no 6 s inference
    deploy(ModelStore(paths.models_dir), "attrition_model-v1", tmp_path / "sk", "f1", recorded)
    return recorded


def drift_report(paths: StatePaths) -> dict:
    return json.loads((paths.reports_dir / "drift.json").read_text())


def test_tabular_wrong_labels_and_like_training_data(paths: StatePaths, tmp_path: Path) -> None:
    reference = generate(800, seed=1, id_prefix="ref")
    tabular_production(paths, reference, tmp_path)
    ref_file = paths.ingested_dir / "drift_reference.csv"
    reference.to_csv(ref_file, index=False)
    cfg = load_config([f"paths.state_dir={paths.state_dir}", "drift.performance.relative_tolerance=0.2"])

    similar = generate(300, seed=2, id_prefix="new")
    pd.concat([reference, similar]).to_csv(paths.finaldata_csv, index=False)
    calm = run_drift_check(cfg, paths, ref_file, paths.finaldata_csv, None, "tick-1")
    assert (calm.n_reference, calm.n_new) == (800, 300)
    assert calm.signals == {"performance": False, "distribution": False}, drift_report(paths)

    flipped = generate(300, seed=3, id_prefix="bad").assign(exited=lambda f: 1 - f["exited"])
    pd.concat([reference, flipped]).to_csv(paths.finaldata_csv, index=False)
    alarm = run_drift_check(cfg, paths, ref_file, paths.finaldata_csv, None, "tick-2")
    assert alarm.performance is True and alarm.n_new == 300
    report = drift_report(paths)
    assert report["tick"] == "tick-2" and report["performance"]["new_score"] < report["performance"]["recorded_score"]
    assert report["drift"] is True and report["signals"]["performance"] is True
    run = mlflow.get_run(alarm.mlflow_run_id)
    assert run.data.tags["pipeline.kind"] == "drift_check" and run.data.metrics["drift_performance"] == 1.0
    assert "p_adjusted.ks.lastmonth_activity" in run.data.metrics


def test_unlabelled_inputs_from_the_prediction_log(paths: StatePaths, tmp_path: Path) -> None:
    reference = generate(800, seed=1, id_prefix="ref")
    ref_file = paths.ingested_dir / "drift_reference.csv"
    reference.to_csv(ref_file, index=False)
    new = generate(50, seed=4, id_prefix="n")
    pd.concat([reference, new]).to_csv(paths.finaldata_csv, index=False)
    shifted = generate(400, seed=5, id_prefix="api").assign(number_of_employees=lambda f: f["number_of_employees"] * 5)
    since = time.time()
    features = shifted.drop(columns=["exited"])
    writer = PredictionLog(paths.predictions_db).start()   # the API's own writer
    for when, frame in ((since - 3600, features.head(5)), (since + 1, features)):
        writer.append(LoggedBatch(time=when, model_version="attrition_model-v1", task="tabular",
                                  request_id="r", input={"columns": list(frame.columns),
                                                         "rows": frame.values.tolist(), "ids": None},
                                  outputs=[{"prediction": 0}] * len(frame), latency_ms=1.0))
    writer.close()
    cfg = load_config([f"paths.state_dir={paths.state_dir}"])
    outcome = run_drift_check(cfg, paths, ref_file, paths.finaldata_csv, since, "t")
    report = drift_report(paths)
    assert report["prediction_inputs"]["n_new"] == 400
    assert "ks:number_of_employees" in report["prediction_inputs"]["signals"]
    assert outcome.distribution is True and outcome.performance is None   # no production model


def test_new_rows_are_the_rows_not_in_the_reference() -> None:
    ref = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    cur = pd.DataFrame({"a": [3, 1, 4, 2], "b": ["z", "x", "w", "q"]})
    assert new_tabular_rows(ref, cur).to_dict(orient="list") == {"a": [4, 2], "b": ["w", "q"]}


class ConstantNlu(mlflow.pyfunc.PythonModel):
    """Always answers get_statistics with no slots (the pyfunc contract: texts -> rows)."""

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        texts = list(model_input["text"])
        return pd.DataFrame({"intent": ["get_statistics"] * len(texts), "confidence": [0.9] * len(texts),
                             "tags": [["O"] * len(t.split()) for t in texts], "slots": [[] for _ in texts]})


@pytest.mark.skipif(not (REPO_ROOT / "utils/conf/task/nlu.yaml").is_file(), reason="no NLU task config")
def test_nlu_drift_and_performance(paths: StatePaths, tmp_path: Path) -> None:
    paths = paths.model("nlu_query_model")
    paths.ingested_dir.mkdir(parents=True)
    rng = random.Random(1)

    def as_examples(generated: tuple, first_id: int) -> list[NluExample]:
        """Made unique (the dataset is de-duplicated) by a numbered request id token."""
        return [NluExample(f"{t} ref{first_id + k}", i, (*g, "O"))
                for k, (t, i, g) in enumerate(zip(*generated))]

    reference = as_examples(utterances(600, rng), 0)
    new = as_examples(utterances(200, rng, weights=(1, 4, 1)), 10_000)
    ref_file = paths.ingested_dir / "drift_reference.jsonl"
    write_jsonl(reference, ref_file)
    write_jsonl(reference + new, paths.finaldata_jsonl)
    mlflow.pyfunc.save_model(tmp_path / "nlu", python_model=ConstantNlu(), pip_requirements=["mlflow"])
    deploy(ModelStore(paths.models_dir), "nlu_query_model-v1", tmp_path / "nlu", "exact_match", 0.8)
    cfg = load_config(["task=nlu", f"paths.state_dir={paths.state_dir}"])
    outcome = run_drift_check(cfg, paths, ref_file, paths.finaldata_jsonl, None, "t")
    report = drift_report(paths)
    assert outcome.n_new == 200 and outcome.performance is True
    assert report["performance"]["metrics"]["exact_match"] == 0.0
    assert "chi2:intent" in report["distribution"]["signals"] and outcome.distribution is True
    assert {t["feature"] for t in report["distribution"]["tests"]} == {"utterance_length", "intent", "slot_type"}
