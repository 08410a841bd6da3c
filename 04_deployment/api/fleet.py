"""Every model of the state dir, served side by side: one ModelHolder (hot reload) per model.

Models are found on disk (``models/<model>/``, see utils/models/catalog.py), so a model
deployed by any chain appears without a restart and a deleted one disappears. Each model
follows its own ``production`` link: deploying B never touches A's holder. With
`api.model_source=registry` the stores are a registry mirror's (utils/models/registry_mirror.py),
whose links follow `<model>@champion`, and the list of models is the mirror's.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from api.errors import ApiError
from api.model_service import ModelHolder, ServedModel
from utils.models.catalog import UnknownModel, list_models, read_manifest
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths

log = logging.getLogger("api.fleet")

LIST_CACHE_S = 1.0      # how long the list of models is reused before models/ is read again


class ModelFleet:
    def __init__(self, paths: StatePaths, task_config: DictConfig | None, default_model: str | None,
                 check_interval_s: float = 0.0,
                 on_swap: Callable[[ServedModel | None, ServedModel], None] | None = None,
                 on_failure: Callable[[str, str], None] | None = None,
                 names_source: Callable[[], list[str]] | None = None, fast_path: bool = True) -> None:
        self.paths = paths                       # where the models' stores are (a registry mirror's own)
        self.names_source = names_source or (lambda: list_models(self.paths))
        self.fast_path = fast_path               # api.fast_path: numpy replay of simple tabular pipelines
        self.task_config = task_config           # the API config's own task (its model's fallback)
        self.default_model = default_model
        self.check_interval_s = check_interval_s
        self.on_swap, self.on_failure = on_swap, on_failure
        self._holders: dict[str, ModelHolder] = {}
        self._lock = threading.Lock()
        self._names: list[str] = []
        self._listed = -1e18

    # ---- which models ---------------------------------------------------------------------
    def names(self) -> list[str]:
        now = time.monotonic()
        if now - self._listed >= LIST_CACHE_S:
            try:
                self._names = self.names_source()
            except OSError as exc:           # models/ unreadable: keep the last list
                log.error("cannot list %s: %s", self.paths.models_root, exc)
            self._listed = now
        return self._names

    def refresh(self) -> None:
        """Forget the cached list (after a management action in this worker)."""
        self._listed = -1e18

    def resolve(self, name: str | None) -> str:
        """The model a request means: ``name``, else api.default_model, else the only one."""
        names = self.names()
        if name:
            if name not in names:
                raise ApiError(404, f"no model {name[:64]!r}; models: {', '.join(names) or 'none deployed yet'}",
                               models=names)
            return name
        if self.default_model:
            if self.default_model not in names:
                raise ApiError(503, f"api.default_model={self.default_model} is not a model of this state dir; "
                                    f"models: {', '.join(names) or 'none yet'}", models=names)
            return self.default_model
        if len(names) == 1:
            return names[0]
        if not names:
            raise ApiError(503, "no model to serve (no models/<model>/ in the state dir yet); deploy one "
                                "with the pipeline (./run_pipeline.sh) and it is picked up without a restart",
                           models=[])
        raise ApiError(400, f"{len(names)} models are served: name one with /models/<name>/... or ?model=<name> "
                            f"(or set api.default_model); models: {', '.join(names)}", models=names)

    def holder(self, name: str) -> ModelHolder:
        if name not in self.names():
            raise UnknownModel(name, self.names())
        with self._lock:
            holder = self._holders.get(name)
            if holder is None:
                holder = ModelHolder(ModelStore(self.paths.model(name).models_dir), self.task_of(name),
                                     self.check_interval_s, on_swap=self.on_swap, on_failure=self.on_failure,
                                     fast_path=self.fast_path)
                self._holders[name] = holder
            return holder

    def current(self, name: str) -> ServedModel | None:
        return self.holder(name).current()

    def store(self, name: str) -> ModelStore:
        return ModelStore(self.paths.model(name).models_dir)

    def task_of(self, name: str) -> DictConfig | None:
        """The task config for validation before a version brings its own (metadata.json)."""
        if self.task_config is not None and self.task_config.get("model_name") == name:
            return self.task_config
        manifest = read_manifest(self.paths, name) or {}
        if isinstance(manifest.get("task_config"), dict):
            return OmegaConf.create(manifest["task_config"])
        return None

    def manifest(self, name: str) -> dict[str, Any]:
        return read_manifest(self.paths, name) or {}

    def load_all(self) -> dict[str, str | None]:
        """Load every model now (start-up): name -> served version (None: nothing loadable)."""
        loaded = {}
        for name in self.names():
            model = self.current(name)
            loaded[name] = model.version if model else None
        return loaded

    def loaded(self, name: str) -> ServedModel | None:
        """What this worker serves for ``name`` now, without checking the link."""
        holder = self._holders.get(name)
        return holder._current if holder else None
