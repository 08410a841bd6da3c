"""Per-request bookkeeping: request ids, the security headers, metrics and the access log.

One object per worker, used by the Flask hooks (app.py) and by the prediction lane
(fast_lane.py), so a request is counted, logged and labelled the same way whichever of
the two answered it.
"""
from __future__ import annotations

import itertools
import os
import re
import time
import uuid
from api.access_log import AccessLog
from api.metrics import ApiMetrics

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# what the Flask hook adds to an answer after X-Request-ID (app.py); the lane sends the same
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"),
                    ("X-Frame-Options", "DENY"))


class RequestBook:
    """Ids from a random per-process prefix and a counter (no syscall per request); the
    metrics and access-log entry of each finished request."""

    def __init__(self, metrics: ApiMetrics, access_log: AccessLog, access_log_on: bool) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.access_log_on = access_log_on
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)
        self.pid = os.getpid()        # built in the worker (no preload): this worker's pid

    def request_id(self, given: str) -> str:
        """The caller's X-Request-ID when it is a sane token, else a new one."""
        return given if REQUEST_ID_RE.match(given) else f"{self._prefix}{next(self._counter):08x}"

    def finish(self, route: str, method: str, status: int, elapsed_s: float, request_id: str | None,
               remote: str | None, path: str, bytes_in: int | None, bytes_out: int | None,
               model_version: str | None) -> None:
        method = method if method in METHODS else "OTHER"
        self.metrics.observe_request(route, method, status, elapsed_s)
        if self.access_log_on and self.access_log.enabled():   # written in batches (access_log.py)
            self.access_log.add((time.time(), request_id, remote, method, path[:200], route, status,
                                 round(elapsed_s * 1000.0, 3), bytes_in, bytes_out, model_version, self.pid))
