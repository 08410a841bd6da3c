"""Step `reporting`: plots and one self-contained HTML page for people, from what the pipeline wrote.

Reads `reports/diagnostics.json` (the production model's predictions on the test data, the
dataset statistics, timing, dependencies, system), the model store (every version's test
score and the deployments) and `reports/drift.json` when the cron tick has written one.
Writes to `reports/` and logs to MLflow:
  confusionmatrix.png   tabular: label confusion matrix; NLU: intent confusion matrix
  slot_f1.png           NLU only: seqeval F1 per slot type
  forecast.png          forecast only: history, forecast, seasonal-naive, actuals of sample series
                        (+ the backtest and per-store tables from the version's forecast_report.json)
  metric_history.png    the primary metric of every model version over time, deployed ones starred
  training_curves.png   per-epoch train loss and dev metrics of the production model's training
                        run (its MLflow metric history; NLU: every epoch; tabular: none)
  drift_<feature>.png   reference vs new distribution of each monitored feature (drift.json)
  drift_timeline.png    drift verdicts, retrains and deployments over time (ticks.jsonl)
  report.html           run summary, metrics, plots, diagnostics tables, drift (images embedded)
  report_context.json   what report.html was rendered from: main.py re-renders the page with
                        the final step table once the pipeline run has ended
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
from utils.monitoring.diagnostics_lib import QUANTILES, read_diagnostics, step_timing
from utils.monitoring.drift_view import correction_name, drift_verdict, feature_rows
from utils.tick.tick_state import read_ticks
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_config import TaskConfig
from utils.pipeline.step_runner import run_step
from reporting_config import ReportingConfig, ReportingSection  # 06_reporting/  # noqa: E402,F401

log = logging.getLogger("reporting")

TEMPLATE = Path(__file__).resolve().parent / "report.html.j2"


def make_plots(task: TaskConfig, diagnostics: dict[str, Any], history: list[dict[str, Any]],
               reports: Path, metadata: dict[str, Any] | None = None,
               primary: str | None = None) -> list[dict[str, Any]]:
    """Write the PNGs; return what the report shows for each (title, file, caption)."""
    plots = []
    predictions = diagnostics.get("predictions", {})
    version = diagnostics.get("model_version")
    rows = predictions.get("rows") or []
    metadata = metadata or {}
    primary = primary or task.primary_metric
    classes = [c.get("categories") for c in (metadata.get("schema") or {}).get("columns", [])
               if c.get("role") == "label"]
    if rows and task.name == "forecast":
        from utils.monitoring.forecast_diagnostics import FORECAST_SIZE_PX, forecast_png

        path = forecast_png(predictions, reports / "forecast.png",
                            f"{version}: {task.horizon}-day forecast of sample series")
        plots.append({"file": path, "alt": "forecast of sample series", "size": FORECAST_SIZE_PX,
                      "caption": f"Recent history, the forecast from the end of the training data, seasonal-naive "
                                 f"(dashed) and the actuals of {Path(predictions['test_path']).name} where known; "
                                 "series picked across the volume range."})
    elif rows and metadata.get("problem") != "regression":
        if task.name == "tabular":
            labels, matrix = rl.confusion_counts([r["label"] for r in rows], [r["predicted"] for r in rows],
                                                 (classes[0] if classes and classes[0] else None)
                                                 or list(task.label_values) or None)
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
        path = rl.metric_history_png(history, primary, reports / "metric_history.png",
                                     f"{task.model_name}: {primary} per model version")
        plots.append({"file": path, "alt": "metric history", "size": rl.HISTORY_SIZE_PX,
                      "caption": f"{primary} of every model version on the test data, by creation "
                                 "time; stars: versions that were deployed."})
    return plots


def summary_rows(task: TaskConfig, diagnostics: dict[str, Any], store: ModelStore,
                 production: str | None) -> list[tuple[str, Any]]:
    deploys = [e for e in store.history() if e.get("event") in ("deploy", "rollback")
               and e.get("version") == production]
    rows: list[tuple[str, Any]] = [
        ("task", task.name), ("model", task.model_name),
        ("production version", production or "none deployed"),
        ("in production since", deploys[-1].get("time") if deploys else None),
        ("deployment reason", deploys[-1].get("reason") if deploys else None),
        ("test data", diagnostics.get("test_path")),
        ("ingested examples", diagnostics.get("summary_stats", {}).get("n_rows")),
    ]
    return rows


def schema_rows(metadata: dict[str, Any]) -> list[tuple[str, Any]]:
    """The model's frozen table schema, one line per role (tabular models trained with one)."""
    schema = metadata.get("schema")
    if not schema:
        return []
    by_role: dict[str, list[str]] = {}
    for col in schema.get("columns", []):
        what = col["kind"] + (", nullable" if col.get("nullable") else "")
        if col.get("min") is not None or col.get("max") is not None:
            what += f", range [{col.get('min')}, {col.get('max')}]"
        if col["role"] == "excluded" and col.get("reason"):
            what += f": {col['reason']}"
        by_role.setdefault(col["role"], []).append(f"{col['name']} ({what})")
    rows: list[tuple[str, Any]] = [("problem", f"{schema.get('problem')} (schema version {schema.get('version')})")]
    rows += [(f"schema: {role}", "; ".join(items)) for role, items in by_role.items()]
    return rows


