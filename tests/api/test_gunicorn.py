"""The API as operators run it: serve.py -> gunicorn on a free 127.0.0.1 port, queried over HTTP."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import pytest
import requests

from tests.api.conftest import API_KEY, RECORD, TEST_CSV, LiveServer, read_json_lines
from utils.models.model_store import ModelStore
from utils.monitoring.prediction_log import count_predictions


@pytest.fixture(scope="module")
def server(tmp_path_factory, template_state):
    state = tmp_path_factory.mktemp("live") / "state"
    shutil.copytree(template_state, state, symlinks=True)
    live = LiveServer(state, workers=2, threads=2).wait_ready()
    yield live
    live.stop()


def test_routes_over_http(server):
    s = requests.Session()
    r = s.get(f"{server.url}/")
    assert r.status_code == 200 and r.json()["model"]["version"] == "attrition_model-v1"
    r = s.post(f"{server.url}/prediction", json={"records": [RECORD] * 3})
    assert r.status_code == 200 and r.json()["n"] == 3
    r = s.post(f"{server.url}/prediction", data=TEST_CSV.read_bytes(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["n"] == 400
    r = s.post(f"{server.url}/prediction", json={"records": [{**RECORD, "lastmonth_activity": -5}]})
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["field"] == "lastmonth_activity"
    r = s.get(f"{server.url}/missing")
    assert r.status_code == 404 and r.json()["error"]["request_id"] == r.headers["X-Request-ID"]
    assert s.get(f"{server.url}/scoring").status_code == 401
    r = s.get(f"{server.url}/scoring", headers={"X-API-Key": API_KEY})
    assert r.status_code == 200 and r.json()["n_examples"] == 400
    assert "metric-history-plot" in s.get(f"{server.url}/dashboard").text


def test_body_limits_over_http(server):
    big = b'{"records": [' + b" " * 1_100_000 + b"]}"
    r = requests.post(f"{server.url}/prediction", data=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413

    def chunks():   # no Content-Length: the limit must hold for a streamed body too
        yield b'{"records": ['
        for _ in range(200):
            yield b" " * 10_000
        yield b"]}"

    r = requests.post(f"{server.url}/prediction", data=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["status"] == 413


def test_metrics_add_up_over_workers(server):
    s = requests.Session()
    before = s.get(f"{server.url}/metrics").text
    pids = set()
    posted = 0
    for _ in range(300):   # new connections until both workers answered (gevent accepts greedily)
        assert requests.post(f"{server.url}/prediction", json={"records": [RECORD]}).status_code == 200
        posted += 1
        pids.add(requests.get(f"{server.url}/health").json()["pid"])
        if len(pids) == 2 and posted >= 30:
            break
    text = s.get(f"{server.url}/metrics").text

    def count(page: str) -> float:
        for line in page.splitlines():
            if line.startswith('mlops_api_requests_total{method="POST",route="/prediction",status="200"}'):
                return float(line.split()[-1])
        return 0.0

    assert count(text) - count(before) == posted
    assert 'mlops_api_model_info{task="tabular",version="attrition_model-v1"} 1.0' in text
    assert "mlops_api_request_duration_seconds_bucket" in text
    assert len(pids) == 2, "both workers should have answered"


def test_logs_written(server):
    requests.post(f"{server.url}/prediction", json={"records": [RECORD]}, headers={"X-Request-ID": "trace-me-123"})
    logs = server.state_dir / "logs" / "api"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        entries = read_json_lines(logs / "access.log")
        if any(e["request_id"] == "trace-me-123" for e in entries):
            break
        time.sleep(0.2)
    entry = next(e for e in entries if e["request_id"] == "trace-me-123")
    assert entry["route"] == "/prediction" and entry["status"] == 200 and entry["ms"] > 0
    assert entry["model_version"] == "attrition_model-v1"
    assert "API ready" in (logs / "api.log").read_text()
    deadline = time.monotonic() + 10
    while count_predictions(server.state_dir / "predictions.db") == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert count_predictions(server.state_dir / "predictions.db") > 0


def test_requests_in_flight_during_swaps_all_succeed(server):
    """Clients keep predicting while production flips between two versions: no failed request,
    and both workers move to each new version without a restart."""
    store = ModelStore(server.state_dir / "models" / "attrition_model")
    stop = threading.Event()
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def client() -> None:
        s = requests.Session()
        while not stop.is_set():
            try:
                r = s.post(f"{server.url}/prediction", json={"records": [RECORD]}, timeout=30)
                item = (r.status_code, r.json().get("model_version"))
            except requests.RequestException as exc:
                item = (-1, repr(exc))
            with lock:
                results.append(item)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for target in ["attrition_model-v2", "attrition_model-v1"] * 3:
            store.deploy(target)
            mark = len(results)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:   # both workers answer with the new version
                with lock:
                    recent = results[mark:]
                if sum(1 for _, v in recent if v == target) >= 8:
                    break
                time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failures = [r for r in results if r[0] != 200]
    assert not failures, failures[:5]
    assert {v for _, v in results} == {"attrition_model-v1", "attrition_model-v2"}
    # afterwards every worker serves v1 (the last deploy)
    pids = {}
    for _ in range(20):
        body = requests.get(f"{server.url}/health").json()
        pids[body["pid"]] = body["model_version"]
    assert set(pids.values()) == {"attrition_model-v1"}


def test_sigterm_stops_cleanly(tmp_path, template_state):
    state = tmp_path / "state"
    shutil.copytree(template_state, state, symlinks=True)
    live = LiveServer(state, workers=1, threads=2).wait_ready()
    requests.post(f"{live.url}/prediction", json={"records": [RECORD] * 7})
    os.killpg(live.proc.pid, signal.SIGTERM)
    assert live.proc.wait(60) == 0
    assert count_predictions(state / "predictions.db") == 7      # the worker wrote its log on exit
