"""GET /dashboard: every model on one server-rendered page (no JavaScript, no external assets).

One metrics-over-time chart with every model (each model's primary metric by date: test
scores of its versions and its monitoring history; deployments marked), for each forecasting
model its MAE/WMAPE/RMSE/Tweedie over time and actual vs forecast of series the user picks
(api/forecast_view.py), a card per model
(production, task, schedule, paused or active, last retrain, last drift verdict and why, and
the management buttons), the deployments, and the prediction volume of the last 24 hours.
A model whose state files are unreadable shows its error on its card; the page still renders.
"""
from __future__ import annotations

import base64
import io
import threading
import time
from datetime import datetime
from typing import Any

from api.model_info import model_summary
from utils.models.catalog import read_monitoring
from utils.models.model_store import ModelStore, ModelStoreError, parse_version_id
from utils.monitoring.prediction_log import prediction_volume

PRIMARY_COLOR = "#1f77b4"      # the first model's line (the browser test looks for it)
MODEL_COLORS = (PRIMARY_COLOR, "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
DEPLOY_COLOR = "#ffd700"
_plot_cache: dict[Any, str] = {}
_plot_lock = threading.Lock()


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


def metric_history(store: ModelStore, model_name: str | None = None) -> list[dict[str, Any]]:
    """Test metrics of every version of the model (oldest first) and whether it was deployed.
    An unreadable scores.json is shown as such, not raised."""
    try:
        history = store.history()
    except (OSError, ValueError):
        history = []
    deployed = {e.get("version") for e in history if e.get("event") in {"deploy", "rollback"}}
    rows = []
    for version in store.list_versions(model_name):
        try:
            scores = store.read_scores(version) or {}
            error = None
        except (OSError, ValueError) as exc:
            scores, error = {}, f"scores.json unreadable: {exc}"
        try:
            number = parse_version_id(version)[1]
        except ModelStoreError:
            continue
        rows.append({"version": version, "number": number, "metrics": scores.get("metrics") or {},
                     "primary_metric": scores.get("primary_metric"), "scored": scores.get("scored"),
                     "deployed": version in deployed, "error": error})
    return rows


def model_series(store: ModelStore, monitoring: list[dict[str, Any]]) -> dict[str, Any]:
    """(time, score) points of the model's primary metric: version test scores and monitoring;
    deployment markers at each deploy/rollback time with the deployed version's test score."""
    history = metric_history(store)
    primary = next((h["primary_metric"] for h in reversed(history) if h["primary_metric"]), None)
    points = []
    for h in history:
        t, value = _parse_time(h["scored"]), h["metrics"].get(primary) if primary else None
        if t and isinstance(value, (int, float)):
            points.append((t, float(value), "test"))
    for m in monitoring:
        t, value = _parse_time(m.get("time")), m.get("score")
        if t and isinstance(value, (int, float)):
            points.append((t, float(value), m.get("source", "monitor")))
    scores = {h["version"]: h["metrics"].get(primary) for h in history if primary}
    try:
        events = store.history()
    except (OSError, ValueError):
        events = []
    deploys = []
    for e in events:
        t, value = _parse_time(e.get("time")), scores.get(e.get("version"))
        if e.get("event") in {"deploy", "rollback"} and t and isinstance(value, (int, float)):
            deploys.append((t, float(value)))
    return {"primary": primary, "points": sorted(points), "deploys": deploys}


def metrics_over_time_png(series: dict[str, dict[str, Any]]) -> str | None:
    """base64 PNG: one line per model (its primary metric by date), deployments as stars."""
    drawn = {name: s for name, s in series.items() if s["points"]}
    if not drawn:
        return None
    key = tuple((name, s["primary"], tuple(s["points"]), tuple(s["deploys"])) for name, s in sorted(drawn.items()))
    with _plot_lock:
        if key in _plot_cache:
            return _plot_cache[key]
        import matplotlib.dates as mdates
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9.5, 3.8), dpi=100)
        ax = fig.subplots()
        values = []
        for i, (name, s) in enumerate(sorted(drawn.items())):
            color = MODEL_COLORS[i % len(MODEL_COLORS)]
            xs, ys = [p[0] for p in s["points"]], [p[1] for p in s["points"]]
            values += ys
            ax.plot(xs, ys, marker="o", linewidth=2.6, markersize=6, color=color,
                    label=f"{name} ({s['primary']})")
            if s["deploys"]:
                ax.scatter([d[0] for d in s["deploys"]], [d[1] for d in s["deploys"]], marker="*", s=260,
                           color=DEPLOY_COLOR, edgecolors=color, linewidths=1.2, zorder=4)
        ax.scatter([], [], marker="*", s=160, color=DEPLOY_COLOR, edgecolors="black", label="deployed")
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_ylabel("primary metric")
        if values and 0.0 <= min(values) and max(values) <= 1.0:
            ax.set_ylim(0, 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        encoded = base64.b64encode(buf.getvalue()).decode("ascii")
        _plot_cache.clear()
        _plot_cache[key] = encoded
        return encoded


def dashboard_context(svc: Any) -> dict[str, Any]:
    from flask import request

    paths = svc.config.paths
    cards, series, deployments, forecasts = [], {}, [], []
    for i, name in enumerate(svc.fleet.names()):
        summary = model_summary(svc, name)
        store = svc.fleet.store(name)
        summary["color"] = MODEL_COLORS[i % len(MODEL_COLORS)]
        try:
            series[name] = model_series(store, read_monitoring(paths, name, limit=200))
            events = store.history()
        except (OSError, ValueError) as exc:
            summary["errors"].append(f"history: {exc}")
            events = []
        deployments += [{**e, "model": name} for e in events[-15:]]
        versions = metric_history(store)
        summary["unreadable"] = [h["version"] for h in versions if h["error"]]
        if summary.get("task") == "forecast":
            forecasts.append(_forecast_panel(svc, name, store, versions, summary["color"],
                                             request.args.get(f"series_{name}")))
        cards.append(summary)
    deployments.sort(key=lambda e: str(e.get("time")), reverse=True)
    volume = prediction_volume(paths.predictions_db, hours=24)
    peak = max((v["count"] for v in volume), default=0)
    return {
        "now": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "models": cards, "default_model": _default(svc),
        "plot_png": metrics_over_time_png(series),
        "deployments": deployments[:20],
        "forecasts": forecasts,
        "notice": (request.args.get("notice") or "")[:300],
        "volume": [{"label": time.strftime("%H:00", time.localtime(v["hour_start"])), "count": v["count"],
                    "pct": (100.0 * v["count"] / peak) if peak else 0.0} for v in volume],
        "volume_total": sum(v["count"] for v in volume),
    }


def _forecast_panel(svc: Any, name: str, store: ModelStore, versions: list[dict[str, Any]], color: str,
                    raw_series: str | None) -> dict[str, Any]:
    """A forecasting model's section (api/forecast_view.py); its own errors stay in it."""
    from omegaconf import OmegaConf

    from api.forecast_view import forecast_panel

    paths = svc.config.paths
    panel: dict[str, Any] = {"name": name, "color": color, "field": f"series_{name}"}
    try:
        production = store.production_version()
        task = (store.read_metadata(production) or {}).get("task_config") if production else None
        task = OmegaConf.create(task) if isinstance(task, dict) else svc.fleet.task_of(name)
        if task is None:
            raise ValueError("no task config recorded for this model")
        panel.update(forecast_panel(store, read_monitoring(paths, name, limit=400), versions,
                                    paths.model(name).dataset("forecast"), task, raw_series, color))
    except (OSError, ValueError, KeyError) as exc:
        panel["error"] = f"{type(exc).__name__}: {exc}"
    return panel


def _default(svc: Any) -> str | None:
    from api.errors import ApiError

    try:
        return svc.fleet.resolve(None)
    except ApiError:
        return None
