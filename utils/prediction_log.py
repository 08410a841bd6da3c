"""The prediction log: every prediction the API makes, in ``<state_dir>/predictions.db``.

Written by the API (one background writer thread per worker, one transaction per batch of
requests), read by the drift check, the dashboard and diagnostics. SQLite in WAL mode lets
several gunicorn workers append while readers read; ``synchronous=NORMAL`` keeps a commit
cheap (a power cut may lose the last commits, never corrupt the file). Retention is bounded by
age and row count, pruned by the writers.

Table ``predictions`` (one row per predicted record or text)::

    id            INTEGER PRIMARY KEY    insertion order
    time          REAL                   unix seconds (UTC) of the request
    model_version TEXT                   store version that answered, e.g. attrition_model-v3
    task          TEXT                   tabular | nlu
    request_id    TEXT                   the API request id (X-Request-ID)
    input         TEXT                   JSON: the validated record (tabular) or {"text": ...}
    output        TEXT                   JSON: the prediction returned for it
    latency_ms    REAL                   model latency of the request's batch

Standard library only, so readers (cron tick, reporting) can import it cheaply.
"""
from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    model_version TEXT NOT NULL,
    task TEXT NOT NULL,
    request_id TEXT,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    latency_ms REAL
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
"""
_PRUNE_EVERY_S = 600.0


@dataclass(frozen=True)
class LoggedBatch:
    """The predictions of one request, queued for the writer (serialised off the request path)."""

    time: float
    model_version: str
    task: str
    request_id: str
    inputs: Sequence[Any]
    outputs: Sequence[Any]
    latency_ms: float


def connect(db_path: str | Path, timeout_s: float = 10.0) -> sqlite3.Connection:
    """A connection with WAL, NORMAL sync and the schema in place."""
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db_path), timeout=timeout_s, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


@contextmanager
def _reader(db_path: str | Path) -> Iterator[sqlite3.Connection | None]:
    """A connection for reading, or None when there is no log yet (readers never create it)."""
    path = Path(db_path)
    if not path.is_file():
        yield None
        return
    conn = sqlite3.connect(str(path), timeout=10.0)
    try:
        yield conn
    finally:
        conn.close()


def prune(conn: sqlite3.Connection, retention_days: float | None, max_rows: int | None,
          now: float | None = None) -> int:
    """Delete rows older than the retention and beyond the newest ``max_rows``; rows removed."""
    removed = 0
    if retention_days is not None and retention_days > 0:
        cutoff = (now if now is not None else time.time()) - retention_days * 86400.0
        removed += conn.execute("DELETE FROM predictions WHERE time < ?", (cutoff,)).rowcount
    if max_rows is not None and max_rows > 0:
        removed += conn.execute(
            "DELETE FROM predictions WHERE id <= (SELECT MAX(id) FROM predictions) - ?",
            (int(max_rows),)).rowcount
    return removed


class PredictionLog:
    """Append-only writer with a bounded queue: a request never waits for the disk.

    ``append`` is O(1) and never blocks; when the queue is full (disk stalled) the batch is
    dropped and counted, because answering the caller matters more than the log.
    """

    def __init__(self, db_path: str | Path, retention_days: float | None = 30,
                 max_rows: int | None = None, queue_size: int = 10000) -> None:
        self.db_path = Path(db_path)
        self.retention_days = retention_days
        self.max_rows = max_rows
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[LoggedBatch | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> "PredictionLog":
        with self._lock:
            if self._thread is None:
                conn = connect(self.db_path)   # create the file and schema now: fail at start-up
                prune(conn, self.retention_days, self.max_rows)
                conn.close()
                self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
                self._thread.start()
        return self

    def append(self, batch: LoggedBatch) -> bool:
        """Queue one request's predictions; False when dropped (queue full or log closed)."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait(batch)
            return True
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("prediction log queue full: %d batch(es) dropped so far", self.dropped)
            return False

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)

    # ---- writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        conn = connect(self.db_path)
        last_prune = time.monotonic()
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                if time.monotonic() - last_prune > _PRUNE_EVERY_S:
                    last_prune = self._prune(conn)
                continue
            batch = [first]
            while len(batch) < 1000:   # everything already waiting goes into one transaction
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is None for item in batch)
            try:
                self._write(conn, [item for item in batch if item is not None])
            except sqlite3.Error as exc:   # keep serving; the log is best effort
                log.error("prediction log %s: write failed, %d request(s) lost: %s",
                          self.db_path, len(batch), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if time.monotonic() - last_prune > _PRUNE_EVERY_S:
                last_prune = self._prune(conn)
        conn.close()

    def _write(self, conn: sqlite3.Connection, batches: list[LoggedBatch]) -> None:
        rows = []
        for b in batches:
            for item_in, item_out in zip(b.inputs, b.outputs):
                rows.append((b.time, b.model_version, b.task, b.request_id,
                             json.dumps(item_in, separators=(",", ":"), default=str),
                             json.dumps(item_out, separators=(",", ":"), default=str),
                             b.latency_ms))
        if not rows:
            return
        conn.execute("BEGIN")
        try:
            conn.executemany("INSERT INTO predictions (time, model_version, task, request_id, input, "
                             "output, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.written += len(rows)

    def _prune(self, conn: sqlite3.Connection) -> float:
        try:
            removed = prune(conn, self.retention_days, self.max_rows)
            if removed:
                log.info("prediction log: pruned %d row(s) beyond the retention", removed)
        except sqlite3.Error as exc:
            log.warning("prediction log: prune failed: %s", exc)
        return time.monotonic()


# ---- readers -----------------------------------------------------------------------------
def read_predictions(db_path: str | Path, since: float | None = None, model_version: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
    """Logged predictions, oldest first, with input/output decoded (for the drift check)."""
    clauses, args = [], []
    if since is not None:
        clauses.append("time >= ?")
        args.append(float(since))
    if model_version is not None:
        clauses.append("model_version = ?")
        args.append(model_version)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT time, model_version, task, request_id, input, output, latency_ms FROM predictions {where}"
    if limit is not None:   # the newest `limit` rows, still returned oldest first
        sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT {int(limit)}) ORDER BY time"
    else:
        sql += " ORDER BY id"
    with _reader(db_path) as conn:
        if conn is None:
            return []
        rows = conn.execute(sql, args).fetchall()
    return [{"time": t, "model_version": v, "task": task, "request_id": rid,
             "input": json.loads(i), "output": json.loads(o), "latency_ms": lat}
            for t, v, task, rid, i, o, lat in rows]


def prediction_volume(db_path: str | Path, hours: int = 24, now: float | None = None) -> list[dict[str, Any]]:
    """Predictions per hour over the last ``hours`` hours (oldest first, empty hours included)."""
    now = time.time() if now is None else now
    start_hour = int(now // 3600) - hours + 1
    counts: dict[int, int] = {}
    with _reader(db_path) as conn:
        if conn is not None:
            rows = conn.execute(
                "SELECT CAST(time / 3600 AS INTEGER) AS hour, COUNT(*) FROM predictions "
                "WHERE time >= ? GROUP BY hour", (start_hour * 3600.0,)).fetchall()
            counts = {int(h): int(n) for h, n in rows}
    return [{"hour_start": float(h * 3600), "count": counts.get(h, 0)}
            for h in range(start_hour, start_hour + hours)]


def count_predictions(db_path: str | Path) -> int:
    with _reader(db_path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]) if conn else 0
