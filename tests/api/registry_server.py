"""A real `mlflow server` process for the registry-served API tests: start, stop, restart.

Generic on purpose: the backend store is a parameter (a SQLite file by default; a
`postgresql+psycopg://...` URI works the same), artifacts are proxied by the server
(`--serve-artifacts --artifacts-destination <dir>`), so clients never see a local path.
The port is kept across restarts: replicas pointed at it must find it again.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryServer:
    """`mlflow server` on 127.0.0.1:<free port> with proxied artifacts."""

    def __init__(self, root: Path, backend_uri: str | None = None, port: int | None = None,
                 workers: int = 1) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.backend_uri = backend_uri or f"sqlite:///{self.root / 'mlflow.db'}"
        self.artifacts = self.root / "artifacts"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> "RegistryServer":
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", self.backend_uri, "--serve-artifacts",
               "--artifacts-destination", str(self.artifacts), "--workers", str(self.workers)]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(cmd, cwd=str(self.root), start_new_session=True, env=env,
                                     stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server not ready on {self.url} in {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> "RegistryServer":
        """Stop, stay down ``down_s`` seconds, start again on the same port and store."""
        self.stop()
        time.sleep(down_s)
        return self.start()

    def __enter__(self) -> "RegistryServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def register_version(uri: str, name: str, model_dir: Path, score: float | None = None, metric: str = "f1",
                     task: str = "tabular") -> int:
    """Log a saved sklearn model to the server as a new version of ``name`` (as training does:
    the store metadata beside the run) and record its score (as scoring does); its number."""
    import mlflow
    import mlflow.sklearn

    from utils.models.registry_gate import REGISTRY_METADATA_ARTIFACT, record_score

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        # not mlflow.set_experiment: it exports MLFLOW_EXPERIMENT_ID to this process's children
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name("registry-tests")
        experiment_id = (experiment.experiment_id if experiment is not None
                         else client.create_experiment("registry-tests"))
        with mlflow.start_run(experiment_id=experiment_id):
            import sklearn

            from mlflow.models import Model

            info = mlflow.sklearn.log_model(mlflow.sklearn.load_model(str(model_dir)), name="model",
                                            registered_model_name=name, signature=Model.load(str(model_dir)).signature,
                                            pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
            number = int(info.registered_model_version)
            mlflow.log_dict({"model_name": name, "registry_version": number, "task": task},
                            REGISTRY_METADATA_ARTIFACT)
        if score is not None:
            record_score(mlflow.MlflowClient(uri), name, number, score, metric, "higher")
        return number
    finally:
        mlflow.set_tracking_uri(previous)


def set_champion(uri: str, name: str, number: int) -> None:
    import mlflow

    mlflow.MlflowClient(uri).set_registered_model_alias(name, "champion", str(number))
