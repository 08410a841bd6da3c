"""api.model_source=registry against a real `mlflow server`: the mirror follows the alias,
downloads each version once, keeps serving when the server is gone; the champion lock and
the gate's compare-and-set hold between two real processes.

One server for the module (its start is the slow part); each test uses its own model name.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.api.conftest import API_KEY, FEATURES, RECORD, free_port
from tests.api.registry_server import RegistryServer, register_version, set_champion
from utils.models.registry_gate import RegistryLockTimeout, champion_lock, gate_and_move, read_champion
from utils.models.registry_mirror import RegistryMirror

WORKER = Path(__file__).with_name("gate_race_worker.py")
ROW = {k: RECORD[k] for k in FEATURES}     # the models here carry no task config: no id column


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def versions(server, model_dirs):
    """``mirror_model`` v1 (C=1, score 0.6) and v2 (C=1e-4, score 0.7) on the server, champion v1."""
    v1 = register_version(server.url, "mirror_model", model_dirs["v1"], 0.6)
    v2 = register_version(server.url, "mirror_model", model_dirs["v2"], 0.7)
    set_champion(server.url, "mirror_model", v1)
    return v1, v2


def test_mirror_follows_the_alias_and_downloads_each_version_once(server, versions, tmp_path):
    v1, v2 = versions
    mirror = RegistryMirror(tmp_path / "cache", server.url)
    assert mirror.poll_once() == {"mirror_model": f"mirror_model-v{v1}"}
    store = mirror.store("mirror_model")
    assert store.production_version() == f"mirror_model-v{v1}"
    assert store.read_score(f"mirror_model-v{v1}") == pytest.approx(0.6)
    assert store.read_metadata(f"mirror_model-v{v1}")["task"] == "tabular"
    assert mirror.names() == ["mirror_model"]
    first = (store.model_dir(f"mirror_model-v{v1}") / "MLmodel").stat().st_ino

    set_champion(server.url, "mirror_model", v2)            # a deploy elsewhere
    assert mirror.poll_once()["mirror_model"] == f"mirror_model-v{v2}"
    assert store.production_version() == f"mirror_model-v{v2}"
    set_champion(server.url, "mirror_model", v1)            # a rollback elsewhere
    try:
        again = RegistryMirror(tmp_path / "cache", server.url)     # an API restart: same cache
        assert again.poll_once()["mirror_model"] == f"mirror_model-v{v1}"
    finally:
        set_champion(server.url, "mirror_model", v1)
    assert (store.model_dir(f"mirror_model-v{v1}") / "MLmodel").stat().st_ino == first, "downloaded again"
    assert [e["version"] for e in store.history()] == [f"mirror_model-v{n}" for n in (v1, v2, v1)]
    assert not list(store.versions_dir.glob(".staging-*")) and not list(store.root.glob(".download-*"))


def test_mirror_keeps_its_last_good_models_when_the_server_is_unreachable(server, versions, tmp_path):
    v1, _ = versions
    RegistryMirror(tmp_path / "cache", server.url).poll_once()
    dead = f"http://127.0.0.1:{free_port()}"
    mirror = RegistryMirror(tmp_path / "cache", dead, timeout_s=1)
    mirror.poll_and_record()
    status = mirror.shared_status()
    assert status["state"] == "unreachable" and dead in status["error"]
    assert mirror.names() == ["mirror_model"]
    assert mirror.store("mirror_model").production_version() == f"mirror_model-v{v1}"


def test_a_registered_model_without_a_champion_is_not_served(server, model_dirs, tmp_path):
    register_version(server.url, "no_champion_model", model_dirs["v1"], 0.5)
    mirror = RegistryMirror(tmp_path / "cache", server.url)
    assert "no_champion_model" not in mirror.poll_once()
    only = RegistryMirror(tmp_path / "only", server.url, models=["no_champion_model"])
    assert only.poll_once() == {} and only.names() == []


def test_registry_served_app_swaps_without_a_failed_request_and_degrades(server, model_dirs, make_app, tmp_path):
    name = "app_model"
    v1 = register_version(server.url, name, model_dirs["v1"], 0.6)
    v2 = register_version(server.url, name, model_dirs["v2"], 0.7)
    set_champion(server.url, name, v1)
    overrides = ["api.model_source=registry", f"main.tracking_uri={server.url}", "api.registry_poll_s=0.2",
                 f"api.registry_cache_dir={tmp_path / 'cache'}", "api.prediction_log=false"]
    app = make_app(tmp_path / "state", *overrides)
    client = app.test_client()
    r = client.post(f"/models/{name}/prediction", json={"records": [ROW]})
    assert r.status_code == 200 and r.json["model_version"] == f"{name}-v{v1}"
    health = client.get("/health").json
    assert health["status"] == "ok" and health["registry"]["state"] == "ok"
    assert health["registry"]["uri"] == server.url

    set_champion(server.url, name, v2)
    seen, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        r = client.post(f"/models/{name}/prediction", json={"records": [ROW]})
        seen.append((r.status_code, r.json.get("model_version")))
        if seen[-1][1] == f"{name}-v{v2}":
            break
        # a client's pace, not a busy loop: back-to-back in-process requests hold the GIL so
        # tightly that the poller thread's download (many short I/O waits) took 11 s instead
        # of 0.1 s, and over 30 s on a loaded machine
        time.sleep(0.01)
    assert seen[-1] == (200, f"{name}-v{v2}") and all(code == 200 for code, _ in seen)
    time.sleep(1.0)
    assert client.get("/health").json["status"] == "ok"          # the poller keeps polling

    r = client.post(f"/admin/models/{name}/rollback", headers={"X-API-Key": API_KEY})
    assert r.status_code == 409 and "model_source=registry" in r.json["error"]["message"]

    app.extensions["mlops"].mirror.stop()       # this replica goes; it restarts while the server is down
    dead = f"http://127.0.0.1:{free_port()}"
    down = make_app(tmp_path / "state", *overrides, f"main.tracking_uri={dead}", "api.registry_timeout_s=1")
    client = down.test_client()
    r = client.post(f"/models/{name}/prediction", json={"records": [ROW]})
    assert r.status_code == 200 and r.json["model_version"] == f"{name}-v{v2}"
    health = client.get("/health").json
    assert health["status"] == "degraded" and health["registry"]["state"] == "unreachable"
    assert any(dead in p for p in health["problems"])


def test_gate_aborts_when_the_champion_moves_outside_the_lock(server, model_dirs):
    """Compare-and-set: a writer that ignores the lock moves the alias while the gate decides;
    the gate notices on its re-read and leaves the alias where that writer put it."""
    name = "cas_model"
    v0 = register_version(server.url, name, model_dirs["v1"], 0.5)
    other = register_version(server.url, name, model_dirs["v1"], 0.9)
    candidate = register_version(server.url, name, model_dirs["v2"], 0.7)
    set_champion(server.url, name, v0)
    client = mlflow.MlflowClient(server.url)

    def slow_rule(score, champion_score):
        set_champion(server.url, name, other)          # e.g. someone in the MLflow UI
        return score >= champion_score, "better"

    result = gate_and_move(client, name, candidate, 0.7, slow_rule)
    assert not result.deployed and "moved" in result.reason and result.champion.number == v0
    assert read_champion(client, name).number == other
    assert gate_and_move(client, name, candidate, 0.7, lambda s, c: (s >= c, "rule")).reason == "rule"
    assert read_champion(client, name).number == other            # 0.7 < 0.9: rejected, under the lock


def test_champion_lock_waits_times_out_and_breaks_a_stale_holder(server):
    client = mlflow.MlflowClient(server.url)
    with champion_lock(client, "held_model"):
        with pytest.raises(RegistryLockTimeout, match="held_model.champion-lock"):
            with champion_lock(client, "held_model", wait_s=0.5):
                pass
    client.create_registered_model("dead_model.champion-lock")      # a holder that died
    started = time.monotonic()
    with champion_lock(client, "dead_model", stale_s=1.0, wait_s=30):
        assert time.monotonic() - started >= 1.0
    assert not client.search_registered_models(filter_string="name LIKE '%champion-lock'")


@pytest.mark.slow
def test_champion_lock_is_exclusive_between_processes(server, tmp_path):
    """Two processes take the lock 5 times each and hold it 0.1 s: no two holds overlap."""
    script = (
        "import json, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "import mlflow\n"
        "from utils.models.registry_gate import champion_lock\n"
        "client = mlflow.MlflowClient(sys.argv[1])\n"
        "client.search_registered_models(max_results=1)\n"
        "go = sys.argv[2]\n"
        "open(go + '.ready-' + sys.argv[3], 'w').close()\n"
        "import os\n"
        "while not os.path.exists(go): time.sleep(0.002)\n"
        "spans = []\n"
        "for _ in range(5):\n"
        "    with champion_lock(client, 'lock_model', wait_s=60, poll_s=0.02):\n"
        "        start = time.time(); time.sleep(0.1); spans.append((start, time.time()))\n"
        "print(json.dumps(spans))\n")
    spans = _race(tmp_path / "go", [[sys.executable, "-c", script, server.url, str(tmp_path / "go"), str(i)]
                             for i in (1, 2)])
    holds = sorted(s for side in spans for s in side)
    assert len(holds) == 10
    assert all(a[1] <= b[0] for a, b in zip(holds, holds[1:])), f"overlapping holds: {holds}"


@pytest.mark.slow
def test_two_gates_at_once_cannot_leave_the_worse_champion(server, model_dirs, tmp_path):
    """Champion v0 (0.5); candidates A (0.7) and B (0.6) gate at the same moment, B deciding
    slower. The naive gate (no lock, no re-read) lets B overwrite A; the project's gate never does."""
    for mode, name in (("naive", "race_naive"), ("locked", "race_locked")):
        v0 = register_version(server.url, name, model_dirs["v1"], 0.5)
        a = register_version(server.url, name, model_dirs["v2"], 0.7)
        b = register_version(server.url, name, model_dirs["v1"], 0.6)
        set_champion(server.url, name, v0)
        go = tmp_path / f"go-{mode}"
        results = _race(go, [
            [sys.executable, str(WORKER), server.url, name, str(a), "0.7", "0.2", str(go), mode],
            [sys.executable, str(WORKER), server.url, name, str(b), "0.6", "1.0", str(go), mode]])
        final = read_champion(mlflow.MlflowClient(server.url), name).number
        if mode == "naive":
            assert final == b, f"the control should show the race (both read v0): {results}"
        else:
            assert final == a, f"the better candidate must end as champion: {results}"
            by = {r["number"]: r for r in results}
            # B either lost against A, or won against v0 before A (then A replaced it)
            assert (not by[b]["deployed"] and by[b]["against"] == a) or (by[b]["against"] == v0
                                                                        and by[a]["against"] == b)


