"""A local mirror of the registry's champions: what an API replica serves with
`api.model_source=registry`.

The mirror is a state dir of its own (`api.registry_cache_dir`): ``models/<model>/`` is an
ordinary ModelStore whose versions are downloaded from the tracking server once each
(staging folder, then rename: a half-downloaded version is never visible; kept across
restarts) and whose ``production`` link is moved to follow ``<model>@champion``. The API's
ModelHolder already follows a production link with a hot swap and no failed request, so
following the alias is: poll, download if new, move the link.

Which models: every registered model with a ``champion`` alias, or only those named in
`api.registry_models`. A model whose alias disappears (deleted, alias removed) stops being
served after the next successful poll; while the server is unreachable the last good list
and links are kept (``champions.json``), also across a restart of the API.

One poller per replica: the worker that holds ``.poller.lock`` polls and writes
``status.json``; the other workers read that file (fewer calls on the tracking server, one
writer of the cache). A dead leader's lock is released by the kernel and another takes over.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from filelock import FileLock, Timeout

from utils.models.model_store import ModelStore, version_id
from utils.models.registry_gate import (CHAMPION_ALIAS, REGISTRY_METADATA_ARTIFACT, is_lock_name,
                                        version_score)
from utils.pipeline.paths import MODEL_NAME_RE, StatePaths

log = logging.getLogger("models.registry_mirror")

CHAMPIONS_FILE = "champions.json"
STATUS_FILE = "status.json"


class RegistryUnreachable(RuntimeError):
    """The tracking server did not answer (or answered an error) to a poll."""


def safe_uri(uri: str) -> str:
    """The URI without user:password (it goes into logs and /health)."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return uri


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class RegistryClient:
    """The two calls a poll makes, over the tracking server's REST API with a short timeout
    (MlflowClient retries for minutes: a poller must notice an outage within one poll)."""

    def __init__(self, uri: str, timeout_s: float = 5.0) -> None:
        self.uri = uri.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            self.session.auth = (user, password)

    def _get(self, route: str, params: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.uri}/api/2.0/mlflow/{route}"
        try:
            r = self.session.get(url, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise RegistryUnreachable(f"{safe_uri(self.uri)}: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise RegistryUnreachable(f"{safe_uri(self.uri)}: HTTP {r.status_code} on {route}: {r.text[:200]}")
        try:
            return r.json()
        except ValueError as exc:
            raise RegistryUnreachable(f"{safe_uri(self.uri)}: not JSON on {route}") from exc

    def champions(self) -> dict[str, int]:
        """Every registered model with a ``champion`` alias -> that version's number (one call
        per 1000 models: the poll's cost does not grow with the number of models)."""
        found: dict[str, int] = {}
        token = None
        while True:
            params: dict[str, Any] = {"max_results": 1000}
            if token:
                params["page_token"] = token
            page = self._get("registered-models/search", params)
            for model in page.get("registered_models", []):
                for alias in model.get("aliases", []) or []:
                    if alias.get("alias") == CHAMPION_ALIAS and not is_lock_name(model.get("name", "")):
                        found[model["name"]] = int(alias["version"])
            token = page.get("next_page_token")
            if not token:
                return found

    def download_uri(self, name: str, number: int) -> str:
        uri = self._get("model-versions/get-download-uri", {"name": name, "version": str(number)}).get("artifact_uri")
        if not uri:
            raise RegistryUnreachable(f"{safe_uri(self.uri)}: no download URI for {name} v{number}")
        return uri

    def model_version(self, name: str, number: int) -> dict[str, Any]:
        return self._get("model-versions/get", {"name": name, "version": str(number)}).get("model_version", {})


@dataclass
class MirrorStatus:
    """What the last poll found, shared by the workers of a replica through status.json."""

    uri: str
    state: str = "starting"         # ok | unreachable | starting
    checked: float = 0.0            # wall time of the last poll attempt
    last_ok: float | None = None
    error: str | None = None
    champions: dict[str, str] = field(default_factory=dict)   # model -> store version served

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "state": self.state, "checked": self.checked, "last_ok": self.last_ok,
                "error": self.error, "champions": self.champions}


class RegistryMirror:
    def __init__(self, cache_root: Path, tracking_uri: str, models: list[str] | None = None,
                 poll_s: float = 5.0, timeout_s: float = 5.0,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        self.root = Path(cache_root)
        self.paths = StatePaths.of(self.root)
        self.uri = tracking_uri
        self.models = list(models) if models else None
        self.poll_s = poll_s
        self.client = RegistryClient(tracking_uri, timeout_s)
        self.on_change = on_change
        self.status = MirrorStatus(uri=safe_uri(tracking_uri))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader: FileLock | None = None

    # ---- what is served ---------------------------------------------------------------------
    def store(self, name: str) -> ModelStore:
        return ModelStore(self.paths.model(name).models_dir)

    def names(self) -> list[str]:
        """The models to serve: the last good poll's champions that have a local copy."""
        champions = _read_json(self.root / CHAMPIONS_FILE)
        if not isinstance(champions, dict):
            return []
        return sorted(n for n in champions if MODEL_NAME_RE.match(n) and self.store(n).production_version())

    def shared_status(self) -> dict[str, Any]:
        """The replica's poll status (the leader's status.json; this worker's own if it leads)."""
        data = _read_json(self.root / STATUS_FILE)
        return data if isinstance(data, dict) else self.status.to_dict()

    # ---- one poll ---------------------------------------------------------------------------
    def poll_once(self) -> dict[str, str]:
        """Ask the server for the champions, download new versions, move the links.

        Raises RegistryUnreachable when the server does not answer; nothing local changes then.
        """
        champions = self.client.champions()
        if self.models is not None:
            champions = {n: v for n, v in champions.items() if n in self.models}
        served: dict[str, str] = {}
        moved: list[tuple[str, str]] = []
        for name, number in sorted(champions.items()):
            if not MODEL_NAME_RE.match(name):
                log.warning("registered model %r is not a model name of this project: not served", name)
                continue
            try:
                version = self.ensure_version(name, number)
            except RegistryUnreachable:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad version must not stop the others
                log.error("cannot mirror %s version %d from %s: %s; still serving %s", name, number,
                          self.status.uri, exc, self.store(name).production_version() or "nothing")
                current = self.store(name).production_version()
                if current:
                    served[name] = current
                continue
            if self.follow(name, version):
                moved.append((name, version))
            served[name] = version
        _atomic_json(self.root / CHAMPIONS_FILE, served)
        for name, version in moved:        # after champions.json: a new model is known by then
            if self.on_change:
                self.on_change(name, version)
        return served

    def ensure_version(self, name: str, number: int) -> str:
        """The store version of registry ``name`` v``number``, downloaded once (atomically)."""
        store = self.store(name)
        version = version_id(name, number)
        if store.has_version(version):
            return version
        store.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.paths.model(name).models_dir / ".download.lock"), timeout=600):
            if store.has_version(version):
                return version
            mv = self.client.model_version(name, number)
            tags = {t["key"]: t["value"] for t in mv.get("tags", []) or []}
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix=".download-", dir=store.root) as tmp:
                model_dir, metadata = self._download(name, number, mv, tags, Path(tmp))
                metadata = {**metadata, "model_name": name, "registry_version": number,
                            "mirrored_from": safe_uri(self.uri), "mirrored": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                metadata.pop("version", None)
                metadata.pop("created", None)
                store.add_version(version, model_dir, metadata)
            score, metric, direction = version_score(tags)
            if score is not None and metric:
                metrics = {k.removeprefix("test_"): float(v) for k, v in tags.items()
                           if k.startswith("test_") and _is_float(v)}
                store.write_score(version, {**metrics, metric: score}, metric, direction)
            self._write_manifest(name, metadata)
            log.info("mirrored %s from %s in %.1f s", version, self.status.uri, time.monotonic() - started)
        return version

    def _download(self, name: str, number: int, mv: dict[str, Any], tags: dict[str, str],
                  tmp: Path) -> tuple[Path, dict[str, Any]]:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")   # no bars in the API log
        import mlflow.artifacts

        # the version's artifact location from the server (mlflow 3.17's models:/ resolution
        # ignores the registry_uri it is given and asks a local mlflow.db)
        location = self.client.download_uri(name, number)
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(tmp / "model"),
                                                             tracking_uri=self.uri))
        metadata: dict[str, Any] = {}
        run_id = mv.get("run_id")
        if run_id:
            try:
                path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REGISTRY_METADATA_ARTIFACT,
                                                           dst_path=str(tmp / "meta"), tracking_uri=self.uri)
                metadata = json.loads(Path(path).read_text())
            except Exception as exc:  # noqa: BLE001 - an older version without it: infer below
                log.info("%s v%d has no %s (%s): task inferred from the model", name, number,
                         REGISTRY_METADATA_ARTIFACT, type(exc).__name__)
        if not metadata.get("task"):
            metadata["task"] = tags.get("pipeline.task") or _task_from_flavors(model_dir)
        metadata["run_id"] = run_id
        return model_dir, metadata

    def _write_manifest(self, name: str, metadata: dict[str, Any]) -> None:
        from utils.models.catalog import write_manifest

        manifest: dict[str, Any] = {"task": metadata.get("task"), "source": "registry",
                                    "tracking_uri": safe_uri(self.uri)}
        if isinstance(metadata.get("task_config"), dict):
            manifest["task_config"] = metadata["task_config"]
        write_manifest(self.paths, name, manifest)

    def follow(self, name: str, version: str) -> bool:
        """Point the mirror's production at ``version``; True when it moved."""
        store = self.store(name)
        if store.production_version() == version:
            return False
        previous = store.production_version()
        store.deploy(version, source="registry", alias=CHAMPION_ALIAS, tracking_uri=safe_uri(self.uri))
        log.info("%s@%s moved: serving %s (was %s)", name, CHAMPION_ALIAS, version, previous or "nothing")
        return True

    # ---- the poller -------------------------------------------------------------------------
    def poll_and_record(self) -> None:
        """One poll, its outcome in status.json; never raises (the poller must keep going).
        Times are taken when the poll ends: a first poll that downloads for a minute is not stale."""
        try:
            served = self.poll_once()
        except RegistryUnreachable as exc:
            if self.status.state != "unreachable":
                log.warning("registry %s unreachable (%s): serving the last good models %s",
                            self.status.uri, exc, ", ".join(self.names()) or "(none)")
            self.status.state, self.status.error = "unreachable", str(exc)[:300]
        except Exception as exc:  # noqa: BLE001
            log.error("registry poll of %s failed: %s: %s", self.status.uri, type(exc).__name__, exc)
            self.status.state, self.status.error = "unreachable", f"{type(exc).__name__}: {exc}"[:300]
        else:
            if self.status.state == "unreachable":
                log.info("registry %s answers again", self.status.uri)
            self.status.state, self.status.error, self.status.last_ok = "ok", None, time.time()
            self.status.champions = served
        self.status.checked = time.time()
        try:
            _atomic_json(self.root / STATUS_FILE, self.status.to_dict())
        except OSError as exc:
            log.error("cannot write %s: %s", self.root / STATUS_FILE, exc)

    def _is_leader(self) -> bool:
        if self._leader is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._leader = FileLock(str(self.root / ".poller.lock"), thread_local=False)  # taken in start(), held by the thread
        if self._leader.is_locked:
            return True
        try:
            self._leader.acquire(timeout=0)
            return True
        except Timeout:
            return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._is_leader():
                self.poll_and_record()
            self._stop.wait(self.poll_s)

    def start(self) -> "RegistryMirror":
        """Poll now (start-up: serve the champion from the first request), then in a thread."""
        if self._is_leader():
            self.poll_and_record()
        self._thread = threading.Thread(target=self._loop, name="registry-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._leader is not None and self._leader.is_locked:
            self._leader.release()


def _is_float(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _task_from_flavors(model_dir: Path) -> str:
    """An MLmodel with an sklearn flavor is a tabular model; anything else needs its metadata."""
    try:
        text = (model_dir / "MLmodel").read_text()
    except OSError:
        return "tabular"
    return "tabular" if "\n  sklearn:" in text or "\nsklearn:" in text else "unknown"
