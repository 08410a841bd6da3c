"""The prediction log: every prediction the API makes, in ``<state_dir>/predictions.db``.

Written by the API, read by the drift check, the dashboard and diagnostics. SQLite in WAL
mode lets several gunicorn workers append while readers read; ``synchronous=NORMAL`` keeps a
commit cheap (a power cut may lose the last commits, never corrupt the file).

Cheap on the request path: a request only appends its batch to an in-memory deque (no lock,
no thread wake-up); one writer thread per worker wakes every ``interval_s``, serialises what
accumulated (two ``json.dumps`` per request, not two per prediction) and commits it in one
transaction. Retention is bounded by age and row count, pruned by the writers.

Table ``predictions``, one row per request (a request predicts one or more items)::

    id            INTEGER PRIMARY KEY    insertion order
    time          REAL                   unix seconds of the request
    model_version TEXT                   store version that answered, e.g. attrition_model-v3
    task          TEXT                   tabular | nlu
    request_id    TEXT                   the API request id (X-Request-ID)
    n             INTEGER                predictions in this row
    input         TEXT                   JSON, tabular: {"columns": [...], "rows": [[...], ...],
                                         "ids": [...] | null}; NLU: {"texts": [...]}
    output        TEXT                   JSON list, one prediction per input item, in order, as
                                         returned to the caller (with the caller's id, if sent)
    latency_ms    REAL                   model latency of the whole request

``read_predictions`` returns it one prediction per dict (what the drift check wants).
Standard library only, so readers (cron tick, reporting) can import it cheaply.
"""
from __future__ import annotations

import collections
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.monitoring.off_loop import run_off_loop

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    model_version TEXT NOT NULL,
    task TEXT NOT NULL,
    request_id TEXT,
    n INTEGER NOT NULL,
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
    input: dict[str, Any]        # tabular: columns/rows/ids; NLU: texts (see the module docstring)
    outputs: Sequence[Any]
    latency_ms: float
    # the same, already JSON-encoded by the caller (the API encodes its answer once for both)
    input_json: str | None = None
    output_json: str | None = None


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
    """Append-only writer: a request never waits for the disk, nor wakes a thread.

    ``append`` never blocks; beyond ``queue_size`` waiting requests (disk stalled) a batch is
    dropped and counted, because answering the caller matters more than the log.
    """

    def __init__(self, db_path: str | Path, retention_days: float | None = 30,
                 max_rows: int | None = None, queue_size: int = 10000, interval_s: float = 0.2) -> None:
        self.db_path = Path(db_path)
        self.retention_days = retention_days
        self.max_rows = max_rows
        self.queue_size = queue_size
        self.interval_s = interval_s
        self.dropped = 0
        self.written = 0          # requests committed
        self._pending: collections.deque[LoggedBatch] = collections.deque()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False

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
        """Queue one request's predictions; False when dropped (backlog full or log closed)."""
        if self._stop or len(self._pending) >= self.queue_size:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("prediction log %s: %d batch(es) dropped so far (writer behind or closed)",
                            self.db_path, self.dropped)
            return False
        self._pending.append(batch)      # deque.append is atomic: no lock on the request path
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything appended so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        while (self._pending or self._in_flight) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        return not (self._pending or self._in_flight)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._stop:
            return
        self.flush(timeout_s)
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # ---- writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        conn = connect(self.db_path)
        last_prune = time.monotonic()
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            batches = []
            self._in_flight = 1
            try:
                while self._pending:
                    batches.append(self._pending.popleft())
                if batches:
                    run_off_loop(self._write, conn, batches)   # not on a gevent worker's loop
            except Exception as exc:   # keep serving; the log is best effort
                log.error("prediction log %s: write failed, %d request(s) lost: %s",
                          self.db_path, len(batches), exc)
            finally:
                self._in_flight = 0
            if time.monotonic() - last_prune > _PRUNE_EVERY_S:
                last_prune = run_off_loop(self._prune, conn)
            if self._stop and not self._pending:
                break
        conn.close()

    def _write(self, conn: sqlite3.Connection, batches: list[LoggedBatch]) -> None:
        dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode
        rows = [(b.time, b.model_version, b.task, b.request_id, len(b.outputs),
                 b.input_json if b.input_json is not None else dumps(b.input),
                 b.output_json if b.output_json is not None else dumps(list(b.outputs)), b.latency_ms)
                for b in batches]
        conn.execute("BEGIN")
        try:
            conn.executemany("INSERT INTO predictions (time, model_version, task, request_id, n, input, "
                             "output, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
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
def _items(task: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The stored input of one request -> one dict per item ({column: value, "id": ...} / {"text": ...})."""
    if "texts" in data:
        return [{"text": t} for t in data["texts"]]
    columns = data.get("columns") or []
    ids = data.get("ids") or [None] * len(data.get("rows") or [])
    out = []
    for row, row_id in zip(data.get("rows") or [], ids):
        item = dict(zip(columns, row))
        if row_id is not None:
            item["id"] = row_id
        out.append(item)
    return out


def read_predictions(db_path: str | Path, since: float | None = None, model_version: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
    """Logged predictions, oldest first, one dict per prediction:
    {time, model_version, task, request_id, input: {...}, output: {...}, latency_ms}.

    ``limit`` keeps the newest requests (rows), not predictions.
    """
    clauses, args = [], []
    if since is not None:
        clauses.append("time >= ?")
        args.append(float(since))
    if model_version is not None:
        clauses.append("model_version = ?")
        args.append(model_version)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT id, time, model_version, task, request_id, input, output, latency_ms FROM predictions {where}"
    if limit is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT {int(limit)}) ORDER BY id"
    else:
        sql += " ORDER BY id"
    with _reader(db_path) as conn:
        if conn is None:
            return []
        rows = conn.execute(sql, args).fetchall()
    out = []
    for _, t, version, task, rid, inp, outp, latency in rows:
        for item, prediction in zip(_items(task, json.loads(inp)), json.loads(outp)):
            out.append({"time": t, "model_version": version, "task": task, "request_id": rid,
                        "input": item, "output": prediction, "latency_ms": latency})
    return out


def prediction_volume(db_path: str | Path, hours: int = 24, now: float | None = None) -> list[dict[str, Any]]:
    """Predictions per hour over the last ``hours`` hours (oldest first, empty hours included)."""
    now = time.time() if now is None else now
    start_hour = int(now // 3600) - hours + 1
    counts: dict[int, int] = {}
    with _reader(db_path) as conn:
        if conn is not None:
            rows = conn.execute(
                "SELECT CAST(time / 3600 AS INTEGER) AS hour, SUM(n) FROM predictions "
                "WHERE time >= ? GROUP BY hour", (start_hour * 3600.0,)).fetchall()
            counts = {int(h): int(n) for h, n in rows}
    return [{"hour_start": float(h * 3600), "count": counts.get(h, 0)}
            for h in range(start_hour, start_hour + hours)]


def count_predictions(db_path: str | Path) -> int:
    """Predictions logged (items, not requests)."""
    with _reader(db_path) as conn:
        if conn is None:
            return 0
        return int(conn.execute("SELECT COALESCE(SUM(n), 0) FROM predictions").fetchone()[0])
