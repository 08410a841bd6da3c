"""The models of a state dir: what each one is (manifest), how it is controlled, and deletion.

Each model's namespace is ``models/<model>/`` (DESIGN.md). Beside its store it holds:

* ``model.json`` — the manifest main.py writes on every chain: task, the Hydra overrides that
  define the model (so the cron tick and the API can rebuild its config), data paths and
  schedule. A model exists once it has a manifest or a store version.
* ``control.json`` — operator state: paused (automatic retraining off) and why.
* ``monitoring.jsonl`` — production scored on the newest labelled data, one line per check.

Standard library (and filelock) only: the cron tick reads this on its cheap path.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from utils.pipeline import clock
from utils.pipeline.paths import MODEL_NAME_RE, RESERVED_NAMES, StatePaths

log = logging.getLogger("models.catalog")

MANIFEST = "model.json"
CONTROL = "control.json"
MONITORING = "monitoring.jsonl"
_LEGACY_VERSION_RE = re.compile(r"^(?P<name>.+)-v(?P<number>\d+)$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class CatalogError(RuntimeError):
    """A management action that cannot be done; the message says why and what to do."""


class ModelBusy(CatalogError):
    """Another management action holds this model."""


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def parse_duration(value: Any) -> float | None:
    """``7d``, ``12h``, ``30m``, ``1w``, ``90s`` -> seconds; None/null/off -> None (disabled)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "null", "none", "off"}):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"a schedule must be positive, got {value}")
        return float(value)
    match = _DURATION_RE.match(str(value))
    if not match or float(match[1]) <= 0:
        raise ValueError(f"not a duration: {value!r} (expected e.g. 7d, 12h, 30m or null)")
    return float(match[1]) * _UNIT_S[match[2]]


def _atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): ignored", path, exc)
        return None
    return data if isinstance(data, dict) else None


# ---- which models exist ----------------------------------------------------------------------
def list_models(paths: StatePaths) -> list[str]:
    """Names of the models of this state dir (a manifest or a store version), sorted."""
    root = paths.models_root
    if not root.is_dir():
        return []
    names = []
    for child in root.iterdir():
        if child.name.startswith(".") or child.name in RESERVED_NAMES or not MODEL_NAME_RE.match(child.name):
            continue
        if child.is_dir() and not child.is_symlink() and (
                (child / MANIFEST).is_file() or (child / "versions").is_dir()):
            names.append(child.name)
    return sorted(names)


def read_manifest(paths: StatePaths, name: str) -> dict[str, Any] | None:
    return _read_json(paths.model(name).models_dir / MANIFEST)


def write_manifest(paths: StatePaths, name: str, manifest: dict[str, Any]) -> None:
    """Record what defines the model (kept: ``created`` of the first write)."""
    target = paths.model(name).models_dir / MANIFEST
    old = _read_json(target) or {}
    _atomic_write_json(target, {**manifest, "name": name, "created": old.get("created", now_iso()),
                                "updated": now_iso()})


def model_overrides(overrides: list[str]) -> list[str]:
    """The overrides that define a model, as recorded in its manifest: everything but what
    says where and how this one process runs (state dir, steps, Hydra's own, sweeps)."""
    skip = ("paths.state_dir=", "main.steps=", "hydra.", "main.reuse_runs=")
    return [o for o in overrides if not o.lstrip("+~").startswith(skip)]


# ---- control: pause and resume -----------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    paused: bool = False
    since: str | None = None
    reason: str | None = None
    by: str | None = None


def read_control(paths: StatePaths, name: str) -> Control:
    data = _read_json(paths.model(name).models_dir / CONTROL) or {}
    return Control(bool(data.get("paused", False)), data.get("since"), data.get("reason"), data.get("by"))


def set_paused(paths: StatePaths, name: str, paused: bool, reason: str = "", by: str = "cli") -> Control:
    """Pause or resume automatic retraining; recorded in the model's deployment history."""
    require_model(paths, name)
    control = Control(paused, now_iso(), reason or None, by)
    _atomic_write_json(paths.model(name).models_dir / CONTROL, control.__dict__)
    from utils.models.model_store import ModelStore

    ModelStore(paths.model(name).models_dir).append_history(
        {"event": "paused" if paused else "resumed", "reason": reason or None, "source": by})
    return control


