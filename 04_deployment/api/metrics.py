"""Prometheus metrics of the API (GET /metrics).

Under gunicorn every worker is a process: serve.py sets PROMETHEUS_MULTIPROC_DIR, the
client library then keeps values in memory-mapped files there and /metrics sums them over
the workers (prometheus_client multiprocess mode). Without it (tests, a single process) each
app has its own registry, so several apps in one process do not collide.
"""
from __future__ import annotations

import os
from collections import Counter as Tally
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_MAX_CHILDREN = 10_000     # cached label children per metric (routes, statuses and classes are few)


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _MAX_CHILDREN:
        cache.clear()
    cache[key] = value


class ApiMetrics:
    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mlops_api_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("mlops_api_request_duration_seconds",
                                 "Request latency (s) by route, method and status",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("mlops_api_predictions_total",
                                   "Predictions by model version and predicted class/intent",
                                   ["model_version", "prediction"], registry=r)
        self.model_info = Gauge("mlops_api_model_info", "The model version a worker serves (1 = served)",
                                ["version", "task"], multiprocess_mode="livemax", registry=r)
        self.model_loads = Counter("mlops_api_model_loads_total", "Model loads by result",
                                   ["result"], registry=r)
        self.log_dropped = Counter("mlops_api_prediction_log_dropped_total",
                                   "Prediction batches not logged (writer queue full)", registry=r)
        # labels() takes a lock and builds a key per call: the request path reuses the children
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._prediction_children: dict[tuple[str, str], Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._request_children.get((route, method, status))
        if children is None:
            code = str(status)
            children = (self.requests.labels(route, method, code), self.latency.labels(route, method, code))
            _remember(self._request_children, (route, method, status), children)
        children[0].inc()
        children[1].observe(seconds)

    def count_predictions(self, version: str, outputs: list[dict[str, Any]], key: str) -> None:
        counts = ({str(outputs[0].get(key)): 1} if len(outputs) == 1
                  else Tally(str(o.get(key)) for o in outputs))
        for value, n in counts.items():
            child = self._prediction_children.get((version, value))
            if child is None:
                child = self.predictions.labels(version, value[:100])
                _remember(self._prediction_children, (version, value), child)
            child.inc(n)

    def model_swapped(self, old: Any, new: Any) -> None:
        if old is not None and old.version != new.version:
            self.model_info.labels(old.version, old.task).set(0)
        self.model_info.labels(new.version, new.task).set(1)
        self.model_loads.labels("ok").inc()

    def model_failed(self, version: str, error: str) -> None:
        self.model_loads.labels("error").inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text: all workers' values in multiprocess mode, else this app's."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
