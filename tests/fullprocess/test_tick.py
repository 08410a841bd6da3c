"""The tick without a real chain: the cheap path, the lock, process groups, failure handling."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fullprocess import ChainRun, Terminated, decide, run_in_group
from tests.conftest import PYTHON, REPO_ROOT
from tests.conftest import copy_embedded_tabular
from tests.fullprocess.helpers import (FULLPROCESS, HEAVY_MODULES, TABULAR_SOURCE, mark_ingested, run_tick,
                                       summary_of, ticks)
from utils.pipeline.paths import StatePaths
from utils.tick.tick_lock import read_holder
from utils.tick.tick_state import TickState, append_tick, read_ticks, rotate

PROBE = """
import json, runpy, sys, time
sys.path.insert(0, {repo!r})
sys.argv = ["fullprocess.py", *{args!r}]
def peak_rss_mb():  # VmHWM: this program's peak (ru_maxrss would include the forking parent)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
started = time.perf_counter()
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "seconds": time.perf_counter() - started,
                  "heavy": sorted(m for m in {heavy!r} if m in sys.modules),
                  "rss_mb": peak_rss_mb()}}), file=sys.stderr)
"""


def probe_tick(*args: str) -> dict:
    """A tick in a fresh interpreter that reports what it imported and its peak RSS."""
    code = PROBE.format(repo=str(REPO_ROOT), args=list(args), script=str(FULLPROCESS), heavy=HEAVY_MODULES)
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    return {**json.loads(proc.stderr.strip().splitlines()[-1]), "stdout": proc.stdout}


@pytest.fixture
def ingested(tmp_path: Path) -> tuple[Path, Path]:
    """A state dir whose ingest record lists every source file, and an ingested dataset."""
    source, state = tmp_path / "source", tmp_path / "state"
    copy_embedded_tabular(source)
    mark_ingested(state, source)
    shutil.copy(source / "dataset1.csv", StatePaths.of(state).model("attrition_model").finaldata_csv)
    return state, source


def test_noop_tick_is_cheap_and_imports_nothing_heavy(ingested: tuple[Path, Path]) -> None:
    state, source = ingested
    args = (f"paths.state_dir={state}", f"data.source_dir={source}")
    first = probe_tick(*args)        # adopts the dataset as the drift reference
    assert first["code"] == 0
    second = probe_tick(*args)
    assert second["code"] == 0
    assert second["heavy"] == [], f"the no-op path imported {second['heavy']}"
    assert second["rss_mb"] < 60
    assert second["seconds"] < 2.0   # the goal is < 0.3 s; benchmarks/tick.py measures it
    summary = json.loads(second["stdout"].splitlines()[-1])
    assert summary["status"] == "noop" and summary["exit_code"] == 0
    log = (state / "logs" / "fullprocess.log").read_text()
    assert "adopted" in log and log.count("no new data") == 2
    assert [t["status"] for t in ticks(state)] == ["noop", "noop"]


def test_overrides_with_hydra_group_syntax_work_on_the_tick(ingested: tuple[Path, Path]) -> None:
    state, source = ingested
    proc = run_tick(state, source, "task=tabular", "+extra=1")
    assert proc.returncode == 0, proc.stderr
    bad = run_tick(state, source, "no.such.key=1")
    assert bad.returncode == 2 and "no.such.key" in bad.stderr


@pytest.mark.parametrize("policy, signals, production, pending, rows, expected", [
    (["performance", "distribution"], {"performance": True, "distribution": False}, True, None, 10, True),
    (["performance", "distribution"], {"performance": False, "distribution": True}, True, None, 10, True),
    (["performance", "distribution"], {"performance": False, "distribution": False}, True, None, 10, False),
    (["performance", "distribution"], {"performance": None, "distribution": None}, True, None, 10, False),
    (["performance"], {"performance": False, "distribution": True}, True, None, 10, False),
    (["always"], {"performance": False, "distribution": False}, True, None, 10, True),
    (["always"], None, True, None, 0, False),                  # nothing new: nothing to learn
    (["never"], {"performance": True, "distribution": True}, True, None, 10, False),
    (["never"], None, False, {"reason": "x"}, 10, False),
    (["performance"], None, False, None, 10, True),             # first model
    (["performance"], None, True, {"reason": "drift", "since": "t"}, None, True),  # retry
])
def test_decide(policy, signals, production, pending, rows, expected) -> None:
    retrain, reason = decide(policy, signals, production, pending, rows)
    assert retrain is expected and reason


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! >> {pids}; (sleep 300 & echo $! >> {pids}; wait) & echo $$ >> {pids}; wait"
    started = time.monotonic()
    run = run_in_group(["bash", "-c", script], "sleepers", 2.0, tmp_path / "chain.log", "t1")
    assert isinstance(run, ChainRun) and run.timed_out and run.exit_code != 0
    assert time.monotonic() - started < 30
    numbers = [int(p) for p in pids.read_text().split()]
    assert len(numbers) == 3
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in numbers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in numbers)


def test_termination_of_the_tick_kills_the_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"

    def stop(pgid: int) -> None:
        time.sleep(0.5)
        raise Terminated("SIGTERM")

    with pytest.raises(Terminated):
        run_in_group(["bash", "-c", f"sleep 300 & echo $! >> {pids}; wait"], "s", 60, tmp_path / "c.log", "t", stop)
    child = int(pids.read_text().split()[0])
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


# ---- the lock -----------------------------------------------------------------------------
HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from filelock import FileLock
from utils.tick.tick_lock import TickLock
if sys.argv[3] == "tick":            # a tick: flock + holder record
    lock = TickLock(Path(sys.argv[1]), 3600)
    assert lock.acquire()
else:                                # the API's retrain job runner: a plain FileLock
    lock = FileLock(sys.argv[1], timeout=0)   # kept referenced: a collected lock is released
    lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_lock(state: Path, tmp_path: Path, name: str = "holder.py", kind: str = "tick") -> subprocess.Popen:
    """A process holding the lock; a script named *fullprocess* passes for a tick."""
    script = tmp_path / name
    script.write_text(HOLDER)
    state.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([PYTHON, str(script), str(state / "fullprocess.lock"), str(REPO_ROOT), kind],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("kind", ["tick", "api-job"])
def test_a_held_lock_makes_the_tick_exit_zero(ingested, tmp_path: Path, kind: str) -> None:
    state, source = ingested
    holder = hold_lock(state, tmp_path, kind=kind)
    try:
        proc = run_tick(state, source)
        assert proc.returncode == 0, proc.stderr
        assert summary_of(proc)["status"] == "locked"
        assert "holds" in (state / "logs" / "fullprocess.log").read_text()
        assert holder.poll() is None                     # a young live holder is left alone
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_tick_is_broken_and_logged(ingested, tmp_path: Path) -> None:
    state, source = ingested
    holder = hold_lock(state, tmp_path)
    holder.kill()
    holder.wait()
    assert read_holder(state / "fullprocess.lock").pid == holder.pid   # its record is still there
    proc = run_tick(state, source)
    assert proc.returncode == 0, proc.stderr
    summary = summary_of(proc)
    assert summary["status"] == "noop" and summary["broke_lock"]["pid"] == holder.pid
    assert f"broke a stale tick lock {state / 'fullprocess.lock'} left by pid {holder.pid}" in \
        (state / "logs" / "fullprocess.log").read_text()
    assert read_holder(state / "fullprocess.lock") is None   # released, record cleared
    assert summary_of(run_tick(state, source))["broke_lock"] is None


def test_a_lock_older_than_the_timeout_is_broken_and_its_holder_stopped(ingested, tmp_path: Path) -> None:
    state, source = ingested
    holder = hold_lock(state, tmp_path, name="stuck_fullprocess.py")
    try:
        time.sleep(1.5)
        proc = run_tick(state, source, "fullprocess.lock_max_age_s=1")
        assert proc.returncode == 0, proc.stderr
        assert summary_of(proc)["broke_lock"]["pid"] == holder.pid
        assert holder.wait(timeout=30) == -signal.SIGTERM
        assert "terminating its holder" in (state / "logs" / "fullprocess.log").read_text()
    finally:
        holder.kill()
        holder.wait()


def test_a_chain_orphaned_by_a_dead_tick_is_stopped(ingested, tmp_path: Path) -> None:
    state, source = ingested
    fake_main = tmp_path / "main.py"
    fake_main.write_text("import time\ntime.sleep(600)\n")
    orphan = subprocess.Popen([PYTHON, str(fake_main)], start_new_session=True)
    paths = StatePaths.of(state).model("attrition_model")
    TickState(chain={"pgid": orphan.pid, "steps": "model_training", "tick": "dead"}).save(paths)
    proc = run_tick(state, source)
    assert proc.returncode == 0, proc.stderr
    assert orphan.wait(timeout=30) == -signal.SIGTERM
    assert TickState.load(paths).chain is None
    assert "left running by dead tick dead" in (state / "logs" / "fullprocess.log").read_text()


# ---- failures and notifications -------------------------------------------------------------
def test_failure_exits_nonzero_notifies_once_and_is_recorded(tmp_path: Path, webhook_server) -> None:
    url, received = webhook_server
    state, missing = tmp_path / "state", tmp_path / "no-such-source"
    args = (f"notify.webhook.url={url}/hook",)
    first = run_tick(state, missing, *args)
    assert first.returncode == 1
    summary = summary_of(first)
    assert summary["status"] == "failed" and "data.source_dir" in summary["error"]
    assert summary["notifications"] == [{"channel": "webhook", "ok": True, "detail": "HTTP 204"}]
    assert received[0][1]["events"] == ["failure"]
    assert received[0][1]["subject"] == "[mlops] attrition_model: tick FAILED", "the notification names the model"
    assert "(model attrition_model, task tabular" in received[0][1]["text"]
    second = run_tick(state, missing, *args)        # same failure again: not re-sent within the hour
    assert second.returncode == 1 and summary_of(second)["notifications"] == []
    assert len(received) == 1
    third = run_tick(state, missing, *args, "notify.repeat_after_s=0")
    assert len(received) == 2 and third.returncode == 1
    assert [t["status"] for t in ticks(state)] == ["failed"] * 3


def test_undeliverable_notification_does_not_crash_the_tick(tmp_path: Path) -> None:
    proc = run_tick(tmp_path / "state", tmp_path / "missing", "notify.webhook.url=http://127.0.0.1:9/x",
                    "notify.smtp.host=127.0.0.1", "notify.smtp.port=9", "notify.smtp.to=[a@example.org]")
    assert proc.returncode == 1                      # the tick's own failure, not a crash
    assert {(n["channel"], n["ok"]) for n in summary_of(proc)["notifications"]} == {("smtp", False),
                                                                                    ("webhook", False)}


def test_dry_run_changes_nothing(ingested, tmp_path: Path) -> None:
    state, source = ingested
    shutil.copy(source / "dataset1.csv", source / "dataset9.csv")
    (source / "new.csv").write_text((source / "dataset2.csv").read_text().replace("\n", "\n", 1) + "zz1,1,2,3,0\n")
    before = sorted(p.name for p in state.rglob("*"))
    proc = subprocess.run([PYTHON, str(FULLPROCESS), "--dry-run", f"paths.state_dir={state}",
                           f"data.source_dir={source}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "new: new.csv" in proc.stdout and "changed but known content: 1" in proc.stdout
    assert "main.steps=data_ingestion" in proc.stdout and "model_training" in proc.stdout
    assert sorted(p.name for p in state.rglob("*")) == before


# ---- history --------------------------------------------------------------------------------
def test_tick_history_reads_across_rotation(tmp_path: Path) -> None:
    paths = StatePaths.of(tmp_path)
    for i in range(5):
        append_tick(paths, {"tick": str(i)})
    assert rotate(paths.logs_dir / "ticks.jsonl", max_bytes=1, backups=2)
    for i in range(5, 8):
        append_tick(paths, {"tick": str(i)})
    assert [t["tick"] for t in read_ticks(tmp_path, limit=6)] == ["2", "3", "4", "5", "6", "7"]
    assert read_ticks(tmp_path / "nothing-here") == []
