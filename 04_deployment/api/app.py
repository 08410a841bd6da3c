"""The Flask app factory: `create_app()` wires config, model, logs, metrics and routes.

    gunicorn --pythonpath 04_deployment,. 'api.app:create_app()'     (serve.py does this)

Every response carries X-Request-ID; every error is JSON with that id; every request is
counted in /metrics and written to the structured access log (logger `api.access`), by
the same RequestBook whether Flask or the prediction lane in front of it (fast_lane.py) answered.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from flask import Flask, Response, g, request
from omegaconf import DictConfig
from werkzeug.exceptions import HTTPException

from api import admin, routes
from api.access_log import AccessLog
from api.errors import ApiError, error_response
from api.fast_lane import HANDED_OVER, PredictionLane
from api.jobs import JobStore
from api.metrics import ApiMetrics
from api.fleet import ModelFleet
from api.settings import AppConfig, export_nlu_serving, load_app_config
from api.request_book import RequestBook
from api.validation import Limits, RequestError
from utils.models.catalog import migrate_legacy_layout
from utils.pipeline.paths import REPO_ROOT
from utils.monitoring.prediction_log import PredictionLog

log = logging.getLogger("api")
access_log = logging.getLogger("api.access")

@dataclass
class Services:
    """What the routes use, built once per app (per worker process)."""

    config: AppConfig
    fleet: ModelFleet
    metrics: ApiMetrics
    prediction_log: PredictionLog | None
    jobs: JobStore
    api_key: str | None
    limits: Limits
    service_version: str
    started: float = field(default_factory=time.monotonic)
    mirror: Any = None            # RegistryMirror with api.model_source=registry
    compute_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))
    scoring_lock: threading.Lock = field(default_factory=threading.Lock)
    scoring_cache: dict[Any, Any] = field(default_factory=dict)
    access_log: AccessLog = field(default_factory=lambda: AccessLog(access_log))
    book: RequestBook = field(init=False)

    def __post_init__(self) -> None:
        self.book = RequestBook(self.metrics, self.access_log, self.config.settings.access_log)

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.stop()
        self.access_log.close()
        if self.prediction_log is not None:
            self.prediction_log.close()


def service_version() -> str:
    try:
        return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def build_services(config: AppConfig) -> Services:
    settings = config.settings
    metrics = ApiMetrics()
    export_nlu_serving(settings)      # before any model loads
    try:
        migrate_legacy_layout(config.paths)
    except OSError as exc:   # e.g. a read-only state dir: serve what can be read
        log.error("could not migrate the first state-dir layout of %s: %s", config.paths.state_dir, exc)
    task = config.task if config.task.get("model_name") else None
    mirror = None
    if config.registry_source:
        from utils.models.registry_mirror import RegistryMirror

        mirror = RegistryMirror(config.registry_cache, config.registry_uri(), settings.registry_models or None,
                                settings.registry_poll_s, settings.registry_timeout_s)
        fleet = ModelFleet(mirror.paths, task, settings.default_model, settings.reload_check_ms / 1000.0,
                           on_swap=metrics.model_swapped, on_failure=metrics.model_failed,
                           names_source=mirror.names, fast_path=settings.fast_path)
        mirror.on_change = lambda name, version: _preload(fleet, name)
    else:
        fleet = ModelFleet(config.paths, task, settings.default_model, settings.reload_check_ms / 1000.0,
                           on_swap=metrics.model_swapped, on_failure=metrics.model_failed,
                           fast_path=settings.fast_path)
    prediction_log = None
    if settings.prediction_log:
        prediction_log = PredictionLog(config.paths.predictions_db, settings.prediction_log_retention_days,
                                       settings.prediction_log_max_rows, settings.prediction_log_queue).start()
    api_key = (os.environ.get(settings.api_key_env) or "").strip() or None
    if api_key is None:
        log.warning("no API key in $%s: /scoring, ?refresh=1 and /admin/* answer 403", settings.api_key_env)
    elif len(api_key) < 16:
        log.warning("the API key in $%s is short (%d characters); use 32+ random characters",
                    settings.api_key_env, len(api_key))
    return Services(config=config, fleet=fleet, metrics=metrics, mirror=mirror,
                    prediction_log=prediction_log, jobs=JobStore(config.api_paths.jobs_db), api_key=api_key,
                    limits=Limits(settings.max_records, settings.max_text_chars),
                    service_version=service_version(),
                    compute_slots=threading.BoundedSemaphore(settings.prediction_concurrency))


def _preload(fleet: ModelFleet, name: str) -> None:
    """The poller moved a model's link: load the new version now, in the poller's thread, so
    requests keep the old one until the swap instead of one of them waiting for the load."""
    fleet.refresh()
    try:
        fleet.current(name)
    except Exception as exc:  # noqa: BLE001 - the request path retries and reports it
        log.warning("preloading %s failed: %s", name, exc)


def create_app(config: DictConfig | Mapping[str, Any] | None = None,
               overrides: Sequence[str] | None = None) -> Flask:
    """The app for one worker. ``config``: a composed config (tests); default: serve.py's or config.yaml."""
    app_config = load_app_config(config, overrides)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = app_config.settings.max_body_bytes
    app.json.sort_keys = False          # type: ignore[attr-defined]
    app.json.compact = True             # type: ignore[attr-defined]
    services = build_services(app_config)
    app.extensions["mlops"] = services
    _register_hooks(app, services)
    _register_errors(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(admin.bp)
    if app_config.settings.fast_lane:       # POST .../prediction without Flask's request machinery
        app.wsgi_app = PredictionLane(app.wsgi_app, services)   # type: ignore[method-assign]
    if services.mirror is not None:
        services.mirror.start()             # first poll now: serve the champion from the first request
    loaded = services.fleet.load_all()      # load now, not on the first request
    log.info("API ready (pid %d): serving %s, state dir %s", os.getpid(),
             ", ".join(f"{k}={v or 'nothing'}" for k, v in loaded.items()) or "no model yet",
             app_config.paths.state_dir)
    return app


def _register_hooks(app: Flask, services: Services) -> None:
    book = services.book

    @app.before_request
    def start() -> None:
        lane = request.environ.get(HANDED_OVER)     # a request the prediction lane gave up on
        if lane is not None:
            g.started, g.request_id = lane
        else:
            g.started = time.perf_counter()
            g.request_id = book.request_id(request.headers.get("X-Request-ID", ""))

    @app.after_request
    def finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        headers = response.headers
        headers["X-Request-ID"] = g.get("request_id", "")
        headers["X-Content-Type-Options"] = "nosniff"
        headers.setdefault("Cache-Control", "no-store")     # a route may set its own
        headers.setdefault("X-Frame-Options", "DENY")
        book.finish(request.url_rule.rule if request.url_rule is not None else "<unmatched>", request.method,
                    response.status_code, elapsed, g.get("request_id"), request.remote_addr, request.path,
                    request.content_length, response.content_length, g.get("model_version"))
        return response


def _register_errors(app: Flask) -> None:
    @app.errorhandler(RequestError)
    def bad_request(exc: RequestError) -> Response:
        return error_response(exc.status, exc.message, errors=exc.errors or None)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, headers=exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if status == 404:
            message = f"no route {request.method} {request.path[:200]}; GET / lists the routes"
        elif status == 405:
            allowed = exc.get_response().headers.get("Allow", "")
            headers["Allow"] = allowed
            message = f"method {request.method[:20]} not allowed on {request.path[:200]}; allowed: {allowed}"
        elif status == 413:
            message = (f"request body larger than api.max_body_bytes="
                       f"{app.config['MAX_CONTENT_LENGTH']} bytes; split it into smaller requests")
        else:
            message = exc.description or exc.name
        return error_response(status, message, headers=headers)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("unhandled error in %s %s (request %s)", request.method, request.path[:200],
                      g.get("request_id"))
        return error_response(500, "internal error; the server log has the details under this request_id")
