"""What a person (GET /models, the dashboard) needs to know about one model, read defensively:
an unreadable state file of one model shows as an error on that model, never a 500."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from utils.models.catalog import read_control, read_monitoring
from utils.models.model_store import ModelStore
from utils.monitoring.drift_view import drift_verdict


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def last_event(store: ModelStore, kinds: set[str], version: str | None = None) -> dict[str, Any] | None:
    try:
        history = store.history()
    except (OSError, ValueError):
        return None
    for event in reversed(history):
        if event.get("event") in kinds and (version is None or event.get("version") == version):
            return event
    return None


def model_summary(svc: Any, name: str) -> dict[str, Any]:
    fleet = svc.fleet
    paths = svc.config.paths.model(name)
    store = fleet.store(name)
    manifest = fleet.manifest(name)
    out: dict[str, Any] = {"name": name, "task": manifest.get("task"), "production": None, "score": None,
                           "primary_metric": manifest.get("primary_metric"), "deployed_at": None,
                           "schedule": manifest.get("schedule") or {}, "paused": False, "state": "active",
                           "loaded": None, "last_retrain": None, "drift": None, "errors": []}
    try:
        production = store.production_version()
        out["production"] = production
        if production:
            meta = store.read_metadata(production)
            out["task"] = out["task"] or meta.get("task")
            out["score"] = store.read_score(production)
            # the metric the score is in: scores.json resolves the config's "auto" to f1, rmse...
            resolved = (store.read_scores(production) or {}).get("primary_metric")
            out["primary_metric"] = resolved or out["primary_metric"]
            deployed = last_event(store, {"deploy", "rollback"}, production)
            out["deployed_at"] = deployed.get("time") if deployed else None
        latest = store.list_versions()
        if latest:
            out["last_retrain"] = store.read_metadata(latest[-1]).get("created")
            out["latest_version"] = latest[-1]
    except (OSError, ValueError) as exc:
        out["errors"].append(f"model store: {exc}")
    control = read_control(svc.config.paths, name)
    out["paused"] = control.paused
    out["state"] = "paused" if control.paused else "active"
    if control.paused:
        out["paused_since"], out["paused_reason"] = control.since, control.reason
    loaded = fleet.loaded(name)
    out["loaded"] = loaded.version if loaded else None
    out["drift"] = drift_verdict(_read_json(paths.reports_dir / "drift.json"))
    diagnostics = _read_json(paths.reports_dir / "diagnostics.json")
    if diagnostics:
        latency = (diagnostics.get("timing") or {}).get("latency") or {}
        out["diagnostics"] = {"generated": diagnostics.get("generated"),
                              "n_rows": (diagnostics.get("summary_stats") or {}).get("n_rows"),
                              "latency_p50_ms": latency.get("p50_ms"), "latency_p99_ms": latency.get("p99_ms")}
    monitored = read_monitoring(svc.config.paths, name, limit=1)
    out["last_monitored"] = monitored[-1] if monitored else None
    return out
