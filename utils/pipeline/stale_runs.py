"""MLflow runs left RUNNING by a killed process are ended as KILLED by the next chain or tick.

A run records who owns it (`pipeline.owner.host`, `pipeline.owner.pid` and the process start
time, so a reused pid is not mistaken for the owner). A RUNNING run is stale when its owner
on this host is gone, or when it is a child whose parent run is no longer RUNNING (the step
runs that ``mlflow.run`` creates before the step process starts, e.g. a failed
`env_manager=conda` on a machine without conda, carry no owner of their own).
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Any

log = logging.getLogger(__name__)

HOST_TAG, PID_TAG, STARTED_TAG = "pipeline.owner.host", "pipeline.owner.pid", "pipeline.owner.started"
PARENT_TAG = "mlflow.parentRunId"


def _process_started(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:   # gone, or no psutil
        return None


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the run's owner."""
    started = _process_started(os.getpid())
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            STARTED_TAG: "" if started is None else f"{started:.2f}"}


def owner_gone(tags: dict[str, str]) -> bool:
    """True when the tags name a process on this host that no longer exists (or a reused pid)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    started = _process_started(int(tags[PID_TAG]))
    if started is None:
        return True
    recorded = tags.get(STARTED_TAG)
    return bool(recorded) and abs(float(recorded) - started) > 1.0


def end_stale_runs(client: Any, experiment_ids: list[str]) -> list[str]:
    """End stale RUNNING runs as KILLED; their ids (parents first, then orphaned children)."""
    from mlflow.entities import ViewType

    running = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'",
                                 run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
    by_id = {r.info.run_id: r for r in running}
    stale: list[str] = [r.info.run_id for r in running if owner_gone(r.data.tags)]
    dead = set(stale)
    for run in running:
        rid, parent = run.info.run_id, run.data.tags.get(PARENT_TAG)
        if rid in dead or not parent or run.data.tags.get(PID_TAG):
            continue
        if parent in dead or parent not in by_id:   # the parent ended (or was just found dead)
            stale.append(rid)
            dead.add(rid)
    for rid in stale:
        try:
            client.set_tag(rid, "pipeline.ended_by", "stale-run cleanup: owner process gone")
            client.set_terminated(rid, status="KILLED")
        except Exception as exc:   # noqa: BLE001 - cleanup must not stop the chain
            log.warning("could not end stale run %s: %s", rid, exc)
    if stale:
        log.warning("ended %d MLflow run(s) left RUNNING by killed processes as KILLED: %s",
                    len(stale), ", ".join(stale))
    return stale


def end_running_children(client: Any, experiment_id: str, parent_id: str, status: str = "FAILED") -> list[str]:
    """End the still-RUNNING children of ``parent_id`` (a step whose launch failed)."""
    runs = client.search_runs([experiment_id], filter_string=(
        f"attributes.status = 'RUNNING' and tags.`{PARENT_TAG}` = '{parent_id}'"))
    for run in runs:
        client.set_terminated(run.info.run_id, status=status)
    return [r.info.run_id for r in runs]
