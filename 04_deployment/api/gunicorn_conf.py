"""gunicorn settings that are code: logging and worker hooks (serve.py passes the numbers).

Logs: the app's structured access log (logger `api.access`) goes to logs/api/access.log,
everything else to stderr and logs/api/api.log. WatchedFileHandler: all workers append to
the same files safely (O_APPEND) and reopen them after logrotate moves them.
"""
from __future__ import annotations

import os
from typing import Any

_log_dir = os.environ.get("MLOPS_API_LOG_DIR")
_fmt = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

from gunicorn.glogging import Logger


class AppAccessLogger(Logger):
    """gunicorn's logger without its access line: the app writes a structured one (and
    gunicorn would otherwise format an unused line per request because logging is configured)."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


# worker_class comes from serve.py (api.worker_class: gevent by default)
logger_class = AppAccessLogger
accesslog = None
errorlog = "-"

_handlers: dict[str, Any] = {
    "console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
}
if _log_dir:
    _handlers["app_file"] = {"class": "logging.handlers.WatchedFileHandler", "formatter": "plain",
                             "filename": os.path.join(_log_dir, "api.log")}
    _handlers["access_file"] = {"class": "logging.handlers.WatchedFileHandler", "formatter": "raw",
                                "filename": os.path.join(_log_dir, "access.log")}
_app_handlers = ["console", "app_file"] if _log_dir else ["console"]

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": _fmt}, "raw": {"format": "%(message)s"}},
    "handlers": _handlers,
    "root": {"level": "INFO", "handlers": _app_handlers},
    "loggers": {
        "api.access": {"level": "INFO", "handlers": ["access_file"] if _log_dir else [], "propagate": False},
        "gunicorn.error": {"level": "INFO", "handlers": _app_handlers, "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
        # mlflow/alembic chatter on model load is not operator information
        "mlflow": {"level": "WARNING"},
        "alembic": {"level": "WARNING"},
    },
}


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges must not count any more (prometheus multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """Write the queued prediction log entries before the worker goes."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("mlops") if app is not None else None
    if services is not None:
        services.close()
