"""Admin routes (API key): reload, rollback, retrain, job status.

They act on the same model store and registry alias as the CLI
(`04_deployment/deployment.py --rollback`) and the pipeline, so the three never disagree.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, g, url_for

from api.auth import require_api_key
from api.errors import ApiError
from api.jobs import JobConflict, log_tail, retrain_command, start_job
from api.routes import services
from utils.models.model_store import ModelStoreError

bp = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger("api.admin")


@bp.post("/reload")
@require_api_key
def reload() -> Any:
    """Load `models/production` again in this worker now (the others follow the link by themselves)."""
    svc = services()
    before = svc.models.current()
    model = svc.models.reload(force=True)
    if model is None:
        raise ApiError(503, f"nothing to load: {svc.models.last_error}")
    return {"model_version": model.version, "previous": before.version if before else None,
            "error": svc.models.last_error}


def _move_alias(version: str) -> dict[str, Any]:
    """Move `<model>@champion` to ``version``; the store stays the source of truth if it fails."""
    from utils.models.registry import CHAMPION_ALIAS, set_champion_alias, tracking_uri_for

    svc = services()
    uri = tracking_uri_for(svc.config.paths.state_dir, svc.config.tracking_uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():    # do not create an empty tracking DB just to fail on it
            return {"alias": CHAMPION_ALIAS, "moved": False, "error": f"no tracking database at {db.name}"}
    try:
        set_champion_alias(version, uri)
    except Exception as exc:
        log.warning("rolled back to %s, but the registry alias was not moved: %s", version, exc)
        return {"alias": CHAMPION_ALIAS, "moved": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"alias": CHAMPION_ALIAS, "moved": True}


@bp.post("/rollback")
@require_api_key
def rollback() -> Any:
    """Production back to the version the current one replaced (repeat to walk further back)."""
    svc = services()
    try:
        event = svc.store.rollback(source="api", request_id=g.request_id)
    except ModelStoreError as exc:
        raise ApiError(409, str(exc)) from None
    registry = _move_alias(event["version"])
    model = svc.models.reload(force=False)
    log.info("rollback via API: production %s -> %s", event.get("replaced"), event["version"])
    return {"event": event, "registry": registry, "model_version": model.version if model else None}


@bp.post("/retrain")
@require_api_key
def retrain() -> Any:
    """Start training -> scoring -> deployment in the background; answer 202 with the job id."""
    svc = services()
    paths = svc.config.paths
    command = retrain_command(paths.state_dir, svc.config.overrides)
    try:
        job = start_job(svc.jobs, "retrain", command, svc.config.api_paths.jobs_logs, paths.lock_file,
                        request_id=g.request_id)
    except JobConflict as exc:
        raise ApiError(409, f"a retrain is already {exc.job['state']}: job {exc.job['id']}",
                       job_id=exc.job["id"], links={"job": url_for("admin.job", job_id=exc.job["id"])}) from None
    return {"job_id": job["id"], "state": job["state"], "steps": "model_training,model_scoring,model_deployment",
            "links": {"job": url_for("admin.job", job_id=job["id"])}}, 202


@bp.get("/jobs")
@require_api_key
def jobs() -> Any:
    return {"jobs": [_public(j, with_log=False) for j in services().jobs.recent(20)]}


@bp.get("/jobs/<job_id>")
@require_api_key
def job(job_id: str) -> Any:
    found = services().jobs.get(job_id)
    if found is None:
        raise ApiError(404, "no such job (ids are 32 hex characters, as returned by POST /admin/retrain)")
    return _public(found, with_log=True)


def _public(job: dict[str, Any], with_log: bool) -> dict[str, Any]:
    out = {k: job[k] for k in ("id", "kind", "state", "created", "started", "finished", "returncode", "error")}
    out["log_file"] = Path(job["log_path"]).name
    if with_log:
        out["log_tail"] = log_tail(job["log_path"])
    return out
