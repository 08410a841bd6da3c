"""The cron tick's drift check for a forecasting model: the days that just arrived.

New rows: (series, date) pairs of the ingested dataset that the reference (the dataset at the
previous check) lacks, or whose target changed (a late correction). Two signals, as for the
other tasks, so `drift.policy` reads the same:

* performance: the frozen production model forecasts the new days from the origin just before
  them, reading the history up to it (utils/models/forecast_monitoring.py ``score_window``,
  the daily monitoring's own code). Drift when its WMAPE is *significantly* worse than
  - the WMAPE recorded at deployment (the rolling-origin backtest, ``latestscore.txt``), and/or
  - seasonal-naive's WMAPE on the same days (`drift.forecast.versus_baseline`).
  "Significantly": the one-sided (1 - alpha) bootstrap bound on the better side, resampling
  whole series (a series' days are correlated, its errors are not independent draws), is still
  worse (utils/monitoring/drift.py ``performance_drift``, rule `drift.performance.rule`). The
  new days are forecast 1..k steps ahead (k <= horizon), where a forecaster errs less than on
  the backtest's 1..horizon average: the first comparison errs on the side of no alarm.
* distribution: the target's level per `task.group_column` (store) and overall, KS + PSI
  (utils/monitoring/drift.py ``level_drift``), against the reference rows at the same position
  of the season (the same weekdays) in the `drift.forecast.reference_seasons` seasons (weeks)
  just before the new days: the weekly pattern alone is no drift, a level shift is.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from utils.data.forecast_data import read_dataset, series_col
from utils.models.model_store import ModelStore, production_unusable
from utils.monitoring.drift import (
    DriftReport,
    DriftSettings,
    bootstrap_upper_bound,
    level_drift,
    performance_drift,
)

log = logging.getLogger("fullprocess.drift")


@dataclass
class ForecastDrift:
    n_reference: int
    n_new: int
    performance: dict[str, Any]
    distribution: DriftReport


def new_rows(reference: pd.DataFrame, current: pd.DataFrame, key: list[str], target: str) -> pd.DataFrame:
    """Rows of ``current`` whose (series, date) is not in ``reference`` or whose target changed."""
    if reference.empty:
        return current
    ref = reference[[*key, target]].rename(columns={target: "_ref_target"})
    merged = current.merge(ref, on=key, how="left")
    changed = merged["_ref_target"].isna() | (merged["_ref_target"].astype(float) != merged[target].astype(float))
    return current[changed.to_numpy()].reset_index(drop=True)


def season_matched(history: pd.DataFrame, new: pd.DataFrame, time: str, step: pd.Timedelta, season: int,
                   seasons: int) -> pd.DataFrame:
    """Rows of ``history`` in the ``seasons`` seasons before the first new date, at the same
    positions of the season as the new dates (daily data, season 7: the same weekdays)."""
    first = pd.to_datetime(new[time]).min()
    new_pos = set(((pd.to_datetime(new[time]) - first) // step % season).astype(int))
    index = (pd.to_datetime(history[time]) - first) // step
    keep = (index < 0) & (index >= -seasons * season) & (index % season).astype(int).isin(new_pos)
    return history[keep.to_numpy()]


def _wmape(err: np.ndarray, y: np.ndarray) -> float:
    total = float(y.sum())
    return float(err.sum() / total) if total > 0 else math.nan


def check_forecast_performance(cfg: DictConfig, store: ModelStore, current: pd.DataFrame,
                               first_new: pd.Timestamp | None, n_new: int) -> dict[str, Any]:
    """The frozen production model on the new days, against its recorded WMAPE and seasonal-naive."""
    from utils.models import forecast_model as fm
    from utils.models.forecast_metrics import point_metrics
    from utils.models.forecast_monitoring import load_fitted, score_window

    perf_cfg, task = cfg.drift.performance, cfg.task
    production = store.production_version()
    scores = (store.read_scores(production) or {}) if production and store.has_version(production) else {}
    metric = "wmape"
    rule = str(perf_cfg.rule)
    alpha = float(OmegaConf.select(cfg, "drift.performance.alpha", default=None) or cfg.drift.alpha)
    n_boot = int(OmegaConf.select(cfg, "drift.performance.bootstrap", default=1000) or 1000)
    tolerance = float(perf_cfg.relative_tolerance)
    versus_baseline = bool(OmegaConf.select(cfg, "drift.forecast.versus_baseline", default=True))
    out: dict[str, Any] = {"production": production, "metric": metric, "direction": "lower", "drift": None,
                           "n_examples": n_new, "rule": rule, "alpha": alpha, "relative_tolerance": tolerance}
    unusable = production_unusable(production, task.model_name)
    if unusable:
        out["reason"] = unusable
        return out
    if first_new is None or n_new < max(1, int(perf_cfg.min_examples)):
        out["reason"] = f"{n_new} new rows < drift.performance.min_examples={perf_cfg.min_examples}"
        return out
    recorded = store.read_score(production)
    if recorded is None or scores.get("primary_metric", metric) != metric:
        out["reason"] = f"{production} has no recorded {metric} (latestscore.txt)"
        return out
    fitted = load_fitted(store.model_dir(production))
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(fitted.cols.freq))
    last = pd.to_datetime(current[fitted.cols.time], format="ISO8601").max()
    days = min(int((last - first_new) / step) + 1, fitted.cols.horizon)
    try:
        window = score_window(fitted, current, days, origin=last - step * days)
    except ValueError as exc:
        out["reason"] = f"cannot score the new days: {exc}"
        return out
    joined = window.joined
    per_series = joined.assign(e_model=(joined[fm.Y] - joined[fm.MODEL_COLUMN]).abs(),
                               e_base=(joined[fm.Y] - joined[fm.BASELINE_COLUMN]).abs()).groupby(fm.ID)[
        ["e_model", "e_base", fm.Y]].sum()
    e_model, e_base, y = (per_series[c].to_numpy(dtype=float) for c in ("e_model", "e_base", fm.Y))
    power = fitted.cols.tweedie_power
    metrics = point_metrics(joined[fm.Y], joined[fm.MODEL_COLUMN], power)
    baseline = point_metrics(joined[fm.Y], joined[fm.BASELINE_COLUMN], power)
    score = metrics[metric]
    n = len(per_series)
    significant = rule == "significant" and not math.isnan(score)
    lower = bootstrap_upper_bound(lambda i: _wmape(e_model[i], y[i]), n, alpha, n_boot, upper=False) \
        if significant else None
    drift, reason = performance_drift(score, recorded, tolerance, rule, upper_bound=lower, alpha=alpha,
                                      direction="lower")
    out.update({"new_score": score, "recorded_score": recorded, "metrics": metrics, "baseline_metrics": baseline,
                "upper_bound": lower, "n_bootstrap": n_boot if significant else 0, "n_series": n,
                "window": {"origin": str(window.origin.date()), "last_date": str(last.date()), "days": days},
                "drift": drift, "reason": f"vs the recorded backtest {metric}: {reason}"})
    if versus_baseline and not math.isnan(baseline[metric]):
        # paired: the same resampled series for both; drift when even the bound of the model's
        # excess WMAPE over seasonal-naive on its better side is above 0 (x tolerance)
        excess = (lambda i: _wmape(e_model[i], y[i]) - _wmape(e_base[i], y[i]) * (1.0 + tolerance))
        bound = bootstrap_upper_bound(excess, n, alpha, n_boot, upper=False) if significant else None
        observed = excess(np.arange(n))
        worse = (bound if significant else observed)
        fired = bool(worse is not None and not math.isnan(worse) and worse > 0)
        level = f"{1 - alpha:.0%}"
        text = (f"vs seasonal-naive on the same days: model {score:.4f}, seasonal-naive {baseline[metric]:.4f}"
                + (f", lower {level} bound of the excess {bound:.4f}" if significant and bound is not None else "")
                + (": significantly worse" if fired else ": not significantly worse"))
        out["versus_baseline"] = {"baseline_score": baseline[metric], "excess_lower_bound": bound,
                                  "drift": fired, "reason": text}
        out["drift"] = bool(drift or fired)
        out["reason"] = f"{out['reason']}; {text}"
    return out


def run_forecast_drift(cfg: DictConfig, settings: DriftSettings, store: ModelStore, reference_path: Path | None,
                       dataset_path: Path) -> ForecastDrift:
    """Both signals for the days the tick just ingested."""
    task = cfg.task
    series, time, target = series_col(task), task.time_column, task.target_column
    current = read_dataset(dataset_path, task)
    reference = read_dataset(reference_path, task) if reference_path else pd.DataFrame(columns=current.columns)
    new = new_rows(reference, current, [series, time], target)
    first_new = pd.to_datetime(new[time], format="ISO8601").min() if len(new) else None
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(task.freq))
    season = int(OmegaConf.select(cfg, "training.season", default=7) or 7)
    seasons = int(OmegaConf.select(cfg, "drift.forecast.reference_seasons", default=4) or 4)
    group = task.get("group_column") if task.get("group_column") in current.columns else None
    matched = season_matched(reference, new, time, step, season, seasons) if len(new) and len(reference) \
        else reference.iloc[:0]
    distribution = level_drift(matched, new, target, group, settings)
    performance = check_forecast_performance(cfg, store, current, first_new, len(new))
    log.info("forecast drift check: %d new rows (from %s) against %d season-matched reference rows",
             len(new), first_new.date() if first_new is not None else "-", len(matched))
    return ForecastDrift(len(reference), len(new), performance, distribution)