def _race(go: Path, commands: list[list[str]], timeout_s: float = 240) -> list:
    """Start the processes, wait until each says it is ready (``go.ready-*``), then create ``go``."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    try:
        deadline = time.monotonic() + timeout_s
        while len(list(go.parent.glob(f"{go.name}.ready-*"))) < len(procs):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise AssertionError("a race process did not get ready: "
                                     + " | ".join((p.communicate(timeout=30)[1] or "")[-1500:] for p in procs))
            time.sleep(0.05)
        go.touch()
        outs = [p.communicate(timeout=timeout_s) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def test_registry_source_needs_a_tracking_server_and_valid_settings(tmp_path):
    from api.settings import ApiConfigError, load_app_config

    config = load_app_config(overrides=[f"paths.state_dir={tmp_path}", "api.model_source=registry"])
    with pytest.raises(ApiConfigError, match="needs main.tracking_uri=http"):
        config.registry_uri()
    with pytest.raises(ApiConfigError, match="api.model_source=replica"):
        load_app_config(overrides=[f"paths.state_dir={tmp_path}", "api.model_source=replica"])
    with pytest.raises(ApiConfigError, match="api.registry_poll_s=0"):
        load_app_config(overrides=[f"paths.state_dir={tmp_path}", "api.registry_poll_s=0"])
    assert load_app_config(overrides=[f"paths.state_dir={tmp_path}"]).registry_cache == tmp_path / "registry_cache"


def test_safe_uri_strips_credentials():
    from utils.models.registry_mirror import safe_uri

    assert safe_uri("https://bob:s3cret@mlflow.internal:5000/x") == "https://mlflow.internal:5000/x"
    assert safe_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
