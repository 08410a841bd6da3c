"""Public and heavy routes: /, /prediction, /scoring, /summarystats, /diagnostics, /health,
/metrics, /dashboard. Admin routes live in admin.py."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, g, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from api.auth import HEADER, check_api_key, require_api_key
from api.errors import ApiError
from api.model_service import ServedModel
from api.prediction import prediction_body

bp = Blueprint("api", __name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def services() -> Any:
    return current_app.extensions["mlops"]


def model_name(name: str | None = None) -> str:
    """The model a request is for: the path's, else ?model=, else the default (see ModelFleet)."""
    return services().fleet.resolve(name or request.args.get("model") or None)


def serving_model(name: str | None = None) -> ServedModel:
    """The model for this request, or 503 saying why there is none."""
    fleet = services().fleet
    name = model_name(name)
    model = fleet.current(name)
    if model is None:
        reason = fleet.holder(name).last_error or "no model loaded"
        raise ApiError(503, f"model {name}: nothing to serve ({reason}); deploy it with the pipeline "
                            "(./run_pipeline.sh) and it is picked up without a restart")
    g.model_version = model.version
    return model


def flag(name: str) -> bool:
    value = request.args.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApiError(400, f"query parameter {name} must be 0 or 1, got {value[:20]!r}")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---- info --------------------------------------------------------------------------------
@bp.get("/")
def index() -> Any:
    svc = services()
    protected = "needs the X-API-Key header"
    default = _default_or_none()
    model = svc.fleet.current(default) if default else None
    return {
        "service": "mlops-pipeline prediction API",
        "version": svc.service_version,
        "models": svc.fleet.names(),
        "default_model": default,
        "task": model.task if model else None,        # the default model's (what POST /prediction serves)
        "model": ({"name": default, "version": model.version, "task": model.task,
                   "created": model.metadata.get("created")} if model else None),
        "links": {
            "models": {"href": url_for("api.models")},
            "model_prediction": {"href": "/models/<name>/prediction", "method": "POST"},
            "model_routes": {"href": "/models/<name>/{scoring,summarystats,diagnostics}"},
            "prediction": {"href": url_for("api.prediction"), "method": "POST",
                           "model": "api.default_model, the only model, or ?model=<name>",
                           "body": '{"records": [...]} (tabular), {"texts": [...]} (NLU) or text/csv'},
            "scoring": {"href": url_for("api.scoring"), "auth": protected},
            "summarystats": {"href": url_for("api.summarystats"), "refresh": f"?refresh=1 {protected}"},
            "diagnostics": {"href": url_for("api.diagnostics"), "refresh": f"?refresh=1 {protected}"},
            "health": {"href": url_for("api.health")},
            "metrics": {"href": url_for("api.metrics")},
            "dashboard": {"href": url_for("api.dashboard")},
            "admin": {"href": "/admin/models/<name>/{pause,resume,retrain,evaluate,rollback,reload,delete}",
                      "method": "POST", "auth": protected, "jobs": "/admin/jobs/<id>"},
        },
    }


def _registry_health(svc: Any, problems: list[str]) -> dict[str, Any]:
    """api.model_source=registry: the replica's poller (state, last good poll); an unreachable
    or silent tracking server makes the API degraded, still serving its last good models."""
    status = svc.mirror.shared_status()
    settings = svc.config.settings
    now = time.time()
    age = now - float(status.get("checked") or 0)
    last_ok = status.get("last_ok")
    entry = {"uri": status.get("uri"), "state": status.get("state"), "error": status.get("error"),
             "last_ok_s_ago": round(now - last_ok, 1) if last_ok else None,
             "poll_s": settings.registry_poll_s, "champions": status.get("champions") or {}}
    if status.get("state") != "ok":
        problems.append(f"registry {status.get('uri')} {status.get('state')}"
                        f"{': ' + str(status.get('error')) if status.get('error') else ''}; serving the last good models")
    elif age > 3 * settings.registry_poll_s + settings.registry_timeout_s + 5:
        problems.append(f"registry {status.get('uri')}: no poll for {age:.0f} s (poller stalled?)")
    return entry


@bp.get("/health")
def health() -> Any:
    """ok: every deployed model is served; degraded: some model serves an older version or none
    (the reason is given); unavailable (503): nothing can be served at all."""
    svc = services()
    fleet = svc.fleet
    models, problems = {}, []
    for name in fleet.names():
        holder = fleet.holder(name)
        model = holder.current()
        production = _safe(holder.store.production_version)
        entry = {"loaded": model.version if model else None, "production": production,
                 "task": model.task if model else None, "error": holder.last_error}
        if holder.last_error or (production and (model is None or model.version != production)):
            problems.append(f"{name}: {holder.last_error or 'not serving its production version'}")
        models[name] = entry
    registry = _registry_health(svc, problems) if svc.mirror is not None else None
    any_loaded = any(m["loaded"] for m in models.values())
    status = "unavailable" if not any_loaded else ("degraded" if problems else "ok")
    body: dict[str, Any] = {"status": status, "models": models, "problems": problems,
                            "pid": os.getpid(), "uptime_s": round(time.monotonic() - svc.started, 1)}
    if registry is not None:
        body["registry"] = registry
    default = _default_or_none()
    entry = models.get(default) or {} if default else {}
    # the first layout's fields, for the model POST /prediction serves
    body.update({"default_model": default, "model_loaded": bool(entry.get("loaded")),
                 "model_version": entry.get("loaded"), "task": entry.get("task"),
                 "production": entry.get("production"), "error": entry.get("error")})
    return body, 200 if any_loaded else 503


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except (OSError, ValueError):
        return None


