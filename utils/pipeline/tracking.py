"""MLflow tracking helpers: absolute URIs, experiments with artifacts under the state dir (or on
the tracking server, which proxies them), a quick reachability check of a server."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from utils.pipeline.paths import StatePaths

log = logging.getLogger(__name__)


def default_tracking_uri(paths: StatePaths) -> str:
    """SQLite under the state dir; four slashes: an absolute path (see DESIGN.md)."""
    return f"sqlite:///{paths.mlflow_db}"


def absolute_tracking_uri(uri: str, base: Path) -> str:
    """Make a local tracking URI absolute: a relative one would resolve inside each step folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    if uri.startswith("file:") or "://" in uri:
        return uri
    return Path(base / uri).resolve().as_uri()


def is_tracking_server(uri: str) -> bool:
    """An MLflow tracking server (http/https): it stores and serves the artifacts itself."""
    return uri.split("://", 1)[0].lower() in ("http", "https")


def artifact_location(uri: str, paths: StatePaths) -> str | None:
    """Where a new experiment keeps its artifacts: ``<state_dir>/mlartifacts`` for a local store
    (SQLite, a database URI), None on a tracking server: the server's own (proxied) destination,
    so no machine's local path ends up in the shared tracking store."""
    return None if is_tracking_server(uri) else paths.artifacts_dir.as_uri()


class TrackingUnavailable(ConnectionError):
    """The tracking server (or database) cannot be used; the message is the one line to show:
    the URI (password masked) and the remedy."""


def check_tracking_store(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast, in one line, when the tracking store is down or refuses us: a server that does
    not answer /health (MLflow's client would retry for minutes first), a database server that
    is unreachable or rejects the password (MLflow would retry for ~100 s). SQLite: no check."""
    scheme = uri.split("://", 1)[0].lower()
    if is_tracking_server(uri):
        _check_server(uri, timeout_s)
    elif scheme.startswith(("postgresql", "mysql", "mssql")):
        from utils.pipeline.tracking_server import TrackingServerError, check_database

        try:
            check_database(uri, setting="main.tracking_uri")
        except TrackingServerError as exc:
            raise TrackingUnavailable(str(exc)) from None


def _check_server(uri: str, timeout_s: float) -> None:
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            if resp.status == 200:
                return
            reason = f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    from utils.pipeline.tracking_server import mask_uri

    raise TrackingUnavailable(
        f"tracking server {mask_uri(uri)} is unreachable ({reason}): start it (./run_pipeline.sh "
        "tracking-server on its host), or set main.tracking_uri to a reachable server "
        "(null: the SQLite DB in the state dir)")


EXPERIMENT_DESCRIPTION = (
    "Runs of the MLOps pipeline (main.py). Each pipeline run is a parent run named "
    "`<model> <time> [steps] <overrides>` with one child run per step (data_ingestion, "
    "model_training, model_scoring, model_deployment, diagnostics, reporting); the cron tick adds "
    "`drift-check` runs. Registered models: Models tab, alias `champion` = production.")
# MLflow 3 opens an experiment on its GenAI overview unless it knows it holds training runs
EXPERIMENT_TAGS = {"mlflow.note.content": EXPERIMENT_DESCRIPTION,
                   "mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(name: str, paths: StatePaths) -> str:
    """Experiment id for ``name``, created with its artifacts under ``<state_dir>/mlartifacts``
    (on a tracking server: the server's artifact store), a description and the "training runs"
    kind (tags missing on an older experiment are added)."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        missing = {k: v for k, v in EXPERIMENT_TAGS.items() if k not in experiment.tags}
        for key, value in missing.items():
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    location = artifact_location(mlflow.get_tracking_uri(), paths)
    if location is not None:
        paths.artifacts_dir.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except Exception:  # created concurrently by another process
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def log_json_artifact(data: Any, filename: str, artifact_path: str | None = None) -> None:
    """Log a JSON document as a run artifact."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / filename
        target.write_text(json.dumps(data, indent=2, default=str))
        mlflow.log_artifact(str(target), artifact_path=artifact_path)


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Flatten nested dicts to dotted keys for mlflow.log_params."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), sub))
        return out
    return {prefix: value}


def copy_dataset_inputs(source_run_id: str, target_run_id: str) -> int:
    """Show a step's logged datasets on the pipeline (parent) run too; returns how many."""
    import mlflow

    client = mlflow.MlflowClient()
    inputs = client.get_run(source_run_id).inputs
    datasets = list(inputs.dataset_inputs) if inputs else []
    if datasets:
        client.log_inputs(target_run_id, datasets=datasets)
    return len(datasets)
