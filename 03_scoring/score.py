"""Step `model_scoring`: metrics of the candidate model on `data.test_path` -> latestscore.txt.

The candidate is the store version main.py passes (the one training just produced), or the
newest version of `task.model_name`. Tabular, by the problem of the model's frozen schema:
binary F1, precision, recall, accuracy, ROC AUC; multiclass accuracy, macro/weighted F1 and a
per-class report; regression RMSE, MAE, R², MAPE. NLU: intent accuracy, slot F1 (seqeval),
exact match, per-intent and per-slot reports. Forecast: rolling-origin backtest on the ingested
series (MAE, RMSE, WMAPE, Tweedie, MASE, beside seasonal-naive; per window and per store) and a
hold-out on the test file. The gate's number (`task.primary_metric`;
`auto`: f1, f1_macro or rmse) goes to `latestscore.txt`, its direction (higher or lower is
better) to `scores.json`.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.models.model_store import ModelStore, parse_version_id
from utils.pipeline.paths import StatePaths, resolve_path
from utils.models.scoring_lib import metric_direction, primary_metric_for, score_nlu, score_tabular
from utils.pipeline.step_config import TaskConfig
from utils.pipeline.step_runner import run_step
from utils.pipeline.tracking import log_json_artifact
from score_config import ScoringConfig, ScoringData, ScoringSection  # 03_scoring/  # noqa: E402,F401

log = logging.getLogger("model_scoring")


def go(config: ScoringConfig) -> int:
    paths = StatePaths.of(config.state_dir).model(config.task.model_name)
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
            from utils.data.table_schema import model_schema, state_schema

            schema = (model_schema(store.read_metadata(version))
                      or state_schema(paths.schema_file, task))
            report = score_tabular(store.model_dir(version), test_path, task, schema)
        elif task.name == "forecast":
            from utils.models.forecast_scoring import score_forecast

            report = score_forecast(store.model_dir(version), paths.dataset(task.name), test_path, task,
                                    config.scoring.backtest_windows, config.scoring.refit,
                                    float(config.logging.progress_every_s))
        else:
            report = score_nlu(store.model_dir(version), test_path, config.scoring.batch_size,
                               config.logging.progress_every_s, "step model_scoring")
    except ValueError as exc:  # bad test data: say which file and why
        log.error("cannot score on %s: %s", test_path, exc)
        return 2
    metrics = report["metrics"]
    primary = primary_metric_for(task.primary_metric, report.get("problem"))
    if primary not in metrics:
        log.error("task.primary_metric=%s is not a metric of this %s model: expected one of %s",
                  primary, report.get("problem") or task.name, ", ".join(sorted(metrics)))
        return 2
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if v == v})
    log_json_artifact(report, "scoring_report.json")
    direction = "lower" if task.metric_direction == "lower" else metric_direction(primary)
    store.write_score(version, metrics, primary, direction)
    if task.name == "forecast":  # the backtest and per-store tables, for the report (atomic: readers)
        import json
        import os

        out = store.version_dir(version) / "forecast_report.json"
        out.with_name(".forecast_report.json.tmp").write_text(json.dumps(report, indent=2))
        os.replace(out.with_name(".forecast_report.json.tmp"), out)

    name, number = parse_version_id(version)
    client = mlflow.MlflowClient()
    for key, value in metrics.items():
        client.set_model_version_tag(name, str(number), f"test_{key}", f"{value:.6f}")
    # the gate's number on the registry version: a deployment on another host reads it there
    from utils.models.registry_gate import record_score

    record_score(client, name, number, metrics[primary], primary, direction)
    log.info("%s on %s: %s", version, test_path.name,
             ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], ScoringConfig, go)
