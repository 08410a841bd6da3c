"""Step `diagnostics`: what the production model, the data and the machine look like now.

Writes `reports/diagnostics.json` (the API's /diagnostics and the report read it) and logs it
to MLflow. Sections:
  predictions      the production model on `data.test_path` (one row per test example)
  summary_stats    the ingested dataset (tabular: per numeric column; NLU: intents, slot
                   types, utterance length, vocabulary)
  missing_values   % missing per column (NLU: empty text / intent / tag sequence)
  timing           each step of the last pipeline run (MLflow) + single-prediction latency
  dependencies     installed vs pinned (pyproject.toml) vs latest on the index ("unknown" offline)
  system           CPU, memory, disk of the state dir, GPUs
A section that cannot be measured holds {"error": "<why>"}; nothing is made up.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.monitoring import diagnostics_lib as dl
from utils.models.model_store import ModelStore, parse_version_id
from utils.pipeline.paths import REPO_ROOT, StatePaths, resolve_path
from utils.pipeline.step_config import TaskConfig
from utils.pipeline.step_runner import run_step
from diagnostics_config import DiagnosticsConfig, DiagnosticsData, DiagnosticsSection  # diagnostics/  # noqa: E402,F401

log = logging.getLogger("diagnostics")


def production_of(store: ModelStore, model_name: str) -> tuple[str | None, str | None]:
    """(production version, None) or (None, why there is none for this task)."""
    version = store.production_version()
    if version is None:
        return None, f"no production model in {store.root}: run model_deployment first"
    if parse_version_id(version)[0] != model_name:
        return None, f"production is {version}, not a version of {model_name} (task.model_name)"
    return version, None


def model_sections(config: DiagnosticsConfig, store: ModelStore, version: str,
                   test_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(predictions, latency) of the production model on the test data."""
    task = config.task
    model_dir = store.model_dir(version)
    if task.name == "forecast":  # forecasts vs the test file's actuals; one series per timed call
        from utils.monitoring.forecast_diagnostics import forecast_predictions, single_series_call

        predictions = forecast_predictions(model_dir, test_path, task, StatePaths.of(config.state_dir).model(task.model_name).dataset(task.name))
        latency = dl.latency_stats(single_series_call(dl.load_pyfunc(model_dir), model_dir),
                                   config.diagnostics.latency_calls)
        return predictions, latency
    if task.name == "tabular":
        predictions = dl.tabular_predictions(model_dir, test_path, task)
    else:
        predictions = dl.nlu_predictions(model_dir, test_path, config.diagnostics.batch_size,
                                         config.logging.progress_every_s)
    model = dl.load_pyfunc(model_dir)
    latency = dl.latency_stats(dl.single_prediction_call(model, task, test_path, model_dir),
                               config.diagnostics.latency_calls)
    return predictions, latency


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers (the API) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def go(config: DiagnosticsConfig) -> int:
    paths = StatePaths.of(config.state_dir).model(config.task.model_name)
    task = config.task
    store = ModelStore(paths.models_dir)
    test_path = resolve_path(config.data.test_path)
    if not test_path.exists():
        log.error("data.test_path %s does not exist: point it at the labelled test data", test_path)
        return 2
    if config.diagnostics.latency_calls < 1:
        log.error("diagnostics.latency_calls must be >= 1 (got %s)", config.diagnostics.latency_calls)
        return 2

    report: dict[str, Any] = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "task": task.name,
                              "state_dir": str(paths.state_dir), "test_path": str(test_path)}
    version, why = production_of(store, task.model_name)
    report["model_version"] = version
    if version is None:
        log.warning("%s; predictions and latency are skipped", why)
        report["predictions"], latency = {"error": why}, {"error": why}
    else:
        try:
            report["predictions"], latency = model_sections(config, store, version, test_path)
        except ValueError as exc:  # unusable test data: the message names the file
            log.error("cannot predict on %s: %s", test_path, exc)
            return 2

    try:
        stats = dl.summary_stats(paths, task)
        report["summary_stats"] = {k: stats[k] for k in ("dataset", "n_rows", "columns", "summary")}
        report["missing_values"] = stats["missing_pct"]
    except FileNotFoundError as exc:
        log.warning("%s", exc)
        report["summary_stats"] = report["missing_values"] = {"error": str(exc)}

    run = mlflow.active_run()
    report["timing"] = {"pipeline": dl.step_timing(mlflow.MlflowClient(), run.info.run_id if run else None),
                        "latency": latency}
    started = time.monotonic()
    report["dependencies"] = dl.dependency_report(REPO_ROOT / "pyproject.toml", config.diagnostics.pypi_url,
                                                  config.diagnostics.pypi_timeout_s)
    log.info("dependency check: %d packages, %d not as pinned, latest looked up in %.1f s",
             len(report["dependencies"]["packages"]), report["dependencies"]["n_mismatch"],
             time.monotonic() - started)
    report["system"] = dl.system_info(paths.state_dir)

    out = paths.reports_dir / "diagnostics.json"
    write_json_atomic(out, report)
    mlflow.log_artifact(str(out))
    mlflow.set_tags({"pipeline.task": task.name, "pipeline.model_version": version or ""})
    if "p50_ms" in latency:
        mlflow.log_metrics({f"latency_{k}": latency[k] for k in ("p50_ms", "p95_ms", "p99_ms")})
    if isinstance(report["predictions"].get("accuracy"), float):
        mlflow.log_metric("test_prediction_accuracy", report["predictions"]["accuracy"])
    log.info("wrote %s (model %s%s)", out, version or "none",
             f", latency p50 {latency['p50_ms']:.2f} ms p99 {latency['p99_ms']:.2f} ms"
             if "p50_ms" in latency else "")
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], DiagnosticsConfig, go)
