"""The cron tick's drift check: the rows ingested since the last check, against the reference.

Reference: the ingested dataset as it was at the end of the previous check (normally: before
this tick's ingestion), kept as a hard link by utils/tick/tick_state.py. Why that and not the
training rows of the production model: it is exactly what the tick already compared and
accepted, it exists without asking MLflow, and it has the same schema and cleaning as the
new rows. Data accepted as "no drift" joins the reference, so a slow creep is compared
against data that crept too; the performance check (the model itself on the new labels)
does not have that blind spot, which is why the default policy uses both.

New rows: rows of the current dataset that are not in the reference (the dataset is
de-duplicated, so these are exactly the rows this tick's files added).

Signals:
* performance — the production model scores the new labelled rows (tabular: sklearn
  flavor; NLU: pyfunc texts -> intent/tags) and its primary metric is compared with the
  score recorded at deployment (`latestscore.txt`), with `drift.performance.*`;
* distribution — utils/monitoring/drift.py on the new rows, and on the inputs the API logged since the
  last check when `drift.prediction_log` is on (unlabelled: features only / texts only).

Forecasting models have their own check of the new days (utils/tick/forecast_drift.py) with
the same two signals.

Writes `${state_dir}/reports/drift.json` and an MLflow run (tag pipeline.kind=drift_check).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from omegaconf import DictConfig, OmegaConf

from utils.monitoring.drift import (
    DriftSettings,
    binary_metric,
    bootstrap_upper_bound,
    nlu_drift,
    performance_drift,
    tabular_drift,
)
from utils.models.model_store import ModelStore, parse_version_id, production_unusable
from utils.pipeline.paths import REPO_ROOT, StatePaths

log = logging.getLogger("fullprocess.drift")
MAX_LOGGED_REQUESTS = 20_000   # newest API requests compared; a sample is enough for the tests


@dataclass
class DriftOutcome:
    n_reference: int
    n_new: int
    performance: bool | None            # None: no verdict (no model, no labelled rows...)
    distribution: bool | None
    report: dict[str, Any] = field(default_factory=dict)
    mlflow_run_id: str | None = None

    @property
    def signals(self) -> dict[str, bool | None]:
        return {"performance": self.performance, "distribution": self.distribution}


# ---- data -----------------------------------------------------------------------------------
def _read_tabular(path: Path, schema: Any) -> Any:
    from utils.data.tabular_data import read_ingested

    return read_ingested(path, schema)


def _schemas(paths: StatePaths, store: ModelStore, task: DictConfig) -> tuple[Any, Any]:
    """(the ingested data's frozen schema, the production model's schema with its training categories)."""
    from utils.data.table_schema import model_schema, state_schema

    ingested = state_schema(paths.schema_file, task)
    production = store.production_version()
    trained = None
    if production and parse_version_id(production)[0] == task.model_name:
        trained = model_schema(store.read_metadata(production))
    if ingested is None and trained is None:
        raise ValueError(f"no table schema ({paths.schema_file}): run data_ingestion first")
    return ingested or trained, trained or ingested


def new_tabular_rows(reference: Any, current: Any) -> Any:
    """Rows of ``current`` that are not in ``reference`` (all columns compared)."""
    import pandas as pd

    if reference.empty:
        return current
    columns = list(current.columns)
    ref_hashes = set(pd.util.hash_pandas_object(reference[columns].astype(str), index=False))
    cur_hashes = pd.util.hash_pandas_object(current[columns].astype(str), index=False)
    return current[~cur_hashes.isin(ref_hashes).to_numpy()].reset_index(drop=True)


def _key(example: Any) -> tuple[str, str, tuple[str, ...]]:
    return example.text, example.intent, tuple(example.tags)


def new_nlu_examples(reference: list[Any], current: list[Any]) -> list[Any]:
    seen = {_key(e) for e in reference}
    return [e for e in current if _key(e) not in seen]


# ---- performance ----------------------------------------------------------------------------
ScoreOf = Callable[[np.ndarray], float]   # score of a resample (indices into the new batch)


def _tabular_score(model_dir: Path, rows: Any, schema: Any, metric: str) -> tuple[dict[str, float], ScoreOf]:
    """The production model's metrics on the new rows, and ``metric`` of any resample of them
    (predicted once; the bootstrap only re-counts)."""
    import mlflow.sklearn

    from utils.data.table_schema import feature_frame, label_values
    from utils.models.scoring_lib import classification_report, multiclass_report, regression_report, tabular_report

    model = mlflow.sklearn.load_model(str(model_dir))

    metrics = tabular_report(model, rows, schema)["metrics"]
    y_true = np.asarray(label_values(rows, schema), dtype=object)
    y_pred = np.asarray(model.predict(feature_frame(rows, schema)), dtype=object)
    if schema.problem == "regression":
        y_true, y_pred = y_true.astype(float), y_pred.astype(float)

        def score_of(idx: np.ndarray) -> float:
            return float(regression_report(y_true[idx], y_pred[idx])["metrics"].get(metric, math.nan))
    elif schema.problem == "multiclass":
        def score_of(idx: np.ndarray) -> float:
            return float(multiclass_report(y_true[idx], y_pred[idx], schema.classes)["metrics"].get(metric, math.nan))
    else:
        pos = schema.positive_label if schema.positive_label is not None else schema.classes[-1]
        t01, p01 = (y_true == pos).astype(int), (y_pred == pos).astype(int)
        fast = binary_metric(metric)

        def score_of(idx: np.ndarray) -> float:
            if fast is not None:
                return fast(t01[idx], p01[idx])
            sub = classification_report(y_true[idx], y_pred[idx], None, schema.classes, schema.positive_label)
            return float(sub["metrics"].get(metric, math.nan))

    return metrics, score_of


def _nlu_score(model_dir: Path, examples: list[Any], batch_size: int,
               primary: str) -> tuple[dict[str, float], ScoreOf]:
    from utils.models.nlu_metrics import nlu_metrics
    from utils.models.scoring_lib import NLU_SCALAR_METRICS, nlu_predict_function

    predict = nlu_predict_function(model_dir)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(examples), batch_size):
        rows.extend(predict([e.text for e in examples[start:start + batch_size]]))
    intents = [str(r["intent"]) for r in rows]
    tags = [list(r["tags"]) for r in rows]
    report = nlu_metrics(examples, intents, tags)
    intent_ok = np.array([p == e.intent for p, e in zip(intents, examples)], dtype=float)
    exact = intent_ok * np.array([list(t) == list(e.tags) for t, e in zip(tags, examples)], dtype=float)
    per_example = {"intent_accuracy": intent_ok, "exact_match": exact}.get(primary)

    def score_of(idx: np.ndarray) -> float:
        if per_example is not None:
            return float(per_example[idx].mean())
        sub = nlu_metrics([examples[i] for i in idx], [intents[i] for i in idx], [tags[i] for i in idx])
        return float(sub.get(primary, math.nan))

    return {k: float(report[k]) for k in NLU_SCALAR_METRICS}, score_of


def check_performance(cfg: DictConfig, store: ModelStore, new: Any, schema: Any = None) -> dict[str, Any]:
    """The production model on the new labelled rows against its recorded score."""
    perf_cfg = cfg.drift.performance
    task = cfg.task
    production = store.production_version()
    scores = (store.read_scores(production) or {}) if production and store.has_version(production) else {}
    metric = scores.get("primary_metric") or task.primary_metric
    direction = scores.get("direction") or "higher"
    rule = str(perf_cfg.rule)
    alpha = float(OmegaConf.select(cfg, "drift.performance.alpha", default=None) or cfg.drift.alpha)
    n_boot = int(OmegaConf.select(cfg, "drift.performance.bootstrap", default=1000) or 1000)
    out: dict[str, Any] = {"production": production, "metric": metric, "direction": direction, "drift": None,
                           "n_examples": len(new), "rule": rule, "alpha": alpha,
                           "relative_tolerance": float(perf_cfg.relative_tolerance)}
    unusable = production_unusable(production, task.model_name)
    if unusable:
        out["reason"] = unusable
        return out
    if len(new) < max(1, int(perf_cfg.min_examples)):
        out["reason"] = f"{len(new)} new labelled rows < drift.performance.min_examples={perf_cfg.min_examples}"
        return out
    recorded = store.read_score(production)
    if recorded is None:
        out["reason"] = f"{production} has no recorded score (latestscore.txt)"
        return out
    model_dir = store.model_dir(production)
    if task.name == "tabular":
        metrics, score_of = _tabular_score(model_dir, new, schema, metric)
    else:
        metrics, score_of = _nlu_score(model_dir, new, int(OmegaConf.select(cfg, "scoring.batch_size", default=256)),
                                       metric)
    score = metrics.get(metric, math.nan)
    upper = (bootstrap_upper_bound(score_of, len(new), alpha, n_boot, upper=direction != "lower")
             if rule == "significant" and not math.isnan(score) else None)
    drift, reason = performance_drift(score, recorded, float(perf_cfg.relative_tolerance), rule,
                                      upper_bound=upper, alpha=alpha, direction=direction)
    out.update({"new_score": score, "recorded_score": recorded, "metrics": metrics,
                "upper_bound": upper, "n_bootstrap": n_boot if upper is not None else 0,
                "drift": drift, "reason": reason})
    return out


# ---- prediction log -------------------------------------------------------------------------
def logged_inputs(paths: StatePaths, since: float | None, task: DictConfig) -> Any:
    """Inputs the API logged since ``since`` (tabular: a DataFrame of features; NLU: texts)."""
    from utils.monitoring.prediction_log import read_predictions

    rows = [r for r in read_predictions(paths.predictions_db, since=since, limit=MAX_LOGGED_REQUESTS)
            if r.get("task") == task.name and str(r.get("model_version", "")).startswith(f"{task.model_name}-v")]
    if task.name == "tabular":
        import pandas as pd

        records = [r["input"] for r in rows if isinstance(r.get("input"), dict)]
        return pd.DataFrame.from_records(records) if records else pd.DataFrame()
    return [str(r["input"].get("text", "")) if isinstance(r.get("input"), dict) else str(r.get("input"))
            for r in rows]


# ---- the check ------------------------------------------------------------------------------
def run_drift_check(cfg: DictConfig, paths: StatePaths, reference_path: Path | None,
                    dataset_path: Path, log_since: float | None, tick_id: str) -> DriftOutcome:
    """Compare, write reports/drift.json, log an MLflow run; returns the signals."""
    settings = DriftSettings.from_mapping(OmegaConf.to_container(cfg.drift, resolve=True))  # type: ignore[arg-type]
    task = cfg.task
    store = ModelStore(paths.models_dir)
    started = time.time()
    schema = trained = None
    numeric: list[str] = []
    categorical: list[str] = []
    known: dict[str, Any] = {}
    if task.name == "forecast":
        return _forecast_check(cfg, paths, settings, store, reference_path, dataset_path, tick_id, started)
    if task.name == "tabular":
        import pandas as pd

        schema, trained = _schemas(paths, store, task)
        current = _read_tabular(dataset_path, schema)
        reference = _read_tabular(reference_path, schema) if reference_path else pd.DataFrame(columns=current.columns)
        new = new_tabular_rows(reference, current)
        numeric = schema.features_of("numeric", "integer")
        categorical = schema.features_of("categorical", "boolean")
        known = {c: trained.column(c).categories for c in categorical
                 if c in trained.names and trained.column(c).categories}
        label = [schema.label] if schema.is_classification else []
        distribution = tabular_drift(reference, new, numeric + ([] if label else [schema.label]),
                                     categorical + label, settings, known)
    else:
        from utils.data.nlu_data import read_jsonl

        current = read_jsonl(dataset_path)
        reference = read_jsonl(reference_path) if reference_path else []
        new = new_nlu_examples(reference, current)
        distribution = nlu_drift([e.text for e in reference], [e.text for e in new],
                                 [e.intent for e in reference], [e.intent for e in new],
                                 [e.tags for e in reference], [e.tags for e in new], settings)
    n_ref, n_new = len(reference), len(new)
    log.info("drift check: %d new rows against %d reference rows", n_new, n_ref)

    performance = check_performance(cfg, store, new, trained)
    unlabelled = None
    if cfg.drift.prediction_log and n_ref:
        inputs = logged_inputs(paths, log_since, task)
        if len(inputs):
            unlabelled = (tabular_drift(reference, inputs, numeric, categorical, settings, known)
                          if task.name == "tabular" else
                          nlu_drift([e.text for e in reference], list(inputs), settings=settings)).to_dict()

    dist_signal: bool | None = None
    if n_ref and (n_new or unlabelled):
        dist_signal = bool(distribution.drift and n_new) or bool(unlabelled and unlabelled["drift"])
    outcome = DriftOutcome(n_ref, n_new, performance["drift"], dist_signal)
    outcome.report = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "tick": tick_id, "task": task.name,
        "reference": str(reference_path) if reference_path else None, "dataset": str(dataset_path),
        "n_reference": n_ref, "n_new": n_new, "drift": any(bool(v) for v in outcome.signals.values()),
        "signals": outcome.signals,
        "performance": performance, "distribution": distribution.to_dict(),
        "prediction_inputs": unlabelled, "duration_s": round(time.time() - started, 3)}
    write_report(paths, outcome.report)
    outcome.mlflow_run_id = log_to_mlflow(cfg, paths, outcome)
    return outcome


def _forecast_check(cfg: DictConfig, paths: StatePaths, settings: DriftSettings, store: ModelStore,
                    reference_path: Path | None, dataset_path: Path, tick_id: str, started: float) -> DriftOutcome:
    """A forecaster's check (utils/tick/forecast_drift.py): the new days against the frozen model,
    seasonal-naive and the season-matched reference level. The API logs series ids, not inputs
    with a distribution, so there is no prediction-log comparison."""
    from utils.tick.forecast_drift import run_forecast_drift

    result = run_forecast_drift(cfg, settings, store, reference_path, dataset_path)
    n_ref, n_new = result.n_reference, result.n_new
    dist_signal = bool(result.distribution.drift) if n_ref and n_new else None
    outcome = DriftOutcome(n_ref, n_new, result.performance["drift"], dist_signal)
    outcome.report = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "tick": tick_id, "task": cfg.task.name,
        "reference": str(reference_path) if reference_path else None, "dataset": str(dataset_path),
        "n_reference": n_ref, "n_new": n_new, "drift": any(bool(v) for v in outcome.signals.values()),
        "signals": outcome.signals, "performance": result.performance,
        "distribution": result.distribution.to_dict(), "prediction_inputs": None,
        "duration_s": round(time.time() - started, 3)}
    write_report(paths, outcome.report)
    outcome.mlflow_run_id = log_to_mlflow(cfg, paths, outcome)
    return outcome


def write_report(paths: StatePaths, report: dict[str, Any]) -> Path:
    paths.reports_dir.mkdir(parents=True, exist_ok=True)
    target = paths.reports_dir / "drift.json"
    tmp = target.with_name(f".drift.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, target)
    return target


def tracking_uri(cfg: DictConfig, paths: StatePaths) -> str:
    """The same tracking URI main.py uses for this config."""
    from utils.pipeline.tracking import absolute_tracking_uri, default_tracking_uri

    return (absolute_tracking_uri(cfg.main.tracking_uri, REPO_ROOT) if cfg.main.tracking_uri
            else default_tracking_uri(paths))


def metric_name(key: str) -> str:
    """An MLflow-safe metric name: feature names may hold any character (a store called "a@b")."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)


