"""Public and heavy routes: /, /prediction, /scoring, /summarystats, /diagnostics, /health,
/metrics, /dashboard. Admin routes live in admin.py."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, g, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from api.auth import HEADER, check_api_key, require_api_key
from api.errors import ApiError
from api.model_service import ServedModel
from api.validation import RequestError, parse_body, tabular_batch, text_batch
from utils.monitoring.prediction_log import LoggedBatch

bp = Blueprint("api", __name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def services() -> Any:
    return current_app.extensions["mlops"]


def serving_model() -> ServedModel:
    """The model for this request, or 503 saying why there is none."""
    model = services().models.current()
    if model is None:
        reason = services().models.last_error or "no model loaded"
        raise ApiError(503, f"no model to serve ({reason}); deploy one with the pipeline "
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
    model = svc.models.current()
    protected = "needs the X-API-Key header"
    return {
        "service": "mlops-pipeline prediction API",
        "version": svc.service_version,
        "task": svc.config.task.name,
        "model": ({"version": model.version, "task": model.task, "created": model.metadata.get("created")}
                  if model else None),
        "links": {
            "prediction": {"href": url_for("api.prediction"), "method": "POST",
                           "body": '{"records": [...]} (tabular), {"texts": [...]} (NLU) or text/csv'},
            "scoring": {"href": url_for("api.scoring"), "auth": protected},
            "summarystats": {"href": url_for("api.summarystats"), "refresh": f"?refresh=1 {protected}"},
            "diagnostics": {"href": url_for("api.diagnostics"), "refresh": f"?refresh=1 {protected}"},
            "health": {"href": url_for("api.health")},
            "metrics": {"href": url_for("api.metrics")},
            "dashboard": {"href": url_for("api.dashboard")},
            "admin": {"href": "/admin/{reload,rollback,retrain}", "method": "POST", "auth": protected,
                      "jobs": "/admin/jobs/<id>"},
        },
    }


@bp.get("/health")
def health() -> Any:
    svc = services()
    model = svc.models.current()
    body = {"status": "ok" if model else "unavailable", "model_loaded": model is not None,
            "model_version": model.version if model else None, "task": model.task if model else None,
            "production": svc.store.production_version(), "error": svc.models.last_error,
            "pid": os.getpid(), "uptime_s": round(time.monotonic() - svc.started, 1)}
    return body, 200 if model else 503


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = services().metrics.render()
    return Response(body, content_type=content_type)


# ---- prediction --------------------------------------------------------------------------
_encode = json.JSONEncoder(separators=(",", ":")).encode


def read_body() -> bytes:
    """The request body, 413 beyond api.max_body_bytes, also for chunked bodies (no length)."""
    limit = int(current_app.config["MAX_CONTENT_LENGTH"])
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    parts, size = [], 0
    while size <= limit:            # a stream may return less than asked: read until EOF
        chunk = request.stream.read(limit + 1 - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(parts)


@bp.post("/prediction")
def prediction() -> Any:
    svc = services()
    model = serving_model()
    data = read_body()              # I/O: slow clients do not hold a compute slot
    with svc.compute_slots:         # CPU: api.prediction_concurrency at a time per worker
        return _predict(svc, model, data)


def _predict(svc: Any, model: ServedModel, data: bytes) -> Response:
    """Parse, validate, predict, log: the CPU-bound part of POST /prediction."""
    parsed = parse_body(data, request.mimetype, model.task)
    expected = "records" if model.task == "tabular" else "texts"
    if parsed.kind != expected:
        example = '{"records": [{...}]}' if expected == "records" else '{"texts": ["..."]}'
        raise RequestError(f'the production model ({model.version}) is a {model.task} model: send {example}',
                           errors=[{"row": None, "field": parsed.kind, "message": f"expected {expected}"}])
    started = time.perf_counter()
    if model.task == "tabular":
        batch = tabular_batch(parsed.items, model.spec, svc.limits, from_csv=parsed.source == "csv")
        outputs = model.predict_batch(batch)
        logged: dict[str, Any] = {"columns": model.spec.columns, "rows": batch.row_lists(), "ids": batch.ids}
        answers = (outputs if batch.ids is None else
                   [{"id": i, **o} if i is not None else o for i, o in zip(batch.ids, outputs)])
        key = "label"
    else:
        texts = text_batch(parsed.items, svc.limits)
        outputs = model.predict_texts(texts)
        logged = {"texts": texts}
        answers = outputs
        key = "intent"
    latency_ms = (time.perf_counter() - started) * 1000.0
    # encoded once, for the caller and for the log (what was returned is what is logged)
    answers_json = _encode(answers)
    if svc.prediction_log is not None and not svc.prediction_log.append(LoggedBatch(
            time=time.time(), model_version=model.version, task=model.task, request_id=g.request_id,
            input=logged, outputs=answers, latency_ms=latency_ms, input_json=_encode(logged),
            output_json=answers_json)):
        svc.metrics.log_dropped.inc()
    svc.metrics.count_predictions(model.version, outputs, key)
    body = (f'{{"model_version":{_encode(model.version)},"task":{_encode(model.task)},'
            f'"request_id":{_encode(g.request_id)},"n":{len(answers)},"predictions":{answers_json}}}')
    return Response(body, mimetype="application/json")


# ---- scoring -----------------------------------------------------------------------------
@bp.get("/scoring")
@require_api_key
def scoring() -> Any:
    """Metrics of the served model on `data.test_path` (cached per model and test file)."""
    svc = services()
    model = serving_model()
    test_path: Path = svc.config.test_path
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

                    report = score_tabular(model.estimator or model.model_dir, test_path, svc.config.task,
                                           model_schema(model.metadata, svc.config.task))
                else:
                    report = score_nlu(model.predict_texts, test_path,
                                       int(svc.config.cfg.get("scoring", {}).get("batch_size", 256)))
            except ValueError as exc:
                raise ApiError(503, f"cannot score on the test data ({test_path.name}): {exc}") from None
            cached = {"model_version": model.version, "task": model.task, "test_data": test_path.name,
                      "primary_metric": model.metadata.get("primary_metric") or primary_metric_for(
                          svc.config.task.primary_metric, report.get("problem")),
                      "scored": _now(),
                      "seconds": round(time.perf_counter() - started, 3), **report}
            svc.scoring_cache.clear()
            svc.scoring_cache[key] = cached
            return {**cached, "cached": False}
    return {**cached, "cached": True}


# ---- diagnostics -------------------------------------------------------------------------
def _no_diagnostics() -> ApiError:
    return ApiError(404, "no diagnostics yet: run the diagnostics step "
                         "(./run_pipeline.sh \"main.steps=diagnostics\" with the API's state dir), "
                         f"or ask for ?refresh=1 with the {HEADER} header")


def _diagnostics_report() -> dict[str, Any]:
    from utils.monitoring.diagnostics_lib import read_diagnostics

    try:
        report = read_diagnostics(services().config.paths)
    except ValueError as exc:
        raise ApiError(503, f"reports/diagnostics.json is unreadable ({exc}): rerun the diagnostics step") from None
    if not isinstance(report, dict):
        raise _no_diagnostics()
    return report


def _fresh_summary() -> dict[str, Any]:
    from utils.monitoring.diagnostics_lib import summary_stats

    svc = services()
    try:
        stats = summary_stats(svc.config.paths, svc.config.task)
    except FileNotFoundError:
        raise ApiError(404, "no ingested dataset yet: run the data_ingestion step first") from None
    return {"summary_stats": {k: stats[k] for k in ("n_rows", "columns", "summary")},
            "missing_values": stats["missing_pct"]}


@bp.get("/summarystats")
def summarystats() -> Any:
    """Summary statistics of the ingested data: from the last diagnostics run, or recomputed."""
    if flag("refresh"):
        check_api_key()
        return {"generated": _now(), "source": "recomputed", **_fresh_summary()}
    report = _diagnostics_report()
    return {"generated": report.get("generated"), "source": "reports/diagnostics.json",
            "model_version": report.get("model_version"), "summary_stats": report.get("summary_stats"),
            "missing_values": report.get("missing_values")}


@bp.get("/diagnostics")
def diagnostics() -> Any:
    """The diagnostics step's latest report (per-example predictions left out), or recomputed."""
    if flag("refresh"):
        check_api_key()
        return _recompute_diagnostics()
    report = dict(_diagnostics_report())
    predictions = report.get("predictions")
    if isinstance(predictions, dict) and "rows" in predictions:
        report["predictions"] = {k: v for k, v in predictions.items() if k != "rows"}
    report.pop("state_dir", None)
    return {"source": "reports/diagnostics.json", **report}


def _recompute_diagnostics() -> dict[str, Any]:
    """What the API can measure in-process: data, missing values, latency of the served model,
    installed vs pinned packages (no index lookups), system. Pipeline timing stays the step's."""
    from utils.monitoring import diagnostics_lib as dl

    svc = services()
    model = svc.models.current()
    report: dict[str, Any] = {"generated": _now(), "source": "recomputed", "task": svc.config.task.name,
                              "model_version": model.version if model else None}
    try:
        report.update(_fresh_summary())
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
    paths = svc.config.paths
    context = dashboard_context(svc.store, paths.reports_dir, paths.predictions_db,
                                svc.config.task.get("model_name"), svc.models.current())
    response = Response(render_template("dashboard.html", **context), mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'")
    return response
