"""Diagnostics and report pieces of task=forecast: forecasts vs actuals on the test file, a plot.

``forecast_predictions`` asks the production pyfunc for every known series of the test file
(the serving path), joins the actuals, and keeps a few sample series in full (their recent
history too) for the report's forecast plot; ``forecast_png`` draws that plot.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from utils.data.forecast_data import read_dataset, read_forecast_csv
from utils.models import forecast_model as fm
from utils.models.forecast_metrics import point_metrics

FORECAST_SIZE_PX: tuple[int, int] = (1000, 900)


def _bundle(model_dir: Path) -> fm.FittedForecaster:
    return fm.FittedForecaster.load(Path(model_dir) / "artifacts" / "bundle")


def sample_series(volume: pd.Series, n: int) -> list[str]:
    """``n`` series spread over the volume range (busiest to slowest), deterministic."""
    ordered = volume.sort_values(ascending=False, kind="stable").index.tolist()
    if len(ordered) <= n:
        return ordered
    return [ordered[int(i)] for i in np.linspace(0, len(ordered) - 1, n).round()]


def forecast_predictions(model_dir: Path, test_path: Path, task: Any, dataset: Path,
                         n_sample: int = 6) -> dict[str, Any]:
    """Production forecasts vs the test file's actuals; sample series with history for the plot."""
    import mlflow.pyfunc

    fitted = _bundle(model_dir)
    cols = fitted.cols
    test = read_forecast_csv(Path(test_path), task)
    known = test[test[cols.series].isin(set(fitted.series_ids))]
    ids = sorted(known[cols.series].unique()) or fitted.series_ids
    model = mlflow.pyfunc.load_model(str(model_dir))
    request = (fm.request_frame(known, cols) if not known.empty and cols.dynamic_features
               else pd.DataFrame({cols.series: ids}))
    forecast = model.predict(request, params={"horizon": cols.horizon})
    joined = forecast.merge(known[[cols.series, cols.time, cols.target]], on=[cols.series, cols.time], how="left")
    scored = joined.dropna(subset=[cols.target])
    metrics = (point_metrics(scored[cols.target], scored["forecast"], cols.tweedie_power) if len(scored) else {})
    baseline = (point_metrics(scored[cols.target], scored[fm.BASELINE_COLUMN], cols.tweedie_power)
                if len(scored) else {})
    history = read_dataset(dataset, task)
    volume = history.groupby(cols.series)[cols.target].sum() if not history.empty else pd.Series(dtype=float)
    sample = sample_series(volume.reindex(ids).fillna(0.0), n_sample)
    recent = history[history[cols.series].isin(sample)]
    if not recent.empty:
        start = pd.to_datetime(recent[cols.time]).max() - pd.Timedelta(days=3 * cols.horizon)
        recent = recent[pd.to_datetime(recent[cols.time]) > start]
    rows = [{"series": r[cols.series], "date": r[cols.time],
             "actual": None if pd.isna(r[cols.target]) else float(r[cols.target]),
             "forecast": float(r["forecast"]), "seasonal_naive": float(r[fm.BASELINE_COLUMN])}
            for r in joined[joined[cols.series].isin(sample)].to_dict(orient="records")]
    return {"test_path": str(test_path), "n_examples": int(len(scored)), "n_series": len(ids),
            "horizon": cols.horizon, "metrics": metrics, "baseline_metrics": baseline,
            "wmape": metrics.get("wmape"), "sample_series": sample, "rows": rows,
            "history": [{"series": r[cols.series], "date": r[cols.time], "actual": float(r[cols.target])}
                        for r in recent.to_dict(orient="records")]}


def single_series_call(model: Any, model_dir: Path) -> Callable[[int], Any]:
    """A function forecasting ONE series (cycling over the known ones) with the pyfunc."""
    fitted = _bundle(model_dir)
    ids = fitted.series_ids
    column = fitted.cols.series
    return lambda i: model.predict(pd.DataFrame({column: [ids[i % len(ids)]]}))


def forecast_png(predictions: dict[str, Any], path: Path, title: str) -> Path:
    """One panel per sample series: recent history, actuals, forecast and seasonal-naive."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    from utils.monitoring.report_lib import _figure, _save

    sample = predictions.get("sample_series") or []
    fig = _figure(FORECAST_SIZE_PX)
    axes = fig.subplots(max(1, (len(sample) + 1) // 2), 2 if len(sample) > 1 else 1, squeeze=False).ravel()
    history = pd.DataFrame(predictions.get("history") or [], columns=["series", "date", "actual"])
    rows = pd.DataFrame(predictions.get("rows") or [],
                        columns=["series", "date", "actual", "forecast", "seasonal_naive"])
    for ax, sid in zip(axes, sample):
        h = history[history["series"] == sid]
        r = rows[rows["series"] == sid]
        ax.plot(pd.to_datetime(h["date"]), h["actual"], color="0.35", lw=1, label="history")
        ax.plot(pd.to_datetime(r["date"]), r["actual"], color="black", lw=1, marker=".", label="actual")
        ax.plot(pd.to_datetime(r["date"]), r["forecast"], color="tab:blue", lw=2, label="forecast")
        ax.plot(pd.to_datetime(r["date"]), r["seasonal_naive"], color="tab:orange", lw=1, ls="--",
                label="seasonal-naive")
        locator = AutoDateLocator(maxticks=6)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_title(str(sid), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(sample):]:
        ax.set_visible(False)
    if sample:
        axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    return _save(fig, path)