def prediction_table(task: TaskConfig, predictions: dict[str, Any], n: int) -> tuple[list[str], list[dict]]:
    rows = (predictions.get("rows") or [])[:n]
    if task.name == "forecast":
        return ["series", "date", "actual", "forecast", "seasonal_naive"], rows
    if task.name == "tabular":
        columns = ["id", "label", "predicted", "probability"]
    else:
        columns = ["text", "intent", "predicted_intent", "confidence", "slots"]
        rows = [{**r, "slots": ", ".join(f"{s.get('type')}={s.get('text')}" for s in r.get("slots", []))}
                for r in rows]
    return columns, rows


def training_curve_plot(production: str | None, metadata: dict[str, Any],
                        reports: Path) -> tuple[dict[str, Any] | None, str]:
    """The per-epoch curves of the production model's training run, or why there are none."""
    run_id = metadata.get("run_id")
    if not run_id:
        return None, "the production model records no training run"
    try:
        curves = rl.training_curves(mlflow.MlflowClient(), run_id)
    except mlflow.exceptions.MlflowException as exc:
        return None, f"training run {run_id} not readable ({exc.message})"
    if not curves:
        return None, (f"training run {run_id} logged no per-epoch metric (step >= 1) "
                      "(logistic regression and ridge are fitted in one go: no epochs; "
                      "training.estimator=hist_gradient_boosting logs a loss per iteration)")
    unit = "epoch" if metadata.get("task") == "nlu" else "iteration"
    path = rl.training_curves_png(curves, reports / "training_curves.png",
                                  f"{production}: training per {unit} (MLflow run {run_id[:8]})", unit)
    return ({"file": path, "alt": "training curves", "size": rl.CURVES_SIZE_PX,
             "caption": f"Per-{unit} {', '.join(sorted(curves))} of the training run of {production}, "
                        f"from its MLflow metric history ({unit} = step)."}, "")


def drift_section(reports: Path, state_dir: Path, store: ModelStore, model_name: str) -> dict[str, Any]:
    """Verdict, per-feature table, per-feature plots and the timeline of the drift checks."""
    doc = rl.read_drift(reports)
    ticks = [t for t in read_ticks(state_dir, limit=500) if t.get("model", model_name) == model_name]
    events = rl.drift_events(ticks, store.history(), doc if isinstance(doc, dict) and "error" not in doc else None)
    plots = rl.drift_plots(doc, reports) if doc and "error" not in doc else []
    timeline = None
    if events:
        path = rl.drift_timeline_png(events, reports / "drift_timeline.png", f"{model_name}: drift checks, "
                                     "retrains and deployments")
        timeline = {"file": path, "alt": "drift timeline", "size": rl.TIMELINE_SIZE_PX,
                    "caption": f"{sum(e['kind'] == 'check' for e in events)} drift checks (red: drift, green: "
                               f"none), {sum(e['kind'] == 'retrain' for e in events)} retrains and "
                               f"{sum(e['kind'] == 'deploy' for e in events)} deployments, from "
                               "logs/ticks.jsonl and models/deployments.jsonl."}
    return {"doc": doc, "verdict": drift_verdict(doc),
            "features": feature_rows((doc or {}).get("distribution") if isinstance(doc, dict) else None),
            "correction": correction_name(doc if isinstance(doc, dict) else None),
            "plots": plots, "timeline": timeline}