def log_to_mlflow(cfg: DictConfig, paths: StatePaths, outcome: DriftOutcome) -> str | None:
    """One run per check: signals and statistics as metrics, drift.json as an artifact."""
    import mlflow

    from utils.pipeline.tracking import check_tracking_store, ensure_experiment, log_json_artifact

    uri = tracking_uri(cfg, paths)
    check_tracking_store(uri)   # a server that is down: the tick's one line now, not minutes of retries
    mlflow.set_tracking_uri(uri)
    experiment_id = ensure_experiment(cfg.main.experiment_name, paths)
    report = outcome.report
    metrics: dict[str, float] = {"n_reference": outcome.n_reference, "n_new": outcome.n_new}
    for name, value in outcome.signals.items():
        if value is not None:
            metrics[f"drift_{name}"] = float(value)
    perf = report["performance"]
    for key in ("new_score", "recorded_score"):
        if isinstance(perf.get(key), (int, float)):
            metrics[f"performance_{key}"] = float(perf[key])
    for test in report["distribution"]["tests"]:
        metrics[f"p_adjusted.{test['test']}.{test['feature']}"] = float(test["p_adjusted"])
        metrics[f"statistic.{test['test']}.{test['feature']}"] = float(test["statistic"])
    for feature, value in report["distribution"]["psi"].items():
        metrics[f"psi.{feature}"] = float(value)
    from utils.pipeline.stale_runs import end_stale_runs, owner_tags

    end_stale_runs(mlflow.MlflowClient(), [experiment_id])   # a killed tick's or chain's runs
    with mlflow.start_run(experiment_id=experiment_id, run_name="drift-check") as run:
        mlflow.set_tags({**owner_tags(), "pipeline.kind": "drift_check", "pipeline.task": cfg.task.name,
                         "pipeline.tick": report["tick"],
                         "drift.performance": str(outcome.performance),
                         "drift.distribution": str(outcome.distribution)})
        mlflow.log_metrics({metric_name(k): v for k, v in metrics.items() if math.isfinite(v)})
        log_json_artifact(report, "drift.json")
        return run.info.run_id
