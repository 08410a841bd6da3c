"""Daily monitoring of a deployed forecaster: its error on the newest days, without retraining.

The production model stays frozen (its trees); only the history it reads moves: it forecasts
the newest ``days`` days from the origin just before them, using every ingested day up to that
origin (mlforecast's ``predict(new_df=...)``), and the forecasts are compared with the actuals
that arrived. MAE, RMSE, WMAPE and Tweedie deviance of the model and of seasonal-naive are what
the many-models tick appends to the model's history every ``schedule.monitor_every``.
Series the model has never seen are left out (counted in ``n_unknown_series``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from utils.models import forecast_model as fm
from utils.models.forecast_metrics import point_metrics


def monitor_recent(fitted: fm.FittedForecaster | Path, frame: pd.DataFrame, days: int | None = None) -> dict[str, Any]:
    """Metrics of the frozen model on the last ``days`` (<= horizon; default horizon) of ``frame``.

    ``fitted``: a FittedForecaster or a store model folder (``<version>/model``); ``frame``: the
    ingested long-format dataset (user column names).
    """
    if not isinstance(fitted, fm.FittedForecaster):
        fitted = fm.FittedForecaster.load(Path(fitted) / "artifacts" / "bundle")
    cols = fitted.cols
    days = int(days or cols.horizon)
    if not 1 <= days <= cols.horizon:
        raise ValueError(f"days must be between 1 and the model's horizon {cols.horizon}, got {days}")
    known = frame[cols.series].astype(str).isin(set(fitted.series_ids))
    df = fm.model_frame(frame[known], cols, fitted.means, fitted.categories)
    if df.empty:
        raise ValueError("no rows of series the model knows: nothing to monitor")
    origin = df[fm.DS].max() - pd.Timedelta(pd.tseries.frequencies.to_offset(cols.freq)) * days
    history, future = df[df[fm.DS] <= origin], df[df[fm.DS] > origin]
    ids = sorted(set(history[fm.ID]) & set(future[fm.ID]))
    history, future = history[history[fm.ID].isin(ids)], future[future[fm.ID].isin(ids)]
    x_df = future.drop(columns=[fm.Y, *cols.statics]) if cols.dynamic_features else None
    forecast = fitted.forecaster.predict(h=days, new_df=history, X_df=x_df)
    baseline = fm.seasonal_naive(history, days, cols.freq, fitted.params.season)
    joined = future[[fm.ID, fm.DS, fm.Y]].merge(forecast, on=[fm.ID, fm.DS]).merge(baseline, on=[fm.ID, fm.DS])
    joined[fm.MODEL_COLUMN] = joined[fm.MODEL_COLUMN].clip(lower=0.0)
    return {"origin": str(origin.date()), "last_date": str(df[fm.DS].max().date()), "days": days,
            "n_rows": int(len(joined)), "n_series": len(ids),
            "n_unknown_series": int(frame.loc[~known, cols.series].nunique()),
            "metrics": point_metrics(joined[fm.Y], joined[fm.MODEL_COLUMN], cols.tweedie_power),
            "baseline_metrics": point_metrics(joined[fm.Y], joined[fm.BASELINE_COLUMN], cols.tweedie_power)}
