"""The prediction lane: POST /prediction and /models/<name>/prediction without Flask's
request machinery, for the requests that succeed.

Why: for one tabular record the prediction itself is ~0.1 ms, and Flask's per-request work
(request context, URL map, hooks, the werkzeug Request and Response objects and their proxies)
costs about as much again; under load that put the API at 56 % of an empty Flask handler. The
lane is plain WSGI in front of the Flask app (`app.wsgi_app`): it reads the body, picks the
model, calls the same `prediction_body` as the Flask route and records the request through
the same `RequestBook`, so the answer, its headers, the metrics, the access log and the
prediction log are the ones Flask would have produced.

It answers only what succeeds. Anything else (an error of any kind, a body without a length
or over the limit, a query string or model name it does not read exactly as werkzeug would,
no model to serve) goes to Flask, with the body already read handed over, and Flask answers
as it always did: one implementation of every error, under the request id and start time the
lane gave it. A request that fails is therefore parsed twice; a valid one never is.
`api.fast_lane=false` turns the lane off.
"""
from __future__ import annotations

import io
import re
import time
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

from werkzeug.http import parse_options_header

from api.prediction import prediction_body
from api.request_book import SECURITY_HEADERS


ROUTE = "/prediction"
MODEL_ROUTE = "/models/<name>/prediction"
HANDED_OVER = "mlops.lane"     # environ key: (perf_counter start, request id) of a request the lane gave up
_MODEL_PATH = re.compile(r"^/models/([A-Za-z0-9._-]+)/prediction$")   # other names: Flask decodes them

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class PredictionLane:
    """WSGI middleware: successful predictions here, every other request to ``app``."""

    def __init__(self, app: WsgiApp, services: Any) -> None:
        self.app = app
        self.services = services
        self.book = services.book
        self.max_body = int(services.config.settings.max_body_bytes)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        if path == ROUTE:
            name, route = None, ROUTE
        else:
            match = _MODEL_PATH.match(path) if path.startswith("/models/") else None
            if match is None:
                return self.app(environ, start_response)
            name, route = match.group(1), MODEL_ROUTE
        length = _declared_length(environ)
        query = environ.get("QUERY_STRING", "")
        if length is None or length > self.max_body or (query and not _plain_query(query)):
            return self.app(environ, start_response)
        started = time.perf_counter()
        data = _read(environ["wsgi.input"], length)
        if len(data) < length:                  # the client went away mid-body: Flask says so
            return self._to_flask(environ, start_response, data)
        svc = self.services
        request_id = self.book.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        environ[HANDED_OVER] = (started, request_id)   # if Flask answers: the same id and clock
        try:
            if not name and query:
                name = next((v for k, v in parse_qsl(query, keep_blank_values=True) if k == "model"), None)
            model = svc.fleet.current(svc.fleet.resolve(name or None))
            if model is None:
                return self._to_flask(environ, start_response, data)
            mimetype = parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower()
            with svc.compute_slots:
                body = prediction_body(svc, model, data, mimetype, request_id).encode()
        except Exception:   # noqa: BLE001 - Flask answers every error, as it always did
            return self._to_flask(environ, start_response, data)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                  ("X-Request-ID", request_id), *SECURITY_HEADERS])
        self.book.finish(route, "POST", 200, time.perf_counter() - started, request_id,
                         environ.get("REMOTE_ADDR"), path, length, len(body), model.version)
        return [body]

    def _to_flask(self, environ: dict[str, Any], start_response: Callable[..., Any], data: bytes) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(data)
        return self.app(environ, start_response)


def _declared_length(environ: dict[str, Any]) -> int | None:
    """CONTENT_LENGTH when the body has one (not chunked) and it is a plain number."""
    if environ.get("HTTP_TRANSFER_ENCODING"):
        return None
    value = environ.get("CONTENT_LENGTH") or ""
    return int(value) if value.isdigit() else None


def _plain_query(query: str) -> bool:
    """A query string that parse_qsl reads exactly as werkzeug does (ASCII, no escapes)."""
    return query.isascii() and "%" not in query


def _read(stream: Any, length: int) -> bytes:
    """``length`` bytes of the body, or fewer when the stream ends or breaks first."""
    parts, size = [], 0
    while size < length:
        try:
            chunk = stream.read(length - size)
        except OSError:             # a reset connection: Flask answers a short body (400)
            break
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