def _default_or_none() -> str | None:
    try:
        return services().fleet.resolve(None)
    except ApiError:
        return None


@bp.get("/models")
def models() -> Any:
    """Every model: task, production version, score, deployed at, schedule, paused or active."""
    from api.model_info import model_summary

    svc = services()
    return {"models": [model_summary(svc, name) for name in svc.fleet.names()],
            "default_model": _default_or_none()}


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = services().metrics.render()
    return Response(body, content_type=content_type)


# ---- prediction --------------------------------------------------------------------------
def read_body() -> bytes:
    """The request body, 413 beyond api.max_body_bytes, also for chunked bodies (no length)."""
    limit = int(current_app.config["MAX_CONTENT_LENGTH"])
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    expected = request.content_length
    parts, size = [], 0
    while size <= limit:            # a stream may return less than asked: read until EOF
        chunk = request.stream.read(limit + 1 - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if expected is not None and size >= expected:   # all of a sized body: no extra read for EOF
            break
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(parts)


@bp.post("/prediction")
def prediction() -> Any:
    return _prediction(None)


@bp.post("/models/<name>/prediction")
def model_prediction(name: str) -> Any:
    return _prediction(name)


def _prediction(name: str | None) -> Any:
    svc = services()
    model = serving_model(name)
    data = read_body()              # I/O: slow clients do not hold a compute slot
    with svc.compute_slots:         # CPU: api.prediction_concurrency at a time per worker
        body = prediction_body(svc, model, data, request.mimetype, g.request_id)
    return Response(body, mimetype="application/json")


# ---- scoring -----------------------------------------------------------------------------
@bp.get("/scoring")
@require_api_key
def scoring() -> Any:
    return _scoring(None)


@bp.get("/models/<name>/scoring")
@require_api_key
def model_scoring(name: str) -> Any:
    return _scoring(name)


def test_path_of(name: str) -> Path:
    """The model's test data: its manifest's (its own chain's data.test_path), else the API's."""
    svc = services()
    recorded = svc.fleet.manifest(name).get("test_path")
    return Path(recorded) if recorded else svc.config.test_path


def task_of(name: str, model: ServedModel | None = None) -> Any:
    if model is not None and isinstance(model.metadata.get("task_config"), dict):
        from omegaconf import OmegaConf

        return OmegaConf.create(model.metadata["task_config"])
    return services().fleet.task_of(name) or services().config.task


def _scoring(name: str | None) -> Any:
    """Metrics of the served model on its test data (cached per model and test file)."""
    svc = services()
    model = serving_model(name)
    name = model_name(name)
    task = task_of(name, model)
    test_path = test_path_of(name)
    try:
        stat = test_path.stat()
    except OSError:
        raise ApiError(503, f"the test data ({test_path.name}) does not exist on the server: start the "
                            "API with data.test_path=<labelled test file>") from None
    key = (model.version, str(test_path), stat.st_mtime_ns, stat.st_size)
    with svc.scoring_lock:      # one scoring at a time per worker; a repeat is answered from cache
        cached = svc.scoring_cache.get(key)
        if cached is None:
            from utils.models.scoring_lib import primary_metric_for, score_nlu, score_tabular

            started = time.perf_counter()
            try:
                if model.task == "tabular":
                    from utils.data.table_schema import model_schema

                    report = score_tabular(model.estimator or model.model_dir, test_path, task,
                                           model_schema(model.metadata, task))
                else:
                    report = score_nlu(model.predict_texts, test_path,
                                       int(svc.config.cfg.get("scoring", {}).get("batch_size", 256)))
            except ValueError as exc:
                raise ApiError(503, f"cannot score on the test data ({test_path.name}): {exc}") from None
            cached = {"model": name, "model_version": model.version, "task": model.task,
                      "test_data": test_path.name,
                      "primary_metric": model.metadata.get("primary_metric") or primary_metric_for(
                          task.primary_metric, report.get("problem")),
                      "scored": _now(),
                      "seconds": round(time.perf_counter() - started, 3), **report}
            while len(svc.scoring_cache) >= 8:
                svc.scoring_cache.pop(next(iter(svc.scoring_cache)))
            svc.scoring_cache[key] = cached
            return {**cached, "cached": False}
    return {**cached, "cached": True}


# ---- diagnostics -------------------------------------------------------------------------
def _no_diagnostics() -> ApiError:
    return ApiError(404, "no diagnostics yet: run the diagnostics step "
                         "(./run_pipeline.sh \"main.steps=diagnostics\" with the API's state dir), "
                         f"or ask for ?refresh=1 with the {HEADER} header")


def _diagnostics_report(name: str) -> dict[str, Any]:
    from utils.monitoring.diagnostics_lib import read_diagnostics

    try:
        report = read_diagnostics(services().config.paths.model(name))
    except ValueError as exc:
        raise ApiError(503, f"reports/diagnostics.json is unreadable ({exc}): rerun the diagnostics step") from None
    if not isinstance(report, dict):
        raise _no_diagnostics()
    return report


def _fresh_summary(name: str) -> dict[str, Any]:
    from utils.monitoring.diagnostics_lib import summary_stats

    svc = services()
    try:
        stats = summary_stats(svc.config.paths.model(name), task_of(name, svc.fleet.loaded(name)))
    except FileNotFoundError:
        raise ApiError(404, "no ingested dataset yet: run the data_ingestion step first") from None
    return {"summary_stats": {k: stats[k] for k in ("n_rows", "columns", "summary")},
            "missing_values": stats["missing_pct"]}


@bp.get("/summarystats")
def summarystats() -> Any:
    return _summarystats(None)


@bp.get("/models/<name>/summarystats")
def model_summarystats(name: str) -> Any:
    return _summarystats(name)


def _summarystats(name: str | None) -> Any:
    """Summary statistics of the ingested data: from the last diagnostics run, or recomputed."""
    name = model_name(name)
    if flag("refresh"):
        check_api_key()
        return {"model": name, "generated": _now(), "source": "recomputed", **_fresh_summary(name)}
    report = _diagnostics_report(name)
    return {"model": name, "generated": report.get("generated"), "source": "reports/diagnostics.json",
            "model_version": report.get("model_version"), "summary_stats": report.get("summary_stats"),
            "missing_values": report.get("missing_values")}


@bp.get("/diagnostics")
def diagnostics() -> Any:
    return _diagnostics(None)


@bp.get("/models/<name>/diagnostics")
def model_diagnostics(name: str) -> Any:
    return _diagnostics(name)


def _diagnostics(name: str | None) -> Any:
    """The diagnostics step's latest report (per-example predictions left out), or recomputed."""
    name = model_name(name)
    if flag("refresh"):
        check_api_key()
        return _recompute_diagnostics(name)
    report = dict(_diagnostics_report(name))
    predictions = report.get("predictions")
    if isinstance(predictions, dict) and "rows" in predictions:
        report["predictions"] = {k: v for k, v in predictions.items() if k != "rows"}
    report.pop("state_dir", None)
    return {"model": name, "source": "reports/diagnostics.json", **report}


def _recompute_diagnostics(name: str) -> dict[str, Any]:
    """What the API can measure in-process: data, missing values, latency of the served model,
    installed vs pinned packages (no index lookups), system. Pipeline timing stays the step's."""
    from utils.monitoring import diagnostics_lib as dl

    svc = services()
    model = svc.fleet.current(name)
    report: dict[str, Any] = {"model": name, "generated": _now(), "source": "recomputed",
                              "task": model.task if model else svc.fleet.manifest(name).get("task"),
                              "model_version": model.version if model else None}
    try:
        report.update(_fresh_summary(name))
    except ApiError as exc:
        report["summary_stats"] = report["missing_values"] = {"error": exc.message}
    report["timing"] = {"latency": _served_latency(model)}
    report["dependencies"] = dl.dependency_report(index_url=None)
    report["system"] = dl.system_info(svc.config.paths.state_dir, include_gpu=False)
    return report


def _served_latency(model: ServedModel | None, calls: int = 50) -> dict[str, Any]:
    """Latency of single predictions of the served model (same code path as /prediction)."""
    from utils.monitoring.diagnostics_lib import latency_stats

    if model is None:
        return {"error": "no model loaded"}
    if model.task == "tabular":
        import numpy as np

        if not model.spec.numeric_only:   # one record of known categories (or missing values)
            from api.validation import TabularBatch

            values = [model.spec.minimum.get(c, 0.0) if model.spec.kinds.get(c, "numeric") in ("numeric", "integer")
                      else next(iter(sorted(model.spec.categories.get(c) or ["true"])), None)
                      for c in model.spec.columns]
            batch = TabularBatch(matrix=None, ids=None, rows=[values])
            return latency_stats(lambda i: model.predict_batch(batch), calls)
        row = np.zeros((1, len(model.spec.columns)))
        for j, name in enumerate(model.spec.columns):
            row[0, j] = model.spec.minimum.get(name, 0.0)
        return latency_stats(lambda i: model.predict_matrix(row), calls)
    return latency_stats(lambda i: model.predict_texts(["what is the status of my request"]), calls)


# ---- dashboard ---------------------------------------------------------------------------
@bp.get("/dashboard")
def dashboard() -> Response:
    from api.dashboard import dashboard_context

    svc = services()
    context = dashboard_context(svc)
    response = Response(render_template("dashboard.html", **context), mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'")
    return response
