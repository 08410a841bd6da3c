"""utils/monitoring/prediction_log.py: append, read back per prediction, retention, concurrency, drops."""
from __future__ import annotations

import sqlite3
import threading
import time

from utils.monitoring.prediction_log import (LoggedBatch, PredictionLog, connect, count_predictions, prediction_volume,
                                  prune, read_predictions)


def batch(i: int, n: int = 2, t: float | None = None, version: str = "m-v1") -> LoggedBatch:
    return LoggedBatch(time=time.time() if t is None else t, model_version=version, task="tabular",
                       request_id=f"r{i}", input={"columns": ["a", "b"], "rows": [[i, j] for j in range(n)],
                                                  "ids": [f"id{j}" for j in range(n)]},
                       outputs=[{"label": j % 2, "probability": 0.5} for j in range(n)], latency_ms=1.5)


def test_append_flush_and_read_one_dict_per_prediction(tmp_path):
    db = tmp_path / "predictions.db"
    log = PredictionLog(db).start()
    for i in range(5):
        assert log.append(batch(i))
    assert log.flush()
    rows = read_predictions(db)
    assert len(rows) == 10 and count_predictions(db) == 10
    assert rows[0]["input"] == {"a": 0, "b": 0, "id": "id0"} and rows[1]["input"] == {"a": 0, "b": 1, "id": "id1"}
    assert rows[0]["output"] == {"label": 0, "probability": 0.5} and rows[0]["request_id"] == "r0"
    assert [r["request_id"] for r in read_predictions(db, limit=2)] == ["r3", "r3", "r4", "r4"]
    assert read_predictions(db, model_version="other") == []
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    log.close()


def test_nlu_rows_and_missing_db(tmp_path):
    db = tmp_path / "p.db"
    assert read_predictions(db) == [] and count_predictions(db) == 0 and not db.exists()
    log = PredictionLog(db).start()
    log.append(LoggedBatch(time=1.0, model_version="n-v1", task="nlu", request_id="r", input={"texts": ["a", "b"]},
                           outputs=[{"intent": "x"}, {"intent": "y"}], latency_ms=2.0))
    log.close()
    assert [(r["input"], r["output"]) for r in read_predictions(db)] == [({"text": "a"}, {"intent": "x"}),
                                                                         ({"text": "b"}, {"intent": "y"})]


def test_retention_by_age_and_rows(tmp_path):
    db = tmp_path / "p.db"
    now = time.time()
    log = PredictionLog(db).start()
    for i, age_days in enumerate([40, 31, 10, 1, 0]):
        log.append(batch(i, t=now - age_days * 86400))
    log.close()
    conn = connect(db)
    assert prune(conn, retention_days=30, max_rows=None, now=now) == 2
    assert prune(conn, retention_days=None, max_rows=2) == 1
    conn.close()
    assert [r["request_id"] for r in read_predictions(db)][::2] == ["r3", "r4"]


def test_start_prunes_old_rows(tmp_path):
    db = tmp_path / "p.db"
    log = PredictionLog(db).start()
    log.append(batch(0, t=time.time() - 100 * 86400))
    log.append(batch(1))
    log.close()
    PredictionLog(db, retention_days=30).start().close()
    assert {r["request_id"] for r in read_predictions(db)} == {"r1"}


def test_full_backlog_drops_instead_of_blocking(tmp_path):
    log = PredictionLog(tmp_path / "p.db", queue_size=3)    # not started: nothing drains
    assert [log.append(batch(i)) for i in range(5)] == [True, True, True, False, False]
    assert log.dropped == 2


def test_two_writers_one_database(tmp_path):
    """Two gunicorn workers = two writers on one file: WAL + busy timeout, nothing lost."""
    db = tmp_path / "p.db"
    logs = [PredictionLog(db, interval_s=0.01).start() for _ in range(2)]

    def write(log: PredictionLog, k: int) -> None:
        for i in range(200):
            log.append(batch(k * 1000 + i, n=3))

    threads = [threading.Thread(target=write, args=(log, k)) for k, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    assert count_predictions(db) == 2 * 200 * 3


def test_volume_per_hour(tmp_path):
    db = tmp_path / "p.db"
    now = 1_000_000 * 3600.0 + 1800
    log = PredictionLog(db, retention_days=None).start()
    log.append(batch(0, n=3, t=now))
    log.append(batch(1, n=2, t=now - 3600))
    log.append(batch(2, n=5, t=now - 48 * 3600))
    log.close()
    volume = prediction_volume(db, hours=24, now=now)
    assert len(volume) == 24 and volume[-1]["count"] == 3 and volume[-2]["count"] == 2
    assert sum(v["count"] for v in volume) == 5


GEVENT_PROBE = r"""
import json, sys
from gevent import monkey
monkey.patch_all()
import gevent, threading, time
sys.path.insert(0, sys.argv[1])
from utils.monitoring.off_loop import run_off_loop
from utils.monitoring.prediction_log import LoggedBatch, PredictionLog, read_predictions

native_sleep = monkey.get_original("time", "sleep")
native_id = monkey.get_original("threading", "get_native_id")
ticks = []

def ticker():
    while len(ticks) < 1000:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)

loop_thread = native_id()
g = gevent.spawn(ticker)
gevent.sleep(0)
started = time.monotonic()
worker_thread = run_off_loop(lambda: (native_sleep(0.3), native_id())[1])
during = sum(1 for t in ticks if started <= t <= started + 0.3)
g.kill()

log = PredictionLog(sys.argv[2], interval_s=0.05).start()
log.append(LoggedBatch(time=time.time(), model_version="m-v1", task="nlu", request_id="r1",
                       input={"texts": ["hi"]}, outputs=[{"intent": "greet"}], latency_ms=1.0))
flushed = log.flush()
log.close()
print(json.dumps({"loop": loop_thread, "worker": worker_thread, "ticks": during, "flushed": flushed,
                  "rows": len(read_predictions(sys.argv[2]))}))
"""


def test_log_writes_run_off_a_gevent_loop(tmp_path):
    """Under gevent (gunicorn's workers) the blocking SQLite work runs in a real thread: the
    loop keeps ticking through a 0.3 s blocking call, and the log still commits."""
    from tests.api.conftest import run_probe
    from tests.conftest import REPO_ROOT

    result = run_probe(GEVENT_PROBE, str(REPO_ROOT), str(tmp_path / "p.db"), timeout=120)
    assert result["worker"] != result["loop"]
    assert result["ticks"] >= 10            # ~30 at 10 ms: the loop was not blocked
    assert result["flushed"] and result["rows"] == 1


def test_without_gevent_the_call_is_plain():
    import threading

    from utils.monitoring.off_loop import run_off_loop

    assert run_off_loop(threading.get_ident) == threading.get_ident()