def _embedded(plot: dict[str, Any]) -> dict[str, Any]:
    return {"src": rl.png_data_uri(plot["file"]), "alt": plot["alt"], "caption": plot["caption"],
            "width": plot["size"][0], "feature": plot.get("feature"), "drift": plot.get("drift")}


def forecast_tables(store: ModelStore, version: str | None) -> list[dict[str, Any]]:
    """Backtest per window and error per group, from the scoring step's forecast_report.json."""
    import json

    path = store.version_dir(version) / "forecast_report.json" if version else None
    if path is None or not path.is_file():
        return []
    report = json.loads(path.read_text())
    columns = ["model", "mae", "rmse", "wmape", "tweedie_deviance"]
    group = report.get("group_column")
    backtest = report.get("backtest", {})
    tables = [{"title": f"Rolling-origin backtest: {backtest.get('windows')} windows of {backtest.get('horizon')} "
                        f"days ({backtest.get('n_series')} series)",
               "columns": ["cutoff", *columns], "rows": report.get("per_window", [])}]
    if group:
        tables.append({"title": f"Backtest error per {group}", "columns": [group, *columns],
                       "rows": report.get("per_group", [])})
    return tables


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def go(config: ReportingConfig) -> int:
    paths = StatePaths.of(config.state_dir).model(config.task.model_name)
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
    try:
        scores = store.read_scores(production) if production and store.has_version(production) else None
        metadata = store.read_metadata(production) if production and store.has_version(production) else {}
    except (OSError, ValueError) as exc:     # the report still renders, saying so
        log.error("production %s has an unreadable state file (%s): reported without its scores", production, exc)
        scores, metadata = None, {}
    primary = (scores or {}).get("primary_metric") or metadata.get("primary_metric") or task.primary_metric
    plots = make_plots(task, diagnostics, history, reports, metadata, primary)
    predictions = diagnostics.get("predictions", {})
    columns, sample = prediction_table(task, predictions, config.reporting.sample_rows)
    curves, curves_note = training_curve_plot(production, metadata, reports)
    drift = drift_section(reports, paths.state_dir, store, task.model_name)
    run = mlflow.active_run()
    try:   # fresher than diagnostics.json's copy: the diagnostics step has finished by now
        pipeline = step_timing(mlflow.MlflowClient(), run.info.run_id if run else None)
    except mlflow.exceptions.MlflowException:
        pipeline = diagnostics.get("timing", {}).get("pipeline", {})
    context = {
        "title": f"{task.model_name}: pipeline report",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "task": task.name, "state_dir": str(paths.state_dir),
        "summary": summary_rows(task, diagnostics, store, production) + schema_rows(metadata),
        "pipeline": pipeline, "finalized": False,
        "production": production, "primary_metric": primary,
        "production_note": predictions.get("error", "the production version has no scores.json"),
        "metrics": {k: v for k, v in (scores or {}).get("metrics", {}).items() if isinstance(v, (int, float))},
        "validation_metrics": metadata.get("validation_metrics") or {},
        "predictions": predictions if "rows" in predictions else None,
        "prediction_columns": columns, "prediction_sample": sample,
        "plots": [_embedded(p) for p in plots],
        "training_curves": _embedded(curves) if curves else None, "training_curves_note": curves_note,
        "history": history,
        "diag": diagnostics,
        "quantile_keys": [f"{q:g}" for q in QUANTILES],
        "drift": drift["doc"], "drift_verdict": drift["verdict"], "drift_features": drift["features"],
        "drift_correction": drift["correction"], "drift_plots": [_embedded(p) for p in drift["plots"]],
        "drift_timeline": _embedded(drift["timeline"]) if drift["timeline"] else None,
        "tables": forecast_tables(store, production) if task.name == "forecast" else [],
    }
    html = rl.render_report(TEMPLATE, context)
    out = reports / "report.html"
    write_text_atomic(out, html)
    rl.save_context(reports, context, TEMPLATE)
    plots += [p for p in (curves, drift["timeline"]) if p] + drift["plots"]
    for plot in plots:
        mlflow.log_artifact(str(plot["file"]), artifact_path="reports")
    mlflow.log_artifact(str(out), artifact_path="reports")
    mlflow.set_tags({"pipeline.task": task.name, "pipeline.model_version": production or ""})
    log.info("wrote %s (%d plots, %.0f kB): open it in a browser or mail it",
             out, len(plots), out.stat().st_size / 1024)
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], ReportingConfig, go)
