"""The deployment gate with the registry as source of truth: a lock, the champion's score, CAS.

Several chains (on several hosts, each with its own state dir) deploy to one tracking server.
MLflow has no compare-and-set on an alias, so two gates that read the champion at the same
moment could both move the alias, and the last writer wins even with the worse score. The rule:

1. **Lock**: create the registered model ``<model>.champion-lock``. Creating a registered model
   is atomic on the server's database (unique name: SQLite and PostgreSQL both refuse the
   second insert with RESOURCE_ALREADY_EXISTS), so exactly one gate holds it; the others wait.
   Deleting it releases it. Every alias move of this project (deploy, rollback, API admin)
   takes it.
2. **Read under the lock**: the champion (alias ``champion``) and its score (version tag
   ``pipeline.score``, written by the scoring step; else ``test_<metric>``) are read after
   the lock is held, never before.
3. **Compare and set**: just before moving the alias, read it again; if it is not the version
   the decision was made against (someone moved it without the lock, e.g. the MLflow UI), abort.

Residual window: a writer that ignores the lock (MLflow UI, another tool) can still move the
alias between the re-read in 3 and the move, a few milliseconds. A lock whose holder died is
broken by a waiter that has seen the *same* lock (same creation time) for ``stale_s`` (own
monotonic clock, so no clock skew between hosts); two waiters breaking the same stale lock in
the same millisecond could both proceed, which needs a holder dead for ``stale_s`` first.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("models.registry_gate")

CHAMPION_ALIAS = "champion"
LOCK_SUFFIX = ".champion-lock"
SCORE_TAG = "pipeline.score"
METRIC_TAG = "pipeline.primary_metric"
DIRECTION_TAG = "pipeline.direction"
REGISTRY_METADATA_ARTIFACT = "pipeline/metadata.json"   # run artifact: the store metadata of the version


class RegistryLockTimeout(RuntimeError):
    """Another deploy or rollback held the champion lock for longer than we wait."""


def lock_name(model_name: str) -> str:
    return f"{model_name}{LOCK_SUFFIX}"


def is_lock_name(name: str) -> bool:
    return name.endswith(LOCK_SUFFIX)


def _error_code(exc: Exception) -> str | None:
    return getattr(exc, "error_code", None)


@contextmanager
def champion_lock(client: Any, model_name: str, wait_s: float = 120.0, stale_s: float = 600.0,
                  poll_s: float = 0.1, purpose: str = "deploy") -> Iterator[None]:
    """Hold ``<model>.champion-lock`` on the tracking server for the block (see module doc)."""
    from mlflow.exceptions import MlflowException

    name = lock_name(model_name)
    owner = f"{socket.gethostname()}:{os.getpid()}:{purpose}"
    deadline = time.monotonic() + wait_s
    seen: tuple[int | None, float] | None = None     # (creation time of the lock we wait on, since)
    while True:
        try:
            client.create_registered_model(name, tags={"pipeline.lock_owner": owner},
                                           description=f"deploy lock of {model_name}: held by {owner}")
            break
        except MlflowException as exc:
            # DOES_NOT_EXIST: the server's own existence check met the holder's release: contended
            if _error_code(exc) not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
        created = _lock_created(client, name)
        now = time.monotonic()
        if seen is None or seen[0] != created:
            seen = (created, now)
        elif now - seen[1] >= stale_s:
            log.warning("breaking the champion lock %s: the same holder for %.0f s (dead?)", name, now - seen[1])
            _delete_quietly(client, name)
            seen = None
            continue
        if now >= deadline:
            raise RegistryLockTimeout(
                f"registered model {name!r} (the champion lock) is held by another deploy or rollback for "
                f"more than {wait_s:.0f} s; if no deploy is running, delete it in the MLflow UI and retry")
        time.sleep(poll_s)
    try:
        yield
    finally:
        _delete_quietly(client, name)


def _lock_created(client: Any, name: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_registered_model(name).creation_timestamp or 0)
    except MlflowException:
        return None      # released between our create and this read: try again


def _delete_quietly(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
            log.warning("could not release the champion lock %s: %s", name, exc)


@dataclass(frozen=True)
class Champion:
    """The registry's champion of a model: its version number and recorded score."""

    number: int | None
    score: float | None = None
    metric: str | None = None
    direction: str = "higher"

    def store_version(self, model_name: str) -> str | None:
        return f"{model_name}-v{self.number}" if self.number is not None else None


def version_score(tags: dict[str, str], metric: str | None = None) -> tuple[float | None, str | None, str]:
    """(score, metric, direction) recorded on a registry version by the scoring step."""
    direction = tags.get(DIRECTION_TAG) or "higher"
    metric = tags.get(METRIC_TAG) or metric
    for key in (SCORE_TAG, f"test_{metric}" if metric else None):
        if key and tags.get(key) not in (None, ""):
            try:
                return float(tags[key]), metric, direction
            except ValueError:
                log.warning("registry tag %s=%r is not a number: ignored", key, tags[key])
    return None, metric, direction


def read_champion(client: Any, model_name: str, metric: str | None = None) -> Champion:
    """The champion as the registry says now (no alias, or no registered model: number None)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return Champion(None)
        raise
    score, metric, direction = version_score(dict(mv.tags or {}), metric)
    return Champion(int(mv.version), score, metric, direction)


def record_score(client: Any, model_name: str, number: int, score: float, metric: str, direction: str) -> None:
    """Write the gate's number on the registry version (the scoring step calls this)."""
    for key, value in ((SCORE_TAG, repr(float(score))), (METRIC_TAG, metric), (DIRECTION_TAG, direction)):
        client.set_model_version_tag(model_name, str(number), key, value)


def current_champion_number(client: Any, model_name: str) -> int | None:
    return read_champion(client, model_name).number


@dataclass(frozen=True)
class GateResult:
    deployed: bool
    reason: str
    champion: Champion
    champion_score: float | None = None


def gate_and_move(client: Any, model_name: str, candidate_number: int, candidate_score: float,
                  decide: Callable[[float, float | None], tuple[bool, str]],
                  on_deploy: Callable[[Champion, float | None], None] | None = None,
                  champion_score_fallback: Callable[[Champion], float | None] | None = None,
                  metric: str | None = None, wait_s: float = 120.0) -> GateResult:
    """Lock, read the champion, decide, re-read (CAS), move the alias, then ``on_deploy``.

    ``decide(candidate_score, champion_score)`` is the project's gate rule; the alias moves
    first because the registry is the source of truth: if that fails, nothing changed.
    """
    with champion_lock(client, model_name, wait_s=wait_s):
        champion = read_champion(client, model_name, metric)
        if champion.number == candidate_number:
            return GateResult(False, "already the champion", champion)
        score = champion.score
        if score is None and champion.number is not None and champion_score_fallback is not None:
            score = champion_score_fallback(champion)
        deploy, reason = decide(candidate_score, score if champion.number is not None else None)
        if not deploy:
            return GateResult(False, reason, champion, score)
        now = current_champion_number(client, model_name)
        if now != champion.number:       # moved by a writer that does not take the lock
            return GateResult(False, f"aborted: the champion moved from v{champion.number} to v{now} "
                                     "during the gate (a writer outside the lock); rerun the deployment",
                              champion, score)
        client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(candidate_number))
        if on_deploy is not None:
            on_deploy(champion, score)
        return GateResult(True, reason, champion, score)
