"""Admin routes (API key): per model pause, resume, retrain, evaluate, rollback, reload, delete;
job status. The first layout's /admin/reload|rollback|retrain act on the default model.

They call the same actions as the CLI (04_deployment/manage.py, utils/models/management.py)
on the same store and registry, so the three never disagree. A form post from the dashboard's
buttons is answered with a redirect back to the dashboard; JSON callers get JSON.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Blueprint, g, redirect, request, url_for

from api.auth import is_form_post, require_api_key
from api.errors import ApiError
from api.jobs import JobConflict, log_tail, start_job
from api.routes import model_name, services
from utils.models import management
from utils.models.catalog import CatalogError, ModelBusy, UnknownModel
from utils.models.model_store import ModelStoreError
from utils.models.registry import tracking_uri_for

bp = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger("api.admin")

ACTIONS = ("pause", "resume", "retrain", "evaluate", "rollback", "reload", "delete")


def _answer(body: dict[str, Any], status: int = 200) -> Any:
    """JSON, or for the dashboard's form buttons a 303 back to the dashboard with a notice."""
    if is_form_post():
        notice = body.get("notice") or body.get("message") or "done"
        return redirect(f"{url_for('api.dashboard')}?notice={quote(str(notice)[:300])}", code=303)
    return body, status


@bp.errorhandler(ApiError)
def _form_error(exc: ApiError) -> Any:
    """A dashboard button that failed goes back to the dashboard saying why (JSON callers: JSON).
    A refused cross-site post (403) gets no redirect: nothing of ours is reflected to another site."""
    from api.errors import error_response

    if is_form_post() and exc.status != 403:
        return redirect(f"{url_for('api.dashboard')}?notice={quote(('error: ' + exc.message)[:300])}", code=303)
    return error_response(exc.status, exc.message, headers=exc.headers, **exc.extra)


def _fail(exc: Exception) -> ApiError:
    if isinstance(exc, UnknownModel):
        return ApiError(404, str(exc), models=exc.models)
    if isinstance(exc, (ModelBusy, ModelStoreError)):
        return ApiError(409, str(exc))
    return ApiError(400, str(exc))


def _tracking_uri() -> str:
    svc = services()
    return tracking_uri_for(svc.config.paths.state_dir, svc.config.tracking_uri)


def _reason() -> str:
    data = request.form if is_form_post() else (request.get_json(silent=True) or {})
    return str(data.get("reason", "") if isinstance(data, dict) or hasattr(data, "get") else "")[:500]


# ---- per model -------------------------------------------------------------------------------
@bp.post("/models/<name>/<action>")
@require_api_key
def model_action(name: str, action: str) -> Any:
    if action not in ACTIONS:
        raise ApiError(404, f"no admin action {action[:40]!r}; actions: {', '.join(ACTIONS)}")
    name = model_name(name)
    if action != "reload":
        _refuse_on_replica(action)
    return _ACTIONS[action](name)


def _refuse_on_replica(action: str) -> None:
    """A registry-served replica holds a mirror, not the model's store: management happens on the
    pipeline host (against the tracking server), and every replica follows the alias."""
    if services().mirror is not None:
        raise ApiError(409, f"{action}: this API serves the registry (api.model_source=registry); run it on "
                            "the pipeline host (./run_pipeline.sh, 04_deployment/manage.py) and the replicas "
                            "follow <model>@champion within api.registry_poll_s")


def _set_paused(name: str, paused: bool) -> Any:
    svc = services()
    action = management.pause if paused else management.resume
    try:
        control = action(svc.config.paths, name, _reason(), by="api")
    except CatalogError as exc:
        raise _fail(exc) from None
    return _answer({"model": name, "paused": paused, "since": control.since,
                    "notice": f"{name}: automatic retraining {'paused' if paused else 'active'}"})


def _retrain(name: str) -> Any:
    """Training -> scoring -> deployment of this model in the background (202 + job id).
    A manual retrain reactivates a paused model."""
    svc = services()
    paths = svc.config.paths
    extra = [f"main.tracking_uri={svc.config.tracking_uri}"] if svc.config.tracking_uri else []
    try:
        command = management.retrain_command(paths, name, extra)
        management.resume(paths, name, "manual retrain", by="api")
        job = start_job(svc.jobs, f"retrain:{name}", command, svc.config.api_paths.jobs_logs, paths.lock_file,
                        request_id=g.request_id)
    except JobConflict as exc:
        raise ApiError(409, f"a retrain of {name} is already {exc.job['state']}: job {exc.job['id']}",
                       job_id=exc.job["id"], links={"job": url_for("admin.job", job_id=exc.job["id"])}) from None
    except CatalogError as exc:
        raise _fail(exc) from None
    return _answer({"model": name, "job_id": job["id"], "state": job["state"],
                    "steps": ",".join(management.RETRAIN_STEPS),
                    "links": {"job": url_for("admin.job", job_id=job["id"])},
                    "notice": f"{name}: retrain started (job {job['id'][:8]})"}, 202)


