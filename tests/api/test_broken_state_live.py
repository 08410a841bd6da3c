"""Broken state files against the real server (serve.py -> gunicorn), not only the Flask app.

Issue 12: an unreadable metadata.json in the production version made a running API answer 500
to everything (/health too) and a fresh server fail to boot ("Worker failed to boot"); one bad
scores.json took /dashboard down.
"""
from __future__ import annotations

import shutil
import time

import pytest
import requests

from tests.api.conftest import RECORD, LiveServer
from utils.models.model_store import ModelStore


def wait_status(url: str, status: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/health", timeout=10).json()
        if body.get("status") == status:
            return body
        time.sleep(0.5)
    raise AssertionError(f"/health never said {status!r}: {body}")


def wait_answering(server: LiveServer, timeout_s: float = 180.0) -> requests.Response:
    """The first /health answer of any status: the server booted (or the test fails saying why)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"serve.py exited {server.proc.returncode}:\n{server.log.read_text()[-4000:]}")
        try:
            return requests.get(f"{server.url}/health", timeout=5)
        except requests.RequestException:
            time.sleep(0.5)
    raise AssertionError(f"no answer in {timeout_s} s:\n{server.log.read_text()[-4000:]}")


@pytest.mark.timeout(600)
def test_broken_metadata_and_scores_with_a_live_server(tmp_path, template_state):
    state = tmp_path / "state"
    shutil.copytree(template_state, state, symlinks=True)
    store = ModelStore(state / "models" / "attrition_model")
    running = LiveServer(state, workers=1).wait_ready()
    try:
        # the running server: a broken version deployed under it keeps the last good model
        (store.version_dir("attrition_model-v2") / "metadata.json").write_text("{not json")
        store.deploy("attrition_model-v2")
        health = wait_status(running.url, "degraded")
        assert "metadata.json" in " ".join(health["problems"])
        r = requests.post(f"{running.url}/prediction", json={"records": [RECORD]}, timeout=30)
        assert r.status_code == 200 and r.json()["model_version"] == "attrition_model-v1"
    finally:
        running.stop()

    # a fresh server on the same state: nothing loadable is deployed; it boots and says why
    (store.version_dir("attrition_model-v1") / "scores.json").write_text("{broken")
    fresh = LiveServer(state, workers=1)
    try:
        health = wait_answering(fresh)
        assert health.status_code == 503 and "metadata.json" in health.text, health.text
        r = requests.post(f"{fresh.url}/prediction", json={"records": [RECORD]}, timeout=30)
        assert r.status_code == 503 and "metadata.json" in r.json()["error"]["message"]
        page = requests.get(f"{fresh.url}/dashboard", timeout=30)
        assert page.status_code == 200 and "attrition_model-v1" in page.text and "unreadable" in page.text
    finally:
        fresh.stop()
