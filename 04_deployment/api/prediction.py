"""The CPU-bound part of POST /prediction, free of Flask: body bytes in, answer JSON out.

Both ways into the API call it, so they answer alike: the Flask route (routes.py) and the
WSGI prediction lane in front of Flask (fast_lane.py). Client errors raise RequestError
(validation.py), which the Flask error handlers turn into the 4xx answers.
"""
from __future__ import annotations

import time
from typing import Any

from api import json_codec
from api.model_service import ServedModel
from api.validation import RequestError, forecast_request, parse_body, tabular_batch, text_batch
from utils.monitoring.prediction_log import LoggedBatch

_encode = json_codec.dumps


def prediction_body(svc: Any, model: ServedModel, data: bytes, mimetype: str, request_id: str) -> str:
    """Parse, validate, predict, log and count; the JSON answer. Side effects (the prediction
    log, the metrics) come last, after everything that can fail on bad input."""
    if model.task == "forecast":
        return _forecast_body(svc, model, data, mimetype, request_id)
    parsed = parse_body(data, mimetype, model.task)
    expected = "records" if model.task == "tabular" else "texts"
    if parsed.kind != expected:
        example = '{"records": [{...}]}' if expected == "records" else '{"texts": ["..."]}'
        raise RequestError(f'model {model.version} is a {model.task} model: send {example}',
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
            time=time.time(), model_version=model.version, task=model.task, request_id=request_id,
            input=logged, outputs=answers, latency_ms=latency_ms, input_json=_encode(logged),
            output_json=answers_json)):
        svc.metrics.log_dropped.inc()
    svc.metrics.count_predictions(model.version, outputs, key)
    return (f'{{"model_version":{_encode(model.version)},"task":{_encode(model.task)},'
            f'"request_id":{_encode(request_id)},"n":{len(answers)},"predictions":{answers_json}}}')


def _forecast_body(svc: Any, model: ServedModel, data: bytes, mimetype: str, request_id: str) -> str:
    """Series ids (and optional future covariates) -> the horizon's daily forecasts per series."""
    task = model.metadata.get("task_config") or {}
    series = str(task.get("series_column") or "series_id")
    max_horizon = int(task.get("horizon") or 28)
    request_input, horizon = forecast_request(data, mimetype, svc.limits, series, max_horizon)
    started = time.perf_counter()
    try:
        answers = model.predict_forecast(request_input, horizon)
    except ValueError as exc:          # the pyfunc's contract: unknown ids, bad covariates
        raise RequestError(str(exc)[:500]) from None
    latency_ms = (time.perf_counter() - started) * 1000.0
    answers_json = _encode(answers)
    logged = {"series": request_input if isinstance(request_input, dict) else {"records": request_input},
              "horizon": horizon}
    if svc.prediction_log is not None and not svc.prediction_log.append(LoggedBatch(
            time=time.time(), model_version=model.version, task=model.task, request_id=request_id,
            input=logged, outputs=answers, latency_ms=latency_ms, input_json=_encode(logged),
            output_json=answers_json)):
        svc.metrics.log_dropped.inc()
    return (f'{{"model_version":{_encode(model.version)},"task":"forecast","request_id":{_encode(request_id)},'
            f'"horizon":{horizon},"n":{len(answers)},"predictions":{answers_json}}}')
