"""Step `model_scoring`: metrics of the candidate model on `data.test_path` -> latestscore.txt.

The candidate is the store version main.py passes (the one training just produced), or the
newest version of `task.model_name`. Tabular: F1, precision, recall, accuracy, ROC AUC.
NLU: intent accuracy, slot F1 (seqeval), exact match, per-intent and per-slot reports.
The gate's number (`task.primary_metric`) goes to `latestscore.txt` in the version folder.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.models.model_store import ModelStore, parse_version_id
from utils.pipeline.paths import StatePaths, resolve_path
from utils.models.scoring_lib import score_nlu, score_tabular
from utils.pipeline.step_config import TaskConfig
from utils.pipeline.step_runner import run_step
from utils.pipeline.tracking import log_json_artifact
from score_config import ScoringConfig, ScoringData, ScoringSection  # 03_scoring/  # noqa: E402,F401

log = logging.getLogger("model_scoring")


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
