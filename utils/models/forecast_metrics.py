"""Forecast error metrics: MAE, RMSE, WMAPE, Tweedie deviance, MASE (overall and per group).

WMAPE = sum|y - yhat| / sum|y| (robust to the zeros of intermittent series, unlike MAPE).
Tweedie deviance uses scikit-learn's ``mean_tweedie_deviance`` with ``power`` (the training
objective's variance power); forecasts are floored at a tiny positive value because the
deviance is undefined at 0 for 1 < power < 2 (floor 1e-3: see EPS). MASE divides the MAE by the in-sample MAE of
the seasonal-naive forecast (season 7) over each series' training history, pooled over series.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

EPS = 1e-3   # a forecast of 0 counts as 0.001 in the Tweedie deviance (undefined at 0)
SCALAR_METRICS: tuple[str, ...] = ("mae", "rmse", "wmape", "tweedie_deviance")


def point_metrics(y: Any, yhat: Any, power: float) -> dict[str, float]:
    """MAE, RMSE, WMAPE and Tweedie deviance of one set of (actual, forecast) pairs."""
    from sklearn.metrics import mean_tweedie_deviance

    y = np.asarray(y, dtype=float)
    yhat = np.asarray(yhat, dtype=float)
    if len(y) == 0:
        raise ValueError("no (actual, forecast) pairs to score")
    err = np.abs(y - yhat)
    total = np.abs(y).sum()
    return {"mae": float(err.mean()), "rmse": float(np.sqrt(((y - yhat) ** 2).mean())),
            "wmape": float(err.sum() / total) if total > 0 else float("nan"),
            "tweedie_deviance": float(mean_tweedie_deviance(y, np.maximum(yhat, EPS), power=power))}


def seasonal_scale(history: pd.DataFrame, id_col: str, target: str, season: int = 7) -> pd.Series:
    """Per series: mean |y_t - y_{t-season}| over the history (the MASE denominator's parts)."""
    ordered = history.sort_values([id_col, "ds"]) if "ds" in history.columns else history
    diff = ordered.groupby(id_col, sort=False)[target].diff(season).abs()
    return diff.groupby(ordered[id_col]).mean()


def mase(errors: pd.DataFrame, scale: pd.Series, id_col: str) -> float:
    """Pooled MASE: mean absolute error / mean in-sample seasonal-naive error (series with a scale)."""
    per_series = errors.groupby(id_col)["abs_error"].mean()
    denom = scale.reindex(per_series.index)
    ok = denom.notna()
    if not ok.any() or denom[ok].mean() <= 0:
        return float("nan")
    return float(per_series[ok].mean() / denom[ok].mean())


def forecast_report(cv: pd.DataFrame, history: pd.DataFrame, models: list[str], power: float,
                    group_col: str | None = None, id_col: str = "unique_id", target: str = "y",
                    season: int = 7) -> dict[str, Any]:
    """Metrics of each model column in ``cv`` (rows: id, ds, cutoff, y, <model>...).

    Returns {"metrics": {<model>_<metric>: value}, "per_group": [...], "per_window": [...]};
    ``history`` (id, ds, y) is the data the MASE scale is computed on.
    """
    scale = seasonal_scale(history, id_col, target, season)
    metrics: dict[str, float] = {}
    per_group: list[dict[str, Any]] = []
    per_window: list[dict[str, Any]] = []
    for model in models:
        m = point_metrics(cv[target], cv[model], power)
        m["mase"] = mase(cv.assign(abs_error=(cv[target] - cv[model]).abs()), scale, id_col)
        metrics.update({f"{model}_{k}": v for k, v in m.items()})
        if "cutoff" in cv.columns:
            for cutoff, part in cv.groupby("cutoff", sort=True):
                per_window.append({"model": model, "cutoff": str(pd.Timestamp(cutoff).date()),
                                   **point_metrics(part[target], part[model], power)})
        if group_col and group_col in cv.columns:
            for group, part in cv.groupby(group_col, sort=True):
                per_group.append({"model": model, group_col: str(group),
                                  **point_metrics(part[target], part[model], power)})
    return {"metrics": metrics, "per_group": per_group, "per_window": per_window}
