"""The API's configuration: the `api:` section of config.yaml, typed, plus where its files go.

Workers get the config that serve.py resolved (a JSON file named by MLOPS_API_CONFIG), so
every worker sees exactly what the launcher saw; without it (plain `gunicorn`, tests) the
config is composed from config.yaml and the overrides in MLOPS_API_OVERRIDES.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from utils.pipeline.paths import StatePaths, resolve_path

CONFIG_ENV = "MLOPS_API_CONFIG"        # resolved config JSON written by serve.py
OVERRIDES_ENV = "MLOPS_API_OVERRIDES"  # JSON list of the Hydra overrides serve.py was given


class ApiConfigError(ValueError):
    """The `api:` section (or the config file named by MLOPS_API_CONFIG) is unusable."""


WORKER_CLASSES = ("gevent", "gthread")
MODEL_SOURCES = ("store", "registry")


@dataclass
class ApiSettings:
    """`api:` in config.yaml; every key can be overridden (`api.port=9000`)."""

    host: str = "127.0.0.1"               # bind address; anything else exposes the API
    default_model: str | None = None      # the model of POST /prediction etc.; None: the only model
    port: int = 8000
    workers: int = 2                      # gunicorn worker processes
    worker_class: str = "gevent"          # gevent (slow clients cost a greenlet, not a thread) | gthread
    worker_connections: int = 1000        # open connections per gevent worker
    threads: int = 4                      # threads per worker (gthread only)
    prediction_concurrency: int = 1       # predictions computed at once per worker (GIL: more is slower)
    fast_path: bool = True                # tabular: numpy replay checked equal to scikit-learn (api/fast_tabular.py)
    fast_lane: bool = True                # POST .../prediction answered by a WSGI lane in front of Flask (api/fast_lane.py)
    nlu_threads: int = 1                  # NLU (ONNX Runtime): intra-op threads per worker for calls of < 8 texts
    nlu_batch_threads: int | None = None  # larger calls: batches side by side; None: every core
    nlu_int8: bool = True                 # NLU: serve a model's int8 graph when it passed its dev check (nlu_int8.py)
    timeout_s: int = 120                  # gunicorn worker timeout (a model load must fit)
    max_body_bytes: int = 1_048_576       # larger request bodies get 413
    max_records: int = 10_000             # records/texts per /prediction request
    max_text_chars: int = 2_000           # per NLU text
    reload_check_ms: int = 0              # how often a worker looks at models/production (0: every request)
    api_key_env: str = "API_KEY"          # environment variable holding the API key
    access_log: bool = True               # structured (JSON lines) access log in logs/api/access.log
    prediction_log: bool = True           # every prediction appended to predictions.db
    prediction_log_retention_days: float = 30.0
    prediction_log_max_rows: int | None = 5_000_000
    prediction_log_queue: int = 10_000    # request batches buffered for the writer thread
    model_source: str = "store"           # store: models/<model>/production | registry: <model>@champion
    registry_poll_s: float = 5.0          # registry source: how often the alias is checked
    registry_timeout_s: float = 5.0       # registry source: per poll call (then: degraded, last good served)
    registry_cache_dir: str | None = None  # registry source: downloaded versions; None: <state_dir>/registry_cache
    registry_models: list[str] = field(default_factory=list)  # registry source: [] = every model with a champion

    def validate(self) -> "ApiSettings":
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"api.port={self.port} (1-65535)")
        for name in ("workers", "threads", "prediction_concurrency", "timeout_s", "max_body_bytes", "max_records",
                     "max_text_chars", "prediction_log_queue"):
            if getattr(self, name) < 1:
                problems.append(f"api.{name}={getattr(self, name)} (must be >= 1)")
        if self.nlu_threads < 1 or (self.nlu_batch_threads is not None and self.nlu_batch_threads < 1):
            problems.append(f"api.nlu_threads={self.nlu_threads}, api.nlu_batch_threads={self.nlu_batch_threads} "
                            "(must be >= 1; nlu_batch_threads null: every core)")
        if self.default_model is not None:
            from utils.pipeline.paths import ModelNameError, check_model_name

            try:
                check_model_name(self.default_model)
            except ModelNameError:
                problems.append(f"api.default_model={self.default_model!r} (not a model name)")
        if self.worker_class not in WORKER_CLASSES:
            problems.append(f"api.worker_class={self.worker_class} ({' or '.join(WORKER_CLASSES)})")
        if self.worker_connections < 1:
            problems.append(f"api.worker_connections={self.worker_connections} (must be >= 1)")
        if self.model_source not in MODEL_SOURCES:
            problems.append(f"api.model_source={self.model_source} ({' or '.join(MODEL_SOURCES)})")
        if self.registry_poll_s <= 0 or self.registry_timeout_s <= 0:
            problems.append(f"api.registry_poll_s={self.registry_poll_s}, api.registry_timeout_s="
                            f"{self.registry_timeout_s} (seconds, must be > 0)")
        if self.reload_check_ms < 0:
            problems.append(f"api.reload_check_ms={self.reload_check_ms} (must be >= 0)")
        if problems:
            raise ApiConfigError("invalid api settings: " + ", ".join(problems))
        return self


def export_nlu_serving(settings: ApiSettings, environ: Any = None) -> None:
    """api.nlu_threads / api.nlu_batch_threads / api.nlu_int8 as the environment the NLU pyfunc
    reads at load (nlu_onnx.THREADS_ENV, BATCH_THREADS_ENV, nlu_int8.INT8_ENV): a logged model
    takes no serving options. The config wins; ``nlu_batch_threads: null`` leaves
    MLOPS_NLU_BATCH_THREADS as it is (unset: every core)."""
    environ = os.environ if environ is None else environ
    environ["MLOPS_NLU_THREADS"] = str(settings.nlu_threads)
    environ["MLOPS_NLU_INT8"] = "1" if settings.nlu_int8 else "0"
    if settings.nlu_batch_threads is not None:
        environ["MLOPS_NLU_BATCH_THREADS"] = str(settings.nlu_batch_threads)


@dataclass(frozen=True)
class ApiPaths:
    """The API's own files, under `<state_dir>/logs/api/`."""

    state: StatePaths

    @property
    def root(self) -> Path:
        return self.state.logs_dir / "api"

    @property
    def runs_dir(self) -> Path:
        """run/<server pid>/: config.json (resolved config) and prometheus/ (metrics files)."""
        return self.root / "run"

    @property
    def jobs_db(self) -> Path:
        return self.root / "jobs.db"

    @property
    def jobs_logs(self) -> Path:
        return self.root / "jobs"

    @property
    def access_log(self) -> Path:
        return self.root / "access.log"

    @property
    def app_log(self) -> Path:
        return self.root / "api.log"