def require_model(paths: StatePaths, name: str) -> None:
    """CatalogError naming the models when ``name`` is not one of them."""
    models = list_models(paths)
    if name not in models:
        raise UnknownModel(name, models)


class UnknownModel(CatalogError):
    def __init__(self, name: str, models: list[str]):
        super().__init__(f"no model {name!r} in this state dir; models: {', '.join(models) or 'none yet'}")
        self.name, self.models = name, models


@contextmanager
def managing(paths: StatePaths, name: str, action: str) -> Iterator[None]:
    """One management action per model at a time (CLI, API and tick share it): ModelBusy else.

    An unknown (or unsafe) name is refused first: no lock file, no folder for a model that is not there."""
    require_model(paths, name)
    folder = paths.model(name).models_dir
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / ".manage.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ModelBusy(f"model {name!r} is busy with another management action; try {action} again "
                        "when it has finished") from None
    try:
        yield
    finally:
        lock.release()


# ---- monitoring history ------------------------------------------------------------------------
def append_monitoring(paths: StatePaths, name: str, record: dict[str, Any]) -> None:
    path = paths.model(name).models_dir / MONITORING
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        at = clock.now()   # MLOPS_NOW in a simulated week (utils/pipeline/clock.py)
        fh.write(json.dumps({"time": clock.now_iso(), "epoch": at, **record}, default=str) + "\n")


def read_monitoring(paths: StatePaths, name: str, limit: int = 1000) -> list[dict[str, Any]]:
    path = paths.model(name).models_dir / MONITORING
    try:
        lines = path.read_text().splitlines()[-limit:]
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue          # a torn last line
        if isinstance(row, dict):
            out.append(row)
    return out


# ---- deletion --------------------------------------------------------------------------------
def delete_model(paths: StatePaths, name: str, by: str = "cli",
                 tracking_uri: str | None = None) -> dict[str, Any]:
    """Remove a model from serving, the store and the registry; keep its MLflow runs, logs and
    a record (history, manifest, control) under ``models/.deleted/<model>-<time>/``.

    Its ingested data and reports move into the record too, so a new model of the same name
    starts clean. The served link goes first: a crash midway leaves nothing half-served.
    """
    require_model(paths, name)
    scoped = paths.model(name)
    stamp = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    record_dir = paths.deleted_dir / f"{name}-{stamp}"
    record_dir.mkdir(parents=True, exist_ok=True)
    from utils.models.model_store import ModelStore

    store = ModelStore(scoped.models_dir)
    production = store.production_version()
    event = {"event": "deleted", "version": production, "source": by, "record": str(record_dir)}
    store.append_history(event)
    try:
        store.production_link.unlink()
    except FileNotFoundError:
        pass
    registry = _delete_registered_model(name, tracking_uri)
    for kind, folder in (("ingested", scoped.ingested_dir), ("reports", scoped.reports_dir)):
        if folder.is_dir():
            os.rename(folder, record_dir / kind)
    shutil.rmtree(scoped.models_dir / "versions", ignore_errors=True)   # the weights: gone
    os.rename(scoped.models_dir, record_dir / "models")
    (record_dir / "deleted.json").write_text(json.dumps(
        {"model": name, "deleted": now_iso(), "by": by, "production": production, "registry": registry},
        indent=2))
    log.info("deleted model %s (was serving %s); record in %s", name, production, record_dir)
    return {"model": name, "production": production, "registry": registry, "record": str(record_dir)}


def _delete_registered_model(name: str, tracking_uri: str | None) -> dict[str, Any]:
    """Delete the registered model (versions and alias); its runs stay in the tracking store."""
    if tracking_uri is None:
        return {"deleted": False, "error": "no tracking URI"}
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        return {"deleted": False, "error": "no tracking database"}
    try:
        import mlflow
        from mlflow.exceptions import MlflowException

        from utils.pipeline.tracking import check_tracking_store

        check_tracking_store(tracking_uri, timeout_s=5.0)   # down: fail now, not after minutes of retries
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        try:
            client.delete_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
                return {"deleted": False, "error": "not registered"}
            raise
    except Exception as exc:  # noqa: BLE001 - the store is the source of truth: report, go on
        log.warning("model %s: the registered model could not be deleted: %s", name, exc)
        return {"deleted": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"deleted": True}


