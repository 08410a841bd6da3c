"""The deployed model store: immutable version folders and one atomically swapped pointer.

Layout (DESIGN.md)::

    models/versions/<version>/   model/ (MLflow pyfunc), metadata.json, latestscore.txt, scores.json
    models/production            -> versions/<version>   (relative symlink, swapped with os.replace)
    models/deployments.jsonl     append-only history (deploy, rollback, rejected)

Readers (API, diagnostics) only ever follow ``production``; a version folder becomes visible
only once it is complete (written under a temporary name, then renamed), so a crash at any
point leaves ``production`` on a complete version.

Deploy and rollback are write-ahead: an ``intent`` line (with an id, the target and the
rollback target) is appended and fsynced before the swap, the ``deploy``/``rollback`` line
with the same id after it. ``recover()`` (run under the lock before every deploy and rollback,
and by the deployment step and the chain) completes or aborts a pending intent from where
the link points, restores a missing production link from the history, and records a
production the history does not know. So after a kill at any moment production is a
complete version, the history knows it, and rollback works.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from utils.pipeline import clock
from utils.tick.tick_lock import pid_alive

_VERSION_RE = re.compile(r"^(?P<name>.+)-v(?P<number>\d+)$")


class ModelStoreError(RuntimeError):
    """The store cannot do what was asked (unknown version, nothing to roll back to...)."""


def version_id(model_name: str, number: int | str) -> str:
    """Store version name of a registry version: ``attrition_model-v3``."""
    return f"{model_name}-v{int(number)}"


def parse_version_id(version: str) -> tuple[str, int]:
    """(registered model name, registry version number) of a store version name."""
    match = _VERSION_RE.match(version)
    if not match:
        raise ModelStoreError(f"not a store version name: {version!r} (expected <model>-v<N>)")
    return match["name"], int(match["number"])


def production_unusable(production: str | None, model_name: str) -> str | None:
    """Why a drift check cannot score this production version (none, or another model's), else None."""
    if production is None:
        return "no production model"
    if parse_version_id(production)[0] != model_name:
        return f"production model {production} is not a {model_name} (other task)"
    return None


_STAGING_RE = re.compile(r"^\.staging-.+-p(?P<pid>\d+)-[0-9a-f]{8}$")
_STALE_DEBRIS_S = 3600.0
ABANDONED_FILE = "abandoned.json"
COMMIT_EVENTS = {"deploy", "rollback"}


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ModelStore:
    root: Path

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def production_link(self) -> Path:
        return self.root / "production"

    @property
    def history_file(self) -> Path:
        return self.root / "deployments.jsonl"

    def lock(self) -> FileLock:
        """Serialises deploy/rollback between the CLI, the cron tick and the API."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".store.lock"), timeout=120)

    # ---- versions -------------------------------------------------------------------------
    def version_dir(self, version: str) -> Path:
        return self.versions_dir / version

    def model_dir(self, version: str) -> Path:
        return self.version_dir(version) / "model"

    def has_version(self, version: str) -> bool:
        return (self.version_dir(version) / "metadata.json").is_file()

    def list_versions(self, model_name: str | None = None) -> list[str]:
        """Complete versions, oldest first (by registry number)."""
        if not self.versions_dir.is_dir():
            return []
        found = []
        for child in self.versions_dir.iterdir():
            match = _VERSION_RE.match(child.name)
            if match and self.has_version(child.name):
                if model_name is None or match["name"] == model_name:
                    found.append((match["name"], int(match["number"]), child.name))
        return [name for _, _, name in sorted(found)]

    def latest_version(self, model_name: str) -> str | None:
        """The newest version that is not marked abandoned (a killed run's scoreless leftover)."""
        versions = [v for v in self.list_versions(model_name) if not self.is_abandoned(v)]
        return versions[-1] if versions else None

    def is_abandoned(self, version: str) -> bool:
        return (self.version_dir(version) / ABANDONED_FILE).is_file()

    def add_version(self, version: str, model_src: Path, metadata: dict[str, Any]) -> Path:
        """Copy a saved MLflow model in as ``version``; visible only once complete."""
        parse_version_id(version)
        target = self.version_dir(version)
        if target.exists():
            raise ModelStoreError(
                f"model store already has {target}; the registry and the store disagree "
                "(was mlflow.db replaced?). Move the old store aside or use a new state dir.")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = self.versions_dir / f".staging-{version}-p{os.getpid()}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(model_src, staging / "model")
        (staging / "metadata.json").write_text(json.dumps(
            {"version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **metadata},
            indent=2, default=str))
        os.rename(staging, target)
        return target

    def read_metadata(self, version: str) -> dict[str, Any]:
        path = self.version_dir(version) / "metadata.json"
        if not path.is_file():
            raise ModelStoreError(f"unknown model version {version!r} (no {path})")
        return json.loads(path.read_text())

    def write_score(self, version: str, metrics: dict[str, float], primary_metric: str,
                    direction: str = "higher") -> None:
        """latestscore.txt holds the gate's number; scores.json every metric and the gate's
        direction (`higher` or `lower` is better: F1 up, RMSE down)."""
        if primary_metric not in metrics:
            raise ModelStoreError(f"primary metric {primary_metric!r} not among {sorted(metrics)}")
        folder = self.version_dir(version)
        _atomic_write_text(folder / "scores.json", json.dumps(
            {"primary_metric": primary_metric, "direction": direction, "metrics": metrics,
             "scored": clock.now_iso()}, indent=2))   # MLOPS_NOW-aware: beside the monitoring records
        _atomic_write_text(folder / "latestscore.txt", f"{metrics[primary_metric]}\n")

    def read_score(self, version: str) -> float | None:
        path = self.version_dir(version) / "latestscore.txt"
        return float(path.read_text().strip()) if path.is_file() else None

    def read_direction(self, version: str) -> str:
        """`higher` (default, older versions) or `lower`: which way the primary metric improves."""
        scores = self.read_scores(version) if self.has_version(version) else None
        return str((scores or {}).get("direction") or "higher")

    def read_scores(self, version: str) -> dict[str, Any] | None:
        path = self.version_dir(version) / "scores.json"
        return json.loads(path.read_text()) if path.is_file() else None

    # ---- production -----------------------------------------------------------------------
    def production_version(self) -> str | None:
        link = self.production_link
        if not link.is_symlink():
            return None
        version = Path(os.readlink(link)).name
        return version if self.has_version(version) else None

    def production_model_dir(self) -> Path | None:
        version = self.production_version()
        return self.model_dir(version) if version else None

    def history(self, intents: bool = False) -> list[dict[str, Any]]:
        """The history's events, oldest first; write-ahead ``intent`` lines only if asked."""
        if not self.history_file.is_file():
            return []
        events = []
        for line in self.history_file.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:  # a torn last line after a crash: skip it
                    continue
                if isinstance(event, dict) and (intents or event.get("event") != "intent"):
                    events.append(event)
        return events

    def append_history(self, event: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}
        line = json.dumps(record, default=str) + "\n"
        with open(self.history_file, "a+b") as fh:
            if fh.tell() > 0:   # a torn last line (killed mid-write) must not swallow this one
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())

    def swap_production(self, version: str) -> None:
        """Point ``production`` at ``version`` atomically (new symlink, then os.replace)."""
        if not self.has_version(version):
            raise ModelStoreError(f"cannot deploy {version!r}: no complete version folder")
        tmp = self.root / f".production.{uuid.uuid4().hex}"
        os.symlink(Path("versions") / version, tmp)
        os.replace(tmp, self.production_link)

    # ---- write-ahead deploy / rollback ------------------------------------------------------
    def _committed_version(self, history: list[dict[str, Any]]) -> str | None:
        """The version of the last committed deploy or rollback whose folder still exists."""
        for event in reversed(history):
            if event.get("event") in COMMIT_EVENTS and self.has_version(str(event.get("version"))):
                return event["version"]
        return None

    def _pending_intent(self, history: list[dict[str, Any]]) -> dict[str, Any] | None:
        closed = {e.get("id") for e in history if e.get("event") in COMMIT_EVENTS | {"aborted"}}
        for event in reversed(history):
            if event.get("event") == "intent":
                return None if event.get("id") in closed else event
        return None

    def recover(self) -> list[dict[str, Any]]:
        """Bring link and history back in step after a crash; the events it appended.

        Call with the lock held (deploy and rollback do) or through ``recover_locked``.
        """
        added: list[dict[str, Any]] = []
        history = self.history(intents=True)
        current = self.production_version()
        intent = self._pending_intent(history)
        if intent is not None:
            fields = {k: v for k, v in intent.items() if k not in {"event", "time", "action"}}
            if current == intent.get("version"):     # killed after the swap: finish the record
                event = {**fields, "event": intent["action"], "recovered": True}
            else:                                      # killed before the swap: nothing happened
                event = {"event": "aborted", "id": intent.get("id"), "version": intent.get("version"),
                         "reason": "killed before the production swap"}
            self.append_history(event)
            added.append(event)
            history = self.history(intents=True)
        if current is None:
            restore = self._committed_version(history)
            if restore is not None:
                self.swap_production(restore)
                event = {"event": "restored", "version": restore,
                         "reason": "production link was missing or broken; restored from the history"}
                self.append_history(event)
                added.append(event)
        elif self._committed_version(history) != current:
            # production moved without a record (a pre-intent crash or a manual change): record it
            earlier = self._committed_version(history)
            event = {"event": "deploy", "version": current, "replaced": earlier, "rollback_to": earlier,
                     "recovered": True, "reason": "production was not in the history"}
            self.append_history(event)
            added.append(event)
        return added

    def recover_locked(self) -> list[dict[str, Any]]:
        with self.lock():
            self.clean_debris()
            return self.recover()

    def clean_debris(self) -> list[Path]:
        """Remove staging folders of dead writers and temporary links of killed swaps."""
        removed: list[Path] = []
        now_s = time.time()
        if self.versions_dir.is_dir():
            for child in self.versions_dir.iterdir():
                if not child.name.startswith(".staging-"):
                    continue
                match = _STAGING_RE.match(child.name)
                try:
                    age = now_s - child.lstat().st_mtime
                except OSError:
                    continue
                dead = (not pid_alive(int(match["pid"]))) if match else age > _STALE_DEBRIS_S
                if dead:
                    shutil.rmtree(child, ignore_errors=True)
                    removed.append(child)
        if self.root.is_dir():
            for child in self.root.glob(".production.*"):   # swaps only happen under the lock
                child.unlink(missing_ok=True)
                removed.append(child)
        return removed

    def mark_abandoned(self, version: str, reason: str) -> None:
        """Mark a scoreless leftover so no gate or default picks it; the folder is kept."""
        _atomic_write_text(self.version_dir(version) / ABANDONED_FILE, json.dumps(
            {"reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))

    def _fallback_rollback_to(self, history: list[dict[str, Any]], exclude: str) -> str | None:
        for event in reversed(history):
            v = event.get("version")
            if event.get("event") in COMMIT_EVENTS | {"restored"} and v != exclude and self.has_version(str(v)):
                return v
        return None

    def _write_ahead(self, action: str, target: str, replaced: str | None, rollback_to: str | None,
                     details: dict[str, Any]) -> dict[str, Any]:
        op_id = uuid.uuid4().hex
        base = {"id": op_id, "version": target, "replaced": replaced, "rollback_to": rollback_to, **details}
        self.append_history({"event": "intent", "action": action, **base})
        self.swap_production(target)
        event = {"event": action, **base}
        self.append_history(event)
        return event

    def deploy(self, version: str, **details: Any) -> dict[str, Any]:
        """Make ``version`` production and record it; a rollback from it returns to the old one."""
        if not self.has_version(version):
            raise ModelStoreError(f"cannot deploy {version!r}: no complete version folder")
        with self.lock():
            self.clean_debris()
            self.recover()
            previous = self.production_version()
            rollback_to = previous or self._fallback_rollback_to(self.history(), version)
            return self._write_ahead("deploy", version, previous, rollback_to, details)

    def rollback_target(self) -> str | None:
        """The version a rollback returns to: the one the current production replaced."""
        current = self.production_version()
        return self._rollback_to_of(current) if current else None

    def _rollback_to_of(self, version: str) -> str | None:
        for event in reversed(self.history()):
            if event.get("event") in COMMIT_EVENTS and event.get("version") == version:
                return event.get("rollback_to")
        return None

    def rollback(self, **details: Any) -> dict[str, Any]:
        """Return to the previous production version; repeated rollbacks walk further back."""
        with self.lock():
            self.clean_debris()
            self.recover()
            current = self.production_version()
            target = self.rollback_target()
            if target is None:
                raise ModelStoreError("nothing to roll back to: no earlier deployed version "
                                      f"in {self.history_file}")
            if not self.has_version(target):
                raise ModelStoreError(f"cannot roll back to {target!r}: its folder is gone")
            # after this rollback, a further one goes to what `target` itself replaced
            further = self._rollback_to_of(target)
            return self._write_ahead("rollback", target, current, further, details)
