"""Step `model_scoring`: metrics of the candidate model on `data.test_path` -> latestscore.txt.

The candidate is the store version main.py passes (the one training just produced), or the
newest version of `task.model_name`. Tabular: F1, precision, recall, accuracy, ROC AUC.
NLU: intent accuracy, slot F1 (seqeval), exact match, per-intent and per-slot reports.
The gate's number (`task.primary_metric`) goes to `latestscore.txt` in the version folder.
"""
from __future__ import annotations

import sys
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.model_store import ModelStore, parse_version_id
from utils.paths import StatePaths, resolve_path
from utils.step_config import TaskConfig
from utils.step_runner import run_step
from utils.tracking import log_json_artifact

log = logging.getLogger("model_scoring")


@dataclass
class ScoringData:
    test_path: str = "???"


@dataclass
class ScoringSection:
    batch_size: int = 256


@dataclass
class ScoringConfig:
    state_dir: str = "???"
    task: TaskConfig = field(default_factory=TaskConfig)
    data: ScoringData = field(default_factory=ScoringData)
    scoring: ScoringSection = field(default_factory=ScoringSection)
    model_version: str | None = None   # store version to score; None = newest of task.model_name


def score_tabular(model_dir: Path, test_path: Path, task: TaskConfig) -> dict[str, Any]:
    from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, precision_score,
                                 recall_score, roc_auc_score)

    from utils.tabular_data import read_tabular_csv

    test = read_tabular_csv(test_path, task)
    model = mlflow.sklearn.load_model(str(model_dir))
    features = test[task.feature_columns].astype(float)
    y_true = test[task.label_column].astype(int).to_numpy()
    y_pred = model.predict(features)
    metrics: dict[str, Any] = {
        "f1": f1_score(y_true, y_pred, zero_division=0),
        "precision": precision_score(y_true, y_pred, zero_division=0),
        "recall": recall_score(y_true, y_pred, zero_division=0),
        "accuracy": accuracy_score(y_true, y_pred),
    }
    if len(set(y_true)) > 1:
        metrics["roc_auc"] = roc_auc_score(y_true, model.predict_proba(features)[:, 1])
    metrics = {k: float(v) for k, v in metrics.items()}
    report = {"metrics": metrics, "n_examples": int(len(test)),
              "labels": [int(v) for v in task.label_values],
              "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(task.label_values)).tolist()}
    return report


def score_nlu(model_dir: Path, test_path: Path, batch_size: int) -> dict[str, Any]:
    """Intent accuracy, seqeval slot F1, exact match and per-intent/per-slot tables."""
    from sklearn.metrics import confusion_matrix

    from utils.nlu_data import read_nlu_path
    from utils.nlu_metrics import nlu_metrics

    examples = read_nlu_path(test_path)
    if test_path.is_dir() and any(e.split == "test" for e in examples):
        examples = [e for e in examples if e.split == "test"]   # a BIO folder: its test split
    if not examples:
        raise ValueError("no test examples")
    model = mlflow.pyfunc.load_model(str(model_dir))
    predictions = model.predict([e.text for e in examples], params={"batch_size": batch_size})
    intents, tags = list(predictions["intent"]), [list(t) for t in predictions["tags"]]
    report = nlu_metrics(examples, intents, tags)
    labels = sorted({e.intent for e in examples} | set(intents))
    return {"metrics": {k: float(v) for k, v in report.items()
                        if k != "n_examples" and isinstance(v, (int, float))},
            "n_examples": report["n_examples"], "per_intent": report["per_intent"],
            "per_slot": report["per_slot"], "labels": labels,
            "confusion_matrix": confusion_matrix([e.intent for e in examples], intents,
                                                 labels=labels).tolist()}


def go(config: ScoringConfig) -> int:
    paths = StatePaths.of(config.state_dir)
    task = config.task
    store = ModelStore(paths.models_dir)
    version = config.model_version or store.latest_version(task.model_name)
    if version is None or not store.has_version(version):
        log.error("no model version %s in %s: run model_training first",
                  version or f"of {task.model_name}", store.versions_dir)
        return 2
    test_path = resolve_path(config.data.test_path)
    if not test_path.exists():
        log.error("data.test_path %s does not exist: point it at the labelled test data", test_path)
        return 2

    mlflow.set_tags({"pipeline.model_version": version, "pipeline.task": task.name})
    mlflow.log_params({"model_version": version, "test_path": str(test_path)})
    try:
        if task.name == "tabular":
            report = score_tabular(store.model_dir(version), test_path, task)
        else:
            report = score_nlu(store.model_dir(version), test_path, config.scoring.batch_size)
    except ValueError as exc:  # bad test data: say which file and why
        log.error("cannot score on %s: %s", test_path, exc)
        return 2
    metrics = report["metrics"]
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    log_json_artifact(report, "scoring_report.json")
    store.write_score(version, metrics, task.primary_metric)

    name, number = parse_version_id(version)
    client = mlflow.MlflowClient()
    for key, value in metrics.items():
        client.set_model_version_tag(name, str(number), f"test_{key}", f"{value:.6f}")
    log.info("%s on %s: %s", version, test_path.name,
             ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], ScoringConfig, go)
