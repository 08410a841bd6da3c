"""Background jobs started by the API (POST /admin/retrain), visible to every worker.

A job's state lives in a small SQLite file under `<state_dir>/logs/api/`, so any worker can
answer GET /admin/jobs/<id>. The job itself runs in `api.jobrunner`, a process in its own
session: it outlives a worker restart, takes the pipeline lock (one chain at a time, shared
with the cron tick) and records its own exit status.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from filelock import FileLock

from utils.pipeline.paths import REPO_ROOT
from utils.tick.tick_lock import pid_alive

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
ACTIVE_STATES = ("queued", "running")
API_DIR = Path(__file__).resolve().parent.parent      # 04_deployment: `api` is importable from here

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    runner_pid INTEGER,
    returncode INTEGER,
    command TEXT NOT NULL,
    log_path TEXT NOT NULL,
    error TEXT,
    request_id TEXT
)
"""


class JobConflict(RuntimeError):
    """A job of the same kind is still active."""

    def __init__(self, job: dict[str, Any]):
        super().__init__(f"job {job['id']} ({job['kind']}) is still {job['state']}")
        self.job = job


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts)) if ts else None


class JobStore:
    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)

    def _connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.db_path), timeout=10.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
        return conn

    def create(self, kind: str, command: Sequence[str], log_path: Path, request_id: str | None) -> dict[str, Any]:
        job_id = uuid.uuid4().hex
        conn = self._connect()
        try:
            conn.execute("INSERT INTO jobs (id, kind, state, created, command, log_path, request_id) "
                         "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                         (job_id, kind, time.time(), json.dumps(list(command)), str(log_path), request_id))
        finally:
            conn.close()
        return self.get(job_id)  # type: ignore[return-value]

    def update(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        columns = ", ".join(f"{k} = ?" for k in fields)
        conn = self._connect()
        try:
            conn.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))
        finally:
            conn.close()

    def get(self, job_id: str) -> dict[str, Any] | None:
        if not JOB_ID_RE.match(job_id or ""):
            return None
        if not self.db_path.is_file():
            return None
        conn = self._connect()
        try:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        finally:
            conn.close()
        return self._public(dict(row)) if row else None

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        if not self.db_path.is_file():
            return []
        conn = self._connect()
        try:
            rows = conn.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        finally:
            conn.close()
        return [self._public(dict(r)) for r in rows]

    def active(self, kind: str) -> dict[str, Any] | None:
        for job in self.recent(50):
            if job["kind"] == kind and job["state"] in ACTIVE_STATES:
                return job
        return None

    def _public(self, job: dict[str, Any]) -> dict[str, Any]:
        """Row -> answer; a running job whose runner process is gone is reported as lost."""
        if job["state"] in ACTIVE_STATES and not (job.get("runner_pid") and pid_alive(job["runner_pid"])) \
                and time.time() - job["created"] > 10:
            job["state"] = "lost"
            job["error"] = job.get("error") or "the job runner process is gone (killed?); see the log"
        job["command"] = json.loads(job["command"])
        for key in ("created", "started", "finished"):
            job[key] = _iso(job[key])
        return job


def log_tail(path: str | Path, max_bytes: int = 4000) -> str:
    path = Path(path)
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - max_bytes))
        return fh.read().decode("utf-8", errors="replace")


def start_job(store: JobStore, kind: str, command: Sequence[str], logs_dir: Path, lock_file: Path,
              request_id: str | None = None) -> dict[str, Any]:
    """Record a job and start its runner (detached); JobConflict if one of ``kind`` is active."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store.db_path) + ".lock", timeout=10):   # two workers, one job
        active = store.active(kind)
        if active is not None:
            raise JobConflict(active)
        log_path = logs_dir / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.log"
        job = store.create(kind, command, log_path, request_id)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(API_DIR), str(REPO_ROOT)])}
        for var in ("PROMETHEUS_MULTIPROC_DIR", "MLOPS_API_CONFIG", "MLOPS_API_OVERRIDES"):
            env.pop(var, None)   # the pipeline is not part of the API
        runner = [sys.executable, "-m", "api.jobrunner", "--db", str(store.db_path), "--job", job["id"],
                  "--lock", str(lock_file), "--log", str(log_path), "--", *command]
        proc = subprocess.Popen(runner, cwd=str(REPO_ROOT), env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        store.update(job["id"], runner_pid=proc.pid)
    # reap the runner when it ends (no zombie); if this worker dies first, init reaps it
    threading.Thread(target=proc.wait, name=f"job-{job['id'][:8]}", daemon=True).start()
    return store.get(job["id"])  # type: ignore[return-value]
