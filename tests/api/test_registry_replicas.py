"""Team scale, end to end: one `mlflow server`, chains on "hosts" with their own state dirs,
two API replicas in registry mode under gunicorn on two more state dirs.

A weak model is deployed first; the replicas start on it. Requests go to both replicas the
whole time. A chain on host C deploys a better model, the replicas follow; the tracking
server restarts (the replicas keep serving); a rollback from host C, the replicas follow;
then two chains on hosts D and E finish at once and the gate leaves the better one champion.
No request may fail.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import mlflow
import pytest
import requests

from tests.api.conftest import RECORD, LiveServer
from tests.api.registry_server import RegistryServer
from tests.conftest import PYTHON, REPO_ROOT, run_main
from utils.models.model_store import ModelStore
from utils.models.registry_gate import read_champion

pytestmark = pytest.mark.slow

MODEL = "attrition_model"
CHAIN = ("main.steps='data_ingestion,model_training,model_scoring,model_deployment'", "main.reuse_runs=false")
WEAK = "training.C=0.00001"          # a worse model on the same data (the gate must see it)


class Traffic:
    """Clients posting to each replica without pause; every answer recorded with its time."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.records: dict[str, list[tuple[float, int, str | None]]] = {u: [] for u in urls}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(u,), daemon=True) for u in urls]

    def _run(self, url: str) -> None:
        s = requests.Session()
        while not self._stop.is_set():
            try:
                r = s.post(f"{url}/models/{MODEL}/prediction", json={"records": [RECORD]}, timeout=30)
                item = (time.time(), r.status_code, r.json().get("model_version"))
            except (requests.RequestException, ValueError) as exc:
                item = (time.time(), -1, repr(exc)[:200])
            self.records[url].append(item)
            time.sleep(0.01)

    def start(self) -> "Traffic":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def failures(self) -> list[tuple[str, tuple]]:
        return [(u, r) for u, recs in self.records.items() for r in recs if r[1] != 200]

    def switched_at(self, url: str, version: str, after: float) -> float | None:
        """When ``url`` served ``version`` from then on (None: not yet)."""
        recs = [r for r in self.records[url] if r[0] >= after]
        for i, r in enumerate(recs):
            if r[2] == version and all(x[2] == version for x in recs[i:]):
                return r[0]
        return None

    def wait_switched(self, version: str, after: float, timeout_s: float = 120) -> list[float]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            times = [self.switched_at(u, version, after) for u in self.urls]
            if all(times) and all(self.records[u][-1][2] == version for u in self.urls):
                time.sleep(1.0)     # still on it a second later: it stays
                return [self.switched_at(u, version, after) for u in self.urls]
            time.sleep(0.1)
        raise AssertionError(f"replicas did not all switch to {version}: "
                             f"{ {u: self.records[u][-3:] for u in self.urls} }")


def wait_alias(client: mlflow.MlflowClient, number: int, timeout_s: float = 600) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if read_champion(client, MODEL).number == number:
            return time.time()
        time.sleep(0.05)
    raise AssertionError(f"{MODEL}@champion never became v{number}")


def wait_health(replicas: list[LiveServer], status: str, timeout_s: float) -> list[dict]:
    """Every replica's /health once all say ``status``, or the last answers at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = [requests.get(f"{r.url}/health").json() for r in replicas]
        if all(s["status"] == status for s in states) or time.monotonic() >= deadline:
            return states
        time.sleep(0.5)


def chain(host: Path, server: RegistryServer, *extra: str):
    return run_main(*CHAIN, f"main.tracking_uri={server.url}", *extra, state_dir=host, timeout=900)


@pytest.mark.timeout(2700)       # five chains on a busy 2-core machine: ~15 min
def test_replicas_follow_deploys_rollbacks_and_survive_a_server_restart(tmp_path):
    import subprocess

    server = RegistryServer(tmp_path / "tracking").start()
    replicas: list[LiveServer] = []
    traffic = None
    try:
        client = mlflow.MlflowClient(server.url)
        chain(tmp_path / "host_c", server, WEAK)                   # v1: the weak first champion
        v1 = read_champion(client, MODEL)
        assert v1.number == 1 and v1.score is not None
        for name in ("replica_1", "replica_2"):
            state = tmp_path / name
            state.mkdir()
            replicas.append(LiveServer(state, "api.model_source=registry", f"main.tracking_uri={server.url}",
                                       "api.registry_poll_s=1", "api.registry_timeout_s=2",
                                       "api.prediction_log=false", workers=2).wait_ready())
        for r in replicas:
            health = requests.get(f"{r.url}/health").json()
            assert health["status"] == "ok" and health["models"][MODEL]["loaded"] == f"{MODEL}-v1"
        traffic = Traffic([r.url for r in replicas]).start()

        # a better model from host C: the gate deploys it, both replicas follow
        watcher = threading.Thread(target=lambda: moved.append(wait_alias(client, 2)), daemon=True)
        moved: list[float] = []
        watcher.start()
        chain(tmp_path / "host_c", server)
        watcher.join(60)
        assert read_champion(client, MODEL).score > v1.score
        switched = traffic.wait_switched(f"{MODEL}-v2", moved[0])
        deploy_switch_s = max(switched) - moved[0]

        # the tracking server goes away and comes back: replicas keep serving, degraded meanwhile
        server.stop()
        states = wait_health(replicas, "degraded", 30)
        assert all(s["status"] == "degraded" and server.url in " ".join(s["problems"]) for s in states), states
        server.start()
        states = wait_health(replicas, "ok", 60)
        assert all(s["status"] == "ok" for s in states), states

        # rollback from host C (the operator CLI), both replicas follow
        before = time.time()
        moved.clear()
        watcher = threading.Thread(target=lambda: moved.append(wait_alias(client, 1)), daemon=True)
        watcher.start()
        proc = subprocess.run([PYTHON, str(REPO_ROOT / "04_deployment/deployment.py"), "--rollback",
                               "--state-dir", str(tmp_path / "host_c"), "--tracking-uri", server.url],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        watcher.join(60)
        rolled = moved[0]
        assert rolled >= before
        switched = traffic.wait_switched(f"{MODEL}-v1", rolled)
        rollback_switch_s = max(switched) - rolled

        # two chains finish at once on hosts D (weak) and E (strong): the better one ends champion
        results: dict[str, object] = {}

        def run(host: str, *extra: str) -> None:
            results[host] = chain(tmp_path / host, server, *extra)

        runs = [threading.Thread(target=run, args=("host_d", WEAK)), threading.Thread(target=run, args=("host_e",))]
        for t in runs:
            t.start()
        for t in runs:
            t.join(1200)
        assert set(results) == {"host_d", "host_e"}
        versions = {v.version: v for v in client.search_model_versions(f"name='{MODEL}'")}
        scores = {int(n): float(v.tags["pipeline.score"]) for n, v in versions.items()}
        final = read_champion(client, MODEL)
        strong = ModelStore(tmp_path / "host_e" / "models" / MODEL).latest_version(MODEL)
        assert final.score == max(scores.values()), (final, scores)
        assert final.store_version(MODEL) == strong, (final, scores)   # never D's weak one
        traffic.stop()
        failures = traffic.failures()
        total = sum(len(v) for v in traffic.records.values())
        print(f"\nregistry replicas: deploy switch-over {deploy_switch_s:.2f} s, rollback switch-over "
              f"{rollback_switch_s:.2f} s (api.registry_poll_s=1), {total} requests, {len(failures)} failed")
        assert not failures, failures[:5]
        assert total > 100
    finally:
        if traffic is not None:
            traffic.stop()
        for r in replicas:
            r.stop()
        server.stop()
