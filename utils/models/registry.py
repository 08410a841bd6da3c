"""The MLflow registry alias that follows `models/production` (deploy, rollback).

The model store is the source of truth for what is served; the alias `champion` mirrors it
so that `models:/<name>@champion` in MLflow means the same model. Shared by the deployment
step's CLI and the API's /admin/rollback.
"""
from __future__ import annotations

from pathlib import Path

from utils.models.model_store import parse_version_id
from utils.models.registry_gate import CHAMPION_ALIAS, champion_lock
from utils.pipeline.paths import REPO_ROOT, StatePaths

__all__ = ["CHAMPION_ALIAS", "move_champion_alias", "set_champion_alias", "tracking_uri_for"]


def tracking_uri_for(state_dir: str | Path, configured: str | None = None) -> str:
    """`main.tracking_uri` made absolute (relative to the repo root, as main.py does), or the
    default SQLite DB under the state dir."""
    from utils.pipeline.tracking import absolute_tracking_uri, default_tracking_uri

    if configured:
        return absolute_tracking_uri(configured, REPO_ROOT)
    return default_tracking_uri(StatePaths.of(state_dir))


def set_champion_alias(version: str, tracking_uri: str | None = None) -> None:
    """Point `<model>@champion` at the registry version of store ``version`` (``<model>-v<N>``),
    under the champion lock (registry_gate.py) so a rollback never interleaves with a gate."""
    import mlflow

    name, number = parse_version_id(version)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri) if tracking_uri else mlflow.MlflowClient()
    with champion_lock(client, name, purpose="alias"):
        client.set_registered_model_alias(name, CHAMPION_ALIAS, str(number))


def move_champion_alias(version: str, tracking_uri: str | None) -> dict[str, object]:
    """Move `<model>@champion` to ``version``; the store stays the source of truth if it fails."""
    import logging

    if tracking_uri and tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        if not db.is_file():    # do not create an empty tracking DB just to fail on it
            return {"alias": CHAMPION_ALIAS, "moved": False, "error": f"no tracking database at {db.name}"}
    try:
        if tracking_uri:   # a server that is down: fail now, not after minutes of client retries
            from utils.pipeline.tracking import check_tracking_store

            check_tracking_store(tracking_uri, timeout_s=5.0)
        set_champion_alias(version, tracking_uri)
    except Exception as exc:  # noqa: BLE001
        logging.getLogger("registry").warning("production is %s, but the registry alias was not moved: %s",
                                              version, exc)
        return {"alias": CHAMPION_ALIAS, "moved": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"alias": CHAMPION_ALIAS, "moved": True}
