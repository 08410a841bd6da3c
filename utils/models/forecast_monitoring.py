"""Daily monitoring of a deployed forecaster: its error on the newest days, without retraining.

The production model stays frozen (its trees); only the history it reads moves: it forecasts
the newest ``days`` days from the origin just before them, using every ingested day up to that
origin (mlforecast's ``predict(new_df=...)``), and the forecasts are compared with the actuals
that arrived. MAE, RMSE, WMAPE and Tweedie deviance of the model and of seasonal-naive are what
the many-models tick appends to the model's history every ``schedule.monitor_every``; the
tick's drift check (utils/tick/forecast_drift.py) scores the days that just arrived the same
way (``score_window``). Series the model has never seen are left out (counted in
``n_unknown_series``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from utils.models import forecast_model as fm
from utils.models.forecast_metrics import point_metrics


@dataclass
class ScoredWindow:
    """The frozen model's and seasonal-naive's forecasts of a window, beside the actuals."""

    origin: pd.Timestamp
    last_date: pd.Timestamp
    days: int
    joined: pd.DataFrame          # unique_id, ds, y, lgbm, seasonal_naive (+ statics)
    n_unknown_series: int


def load_fitted(fitted: fm.FittedForecaster | Path) -> fm.FittedForecaster:
    """A FittedForecaster, or one loaded from a store model folder (``<version>/model``)."""
    if isinstance(fitted, fm.FittedForecaster):
        return fitted
    return fm.FittedForecaster.load(Path(fitted) / "artifacts" / "bundle")


def score_window(fitted: fm.FittedForecaster, frame: pd.DataFrame, days: int,
                 origin: pd.Timestamp | None = None) -> ScoredWindow:
    """Forecast ``days`` steps from ``origin`` (default: ``days`` steps before the newest date)
    reading ``frame``'s history up to it, and join the actuals that followed.

    ``frame``: the ingested long-format dataset (user column names).
    """
    cols = fitted.cols
    if not 1 <= days <= cols.horizon:
        raise ValueError(f"days must be between 1 and the model's horizon {cols.horizon}, got {days}")
    known = frame[cols.series].astype(str).isin(set(fitted.series_ids))
    df = fm.model_frame(frame[known], cols, fitted.means, fitted.categories)
    if df.empty:
        raise ValueError("no rows of series the model knows: nothing to score")
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(cols.freq))
    origin = df[fm.DS].max() - step * days if origin is None else pd.Timestamp(origin)
    end = origin + step * days
    history, future = df[df[fm.DS] <= origin], df[(df[fm.DS] > origin) & (df[fm.DS] <= end)]
    ids = sorted(set(history[fm.ID]) & set(future[fm.ID]))
    if not ids:
        raise ValueError(f"no series has both history up to {origin.date()} and actuals after it")
    history, future = history[history[fm.ID].isin(ids)], future[future[fm.ID].isin(ids)]
    x_df = future.drop(columns=[fm.Y, *cols.statics]) if cols.dynamic_features else None
    forecast = fitted.forecaster.predict(h=days, new_df=history, X_df=x_df)
    baseline = fm.seasonal_naive(history, days, cols.freq, fitted.params.season)
    keep = [fm.ID, fm.DS, fm.Y, *cols.statics]
    joined = future[keep].merge(forecast, on=[fm.ID, fm.DS]).merge(baseline, on=[fm.ID, fm.DS])
    joined[fm.MODEL_COLUMN] = joined[fm.MODEL_COLUMN].clip(lower=0.0)
    return ScoredWindow(origin, end, days, joined, int(frame.loc[~known, cols.series].nunique()))


def monitor_recent(fitted: fm.FittedForecaster | Path, frame: pd.DataFrame, days: int | None = None) -> dict[str, Any]:
    """Metrics of the frozen model on the last ``days`` (<= horizon; default horizon) of ``frame``.

    ``fitted``: a FittedForecaster or a store model folder (``<version>/model``); ``frame``: the
    ingested long-format dataset (user column names).
    """
    fitted = load_fitted(fitted)
    cols = fitted.cols
    window = score_window(fitted, frame, int(days or cols.horizon))
    joined = window.joined
    return {"origin": str(window.origin.date()), "last_date": str(joined[fm.DS].max().date()),
            "days": window.days, "n_rows": int(len(joined)), "n_series": int(joined[fm.ID].nunique()),
            "n_unknown_series": window.n_unknown_series,
            "metrics": point_metrics(joined[fm.Y], joined[fm.MODEL_COLUMN], cols.tweedie_power),
            "baseline_metrics": point_metrics(joined[fm.Y], joined[fm.BASELINE_COLUMN], cols.tweedie_power)}