def _evaluate(name: str) -> Any:
    svc = services()
    batch = int((svc.config.cfg.get("scoring") or {}).get("batch_size", 256))
    try:
        record = management.evaluate(svc.config.paths, name, batch_size=batch)
    except CatalogError as exc:
        raise _fail(exc) from None
    score = record.get("score")
    return _answer({"model": name, **record,
                    "notice": f"{name}: {record['version']} {record['primary_metric']} = "
                              f"{score:.4f}" if isinstance(score, float) else f"{name}: evaluated"})


def _rollback(name: str) -> Any:
    """Production back to the version the current one replaced (repeat to walk further back)."""
    svc = services()
    try:
        outcome = management.rollback(svc.config.paths, name, _tracking_uri(), by="api",
                                      request_id=g.request_id)
    except CatalogError as exc:
        raise _fail(exc) from None
    except ModelStoreError as exc:
        raise ApiError(409, str(exc)) from None
    event = outcome["event"]
    model = svc.fleet.holder(name).reload(force=False)
    log.info("rollback via API: %s production %s -> %s", name, event.get("replaced"), event["version"])
    return _answer({"model": name, "event": event, "registry": outcome["registry"],
                    "model_version": model.version if model else None,
                    "notice": f"{name}: rolled back to {event['version']}"})


def _reload(name: str) -> Any:
    """Load this model's production again in this worker now (the others follow by themselves)."""
    holder = services().fleet.holder(name)
    before = holder.current()
    model = holder.reload(force=True)
    if model is None:
        raise ApiError(503, f"{name}: nothing to load: {holder.last_error}")
    return _answer({"model": name, "model_version": model.version,
                    "previous": before.version if before else None, "error": holder.last_error,
                    "notice": f"{name}: reloaded {model.version}"})


def _delete(name: str) -> Any:
    """Remove the model from serving, the store and the registry (runs and logs kept).
    Needs confirm=<model name> (form field, JSON key or query parameter)."""
    svc = services()
    data = request.form if is_form_post() else (request.get_json(silent=True) or {})
    confirm = (data.get("confirm") if hasattr(data, "get") else None) or request.args.get("confirm")
    if confirm != name:
        raise ApiError(400, f"deleting {name} needs confirm={name} (form field, JSON key or query parameter)")
    try:
        outcome = management.delete(svc.config.paths, name, _tracking_uri(), svc.config.settings.default_model,
                                    by="api")
    except CatalogError as exc:
        if "api.default_model" in str(exc):
            raise ApiError(409, str(exc)) from None
        raise _fail(exc) from None
    svc.fleet.refresh()
    return _answer({**outcome, "notice": f"{name}: deleted (record in models/.deleted/)"})


_ACTIONS = {"pause": lambda name: _set_paused(name, True), "resume": lambda name: _set_paused(name, False), "retrain": _retrain, "evaluate": _evaluate,
            "rollback": _rollback, "reload": _reload, "delete": _delete}


# ---- the first layout's routes: the default model ---------------------------------------------
@bp.post("/reload")
@require_api_key
def reload() -> Any:
    return _reload(model_name(None))


@bp.post("/rollback")
@require_api_key
def rollback() -> Any:
    _refuse_on_replica("rollback")
    return _rollback(model_name(None))


@bp.post("/retrain")
@require_api_key
def retrain() -> Any:
    _refuse_on_replica("retrain")
    return _retrain(model_name(None))


# ---- jobs ------------------------------------------------------------------------------------
@bp.get("/jobs")
@require_api_key
def jobs() -> Any:
    return {"jobs": [_public(j, with_log=False) for j in services().jobs.recent(20)]}


@bp.get("/jobs/<job_id>")
@require_api_key
def job(job_id: str) -> Any:
    found = services().jobs.get(job_id)
    if found is None:
        raise ApiError(404, "no such job (ids are 32 hex characters, as returned by POST /admin/.../retrain)")
    return _public(found, with_log=True)


def _public(job: dict[str, Any], with_log: bool) -> dict[str, Any]:
    out = {k: job[k] for k in ("id", "kind", "state", "created", "started", "finished", "returncode", "error")}
    out["log_file"] = Path(job["log_path"]).name
    if with_log:
        out["log_tail"] = log_tail(job["log_path"])
    return out
