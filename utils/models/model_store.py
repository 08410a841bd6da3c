"""The deployed model store: immutable version folders and one atomically swapped pointer.

Layout (DESIGN.md)::

    models/versions/<version>/   model/ (MLflow pyfunc), metadata.json, latestscore.txt, scores.json
    models/production            -> versions/<version>   (relative symlink, swapped with os.replace)
    models/deployments.jsonl     append-only history (deploy, rollback, rejected)

Readers (API, diagnostics) only ever follow ``production``; a version folder becomes visible
only once it is complete (written under a temporary name, then renamed), so a crash at any
point leaves ``production`` on a complete version.
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
        versions = self.list_versions(model_name)
        return versions[-1] if versions else None

    def add_version(self, version: str, model_src: Path, metadata: dict[str, Any]) -> Path:
        """Copy a saved MLflow model in as ``version``; visible only once complete."""
        parse_version_id(version)
        target = self.version_dir(version)
        if target.exists():
            raise ModelStoreError(
                f"model store already has {target}; the registry and the store disagree "
                "(was mlflow.db replaced?). Move the old store aside or use a new state dir.")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = self.versions_dir / f".staging-{version}-{uuid.uuid4().hex[:8]}"
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
             "scored": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))
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

    def history(self) -> list[dict[str, Any]]:
        if not self.history_file.is_file():
            return []
        events = []
        for line in self.history_file.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:  # a torn last line after a crash: skip it
                    continue
        return events

    def append_history(self, event: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}
        with open(self.history_file, "a") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def swap_production(self, version: str) -> None:
        """Point ``production`` at ``version`` atomically (new symlink, then os.replace)."""
        if not self.has_version(version):
            raise ModelStoreError(f"cannot deploy {version!r}: no complete version folder")
        tmp = self.root / f".production.{uuid.uuid4().hex}"
        os.symlink(Path("versions") / version, tmp)
        os.replace(tmp, self.production_link)

    def deploy(self, version: str, **details: Any) -> dict[str, Any]:
        """Make ``version`` production and record it; a rollback from it returns to the old one."""
        with self.lock():
            previous = self.production_version()
            self.swap_production(version)
            event = {"event": "deploy", "version": version, "replaced": previous,
                     "rollback_to": previous, **details}
            self.append_history(event)
            return event

    def rollback_target(self) -> str | None:
        """The version a rollback returns to: the one the current production replaced."""
        current = self.production_version()
        for event in reversed(self.history()):
            if event.get("event") in {"deploy", "rollback"} and event.get("version") == current:
                return event.get("rollback_to")
        return None

    def rollback(self, **details: Any) -> dict[str, Any]:
        """Return to the previous production version; repeated rollbacks walk further back."""
        with self.lock():
            current = self.production_version()
            target = self.rollback_target()
            if target is None:
                raise ModelStoreError("nothing to roll back to: no earlier deployed version "
                                      f"in {self.history_file}")
            if not self.has_version(target):
                raise ModelStoreError(f"cannot roll back to {target!r}: its folder is gone")
            # after this rollback, a further one goes to what `target` itself replaced
            further = None
            for event in reversed(self.history()):
                if event.get("event") in {"deploy", "rollback"} and event.get("version") == target:
                    further = event.get("rollback_to")
                    break
            self.swap_production(target)
            event = {"event": "rollback", "version": target, "replaced": current,
                     "rollback_to": further, **details}
            self.append_history(event)
            return event
