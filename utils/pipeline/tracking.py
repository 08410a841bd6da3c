"""MLflow tracking helpers: absolute URIs, experiments with artifacts under the state dir."""
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


def ensure_experiment(name: str, paths: StatePaths) -> str:
    """Experiment id for ``name``, created with its artifacts under ``<state_dir>/mlartifacts``."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    paths.artifacts_dir.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow.create_experiment(name, artifact_location=paths.artifacts_dir.as_uri())
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
