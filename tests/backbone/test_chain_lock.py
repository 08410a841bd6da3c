"""main.py takes the pipeline lock (`<state_dir>/fullprocess.lock`) like the tick, the API's
retrain jobs and `manage.py retrain`: a chain started by hand never runs beside another run of
the same state dir; one started by a lock holder (the tick's chain) runs under its lock."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, copy_embedded_tabular, run_main
from utils.tick.tick_lock import LockBusy, hand_chain_lock, lock_held, read_holder

PYTHON = sys.executable

HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from utils.tick.tick_lock import TickLock
lock = TickLock(Path(sys.argv[1]), 3600)     # flock + holder record, as a tick holds it
assert lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
lock.release()
time.sleep(600)
"""

CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from utils.tick.tick_lock import hand_chain_lock
with hand_chain_lock(Path(sys.argv[1]), "python main.py", wait_s=0):
    print("ran", flush=True)
"""


def hold(lock: Path, tmp_path: Path, release_after_s: float = 600) -> subprocess.Popen:
    """Another process holding the lock; its script's name makes it "a cron tick"."""
    script = tmp_path / "fullprocess_holder.py"
    script.write_text(HOLDER)
    lock.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([PYTHON, str(script), str(lock), str(REPO_ROOT), str(release_after_s)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def test_another_runs_lock_is_waited_for_then_refused_naming_it(tmp_path):
    lock = tmp_path / "state" / "fullprocess.lock"
    holder = hold(lock, tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(LockBusy) as busy:
            with hand_chain_lock(lock, "python main.py", wait_s=1.0):
                pytest.fail("ran beside a tick")
        assert time.monotonic() - started >= 1.0
        assert f"another pipeline run holds {lock}: a cron tick (pid {holder.pid}" in str(busy.value)
        assert read_holder(lock).pid == holder.pid        # the holder's record is untouched
    finally:
        stop(holder)


def test_a_lock_let_go_while_waiting_is_taken_and_names_the_chain(tmp_path):
    lock = tmp_path / "state" / "fullprocess.lock"
    holder = hold(lock, tmp_path, release_after_s=1.0)
    try:
        with hand_chain_lock(lock, "python main.py task=nlu", wait_s=60):
            record = read_holder(lock)
            assert record.pid != holder.pid and "main.py task=nlu" in record.command
        assert read_holder(lock) is None and not lock_held(lock)   # cleared, then released
    finally:
        stop(holder)


def test_a_chain_started_by_the_holder_runs_under_its_lock(tmp_path):
    """The tick (or an API job, or manage.py retrain) holds the lock and starts main.py."""
    lock = tmp_path / "fullprocess.lock"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    with hand_chain_lock(lock, "python fullprocess.py", wait_s=0):
        child = subprocess.run([PYTHON, str(script), str(lock), str(REPO_ROOT)], capture_output=True,
                               text=True, timeout=60)
        assert child.returncode == 0 and child.stdout.strip() == "ran", child.stderr
        assert "fullprocess.py" in read_holder(lock).command   # the child did not take it over
        holder = hold(lock.with_name("other.lock"), tmp_path)  # an unrelated holder is not the parent
    try:
        refused = subprocess.run([PYTHON, str(script), str(lock.with_name("other.lock")), str(REPO_ROOT)],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "LockBusy" in refused.stderr
    finally:
        stop(holder)


def test_main_py_beside_a_tick_exits_1_in_one_line_and_writes_nothing(tmp_path):
    state = tmp_path / "state"
    holder = hold(state / "fullprocess.lock", tmp_path)
    try:
        proc = run_main("main.lock_wait_s=1", state_dir=state, check=False, timeout=120)
    finally:
        stop(holder)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert f"another pipeline run holds {state / 'fullprocess.lock'}: a cron tick (pid {holder.pid}" in last
    assert "main.lock_wait_s" in last and "Traceback" not in proc.stderr
    assert not (state / "mlflow.db").exists() and not (state / "models").exists()   # logs/: Hydra's own


@pytest.mark.parametrize("value, shown", [("-1", "-1"), ("soon", "'soon'"), ("inf", "inf"), ("nan", "nan")])
def test_a_bad_lock_wait_is_a_config_error(tmp_path, value, shown):
    proc = run_main(f"main.lock_wait_s={value}", state_dir=tmp_path / "state", check=False, timeout=120)
    assert proc.returncode == 2
    assert f"main.lock_wait_s: expected seconds in [0, 86400], got {shown}" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "state" / "fullprocess.lock").exists()


FORGED = """
import json, socket, sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=0)
lock.acquire()
with open(sys.argv[1], "w") as fh:   # a tick that is pid 1 of its container, same host name
    json.dump({"pid": 1, "host": socket.gethostname(), "started": time.time(), "command": "/app/fullprocess.py"}, fh)
print("held", flush=True)
time.sleep(600)
"""


def test_a_holder_that_is_pid_1_elsewhere_is_not_this_chains_parent(tmp_path):
    """pid 1 is every process's ancestor: a record naming it (a tick run as a container's entry
    point, `--network host` sharing the host name) must not let an unrelated chain in."""
    lock = tmp_path / "fullprocess.lock"
    script = tmp_path / "forged_holder.py"
    script.write_text(FORGED)
    proc = subprocess.Popen([PYTHON, str(script), str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):
            with hand_chain_lock(lock, "python main.py", wait_s=0):
                pytest.fail("ran beside another namespace's tick")
    finally:
        stop(proc)


def test_sigterm_stops_the_running_step_and_clears_the_lock(tmp_path):
    """kill / systemctl stop on a chain started by hand: no orphaned step, no stale record."""
    import psutil

    state, source = tmp_path / "state", tmp_path / "src"
    copy_embedded_tabular(source)
    log = (tmp_path / "chain.err").open("w")
    proc = subprocess.Popen([PYTHON, str(REPO_ROOT / "main.py"), f"paths.state_dir={state}", f"data.source_dir={source}",
                             "diagnostics.pypi_url=null", "main.reuse_runs=false"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline, steps = time.monotonic() + 120, []
        while time.monotonic() < deadline and not steps:     # a step process is running under it
            steps = [c for c in psutil.Process(proc.pid).children(recursive=True)
                     if any(a.endswith((".py")) and "main.py" not in a for a in c.cmdline())]
            time.sleep(0.2)
        assert steps, "no step started"
        assert read_holder(state / "fullprocess.lock").pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "chain.err").read_text()
    assert err.strip().splitlines()[-1].startswith("error: interrupted (SIGTERM): the running step was stopped")
    assert "Traceback" not in err
    gone, alive = psutil.wait_procs(steps, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert read_holder(state / "fullprocess.lock") is None and not lock_held(state / "fullprocess.lock")
