"""Fixtures for the API tests: a model store with real (small) models, apps, a live gunicorn.

Most tests use a store built directly (a scikit-learn pipeline trained on the embedded data,
saved as an MLflow model, added and deployed with ModelStore): a second, not a pipeline run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EMBEDDED_TABULAR, EMBEDDED_TABULAR_DIR, REPO_ROOT

API_DIR = REPO_ROOT / "04_deployment"
if str(API_DIR) not in sys.path:
    sys.path.insert(0, str(API_DIR))

from utils.models.catalog import write_manifest  # noqa: E402
from utils.models.model_store import ModelStore  # noqa: E402
from utils.pipeline.paths import StatePaths  # noqa: E402
from tests.fixtures.processes import free_port

API_KEY = "test-key-0123456789abcdef0123456789"
FEATURES = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]
TEST_CSV = REPO_ROOT / "01_data/testdata/tabular/testdata.csv"
RECORD = {"corporation": "abcd1234", "lastmonth_activity": 10, "lastyear_activity": 100,
          "number_of_employees": 5}


def train_tabular_model(target: Path, C: float = 1.0) -> Path:
    """Scaler + logistic regression on the embedded data, saved as an MLflow sklearn model."""
    import mlflow.sklearn
    import pandas as pd
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.concat([pd.read_csv(EMBEDDED_TABULAR_DIR / name) for name in EMBEDDED_TABULAR])
    x, y = frame[FEATURES].astype(float), frame["exited"].astype(int)
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=C, max_iter=1000))]).fit(x, y)
    mlflow.sklearn.save_model(model, str(target), signature=infer_signature(x, model.predict(x)),
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
    return target


def add_version(store: ModelStore, version: str, model_dir: Path, task: str = "tabular",
                score: float = 0.5, metric: str = "f1") -> None:
    name, number = version.rsplit("-v", 1)
    store.add_version(version, model_dir, {"model_name": name, "registry_version": int(number), "task": task})
    store.write_score(version, {metric: score, "accuracy": min(1.0, score + 0.1)}, metric)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tabular models (C=1 and C=1e-4: different answers) and the fake NLU model, saved once per session."""
    import mlflow.pyfunc

    root = tmp_path_factory.mktemp("models")
    nlu = root / "nlu"
    mlflow.pyfunc.save_model(str(nlu), python_model=str(Path(__file__).with_name("fake_nlu_model.py")),
                             pip_requirements=["mlflow"])
    return {"v1": train_tabular_model(root / "v1", C=1.0), "v2": train_tabular_model(root / "v2", C=1e-4),
            "nlu": nlu}


@pytest.fixture(scope="session")
def template_state(tmp_path_factory: pytest.TempPathFactory, model_dirs: dict[str, Path]) -> Path:
    """A state dir: attrition_model-v1 (deployed) and -v2 (not deployed), built once."""
    state = tmp_path_factory.mktemp("template") / "state"
    store = ModelStore(state / "models" / "attrition_model")
    add_version(store, "attrition_model-v1", model_dirs["v1"], score=0.53)
    add_version(store, "attrition_model-v2", model_dirs["v2"], score=0.55)
    store.deploy("attrition_model-v1", reason="test")
    return state


@pytest.fixture
def state(tmp_path: Path, template_state: Path) -> Path:
    """A private copy of the template state dir (tests deploy and roll back freely)."""
    target = tmp_path / "state"
    shutil.copytree(template_state, target, symlinks=True)
    return target


NLU_TEST = [{"text": "hello Anna", "intent": "greet", "tags": ["O", "B-name"]},
            {"text": "status of order", "intent": "status", "tags": ["O", "O", "O"]}]


@pytest.fixture
def two_models(state, model_dirs, tmp_path):
    """state (attrition_model) + nlu_query_model deployed; manifests as main.py writes them."""
    nlu_store = ModelStore(state / "models" / "nlu_query_model")
    add_version(nlu_store, "nlu_query_model-v1", model_dirs["nlu"], task="nlu", score=0.8, metric="exact_match")
    nlu_store.deploy("nlu_query_model-v1")
    nlu_test = tmp_path / "nlu_test.jsonl"
    nlu_test.write_text("".join(json.dumps(x) + "\n" for x in NLU_TEST))
    paths = StatePaths.of(state)
    write_manifest(paths, "attrition_model", {"task": "tabular", "primary_metric": "f1", "overrides": [],
                                              "test_path": str(TEST_CSV), "schedule": {"retrain_every": "7d"}})
    write_manifest(paths, "nlu_query_model", {
        "task": "nlu", "primary_metric": "exact_match", "overrides": ["task=nlu"], "test_path": str(nlu_test),
        "task_config": {"name": "nlu", "model_name": "nlu_query_model", "primary_metric": "exact_match"}})
    return state


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """create_app for a state dir (+ overrides), with the test API key unless key=None."""
    from api.app import create_app

    apps = []

    def make(state_dir: Path, *overrides: str, key: str | None = API_KEY) -> Any:
        if key:
            monkeypatch.setenv("API_KEY", key)
        else:
            monkeypatch.delenv("API_KEY", raising=False)
        app = create_app(overrides=[f"paths.state_dir={state_dir}", f"data.test_path={TEST_CSV}", *overrides])
        app.testing = False    # exercise the real error handlers
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["mlops"].close()


@pytest.fixture
def app(make_app: Callable[..., Any], state: Path) -> Any:
    return make_app(state)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def auth() -> dict[str, str]:
    return {"X-API-Key": API_KEY}


# ---- a real server -------------------------------------------------------------------------
class LiveServer:
    """`04_deployment/serve.py` (gunicorn) on a free 127.0.0.1 port, as an operator starts it."""

    def __init__(self, state_dir: Path, *overrides: str, workers: int = 2, threads: int = 2) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state_dir / "serve-test.log"
        cmd = [sys.executable, str(API_DIR / "serve.py"), f"paths.state_dir={state_dir}",
               f"data.test_path={TEST_CSV}", f"api.port={self.port}", f"api.workers={workers}",
               f"api.threads={threads}", *overrides]
        self.proc = subprocess.Popen(cmd, cwd=str(state_dir), start_new_session=True,
                                     env={**os.environ, "API_KEY": API_KEY},
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 180.0) -> "LiveServer":
        import requests

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve.py exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"server not ready in {timeout_s} s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def live_server(state: Path) -> Iterator[LiveServer]:
    server = LiveServer(state).wait_ready()
    yield server
    server.stop()


def run_probe(script: str, *args: str, timeout: int = 300) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter (``sys.argv[1:]`` = ``args``); the JSON object on
    its last line of output. For what needs its own process, e.g. a gevent monkey-patch."""
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
