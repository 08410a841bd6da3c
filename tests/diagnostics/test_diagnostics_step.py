"""The diagnostics step (diagnostics/diagnostics.py) on state dirs built in the test, both tasks."""
from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest

from tests.diagnostics.builders import (NLU_TEST, TABULAR_TASK, built_and_reported, diagnostics_config,
                                        load_steps, rule_predict, run_in_pipeline, tracking_at)
from utils.monitoring.diagnostics_lib import project_pins
from utils.models.model_store import ModelStore

SECTIONS = {"generated", "task", "state_dir", "test_path", "model_version", "predictions", "summary_stats",
            "missing_values", "timing", "dependencies", "system"}


@pytest.fixture(scope="module")
def tabular(tmp_path_factory, empty_tracking_db):
    return built_and_reported(tmp_path_factory.mktemp("diag") / "tabular", "tabular", empty_tracking_db)


@pytest.fixture(scope="module")
def nlu(tmp_path_factory, empty_tracking_db):
    return built_and_reported(tmp_path_factory.mktemp("diag") / "nlu", "nlu", empty_tracking_db)


def test_tabular_writes_every_section(tabular):
    assert tabular["diagnostics_exit"] == 0
    d = tabular["diagnostics"]
    assert set(d) == SECTIONS
    assert d["task"] == "tabular" and d["model_version"] == "attrition_model-v3"
    assert "diagnostics.json" in tabular["artifacts"]["diagnostics"], "logged to MLflow"


def test_tabular_predictions_are_the_production_models(tabular):
    pred = tabular["diagnostics"]["predictions"]
    test = tabular["test"]
    model = mlflow.sklearn.load_model(str(tabular["store"].model_dir("attrition_model-v3")))
    features = test[list(TABULAR_TASK.features)].astype(float)
    expected = model.predict(features)
    proba = model.predict_proba(features).max(axis=1)   # P(predicted label), as the API answers
    assert pred["n_examples"] == len(test) == len(pred["rows"]) == 60
    assert [r["id"] for r in pred["rows"]] == test["corporation"].tolist()
    assert [r["label"] for r in pred["rows"]] == test["exited"].tolist()
    assert [r["predicted"] for r in pred["rows"]] == expected.tolist()
    assert [r["probability"] for r in pred["rows"]] == pytest.approx(proba.tolist())
    assert pred["accuracy"] == pytest.approx(float((expected == test["exited"]).mean()))
    assert sum(pred["predicted_counts"].values()) == 60


def test_tabular_summary_and_missing_values_of_the_ingested_data(tabular):
    d = tabular["diagnostics"]
    frame: pd.DataFrame = tabular["ingested"]
    stats = d["summary_stats"]
    assert stats["n_rows"] == 300 and stats["columns"] == list(frame.columns)
    month = stats["summary"]["lastmonth_activity"]
    assert month["mean"] == pytest.approx(frame["lastmonth_activity"].mean())
    assert month["median"] == pytest.approx(frame["lastmonth_activity"].median())
    assert month["std"] == pytest.approx(frame["lastmonth_activity"].std())
    assert (month["min"], month["max"]) == (frame["lastmonth_activity"].min(), frame["lastmonth_activity"].max())
    assert month["quantiles"]["0.25"] == pytest.approx(frame["lastmonth_activity"].quantile(0.25))
    assert stats["summary"]["number_of_employees"]["count"] == 298
    assert "corporation" not in stats["summary"]
    assert d["missing_values"] == {"corporation": 0.0, "lastmonth_activity": 0.0, "lastyear_activity": 0.0,
                                   "number_of_employees": round(200 / 300, 4), "exited": 0.0}


def test_tabular_timing_latency_dependencies_system(tabular):
    d = tabular["diagnostics"]
    latency = d["timing"]["latency"]
    assert latency["n_calls"] == 25 and 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert tabular["metrics"]["latency_p99_ms"] == pytest.approx(latency["p99_ms"])
    steps = {s["step"]: s for s in d["timing"]["pipeline"]["steps"]}
    assert steps["model_deployment"]["duration_s"] == pytest.approx(4.0)
    assert steps["model_deployment"]["wall_s"] == pytest.approx(4.5)
    assert steps["diagnostics"]["status"] == "RUNNING"
    deps = d["dependencies"]
    assert {p["name"] for p in deps["packages"]} == set(project_pins())
    assert all(p["latest"] == "unknown" for p in deps["packages"]), "pypi_url=null: no lookup"
    assert {p["name"]: p["status"] for p in deps["packages"]}["mlflow"] == "ok"
    assert d["system"]["cpu"]["logical"] >= 1 and d["system"]["disk"]["path"] == d["state_dir"]


