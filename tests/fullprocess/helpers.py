"""Shared helpers of the cron-tick tests: run a tick, read its summaries, build data."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import PYTHON, REPO_ROOT
from utils.data.ingest_record import IngestRecord, RecordRow, now, scan_source_dir
from utils.pipeline.paths import StatePaths
from utils.tick.tick_state import read_ticks

FULLPROCESS = REPO_ROOT / "fullprocess.py"
TABULAR_SOURCE = REPO_ROOT / "01_data" / "sourcedata" / "tabular"
HEAVY_MODULES = ("mlflow", "torch", "transformers", "sklearn", "pandas", "scipy", "hydra")


def tick_cmd(state: Path, source: Path, *overrides: str) -> list[str]:
    return [PYTHON, str(FULLPROCESS), f"paths.state_dir={state}", f"data.source_dir={source}", *overrides]


def run_tick(state: Path, source: Path, *overrides: str, timeout: int = 900,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One tick in a subprocess from a cwd outside the repo (as cron would)."""
    return subprocess.run(tick_cmd(state, source, *overrides), cwd=state.parent, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    """The JSON summary line the tick printed last on stdout."""
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no summary line (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])


def ticks(state: Path) -> list[dict]:
    return read_ticks(state, limit=1000)


def generate(n: int, seed: int, id_prefix: str) -> pd.DataFrame:
    """Rows from the project's own generator (same distribution as the shipped data)."""
    sys.path.insert(0, str(REPO_ROOT / "01_data"))
    try:
        from generate_tabular_data import generate_clients
    finally:
        sys.path.remove(str(REPO_ROOT / "01_data"))
    frame = generate_clients(n, np.random.default_rng(seed))
    frame["corporation"] = id_prefix + frame["corporation"]
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def mark_ingested(state: Path, source: Path, model: str = "attrition_model") -> None:
    """An ingest record that lists every file of ``source`` (as if ingestion had run)."""
    paths = StatePaths.of(state).model(model)
    record = IngestRecord.load(paths.ingest_record)
    for entry in scan_source_dir(source):
        record.add(RecordRow(file=str(entry.path), sha256=entry.sha256(), rows=1, status="ingested",
                             reason="", time=now(), size=entry.size, mtime_ns=entry.mtime_ns))
    record.save()


def tree_digest(folder: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file under ``folder`` (to prove nothing changed)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}
