"""GET /dashboard: one server-rendered page for people (no JavaScript, no external assets).

Production model, test-metric history over the store's versions (a PNG drawn with
matplotlib's object API: thread-safe, no pyplot state), deployments, the last drift check and
diagnostics, and the prediction volume of the last 24 hours.
"""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

from utils.models.model_store import ModelStore, ModelStoreError, parse_version_id
from utils.monitoring.drift_view import drift_verdict
from utils.monitoring.prediction_log import prediction_volume

PRIMARY_COLOR = "#1f77b4"      # the primary metric's line (the browser test looks for it)
_plot_cache: dict[Any, str] = {}
_plot_lock = threading.Lock()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _mtime(path: Path) -> str | None:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
    except OSError:
        return None


def metric_history(store: ModelStore, model_name: str | None) -> list[dict[str, Any]]:
    """Test metrics of every version of the model (oldest first) and whether it was deployed."""
    deployed = {e.get("version") for e in store.history() if e.get("event") in {"deploy", "rollback"}}
    rows = []
    for version in store.list_versions(model_name):
        scores = store.read_scores(version) or {}
        try:
            number = parse_version_id(version)[1]
        except ModelStoreError:
            continue
        rows.append({"version": version, "number": number, "metrics": scores.get("metrics") or {},
                     "primary_metric": scores.get("primary_metric"), "scored": scores.get("scored"),
                     "deployed": version in deployed})
    return rows


def metric_history_png(history: list[dict[str, Any]], primary: str | None) -> str | None:
    """base64 PNG of the metric history, cached until a version or a score changes."""
    scored = [h for h in history if h["metrics"]]
    if not scored:
        return None
    key = (primary, tuple((h["version"], h["scored"], h["deployed"]) for h in scored))
    with _plot_lock:
        if key in _plot_cache:
            return _plot_cache[key]
        from matplotlib.figure import Figure

        names = sorted({m for h in scored for m in h["metrics"]},
                       key=lambda m: (m != primary, m))
        fig = Figure(figsize=(7.5, 3.4), dpi=100)
        ax = fig.subplots()
        x = list(range(len(scored)))
        palette = ["#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        for i, name in enumerate(names):
            ys = [h["metrics"].get(name) for h in scored]
            main = name == primary
            ax.plot(x, [float("nan") if y is None else y for y in ys], marker="o",
                    linewidth=3.0 if main else 1.2, markersize=7 if main else 4,
                    color=PRIMARY_COLOR if main else palette[i % len(palette)],
                    label=f"{name} (gate)" if main else name, zorder=3 if main else 2)
        deployed = [(i, h["metrics"].get(primary)) for i, h in enumerate(scored)
                    if h["deployed"] and h["metrics"].get(primary) is not None]
        if deployed:
            ax.scatter([d[0] for d in deployed], [d[1] for d in deployed], marker="*", s=220,
                       color="#ffd700", edgecolors="black", zorder=4, label="deployed")
        ax.set_xticks(x)
        ax.set_xticklabels([f"v{h['number']}" for h in scored])
        ax.set_xlabel("model version")
        ax.set_ylabel("test score")
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


def diagnostics_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    if not report:
        return None
    latency = (report.get("timing") or {}).get("latency") or {}
    stats = report.get("summary_stats") or {}
    deps = report.get("dependencies") or {}
    return {"generated": report.get("generated"), "model_version": report.get("model_version"),
            "n_rows": stats.get("n_rows"), "latency_p50_ms": latency.get("p50_ms"),
            "latency_p99_ms": latency.get("p99_ms"), "dependency_mismatches": deps.get("n_mismatch"),
            "accuracy": (report.get("predictions") or {}).get("accuracy")}


def dashboard_context(store: ModelStore, reports_dir: Path, predictions_db: Path,
                      model_name: str | None, served: Any) -> dict[str, Any]:
    production = store.production_version()
    meta = store.read_metadata(production) if production else {}
    scores = store.read_scores(production) if production else None
    name = meta.get("model_name") or model_name
    history = metric_history(store, name)
    primary = (scores or {}).get("primary_metric") or next(
        (h["primary_metric"] for h in reversed(history) if h["primary_metric"]), None)
    volume = prediction_volume(predictions_db, hours=24)
    peak = max((v["count"] for v in volume), default=0)
    drift_path = reports_dir / "drift.json"
    drift = _read_json(drift_path)
    return {
        "now": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "production": production, "metadata": meta, "scores": scores, "primary": primary,
        "served": served,
        "history": history, "plot_png": metric_history_png(history, primary),
        "deployments": list(reversed(store.history()))[:15],
        "drift": drift, "drift_verdict": drift_verdict(drift), "drift_time": _mtime(drift_path),
        "diagnostics": diagnostics_summary(_read_json(reports_dir / "diagnostics.json")),
        "volume": [{"label": time.strftime("%H:00", time.localtime(v["hour_start"])), "count": v["count"],
                    "pct": (100.0 * v["count"] / peak) if peak else 0.0} for v in volume],
        "volume_total": sum(v["count"] for v in volume),
    }
