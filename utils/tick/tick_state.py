"""What the cron tick remembers between runs, and the tick history (standard library only).

`models/<model>/tick_state.json` (one per model, see StatePaths.tick_state_file):

* `reference` — the ingested dataset as of the last finished drift check: a hard link
  (`ingested/drift_reference.csv|.jsonl`) to that file plus its stat. Ingestion replaces the
  dataset with os.replace (a new inode), so the link keeps the old content for free. The
  next drift check compares the rows added since against it; a dataset that differs from
  it means a check is owed (also after a tick died between ingestion and drift check).
* `pending` — a retrain was decided but has not finished (the chain failed, timed out or
  its tick was killed): the next tick runs the chain again even without new files.
* `chain` — the process group of the chain running now, so a tick that finds its
  predecessor dead can stop that predecessor's orphaned chain.
* `notified` — when each kind of notification was last sent (repeats are throttled).
* `last_retrain`, `last_monitor` — when the schedule (`schedule.retrain_every`,
  `schedule.monitor_every`) last ran; a missed tick catches up once, not once per period.

`${state_dir}/logs/ticks.jsonl` holds one JSON summary line per tick, newest last; the
dashboard and `/diagnostics` read it with `read_ticks`.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from utils.pipeline.paths import StatePaths

HISTORY_NAME = "ticks.jsonl"


def state_file(paths: StatePaths) -> Path:
    return paths.tick_state_file


def history_file(paths: StatePaths) -> Path:
    return paths.logs_dir / HISTORY_NAME


def dataset_file(paths: StatePaths, task_name: str) -> Path:
    return paths.dataset(task_name)


def reference_file(paths: StatePaths, task_name: str) -> Path:
    return paths.ingested_dir / ("drift_reference.jsonl" if task_name == "nlu" else "drift_reference.csv")


def file_stat(path: Path) -> dict[str, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


@dataclass
class TickState:
    reference: dict[str, Any] | None = None   # {"path", "size", "mtime_ns", "ino", "time"}
    pending: dict[str, Any] | None = None     # {"reason", "since", "attempts"}
    chain: dict[str, Any] | None = None       # {"pgid", "started", "tick"}
    notified: dict[str, float] = field(default_factory=dict)
    last_retrain: float | None = None         # epoch seconds of the last scheduled/decided retrain
    last_monitor: float | None = None         # epoch seconds of the last scheduled monitoring

    @classmethod
    def load(cls, paths: StatePaths) -> "TickState":
        path = state_file(paths)
        if not path.is_file():
            return cls()
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return cls()  # written atomically, so only a hand-edited file lands here
        return cls(**{k: raw.get(k) for k in ("reference", "pending", "chain", "last_retrain", "last_monitor")},
                   notified=raw.get("notified") or {})

    def save(self, paths: StatePaths) -> None:
        path = state_file(paths)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, path)

    def dataset_matches_reference(self, dataset: Path) -> bool:
        """True when the dataset is the very file the last drift check saw."""
        current = file_stat(dataset)
        if current is None or self.reference is None:
            return current is None
        return all(self.reference.get(k) == v for k, v in current.items()) and \
            Path(self.reference.get("path", "")).is_file()


def take_reference(paths: StatePaths, task_name: str, state: TickState) -> Path | None:
    """Make the current dataset the drift reference (hard link; a copy where links fail)."""
    dataset = dataset_file(paths, task_name)
    target = reference_file(paths, task_name)
    stat = file_stat(dataset)
    if stat is None:
        state.reference = None
        return None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(dataset, tmp)
    except OSError:
        shutil.copy2(dataset, tmp)
    os.replace(tmp, target)
    state.reference = {"path": str(target), **stat, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "epoch": time.time()}
    return target


# ---- tick history ---------------------------------------------------------------------------
def append_tick(paths: StatePaths, summary: dict[str, Any]) -> None:
    """One line per tick, written with a single O_APPEND write (safe across processes)."""
    path = history_file(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(summary, default=str, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """Size-based rotation (path -> path.1 -> ... path.N); call it only under the tick lock."""
    try:
        if max_bytes <= 0 or path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    if backups > 0:
        os.replace(path, path.with_name(f"{path.name}.1"))
    else:
        path.unlink()
    return True


def read_ticks(state_dir: str | Path, limit: int = 100) -> list[dict[str, Any]]:
    """The last ``limit`` tick summaries, oldest first (for the dashboard and /diagnostics)."""
    path = history_file(StatePaths.of(state_dir))
    if limit <= 0:
        return []
    ticks = _tail_lines(path, limit)
    rotated = path.with_name(f"{path.name}.1")
    if len(ticks) < limit and rotated.is_file():
        ticks = _tail_lines(rotated, limit - len(ticks)) + ticks
    return ticks


def _tail_lines(path: Path, limit: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, "rb") as fh:  # read only the tail: the file grows by a line per tick
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        chunk = min(size, max(65536, limit * 4096))
        fh.seek(size - chunk)
        lines = fh.read().decode("utf-8", "replace").splitlines()
    if chunk < size:
        lines = lines[1:]  # the first line may be cut
    ticks = []
    for line in lines[-limit:]:
        try:
            ticks.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return ticks
