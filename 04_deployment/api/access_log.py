"""The structured access log, written off the request path in batches.

One JSON line per request in logger ``api.access`` (gunicorn_conf.py sends it to
logs/api/access.log). Formatting a line and handing it to logging costs more than the
prediction itself for one record (LogRecord, handler lock, the file handler's stat and
flush: ~0.3-0.5 ms per request under load); a request therefore only appends a tuple to a
deque, and a writer thread per worker formats what accumulated every ``interval_s`` and
passes it to the logger as one multi-line record: one handler call per batch, the logging
configuration (handlers, levels, logrotate reopening) unchanged.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any

FIELDS = ("time", "request_id", "remote", "method", "path", "route", "status", "ms", "bytes_in",
          "bytes_out", "model_version", "pid")


class AccessLog:
    """Queue of access entries (tuples in FIELDS order, time as unix seconds) and their writer."""

    def __init__(self, logger: logging.Logger, interval_s: float = 0.2, max_pending: int = 100_000) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def add(self, entry: tuple[Any, ...]) -> None:
        """Queue one request's entry (never blocks; beyond ``max_pending`` it is dropped and counted)."""
        if self._stop or len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(entry)
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Write everything queued so far (the writer, shutdown, tests)."""
        lines = []
        while self._pending:
            lines.append(_line(self._pending.popleft()))
        if lines:
            self.logger.info("\n".join(lines))

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.flush()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval_s)
            try:
                self.flush()
            except Exception:   # the access log is best effort; logging reports handler errors itself
                pass


def _line(entry: tuple[Any, ...]) -> str:
    record = dict(zip(FIELDS, entry))
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record["time"]))
    return json.dumps(record)
