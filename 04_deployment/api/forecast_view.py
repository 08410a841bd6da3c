"""The dashboard's part for forecasting models: their four metrics over time, and actual vs
forecast for the series a user picks.

* metrics over time: MAE, WMAPE, RMSE and Tweedie deviance of every daily monitoring record
  (`models/<model>/monitoring.jsonl`, the frozen production model on the newest days) beside
  seasonal-naive's on the same days, and each version's backtest values at its scoring time;
* actual vs forecast: for the picked series (the `series_<model>` query field, comma-separated;
  default a few across the volume range), the ingested history up to the production model's
  last training day, its forecast of the horizon from there (the served model's own code:
  ``FittedForecaster.predict``), seasonal-naive, and the actuals ingested since.

Both are PNGs inlined as data: URLs (the dashboard's CSP allows nothing else). Loaded models
and datasets are cached per version (immutable) and per file state (size, mtime).
"""
from __future__ import annotations

import base64
import io
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from utils.models.model_store import ModelStore

FORECAST_METRICS = (("mae", "MAE"), ("wmape", "WMAPE"), ("rmse", "RMSE"), ("tweedie_deviance", "Tweedie deviance"))
MAX_SERIES = 6            # panels in the actual-vs-forecast plot
DEFAULT_SERIES = 3        # picked across the volume range when the user names none
MAX_ID_CHARS = 100
HISTORY_DAYS = 56         # history shown before the forecast origin
_lock = threading.Lock()
_models: dict[str, Any] = {}
_datasets: dict[str, tuple[tuple[int, int], Any]] = {}


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z") if value else None
    except ValueError:
        return None


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def metrics_points(monitoring: list[dict[str, Any]], versions: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric: (time, model, seasonal-naive) of each monitoring record, (time, value, version)
    of each version's backtest."""
    out: dict[str, Any] = {key: {"monitor": [], "backtest": []} for key, _ in FORECAST_METRICS}
    for m in monitoring:
        t = _parse_time(m.get("time"))
        metrics, base = m.get("metrics") or {}, m.get("baseline_metrics") or {}
        for key, _ in FORECAST_METRICS:
            if t and isinstance(metrics.get(key), (int, float)):
                out[key]["monitor"].append((t, float(metrics[key]), base.get(key)))
    for v in versions:
        t = _parse_time(v.get("scored"))
        for key, _ in FORECAST_METRICS:
            value = (v.get("metrics") or {}).get(key)
            if t and isinstance(value, (int, float)):
                out[key]["backtest"].append((t, float(value), v.get("version")))
    return out


def metrics_png(points: dict[str, Any], color: str) -> str | None:
    """2 x 2 panels: each metric of the model (solid) and seasonal-naive (dashed) over time."""
    if not any(p["monitor"] or p["backtest"] for p in points.values()):
        return None
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 5.0), dpi=100)
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, label) in zip(axes, FORECAST_METRICS):
        monitor = sorted(points[key]["monitor"], key=lambda p: p[0])
        if monitor:
            ax.plot([p[0] for p in monitor], [p[1] for p in monitor], marker="o", lw=2.2, color=color,
                    label="model (daily monitoring)")
            base = [(p[0], p[2]) for p in monitor if isinstance(p[2], (int, float))]
            if base:
                ax.plot([b[0] for b in base], [b[1] for b in base], ls="--", marker=".", lw=1.4, color="0.45",
                        label="seasonal-naive, same days")
        backtest = sorted(points[key]["backtest"], key=lambda p: p[0])
        if backtest:
            ax.scatter([p[0] for p in backtest], [p[1] for p in backtest], marker="D", s=36, facecolors="none",
                       edgecolors=color, linewidths=1.4, zorder=4, label="backtest of a version")
        locator = mdates.AutoDateLocator(minticks=3, maxticks=6)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_title(label, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _png(fig)


def requested_series(raw: str | None) -> list[str]:
    """The ids a user typed (comma or space separated), de-duplicated, at most MAX_SERIES."""
    ids = [s.strip()[:MAX_ID_CHARS] for s in (raw or "").replace(",", " ").split()]
    return list(dict.fromkeys(i for i in ids if i))[:MAX_SERIES]


def _fitted(store: ModelStore, version: str) -> Any:
    from utils.models.forecast_monitoring import load_fitted

    with _lock:
        if version not in _models:
            if len(_models) >= 4:
                _models.clear()
            _models[version] = load_fitted(store.model_dir(version))
        return _models[version]


def _dataset(path: Path, task: Any) -> Any:
    from utils.data.forecast_data import read_dataset

    stat = path.stat()
    key = (stat.st_size, stat.st_mtime_ns)
    with _lock:
        cached = _datasets.get(str(path))
        if cached and cached[0] == key:
            return cached[1]
    frame = read_dataset(path, task)
    with _lock:
        _datasets.clear()
        _datasets[str(path)] = (key, frame)
    return frame


def series_view(store: ModelStore, dataset: Path, task: Any, raw: str | None, color: str) -> dict[str, Any]:
    """What the "actual vs forecast" control shows: picked ids, unknown ones, the PNG or why not."""
    import pandas as pd

    from utils.monitoring.forecast_diagnostics import sample_series

    view: dict[str, Any] = {"ids": [], "unknown": [], "png": None, "error": None, "typed": raw or "",
                            "origin": None, "default": not requested_series(raw)}
    version = store.production_version()
    if version is None:
        view["error"] = "no production version: nothing to forecast"
        return view
    if not dataset.is_file():
        view["error"] = f"no ingested data yet ({dataset.name})"
        return view
    try:
        fitted = _fitted(store, version)
        history = _dataset(dataset, task)
    except (OSError, ValueError, KeyError) as exc:
        view["error"] = f"cannot read the model or its data: {exc}"
        return view
    cols = fitted.cols
    known = set(fitted.series_ids)
    asked = requested_series(raw)
    view["unknown"] = [i for i in asked if i not in known]
    ids = [i for i in asked if i in known]
    if not asked:
        volume = history.groupby(cols.series)[cols.target].sum().reindex(fitted.series_ids).fillna(0.0)
        ids = sample_series(volume, DEFAULT_SERIES)
    view["ids"] = ids
    if not ids:
        view["error"] = "none of these series is known to the model"
        return view
    forecast = fitted.predict(ids, cols.horizon)
    origin = pd.Timestamp(fitted.last_values[fitted.last_values["unique_id"].isin(ids)]["ds"].max())
    view["origin"] = str(origin.date())
    data = history[history[cols.series].isin(ids)].assign(_ds=lambda f: pd.to_datetime(f[cols.time]))
    view["png"] = series_png(ids, data, forecast, cols, origin, color)
    return view


def series_png(ids: list[str], data: Any, forecast: Any, cols: Any, origin: Any, color: str) -> str:
    """One panel per series: history, the forecast from ``origin``, seasonal-naive, actuals since."""
    import matplotlib.dates as mdates
    import pandas as pd
    from matplotlib.figure import Figure

    rows = (len(ids) + 1) // 2
    fig = Figure(figsize=(9.5, 2.3 * rows + 0.5), dpi=100)
    axes = fig.subplots(rows, 2 if len(ids) > 1 else 1, squeeze=False).ravel()
    start = origin - pd.Timedelta(days=HISTORY_DAYS)
    for ax, sid in zip(axes, ids):
        d = data[(data[cols.series] == sid) & (data["_ds"] > start)]
        past, after = d[d["_ds"] <= origin], d[d["_ds"] > origin]
        f = forecast[forecast[cols.series] == sid]
        ax.plot(past["_ds"], past[cols.target], color="0.35", lw=1, label="history")
        ax.plot(pd.to_datetime(f[cols.time]), f["forecast"], color=color, lw=2.2, label="forecast")
        ax.plot(pd.to_datetime(f[cols.time]), f["seasonal_naive"], color="tab:orange", lw=1, ls="--",
                label="seasonal-naive")
        if len(after):
            ax.plot(after["_ds"], after[cols.target], color="black", lw=1, marker=".", label="actual (arrived since)")
        ax.axvline(origin, color="0.6", lw=0.8, ls=":")
        locator = mdates.AutoDateLocator(maxticks=6)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_title(str(sid), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(ids):]:
        ax.set_visible(False)
    handles, labels = [], []
    for ax in axes[:len(ids)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 if rows > 1 else 0.14, 1, 1))
    return _png(fig)


def forecast_panel(store: ModelStore, monitoring: list[dict[str, Any]], versions: list[dict[str, Any]],
                   dataset: Path, task: Any, raw_series: str | None, color: str) -> dict[str, Any]:
    """Everything the dashboard's section of one forecasting model needs."""
    points = metrics_points(monitoring, versions)
    last = next((m for m in reversed(monitoring) if m.get("metrics")), None)
    return {"metrics_png": metrics_png(points, color), "n_monitoring": len(points["wmape"]["monitor"]),
            "last": last, "metric_names": FORECAST_METRICS,
            "series": series_view(store, dataset, task, raw_series, color)}
