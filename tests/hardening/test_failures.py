"""Operational failures end every entry point with exit 1 and one line naming the path and the fix.

A read-only state dir and a full disk are real: a small tmpfs mounted for the test (root can
write anywhere on a read-write folder, so chmod would prove nothing). Where mounting is not
allowed, those tests are skipped with the reason.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO_ROOT, copy_embedded_tabular
from tests.backbone.test_model_store import store_with
from utils.models.model_store import ModelStore
from utils.pipeline import failures


@contextlib.contextmanager
def tmpfs(path: Path, size: str, options: str = "") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (a read-only or full disk cannot be made otherwise)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_ro(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def entry_points(state: Path) -> dict[str, list[str]]:
    return {
        "main.py": [str(REPO_ROOT / "main.py"), f"paths.state_dir={state}", "main.steps=data_ingestion"],
        "fullprocess.py": [str(REPO_ROOT / "fullprocess.py"), f"paths.state_dir={state}"],
        "serve.py": [str(REPO_ROOT / "04_deployment" / "serve.py"), f"paths.state_dir={state}"],
        "deployment.py": [str(REPO_ROOT / "04_deployment" / "deployment.py"), "--rollback",
                          "--state-dir", str(state)],
    }


# ---- the mapping itself ------------------------------------------------------------------
@pytest.mark.parametrize("exc, words", [
    (OSError(errno.ENOSPC, "No space left on device", "/srv/x"), "no space left on the device of /srv/x"),
    (OSError(errno.EROFS, "Read-only file system", "/srv/x"), "read-only file system: cannot write /srv/x"),
    (PermissionError(errno.EACCES, "Permission denied", "/srv/x"), "permission denied on /srv/x"),
    (sqlite3.DatabaseError("database disk image is malformed"), "is corrupt"),
    (sqlite3.OperationalError("database or disk is full"), "free space on its disk"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "make its folder writable"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "unreachable"),
])
def test_describe_maps_operational_errors_to_one_line(exc, words):
    failures.note_context(state_dir="/srv/state", tracking_uri="sqlite:////srv/state/mlflow.db")
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = exc
    message = failures.describe(wrapped)
    assert message and words in message and "\n" not in message


def test_a_bug_keeps_its_traceback():
    assert failures.describe(KeyError("x")) is None
    with pytest.raises(KeyError):
        failures.run_entry(lambda: {}["x"])


# ---- real failures, every entry point ------------------------------------------------------
def test_read_only_state_dir(tmp_path):
    with tmpfs(tmp_path / "ro", "4m") as state:
        store = store_with(state, "m-v1", "m-v2")
        store.deploy("m-v1")
        store.deploy("m-v2")
        remount_ro(state)
        for name, args in entry_points(state).items():
            proc = run(*args, cwd=tmp_path)
            lines = error_lines(proc)
            assert proc.returncode == 1 and len(lines) == 1, (name, proc.stderr[-2000:])
            assert "read-only file system: cannot write " + str(state) in lines[0], (name, lines)
            assert "paths.state_dir" in lines[0]
        assert ModelStore(store.root).production_version() == "m-v2"   # nothing lost


def test_full_disk(tmp_path):
    with tmpfs(tmp_path / "full", "600k") as state:
        proc = run(*entry_points(state)["main.py"], cwd=tmp_path)
        lines = error_lines(proc)
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
        assert "disk is full" in lines[0] or "no space left" in lines[0]
        assert str(state) in lines[0]


def test_full_disk_during_rollback_keeps_production(tmp_path):
    # no free inode left: the swap's new link cannot be created (ENOSPC), after the intent line
    with tmpfs(tmp_path / "full", "4m", ",nr_inodes=80") as state:
        store = store_with(state, "m-v1", "m-v2")
        store.deploy("m-v1")
        store.deploy("m-v2")
        (state / "fill").mkdir()
        with contextlib.suppress(OSError):
            for i in range(1000):
                (state / "fill" / str(i)).touch()
        proc = run(*entry_points(state)["deployment.py"], cwd=tmp_path)
        lines = error_lines(proc)
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
        assert "no space left on the device of" in lines[0]
        for f in (state / "fill").iterdir():
            f.unlink()
        assert store.production_version() == "m-v2"      # the intent never made it: no swap
        assert store.rollback()["version"] == "m-v1"     # and it works once there is room


def test_corrupt_tracking_db(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "mlflow.db").write_bytes(b"SQLite format 3\0" + os.urandom(8000))
    proc = run(*entry_points(state)["main.py"], cwd=tmp_path)
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert f"database {state / 'mlflow.db'} is corrupt" in lines[0] and "move it aside" in lines[0]


def test_tracking_server_down(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]       # nothing listens there once closed
    uri = f"http://127.0.0.1:{port}"
    proc = run(*entry_points(state)["main.py"], f"main.tracking_uri={uri}", cwd=tmp_path,
               env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert f"tracking server {uri} is unreachable" in lines[0]


# ---- the tick passes the chain's one line on (it said only "data_ingestion failed; see chain.log")
def tick_error(state: Path, tmp_path: Path, *overrides: str) -> str:
    source = copy_embedded_tabular(tmp_path / "source")
    proc = run(str(REPO_ROOT / "fullprocess.py"), f"paths.state_dir={state}", f"data.source_dir={source}",
               *overrides, cwd=tmp_path, env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                                              "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line or line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_corrupt_tracking_db_through_the_tick(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "mlflow.db").write_bytes(b"SQLite format 3\0" + os.urandom(8000))
    line = tick_error(state, tmp_path)
    assert "data_ingestion failed (exit 1): database " + str(state / "mlflow.db") + " is corrupt" in line
    assert "move it aside" in line


def test_tracking_server_down_through_the_tick(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
    line = tick_error(tmp_path / "state", tmp_path, f"main.tracking_uri={uri}")
    assert f"tracking server {uri} is unreachable" in line and "main.tracking_uri" in line


def test_full_disk_through_the_tick_is_one_line(tmp_path):
    """A disk already full: the tick's failure, then its state file and its summary line fail too
    (that printed a traceback and two more error lines)."""
    with tmpfs(tmp_path / "full", "300k") as state:
        (state / "logs").mkdir()
        (state / "fill").write_bytes(b"\0" * (290 << 10))   # room for the logs' first lines only
        line = tick_error(state, tmp_path)
    assert f"no space left on the device of {state}" in line and "paths.state_dir" in line


def test_rollback_with_the_tracking_server_down_rolls_back_and_says_so_in_one_line(tmp_path):
    """The store is the source of truth: production moves; the alias warning is the one line,
    not urllib3's retry chain."""
    (tmp_path / "state").mkdir()
    store = store_with(tmp_path / "state", "m-v1", "m-v2")
    store.deploy("m-v1")
    store.deploy("m-v2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
    proc = run(*entry_points(tmp_path / "state")["deployment.py"], "--tracking-uri", uri, cwd=tmp_path,
               env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    assert proc.returncode == 0 and "rolled back: production is now m-v1" in proc.stdout, proc.stderr[-2000:]
    warning = next(line for line in proc.stderr.splitlines() if "alias could not be moved" in line)
    assert f"tracking server {uri} is unreachable" in warning and "HTTPConnectionPool" not in warning
    assert "set --tracking-uri to a reachable server" in warning     # this CLI's flag, not main.py's key
    assert ModelStore(tmp_path / "state" / "models" / "m").production_version() == "m-v1"


def test_disk_full_on_a_second_ingestion_keeps_the_data_and_is_one_line(tmp_path):
    """An existing mlflow.db that cannot grow: mlflow logged its own traceback before our line."""
    source = tmp_path / "source"
    source.mkdir()
    embedded = copy_embedded_tabular(tmp_path / "embedded")
    shutil.copy(embedded / "dataset1.csv", source)
    with tmpfs(tmp_path / "full", "3m") as state:
        main = [str(REPO_ROOT / "main.py"), f"paths.state_dir={state}", "main.steps=data_ingestion",
                f"data.source_dir={source}", "diagnostics.pypi_url=null"]
        assert run(*main, cwd=tmp_path).returncode == 0
        model = state / "ingested" / "attrition_model"
        before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
        for name in ("dataset2.csv", "dataset3.csv"):
            shutil.copy(embedded / name, source)
        free = os.statvfs(state)
        (state / "fill").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - (12 << 10)))
        proc = run(*main, cwd=tmp_path)
        lines = error_lines(proc)
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
        assert str(state) in lines[0] and ("disk is full" in lines[0] or "no space left" in lines[0])
        assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before   # nothing lost