# ---- the first layout (one model per state dir) ------------------------------------------------
def migrate_legacy_layout(paths: StatePaths) -> list[str]:
    """Move a state dir of the first layout (``models/versions``, ``models/production``,
    ``ingested/finaldata.*``) into per-model namespaces, in place, once. Idempotent and safe
    to call from several processes; returns what was moved (for the log)."""
    root = paths.models_root
    if not _legacy_present(paths):
        return []
    with FileLock(str(paths.state_dir / ".migrate.lock"), timeout=120):
        if not _legacy_present(paths):
            return []
        moved: list[str] = []
        versions_dir, link, history = root / "versions", root / "production", root / "deployments.jsonl"
        production = os.path.basename(os.readlink(link)) if link.is_symlink() else None
        names: dict[str, list[str]] = {}
        if versions_dir.is_dir():
            for child in sorted(versions_dir.iterdir()):
                match = _LEGACY_VERSION_RE.match(child.name)
                if match and MODEL_NAME_RE.match(match["name"]) and match["name"] not in RESERVED_NAMES:
                    names.setdefault(match["name"], []).append(child.name)
        owner = (_LEGACY_VERSION_RE.match(production)["name"] if production and _LEGACY_VERSION_RE.match(production)
                 else (sorted(names)[-1] if len(names) == 1 else None))
        for name, versions in names.items():
            target = paths.model(name).models_dir / "versions"
            target.mkdir(parents=True, exist_ok=True)
            for version in versions:
                os.rename(versions_dir / version, target / version)
            moved.append(f"{len(versions)} version(s) -> models/{name}/versions/")
        if history.is_file():
            by_model: dict[str, list[str]] = {}
            for line in history.read_text().splitlines():
                try:
                    version = json.loads(line).get("version") or ""
                except ValueError:
                    continue
                match = _LEGACY_VERSION_RE.match(str(version))
                name = match["name"] if match and match["name"] in names else owner
                if name:
                    by_model.setdefault(name, []).append(line)
            for name, lines in by_model.items():
                target = paths.model(name).models_dir / "deployments.jsonl"
                with open(target, "a") as fh:
                    fh.write("\n".join(lines) + "\n")
            os.replace(history, root / ".deployments.jsonl.migrated")
            moved.append("deployments.jsonl split per model")
        if production and owner:
            new_link = paths.model(owner).models_dir / "production"
            tmp = new_link.with_name(f".production.{uuid.uuid4().hex}")
            os.symlink(Path("versions") / production, tmp)
            os.replace(tmp, new_link)
            moved.append(f"production -> models/{owner}/production ({production})")
        if link.is_symlink():
            link.unlink()
        if versions_dir.is_dir() and not any(versions_dir.iterdir()):
            versions_dir.rmdir()
        if owner:
            moved += _move_loose_files(paths, owner)
        for line in moved:
            log.warning("state dir %s, first layout migrated: %s", paths.state_dir, line)
        return moved


def _legacy_present(paths: StatePaths) -> bool:
    root = paths.models_root
    return (root / "versions").is_dir() or (root / "production").is_symlink() or (root / "deployments.jsonl").is_file()


def _move_loose_files(paths: StatePaths, owner: str) -> list[str]:
    """ingested/ and reports/ files of the first layout, and the tick state, go to ``owner``."""
    scoped, moved = paths.model(owner), []
    for kind, target in (("ingested", scoped.ingested_dir), ("reports", scoped.reports_dir)):
        folder = paths.state_dir / kind
        if not folder.is_dir():
            continue
        loose = [c for c in folder.iterdir() if c.is_file() or c.name == "quarantine"]
        if not loose:
            continue
        target.mkdir(parents=True, exist_ok=True)
        for child in loose:
            os.rename(child, target / child.name)
        moved.append(f"{len(loose)} file(s) {kind}/ -> {kind}/{owner}/")
    old_state = paths.state_dir / "fullprocess.state.json"
    if old_state.is_file():
        data = _read_json(old_state) or {}
        reference = data.get("reference") or {}
        if reference.get("path"):
            reference["path"] = str(scoped.ingested_dir / Path(reference["path"]).name)
        _atomic_write_json(scoped.tick_state_file, data)
        old_state.unlink()
        moved.append(f"fullprocess.state.json -> models/{owner}/tick_state.json")
    return moved
