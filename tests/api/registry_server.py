"""A real `mlflow server` process for the registry-served API tests: start, stop, restart.

Generic on purpose: the backend store is a parameter (a SQLite file by default; a
`postgresql+psycopg://...` URI works the same), artifacts are proxied by the server
(`--serve-artifacts --artifacts-destination <dir>`), so clients never see a local path.
The port is kept across restarts: replicas pointed at it must find it again. The process
itself is tests/fixtures/mlflow_server.py's (start, /health, stop of its process group).
"""
from __future__ import annotations

import time
from pathlib import Path

from tests.fixtures.mlflow_server import MlflowServer


class RegistryServer(MlflowServer):
    """Plain `mlflow server` (SQLite allowed, unlike the project's command) in ``root``:
    the store ``root/mlflow.db`` unless ``backend_uri`` is given, artifacts in ``root/artifacts``,
    the log in ``root/server.log``. One way to start a server in tests: tests/fixtures/mlflow_server.py."""

    def __init__(self, root: Path, backend_uri: str | None = None, port: int | None = None,
                 workers: int = 1) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        super().__init__(backend_uri or f"sqlite:///{self.root / 'mlflow.db'}", self.root / "artifacts",
                         self.root / "server.log", port=port, workers=workers, via_project=False,
                         env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, cwd=self.root)

    def restart(self, down_s: float = 0.0) -> "RegistryServer":
        """Stop, stay down ``down_s`` seconds, start again on the same port and store."""
        self.stop()
        time.sleep(down_s)
        self.start()
        return self


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
