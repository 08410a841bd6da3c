"""Step `reporting`: plots and one self-contained HTML page for people, from what the pipeline wrote.

Reads `reports/diagnostics.json` (the production model's predictions on the test data, the
dataset statistics, timing, dependencies, system), the model store (every version's test
score and the deployments) and `reports/drift.json` when the cron tick has written one.
Writes to `reports/` and logs to MLflow:
  confusionmatrix.png   tabular: label confusion matrix; NLU: intent confusion matrix
  slot_f1.png           NLU only: seqeval F1 per slot type
  metric_history.png    the primary metric of every model version over time, deployed ones starred
  report.html           run summary, metrics, plots, diagnostics tables, drift (images embedded)
Run the diagnostics step first (main.steps=all does).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.monitoring import report_lib as rl
from utils.monitoring.diagnostics_lib import QUANTILES, read_diagnostics
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_config import TaskConfig
from utils.pipeline.step_runner import run_step
from reporting_config import ReportingConfig, ReportingSection  # 06_reporting/  # noqa: E402,F401

log = logging.getLogger("reporting")

TEMPLATE = Path(__file__).resolve().parent / "report.html.j2"


def make_plots(task: TaskConfig, diagnostics: dict[str, Any], history: list[dict[str, Any]],
               reports: Path) -> list[dict[str, Any]]:
    """Write the PNGs; return what the report shows for each (title, file, caption)."""
    plots = []
    predictions = diagnostics.get("predictions", {})
    version = diagnostics.get("model_version")
    rows = predictions.get("rows") or []
    if rows:
        if task.name == "tabular":
            labels, matrix = rl.confusion_counts([r["label"] for r in rows], [r["predicted"] for r in rows],
                                                 list(task.label_values) or None)
            what = f"{task.label_column}"
        else:
            labels, matrix = rl.confusion_counts([r["intent"] for r in rows],
                                                 [r["predicted_intent"] for r in rows])
            what = "intent"
        path = rl.confusion_matrix_png(labels, matrix, reports / "confusionmatrix.png",
                                       f"{version}: {what} on the test data (n={len(rows)})")
        plots.append({"file": path, "alt": f"{what} confusion matrix", "size": rl.CONFUSION_SIZE_PX,
                      "caption": f"Confusion matrix of the production model {version} on "
                                 f"{Path(predictions['test_path']).name}: rows true, columns predicted."})
        if task.name == "nlu":
            per_slot = rl.per_slot_scores(rows)
            path = rl.slot_f1_png(per_slot, reports / "slot_f1.png", f"{version}: F1 per slot type")
            plots.append({"file": path, "alt": "per-slot-type F1", "size": rl.SLOT_F1_SIZE_PX,
                          "caption": "Entity-level F1 per slot type (seqeval) on the test data; n = gold spans."})
    if history:
        path = rl.metric_history_png(history, task.primary_metric, reports / "metric_history.png",
                                     f"{task.model_name}: {task.primary_metric} per model version")
        plots.append({"file": path, "alt": "metric history", "size": rl.HISTORY_SIZE_PX,
                      "caption": f"{task.primary_metric} of every model version on the test data, by creation "
                                 "time; stars: versions that were deployed."})
    return plots


def summary_rows(task: TaskConfig, diagnostics: dict[str, Any], store: ModelStore,
                 production: str | None) -> list[tuple[str, Any]]:
    pipeline = diagnostics.get("timing", {}).get("pipeline", {})
    deploys = [e for e in store.history() if e.get("event") in ("deploy", "rollback")
               and e.get("version") == production]
    rows: list[tuple[str, Any]] = [
        ("task", task.name), ("model", task.model_name),
        ("production version", production or "none deployed"),
        ("in production since", deploys[-1].get("time") if deploys else None),
        ("deployment reason", deploys[-1].get("reason") if deploys else None),
        ("pipeline run", pipeline.get("pipeline_run_id")),
        ("pipeline started", pipeline.get("started")),
        ("pipeline wall time (s)", pipeline.get("total_wall_s")),
        ("test data", diagnostics.get("test_path")),
        ("ingested examples", diagnostics.get("summary_stats", {}).get("n_rows")),
    ]
    return rows


def prediction_table(task: TaskConfig, predictions: dict[str, Any], n: int) -> tuple[list[str], list[dict]]:
    rows = (predictions.get("rows") or [])[:n]
    if task.name == "tabular":
        columns = ["id", "label", "predicted", "probability"]
    else:
        columns = ["text", "intent", "predicted_intent", "confidence", "slots"]
        rows = [{**r, "slots": ", ".join(f"{s.get('type')}={s.get('text')}" for s in r.get("slots", []))}
                for r in rows]
    return columns, rows


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def go(config: ReportingConfig) -> int:
    paths = StatePaths.of(config.state_dir)
    task = config.task
    reports = paths.reports_dir
    diagnostics = read_diagnostics(paths)
    if diagnostics is None:
        log.error("no %s: run the diagnostics step before reporting "
                  "(main.steps=all, or \"main.steps='diagnostics,reporting'\")", reports / "diagnostics.json")
        return 2
    if diagnostics.get("task") != task.name:
        log.error("%s is for task %r, not %r: rerun the diagnostics step for this task",
                  reports / "diagnostics.json", diagnostics.get("task"), task.name)
        return 2
    store = ModelStore(paths.models_dir)
    production = diagnostics.get("model_version")
    history = rl.metric_history(store, task.model_name)
    plots = make_plots(task, diagnostics, history, reports)

    scores = store.read_scores(production) if production and store.has_version(production) else None
    metadata = store.read_metadata(production) if production and store.has_version(production) else {}
    predictions = diagnostics.get("predictions", {})
    columns, sample = prediction_table(task, predictions, config.reporting.sample_rows)
    context = {
        "title": f"{task.model_name}: pipeline report",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "task": task.name, "state_dir": str(paths.state_dir),
        "summary": summary_rows(task, diagnostics, store, production),
        "pipeline": diagnostics.get("timing", {}).get("pipeline", {}),
        "production": production, "primary_metric": task.primary_metric,
        "production_note": predictions.get("error", "the production version has no scores.json"),
        "metrics": {k: v for k, v in (scores or {}).get("metrics", {}).items() if isinstance(v, (int, float))},
        "validation_metrics": metadata.get("validation_metrics") or {},
        "predictions": predictions if "rows" in predictions else None,
        "prediction_columns": columns, "prediction_sample": sample,
        "plots": [{"src": rl.png_data_uri(p["file"]), "alt": p["alt"], "caption": p["caption"],
                   "width": p["size"][0]} for p in plots],
        "history": history,
        "diag": diagnostics,
        "quantile_keys": [f"{q:g}" for q in QUANTILES],
        "drift": rl.read_drift(reports),
    }
    html = rl.render_report(TEMPLATE, context)
    out = reports / "report.html"
    write_text_atomic(out, html)
    for plot in plots:
        mlflow.log_artifact(str(plot["file"]), artifact_path="reports")
    mlflow.log_artifact(str(out), artifact_path="reports")
    mlflow.set_tags({"pipeline.task": task.name, "pipeline.model_version": production or ""})
    log.info("wrote %s (%d plots, %.0f kB): open it in a browser or mail it",
             out, len(plots), out.stat().st_size / 1024)
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], ReportingConfig, go)
