"""A table of another shape through the real steps (in process, real MLflow in a temp dir):
ingestion freezes the schema, both value policies, types kept, stable digest; training with
categoricals and gaps, string labels, three classes and a numeric target; scoring metrics and
the gate direction by problem."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_step_module
from tests.tabular.helpers import mixed_frame, regression_frame, write_csv
from utils.data.ingest_record import IngestRecord
from utils.data.table_schema import TableSchema
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_config import TaskConfig

ingest = load_step_module("01_data/ingest.py")
train = load_step_module("02_training/train.py")
score = load_step_module("03_scoring/score.py")
deployment = load_step_module("04_deployment/deployment.py")


def task_config(label: str = "label", **kw) -> TaskConfig:
    return TaskConfig(name="tabular", model_name=kw.pop("model_name", "byo"), label_column=label,
                      id_column=kw.pop("id_column", "auto"), **kw)


def run(step, config, experiment_id: str) -> int:
    with mlflow.start_run(experiment_id=experiment_id):
        return step.go(config)


def ingest_config(state_dir: Path, source: Path, task: TaskConfig, bad_rows: str = "quarantine_file"):
    return ingest.IngestionConfig(state_dir=str(state_dir), task=task,
                                  data=ingest.DataSection(source_dir=str(source), bad_rows=bad_rows))


def chain(state_dir: Path, source: Path, test: Path, task: TaskConfig, tracking: str, **training) -> str:
    assert run(ingest, ingest_config(state_dir, source, task), tracking) == 0
    assert run(train, train.TrainingConfig(state_dir=str(state_dir), task=task, training=training), tracking) == 0
    version = ModelStore(StatePaths.of(state_dir).model(task.model_name).models_dir).latest_version(task.model_name)
    assert run(score, score.ScoringConfig(state_dir=str(state_dir), task=task, model_version=version,
                                          data=score.ScoringData(test_path=str(test))), tracking) == 0
    return version


def test_ingestion_freezes_schema_keeps_integers_and_a_stable_digest(state_dir, tmp_path, tracking):
    source = tmp_path / "src"
    write_csv(mixed_frame(seed=0), source / "a.csv")
    paths = StatePaths.of(state_dir).model("byo")
    config = ingest_config(state_dir, source, task_config())
    assert run(ingest, config, tracking) == 0
    schema = TableSchema.load(paths.schema_file)
    assert schema.problem == "binary" and schema.id_column == "customer"
    text = paths.finaldata_csv.read_text().splitlines()
    age = text[0].split(",").index("age")
    assert all("." not in line.split(",")[age] for line in text[1:]), "integers stay integers"
    digests = [mlflow.search_runs([tracking]).iloc[0]["tags.pipeline.data_digest"]]
    assert run(ingest, config, tracking) == 0
    digests.append(mlflow.search_runs([tracking], order_by=["start_time DESC"]).iloc[0]["tags.pipeline.data_digest"])
    assert digests[0] == digests[1]
    client = mlflow.MlflowClient()
    first = mlflow.search_runs([tracking], order_by=["start_time ASC"]).iloc[0]["run_id"]
    assert {a.path for a in client.list_artifacts(first, "schema")} == {"schema/schema.yaml",
                                                                        "schema/pandera_schema.yaml"}


def test_later_files_are_checked_against_the_frozen_schema(state_dir, tmp_path, tracking):
    source = tmp_path / "src"
    write_csv(mixed_frame(seed=0), source / "a.csv")
    paths = StatePaths.of(state_dir).model("byo")
    assert run(ingest, ingest_config(state_dir, source, task_config()), tracking) == 0
    write_csv(mixed_frame(seed=1).assign(extra=1), source / "b_new_column.csv")
    bad = mixed_frame(seed=2).astype({"size": object})
    bad.loc[[3, 7], "size"] = "inf"
    write_csv(bad, source / "c_inf.csv")
    assert run(ingest, ingest_config(state_dir, source, task_config()), tracking) == 0
    rows = {Path(r.file).name: r for r in IngestRecord.load(paths.ingest_record).rows}
    assert rows["b_new_column.csv"].status == "quarantined" and "extra" in rows["b_new_column.csv"].reason
    assert rows["c_inf.csv"].status == "quarantined" and "'size'" in rows["c_inf.csv"].reason

    # drop_rows: the same file (a changed copy) goes in without its two bad rows, counted
    write_csv(bad.assign(customer=[f"d{i}" for i in range(len(bad))]), source / "d_inf.csv")
    assert run(ingest, ingest_config(state_dir, source, task_config(), "drop_rows"), tracking) == 0
    row = {Path(r.file).name: r for r in IngestRecord.load(paths.ingest_record).rows}["d_inf.csv"]
    assert row.status == "ingested" and row.rows_dropped == 2 and row.rows == len(bad) - 2
    last = mlflow.search_runs([tracking], order_by=["start_time DESC"]).iloc[0]
    assert last["metrics.rows_dropped"] == 2
    final = pd.read_csv(paths.finaldata_csv)
    assert not np.isinf(final["size"].dropna()).any()


def test_label_missing_and_unknown_task_name_fail_clearly(state_dir, tmp_path, tracking, caplog):
    source = tmp_path / "src"
    write_csv(mixed_frame(), source / "a.csv")
    assert run(ingest, ingest_config(state_dir, source, task_config("nope")), tracking) == 3
    assert "label column 'nope'" in caplog.text
    heart = TaskConfig(name="heart", label_column="label")
    assert run(ingest, ingest_config(state_dir, source, heart), tracking) == 2
    assert "task.name='heart' is not a task kind" in caplog.text


def test_multiclass_with_categoricals_gaps_and_unseen_categories(state_dir, tmp_path, tracking):
    source = tmp_path / "src"
    classes = ("low", "mid", "high")
    write_csv(mixed_frame(200, seed=0, classes=classes), source / "a.csv")
    test = mixed_frame(80, seed=9, classes=classes).astype({"colour": object})
    test.loc[:4, "colour"] = "violet"     # never seen in training: ignored by the one-hot encoder
    test_path = write_csv(test, tmp_path / "test.csv")
    task = task_config()
    version = chain(state_dir, source, test_path, task, tracking, estimator="hist_gradient_boosting",
                    boosting_rounds=30)
    store = ModelStore(StatePaths.of(state_dir).model("byo").models_dir)
    scores = store.read_scores(version)
    assert scores["primary_metric"] == "f1_macro" and scores["direction"] == "higher"
    assert {"accuracy", "f1_macro", "f1_weighted"} <= set(scores["metrics"])
    model = mlflow.sklearn.load_model(str(store.model_dir(version)))
    assert sorted(model.classes_.tolist()) == sorted(classes)
    meta = store.read_metadata(version)
    assert meta["problem"] == "multiclass" and meta["schema"]["label"] == "label"
    from utils.monitoring.report_lib import training_curves

    curves = training_curves(mlflow.MlflowClient(), meta["run_id"])     # boosting: a loss per iteration
    assert sorted(curves) == ["train_loss", "val_loss"] and len(curves["val_loss"]) == 30


def test_binary_string_labels_and_the_positive_class(state_dir, tmp_path, tracking):
    source = tmp_path / "src"
    write_csv(mixed_frame(200, seed=0), source / "a.csv")
    test_path = write_csv(mixed_frame(80, seed=5), tmp_path / "test.csv")
    version = chain(state_dir, source, test_path, task_config(), tracking)
    scores = ModelStore(StatePaths.of(state_dir).model("byo").models_dir).read_scores(version)
    assert scores["primary_metric"] == "f1" and 0 < scores["metrics"]["f1"] <= 1 and "roc_auc" in scores["metrics"]


def test_regression_metrics_and_a_gate_where_lower_is_better(state_dir, tmp_path, tracking):
    source = tmp_path / "src"
    write_csv(regression_frame(200, seed=0), source / "a.csv")
    test_path = write_csv(regression_frame(60, seed=3), tmp_path / "test.csv")
    task = task_config("price", model_name="prices", id_column=None)
    first = chain(state_dir, source, test_path, task, tracking, estimator="ridge")
    store = ModelStore(StatePaths.of(state_dir).model("prices").models_dir)
    scores = store.read_scores(first)
    assert scores["primary_metric"] == "rmse" and scores["direction"] == "lower"
    assert set(scores["metrics"]) == {"rmse", "mae", "r2", "mape"} and scores["metrics"]["r2"] > 0.9
    deploy = deployment.DeploymentConfig(state_dir=str(state_dir), task=task)
    assert run(deployment, deploy, tracking) == 0 and store.production_version() == first
    # a much worse model (huge ridge penalty: higher RMSE) must not replace it
    assert run(train, train.TrainingConfig(state_dir=str(state_dir), task=task,
                                           training={"estimator": "ridge", "alpha": 1e6}), tracking) == 0
    worse = store.latest_version("prices")
    assert run(score, score.ScoringConfig(state_dir=str(state_dir), task=task, model_version=worse,
                                          data=score.ScoringData(test_path=str(test_path))), tracking) == 0
    assert store.read_score(worse) > store.read_score(first)
    assert run(deployment, deploy, tracking) == 0
    assert store.production_version() == first and store.history()[-1]["event"] == "rejected"


def test_estimator_that_does_not_fit_the_problem_fails_clearly(state_dir, tmp_path, tracking, caplog):
    source = tmp_path / "src"
    write_csv(regression_frame(), source / "a.csv")
    task = task_config("price", id_column=None)
    assert run(ingest, ingest_config(state_dir, source, task), tracking) == 0
    config = train.TrainingConfig(state_dir=str(state_dir), task=task, training={"estimator": "logistic_regression"})
    assert run(train, config, tracking) == 2
    assert "training.estimator='logistic_regression' does not fit a regression problem" in caplog.text


def test_gate_direction_is_a_pure_function():
    assert deployment.decide(0.9, 1.0, 0.0, False, "lower")[0] is True
    assert deployment.decide(1.1, 1.0, 0.0, False, "lower")[0] is False
    assert deployment.decide(1.05, 1.0, 0.1, False, "lower")[0] is True
    assert deployment.decide(0.9, 1.0, 0.0, False)[0] is False


def test_drift_check_on_a_categorical_table(state_dir, tmp_path, tracking):
    """The cron tick's drift check reads the frozen schema: chi-square and unseen rate on categories."""
    import shutil

    from utils.pipeline.config import load_config
    from utils.tick.drift_check import run_drift_check

    source = tmp_path / "src"
    write_csv(mixed_frame(300, seed=0), source / "a.csv")
    test_path = write_csv(mixed_frame(80, seed=5), tmp_path / "test.csv")
    task = task_config()
    version = chain(state_dir, source, test_path, task, tracking)
    paths = StatePaths.of(state_dir).model("byo")
    assert run(deployment, deployment.DeploymentConfig(state_dir=str(state_dir), task=task), tracking) == 0
    reference = shutil.copy(paths.finaldata_csv, tmp_path / "reference.csv")
    shifted = mixed_frame(300, seed=7).astype({"colour": object})
    shifted["customer"] = [f"n{i}" for i in range(len(shifted))]
    shifted.loc[:150, "colour"] = "violet"   # half the new rows: a colour training never saw
    write_csv(shifted, source / "b.csv")
    assert run(ingest, ingest_config(state_dir, source, task), tracking) == 0
    cfg = load_config([f"paths.state_dir={state_dir}", "task.label_column=label", "task.model_name=byo",
                       "drift.prediction_log=false"])
    outcome = run_drift_check(cfg, paths, Path(reference), paths.finaldata_csv, None, "t1")
    distribution = outcome.report["distribution"]
    assert outcome.distribution is True and outcome.n_new == 300
    assert "chi2:colour" in distribution["signals"] and "unseen:colour" in distribution["signals"]
    assert distribution["unseen"]["colour"] > 0.4
    assert outcome.report["performance"]["metric"] == "f1" and version