def test_nlu_predictions_summary_and_missing(nlu):
    assert nlu["diagnostics_exit"] == 0
    d = nlu["diagnostics"]
    assert set(d) == SECTIONS and d["model_version"] == "query_model-v1"
    rows = d["predictions"]["rows"]
    assert [r["text"] for r in rows] == [ex["text"] for ex in NLU_TEST]
    for row, ex in zip(rows, NLU_TEST):
        expected = rule_predict(ex["text"])
        assert (row["intent"], row["tags"]) == (ex["intent"], ex["tags"])
        assert row["predicted_intent"] == expected["intent"]
        assert row["predicted_tags"] == expected["tags"]
        assert row["slots"] == expected["slots"] and row["confidence"] == expected["confidence"]
    assert d["predictions"]["accuracy"] == pytest.approx(5 / 6)
    summary = d["summary_stats"]["summary"]
    assert summary["intents"] == {"search_dataset": 3, "get_help": 3, "subscribe_alert": 1}
    assert summary["slot_types"] == {"location": 3, "dataset": 2, "theme": 1}
    assert summary["vocabulary_size"] == 17
    assert d["missing_values"] == {"text": 12.5, "intent": 12.5, "tags": 25.0}
    assert d["timing"]["latency"]["n_calls"] == 25


@pytest.fixture
def copy_of(tmp_path, empty_tracking_db):
    """A writable copy of a built state dir, with its own tracking store."""
    def make(state):
        root = tmp_path / "state"
        shutil.copytree(state["paths"].state_dir, root, symlinks=True)
        return root
    return make


def test_without_production_model_the_rest_is_still_reported(tabular, copy_of, empty_tracking_db):
    diagnostics, _ = load_steps()
    root = copy_of(tabular)
    (root / "models" / "attrition_model" / "production").unlink()
    with tracking_at(root, empty_tracking_db) as experiment_id:
        config = diagnostics_config({**tabular, "paths": type(tabular["paths"]).of(root)}, TABULAR_TASK)
        code, _ = run_in_pipeline(diagnostics.go, config, "diagnostics", experiment_id)
    assert code == 0
    d = json.loads((root / "reports" / "attrition_model" / "diagnostics.json").read_text())
    assert d["model_version"] is None and "no production model" in d["predictions"]["error"]
    assert "error" in d["timing"]["latency"]
    assert d["summary_stats"]["n_rows"] == 300


def test_production_of_another_model_is_not_used(tabular, copy_of, empty_tracking_db):
    """Another model's diagnostics stay in its own namespace: attrition_model's are not touched."""
    diagnostics, _ = load_steps()
    root = copy_of(tabular)
    before = (root / "reports" / "attrition_model").exists() and sorted(
        p.name for p in (root / "reports" / "attrition_model").iterdir())
    with tracking_at(root, empty_tracking_db) as experiment_id:
        task = type(TABULAR_TASK)(**{**vars(TABULAR_TASK), "model_name": "other_model"})
        config = diagnostics_config({**tabular, "paths": type(tabular["paths"]).of(root)}, task)
        code, _ = run_in_pipeline(diagnostics.go, config, "diagnostics", experiment_id)
    assert code == 0
    d = json.loads((root / "reports" / "other_model" / "diagnostics.json").read_text())
    assert "no production model" in d["predictions"]["error"] and "other_model" in d["predictions"]["error"]
    after = (root / "reports" / "attrition_model").exists() and sorted(
        p.name for p in (root / "reports" / "attrition_model").iterdir())
    assert before == after
    assert ModelStore(root / "models" / "attrition_model").production_version() == "attrition_model-v3"


@pytest.mark.parametrize("problem", ["missing", "bad_columns"])
def test_unusable_test_data_fails_with_exit_2(tabular, copy_of, empty_tracking_db, problem, caplog):
    diagnostics, _ = load_steps()
    root = copy_of(tabular)
    test_path = root / "testdata.csv"
    if problem == "missing":
        test_path.unlink()
    else:
        test_path.write_text("a,b\n1,2\n")
    with tracking_at(root, empty_tracking_db) as experiment_id:
        config = diagnostics_config({**tabular, "paths": type(tabular["paths"]).of(root),
                                     "test_path": test_path}, TABULAR_TASK)
        code, _ = run_in_pipeline(diagnostics.go, config, "diagnostics", experiment_id)
    assert code == 2
    assert str(test_path) in caplog.text