@dataclass
class AppConfig:
    """Everything the app reads from the config, resolved once at start-up."""

    cfg: DictConfig
    settings: ApiSettings
    paths: StatePaths
    overrides: list[str] = field(default_factory=list)

    @property
    def api_paths(self) -> ApiPaths:
        return ApiPaths(self.paths)

    @property
    def task(self) -> DictConfig:
        return self.cfg.task

    @property
    def test_path(self) -> Path:
        return resolve_path(self.cfg.data.test_path)

    @property
    def tracking_uri(self) -> str | None:
        return OmegaConf.select(self.cfg, "main.tracking_uri")

    @property
    def registry_source(self) -> bool:
        return self.settings.model_source == "registry"

    @property
    def registry_cache(self) -> Path:
        """The registry mirror (api.registry_cache_dir, default <state_dir>/registry_cache)."""
        configured = self.settings.registry_cache_dir
        return resolve_path(configured) if configured else self.paths.state_dir / "registry_cache"

    def registry_uri(self) -> str:
        """The tracking server replicas follow; api.model_source=registry needs one."""
        uri = self.tracking_uri or ""
        if not uri.startswith(("http://", "https://")):
            raise ApiConfigError(f"api.model_source=registry needs main.tracking_uri=http(s)://<tracking server> "
                                 f"(got {uri or 'none: the local SQLite DB'}); replicas follow "
                                 "<model>@champion on that server")
        return uri


def api_settings(cfg: DictConfig) -> ApiSettings:
    """The typed `api:` section; unknown keys and wrong types fail naming the key."""
    section = OmegaConf.select(cfg, "api") or {}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ApiSettings), section)
    except OmegaConfBaseException as exc:
        raise ApiConfigError(f"config.yaml `api:` section: {exc}") from exc
    return OmegaConf.to_object(merged).validate()  # type: ignore[union-attr]


def load_app_config(config: DictConfig | Mapping[str, Any] | None = None,
                    overrides: Sequence[str] | None = None) -> AppConfig:
    """The app's config: given, else serve.py's resolved file, else composed from config.yaml."""
    if overrides is None:
        overrides = json.loads(os.environ.get(OVERRIDES_ENV, "[]"))
    if config is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ApiConfigError(f"{CONFIG_ENV}={path}: cannot read the resolved config ({exc}); "
                                 "start the API with 04_deployment/serve.py") from exc
    if config is None:
        from utils.pipeline.config import load_config

        cfg = load_config(list(overrides))
    elif isinstance(config, DictConfig):
        cfg = config
    else:
        cfg = OmegaConf.create(dict(config))
    return AppConfig(cfg=cfg, settings=api_settings(cfg), paths=StatePaths.of(cfg.paths.state_dir),
                     overrides=list(overrides))


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain JSON-able data (interpolations resolved), for workers and jobs."""
    from utils.pipeline.config import register_resolvers

    register_resolvers()
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
