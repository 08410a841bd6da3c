"""Pipeline entry point: config.yaml (Hydra) -> one MLflow project run per step.

    python main.py                                   # whole chain, tabular task, default data
    python main.py task=nlu "main.steps='model_training,model_scoring'"
    mlflow run . -P steps=all -P hydra_options="task=tabular training.C=0.5"

Each step is its own MLflow project (MLproject + conda.yml) in its folder and receives the
config sections it declares as one resolved JSON file. Steps run in the order of STEPS, as
nested runs under one parent run. A step whose inputs (data fingerprint, config, code) match
a FINISHED run is reused instead of rerun (`main.reuse_runs`).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from utils.pipeline.config import register_resolvers, resolve_task  # noqa: E402
from utils.data.hashing import sha256_file, sha256_json, sha256_path, sha256_tree  # noqa: E402
from utils.data.ingest_record import scan_source_dir  # noqa: E402
from utils.models.model_store import ModelStore  # noqa: E402
from utils.models.catalog import migrate_legacy_layout, model_overrides, write_manifest  # noqa: E402
from utils.pipeline.paths import (  # noqa: E402
    REPO_ROOT,
    STEP_FOLDERS,
    ModelNameError,
    StatePaths,
    check_model_name,
    resolve_path,
)
from utils.pipeline.quiet import silence_known_noise  # noqa: E402
from utils.pipeline.stale_runs import owner_tags  # noqa: E402
from utils.pipeline.step_config import write_step_config  # noqa: E402
from utils.pipeline.tracking import is_tracking_server  # noqa: E402
from utils.pipeline.tracking_server import mask_uri  # noqa: E402
from utils.tick.tick_lock import LockBusy, hand_chain_lock  # noqa: E402

log = logging.getLogger("pipeline")

register_resolvers()


TASK_KINDS = ("tabular", "nlu", "forecast")   # utils/conf/task/<kind>.yaml


class PipelineError(RuntimeError):
    """A problem the user can fix; the message says what and where."""


@dataclass(frozen=True)
class Step:
    name: str
    sections: tuple[str, ...]            # config keys handed to the step (dotted: "data.test_path")
    takes_model_version: bool = False    # receives the version produced by model_training
    fingerprint: Callable[[DictConfig, StatePaths], Any] | None = None  # None: never reused
    schema: str = ""                     # "<module file in the step folder>:<dataclass>" of its config

    @property
    def folder(self) -> Path:
        return REPO_ROOT / STEP_FOLDERS[self.name]


def source_fingerprint(cfg: DictConfig, paths: StatePaths) -> Any:
    """Cheap identity of the raw data: names, sizes and mtimes (no hashing)."""
    source = resolve_path(cfg.data.source_dir)
    follow = bool(OmegaConf.select(cfg, "data.follow_symlinks", default=False))
    return [(e.path.name, e.size, e.mtime_ns) for e in scan_source_dir(source, follow)]


def dataset_fingerprint(cfg: DictConfig, paths: StatePaths) -> Any:
    data = paths.dataset(cfg.task.name)
    if not data.is_file():
        return None
    schema = paths.schema_file if cfg.task.name == "tabular" and paths.schema_file.is_file() else None
    return [sha256_file(data), sha256_file(schema) if schema else None]


def test_data_fingerprint(cfg: DictConfig, paths: StatePaths) -> Any:
    test = resolve_path(cfg.data.test_path)
    return sha256_path(test) if test.exists() else None


# The chain, in order. `all` runs every step; main.steps picks a subset (order kept).
STEPS: tuple[Step, ...] = (
    Step("data_ingestion", ("task", "data.source_dir", "data.bad_rows", "data.follow_symlinks", "data.read_timeout_s"),
         fingerprint=source_fingerprint, schema="ingest_config.py:IngestionConfig"),
    Step("model_training", ("task", "training", "logging"), fingerprint=dataset_fingerprint,
         schema="train_config.py:TrainingConfig"),
    Step("model_scoring", ("task", "data.test_path", "scoring", "logging"), takes_model_version=True,
         fingerprint=test_data_fingerprint, schema="score_config.py:ScoringConfig"),
    Step("model_deployment", ("task", "deployment"), takes_model_version=True,
         schema="deployment_config.py:DeploymentConfig"),
    Step("diagnostics", ("task", "data.test_path", "diagnostics", "logging"), schema="diagnostics_config.py:DiagnosticsConfig"),
    Step("reporting", ("task", "reporting"), schema="reporting_config.py:ReportingConfig"),
)
STEP_NAMES = [s.name for s in STEPS]
NOT_IN_CACHE_KEY = ("logging",)   # how a step reports progress does not change what it makes


def select_steps(spec: str) -> list[Step]:
    """`all` or a comma list -> steps in chain order; unknown names fail at once."""
    wanted = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not wanted:
        raise PipelineError(f"main.steps is empty; valid steps: all, {', '.join(STEP_NAMES)}")
    if wanted == ["all"]:
        return list(STEPS)
    unknown = [w for w in wanted if w not in STEP_NAMES]
    if unknown:
        raise PipelineError(f"unknown step(s) {', '.join(unknown)} in main.steps; "
                            f"valid steps: all, {', '.join(STEP_NAMES)}")
    return [s for s in STEPS if s.name in wanted]


_ABSENT = object()


def step_config(step: Step, cfg: DictConfig, paths: StatePaths, model_version: str | None) -> dict:
    """The resolved sections a step declares, with relative data paths made absolute."""
    out: dict[str, Any] = {"state_dir": str(paths.state_dir)}
    for key in step.sections:
        value = OmegaConf.select(cfg, key, throw_on_missing=True, default=_ABSENT)
        if value is _ABSENT:   # a key only some tasks have (data.bad_rows): the step's default
            continue
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if key in ("data.source_dir", "data.test_path"):
            value = str(resolve_path(value))
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    if step.takes_model_version:
        out["model_version"] = model_version
    return out


class ConfigError(PipelineError):
    """A config value a step would reject: reported before any step runs (exit 2)."""


def step_schema(step: Step) -> type:
    """The dataclass a step loads its config into, from the step folder's small config module
    (dataclasses only: no step code, no heavy imports)."""
    import importlib.util

    file, _, name = step.schema.partition(":")
    module_name = Path(file).stem
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, step.folder / file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return getattr(module, name)


def validate_step_configs(steps: list[Step], cfg: DictConfig, paths: StatePaths) -> None:
    """Build and type-check every chosen step's config before the first step runs."""
    from utils.pipeline.step_config import ConfigValueError, build_config

    for step in steps:
        if not step.schema:
            continue
        try:
            section = step_config(step, cfg, paths, None)
            build_config(step_schema(step), section)
        except ConfigValueError as exc:
            raise ConfigError(f"{exc} (step {step.name}; fix it in config.yaml or on the command "
                              "line)") from None
        except Exception as exc:   # e.g. a missing mandatory value (???) in the composed config
            raise ConfigError(f"config of step {step.name}: {str(exc).splitlines()[0]}") from None


def note_failure_context(cfg: DictConfig, paths: StatePaths) -> None:
    """Let an operational failure's one line name the state dir and the tracking URI."""
    from utils.pipeline.failures import note_context

    note_context(state_dir=paths.state_dir,
                 tracking_uri=mask_uri(str(cfg.main.tracking_uri)) if cfg.main.tracking_uri
                 else f"sqlite:///{paths.mlflow_db}")


def clean_up_after_killed_runs(experiment_id: str, store: ModelStore, model_name: str) -> None:
    """What a killed chain or tick left: RUNNING runs ended as KILLED, a pending deploy intent
    finished or aborted, staging debris removed, scoreless versions marked abandoned."""
    import mlflow

    from utils.pipeline.stale_runs import end_stale_runs

    client = mlflow.MlflowClient()
    end_stale_runs(client, [experiment_id])
    if store.root.is_dir():
        for event in store.recover_locked():
            log.warning("model store recovered: %s", event)
    for version in store.list_versions(model_name):
        if store.read_score(version) is not None or store.is_abandoned(version):
            continue
        try:
            run_id = store.read_metadata(version).get("run_id")
            run = client.get_run(run_id) if run_id else None
        except Exception:   # noqa: BLE001 - its run is gone: treat as ended
            run = None
        parent_id = run.data.tags.get("mlflow.parentRunId") if run else None
        owner = client.get_run(parent_id) if parent_id else run
        if owner is None or owner.info.status != "RUNNING":
            store.mark_abandoned(version, "no score: the chain that trained it ended before scoring")
            log.warning("marked %s abandoned (trained, never scored: its chain was killed)", version)


def code_version(step: Step) -> str:
    """Hash of the step folder and utils/: a code change invalidates cached runs."""
    files = [p for p in step.folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += [p for p in (REPO_ROOT / "utils").rglob("*")
              if p.is_file() and p.suffix in {".py", ".yaml"}]
    return sha256_tree(files, REPO_ROOT)


def copy_dataset_inputs(source_run_id: str, target_run_id: str) -> None:
    from utils.pipeline.tracking import copy_dataset_inputs as copy

    try:
        copy(source_run_id, target_run_id)
    except Exception as exc:  # cosmetic: the step's own run has them
        log.warning("could not show the datasets of run %s on the pipeline run: %s", source_run_id, exc)


def tracking_setup(cfg: DictConfig, paths: StatePaths) -> tuple[str, str | None]:
    """Tracking URI (absolute) and the experiment id; under `mlflow run` reuse the CLI's run."""
    import mlflow

    from utils.pipeline.tracking import (
        absolute_tracking_uri,
        check_tracking_store,
        default_tracking_uri,
        ensure_experiment,
    )

    if os.environ.get("MLFLOW_RUN_ID") and os.environ.get("MLFLOW_TRACKING_URI"):
        # launched by `mlflow run .`: the parent run lives where the CLI put it
        uri = absolute_tracking_uri(os.environ["MLFLOW_TRACKING_URI"], Path.cwd())
        mlflow.set_tracking_uri(uri)
        run = mlflow.get_run(os.environ["MLFLOW_RUN_ID"])
        return uri, run.info.experiment_id
    uri = (absolute_tracking_uri(cfg.main.tracking_uri, REPO_ROOT) if cfg.main.tracking_uri
           else default_tracking_uri(paths))
    check_tracking_store(uri)   # a server that is down: one line now, not minutes of retries
    mlflow.set_tracking_uri(uri)
    return uri, ensure_experiment(cfg.main.experiment_name, paths)


def find_reusable(experiment_id: str, step: Step, cache_key: str, store: ModelStore) -> Any | None:
    """A FINISHED run of this step with the same cache key whose outputs still exist."""
    import mlflow

    runs = mlflow.search_runs(
        experiment_ids=[experiment_id], output_format="list", max_results=5,
        filter_string=(f"tags.`pipeline.step` = '{step.name}' and "
                       f"tags.`pipeline.cache_key` = '{cache_key}' and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"])
    for run in runs:
        version = run.data.tags.get("pipeline.model_version")
        if step.name == "model_training" and not (version and store.has_version(version)):
            continue  # its model folder is gone: train again
        if step.name == "model_scoring" and not (version and store.read_score(version) is not None):
            continue
        if step.name == "data_ingestion" and not Path(run.data.tags.get("pipeline.dataset", "")).is_file():
            continue
        return run
    return None


def check_inputs(cfg: DictConfig, names: list[str]) -> None:
    """Fail before anything runs when a folder or file the chosen steps need is missing."""
    if cfg.task.name not in TASK_KINDS:
        raise PipelineError(f"task.name={cfg.task.name!r} is not a task kind: expected {', '.join(TASK_KINDS)} "
                            "(name your model with task.model_name)")
    if "data_ingestion" in names and not resolve_path(cfg.data.source_dir).is_dir():
        raise PipelineError(f"data.source_dir {resolve_path(cfg.data.source_dir)} does not exist: "
                            "set data.source_dir=<folder with the raw files>")
    if {"model_scoring", "diagnostics"} & set(names) and not resolve_path(cfg.data.test_path).exists():
        raise PipelineError(f"data.test_path {resolve_path(cfg.data.test_path)} does not exist: "
                            "set data.test_path=<labelled test file or folder>")


def launch(step: Step, config_file: Path, cfg: DictConfig, experiment_id: str, cache_key: str) -> str:
    """Run one step project as a nested run; its run id, tagged for the reuse lookup."""
    import mlflow
    from mlflow.exceptions import ExecutionException

    log.info("step %s: running %s", step.name, step.folder.relative_to(REPO_ROOT))
    try:
        submitted = mlflow.run(str(step.folder), "main", parameters={"config": str(config_file)},
                               env_manager=cfg.main.env_manager, experiment_id=experiment_id,
                               run_name=step.name, synchronous=True)
    except Exception as exc:
        from utils.pipeline.stale_runs import end_running_children

        # a step that never started (e.g. env_manager=conda without conda) leaves its run RUNNING
        end_running_children(mlflow.MlflowClient(), experiment_id, mlflow.active_run().info.run_id)
        if not isinstance(exc, ExecutionException):
            raise
        mlflow.set_tag("pipeline.failed_step", step.name)
        raise PipelineError(f"step {step.name} failed ({exc}); its log is above, its run is in "
                            "MLflow. The deployed model is unchanged.") from exc
    client = mlflow.MlflowClient()
    client.set_tag(submitted.run_id, "pipeline.step", step.name)
    client.set_tag(submitted.run_id, "pipeline.cache_key", cache_key)
    return submitted.run_id


def defining_overrides() -> list[str]:
    """The command-line overrides that define this model, for its manifest (see catalog).

    In a sweep (``-m``) the swept keys are left out: they differ per job, the model does not.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return []
    overrides = list(hc.overrides.task)
    if hc.mode == RunMode.MULTIRUN:
        swept = {a.split("=", 1)[0].lstrip("+~") for a in sys.argv[1:]
                 if "=" in a and any(m in a.split("=", 1)[1] for m in (",", "range(", "choice(", "glob("))}
        overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in swept]
    return model_overrides(overrides)


def record_model(cfg: DictConfig, paths: StatePaths) -> None:
    """Write the model's manifest: what the cron tick and the API need to rebuild its config."""
    schedule = OmegaConf.to_container(cfg.schedule, resolve=True) if "schedule" in cfg else {}
    write_manifest(paths, cfg.task.model_name, {
        "task": cfg.task.name, "primary_metric": cfg.task.primary_metric,
        "overrides": defining_overrides(),
        "task_config": OmegaConf.to_container(cfg.task, resolve=True),
        "source_dir": str(resolve_path(cfg.data.source_dir)),
        "test_path": str(resolve_path(cfg.data.test_path)),
        "schedule": schedule})


def run_chain(cfg: DictConfig) -> int:
    try:
        model_name = check_model_name(cfg.task.model_name)
    except ModelNameError as exc:
        raise PipelineError(str(exc)) from None
    steps = select_steps(cfg.main.steps)
    names = [s.name for s in steps]
    check_inputs(cfg, names)
    shared = StatePaths.of(cfg.paths.state_dir)
    paths = shared.model(model_name)
    validate_step_configs(steps, cfg, paths)
    note_failure_context(cfg, paths)
    wait_s = lock_wait_s(cfg)
    shared.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        with hand_chain_lock(shared.lock_file, " ".join(sys.argv), wait_s):
            return run_steps(cfg, steps, shared, paths)
    except LockBusy as exc:
        raise PipelineError(f"{exc}; run this chain again when it has finished (waited {wait_s:.0f} s, "
                            "main.lock_wait_s), or give it its own paths.state_dir") from None


def lock_wait_s(cfg: DictConfig) -> float:
    """main.lock_wait_s, checked before anything waits on it."""
    import math

    value = cfg.main.get("lock_wait_s", 60)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 86400 \
            or not math.isfinite(value):
        raise ConfigError(f"main.lock_wait_s: expected seconds in [0, 86400], got {value!r}")
    return float(value)


def run_steps(cfg: DictConfig, steps: list[Step], shared: StatePaths, paths: StatePaths) -> int:
    """The chain itself, under the pipeline lock: tracking, each step (or its reused run), summary."""
    import mlflow

    names = [s.name for s in steps]
    migrate_legacy_layout(shared)
    record_model(cfg, shared)
    uri, experiment_id = tracking_setup(cfg, paths)
    os.environ["MLFLOW_TRACKING_URI"] = uri   # the step processes inherit it
    if cfg.main.env_manager == "local":
        # steps run `python ...` from PATH: make that this interpreter (the venv) even if not activated
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    silence_known_noise()   # the steps inherit the environment part of it
    store = ModelStore(paths.models_dir)
    log.info("pipeline: task=%s steps=%s state_dir=%s tracking=%s", cfg.task.name, ",".join(names),
             paths.state_dir, mask_uri(uri))
    clean_up_after_killed_runs(experiment_id, store, cfg.task.model_name)

    model_version: str | None = None
    reused: list[str] = []
    started = time.monotonic()
    overrides = changed_overrides()
    run_ids: dict[str, str] = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=parent_run_name(cfg, names, overrides)) as parent:
        mlflow.set_tags({"pipeline.kind": "parent", "pipeline.task": cfg.task.name,
                         "pipeline.model": cfg.task.model_name, "pipeline.steps": ",".join(names),
                         "pipeline.overrides": " ".join(overrides),
                         "mlflow.note.content": pipeline_note(cfg, names, overrides), **owner_tags()})
        mlflow.log_dict(logged_config(cfg), "config.yaml")
        for step in steps:
            t0 = time.monotonic()
            section = step_config(step, cfg, paths, model_version)
            keyed = {k: v for k, v in section.items() if k not in NOT_IN_CACHE_KEY}
            key = sha256_json({"step": step.name, "config": keyed, "code": code_version(step),
                               "inputs": step.fingerprint(cfg, paths) if step.fingerprint else None})
            cached = (find_reusable(experiment_id, step, key, store)
                      if cfg.main.reuse_runs and step.fingerprint else None)
            if cached is not None:
                run_id = cached.info.run_id
                reused.append(step.name)
                log.info("step %s: reused FINISHED run %s (same data, config and code)", step.name, run_id)
            else:
                config_file = write_step_config(paths.step_configs_dir / f"{step.name}-{key[:12]}.json", section)
                run_id = launch(step, config_file, cfg, experiment_id, key)
            if step.name == "model_training":
                model_version = mlflow.get_run(run_id).data.tags.get("pipeline.model_version")
            run_ids[step.name] = run_id
            if step.name in ("data_ingestion", "model_training"):
                copy_dataset_inputs(run_id, parent.info.run_id)
            mlflow.set_tag(f"pipeline.run.{step.name}", run_id)
            mlflow.log_metric(f"duration_s.{step.name}", time.monotonic() - t0)
        mlflow.set_tag("pipeline.reused_steps", ",".join(reused))
        parent_id = parent.info.run_id
    if "reporting" in names:
        finish_report(paths, parent_id)
    print_summary(cfg, paths, uri, parent_id, reused, time.monotonic() - started,
                  candidate_facts(store, model_version, run_ids.get("model_deployment")))
    return 0


def logged_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config for the run's config.yaml artifact, a password in a URI masked."""
    data = OmegaConf.to_container(cfg, resolve=True)
    main_section = data.get("main") or {}
    if main_section.get("tracking_uri"):
        main_section["tracking_uri"] = mask_uri(str(main_section["tracking_uri"]))
    return data


def changed_overrides() -> list[str]:
    """The command-line overrides of this run (Hydra's), minus where things are written."""
    from hydra.core.hydra_config import HydraConfig

    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # not under @hydra.main (tests calling run_chain directly)
        return []
    return [o for o in overrides if not o.startswith(("paths.", "main.tracking_uri", "diagnostics.pypi_url"))]


def parent_run_name(cfg: DictConfig, names: list[str], overrides: list[str]) -> str:
    """`nlu_query_model 12-01 22:50 training.epochs=1`: tellable apart in the MLflow run list."""
    # steps are in [...]; data paths are long and in the run's description (the note)
    shown = [o for o in overrides if not o.startswith(("task=", "main.steps=", "data.source_dir=", "data.test_path="))]
    steps = "" if len(names) == len(STEPS) else f" [{','.join(names)}]"
    name = f"{cfg.task.model_name} {time.strftime('%m-%d %H:%M')}{steps}" + (f" {' '.join(shown)}" if shown else "")
    return name if len(name) <= 120 else name[:119] + "…"


def pipeline_note(cfg: DictConfig, names: list[str], overrides: list[str]) -> str:
    """The run's description in the MLflow UI (Overview tab)."""
    return (f"Pipeline run of `{cfg.task.model_name}` (task {cfg.task.name}): steps {', '.join(names)}. "
            f"Overrides: {' '.join(overrides) or 'none'}. Each step is a child run; config.yaml is an artifact.")


def finish_report(paths: StatePaths, parent_id: str) -> None:
    """Rewrite report.html's step table now that every step (and the run) has ended."""
    from utils.monitoring.report_lib import finalize_report

    try:
        out = finalize_report(paths.reports_dir, parent_id)
    except Exception as exc:  # the report is a by-product: never fail a finished chain for it
        log.warning("could not finalize %s: %s", paths.reports_dir / "report.html", exc)
        return
    if out is not None:
        log.info("report: %s (final step table)", out)


def candidate_facts(store: ModelStore, trained: str | None, deployment_run: str | None) -> dict[str, Any]:
    """This run's candidate: version, score, and the gate's decision and reason when it ran."""
    import mlflow

    facts: dict[str, Any] = {"version": trained, "score": None, "decision": None, "reason": None}
    if deployment_run:
        tags = mlflow.get_run(deployment_run).data.tags
        facts["version"] = facts["version"] or tags.get("pipeline.model_version")
        facts["decision"] = tags.get("pipeline.deployment")
        facts["reason"] = tags.get("pipeline.deployment_reason")
    if facts["version"] and store.has_version(facts["version"]):
        facts["score"] = store.read_score(facts["version"])
    return facts


def print_summary(cfg: DictConfig, paths: StatePaths, uri: str, run_id: str, reused: list[str],
                  seconds: float, candidate: dict[str, Any] | None = None) -> None:
    """What a person needs after a run: where to look, what this run made, what is deployed."""
    store = ModelStore(paths.models_dir)
    production = store.production_version()
    score = store.read_score(production) if production else None
    metric = ((store.read_scores(production) or {}).get("primary_metric") if production else None) \
        or cfg.task.primary_metric
    lines = [f"pipeline finished in {seconds:.1f} s (parent run {run_id})"]
    if reused:
        lines.append(f"reused steps:      {', '.join(reused)}")
    if candidate and candidate.get("version"):
        text = candidate["version"]
        if candidate.get("score") is not None:
            scored_by = (store.read_scores(candidate["version"]) or {}).get("primary_metric") or metric
            text += f" ({scored_by} {candidate['score']:.4f} on the test data)"
        else:
            text += " (not scored in this run)"
        if candidate.get("decision"):
            text += f"; gate: {candidate['decision']}"
            if candidate.get("reason"):
                text += f" ({candidate['reason']})"
        else:
            text += "; gate: not run (add model_deployment to main.steps)"
        lines.append(f"candidate model:   {text}")
    lines.append(f"production model:  {production or 'none deployed'}"
                 + (f" ({metric} {score:.4f} on the test data)" if score is not None else ""))
    if production:
        lines.append(f"model folder:      {store.version_dir(production)}")
    where = "open " + mask_uri(uri) if is_tracking_server(uri) else f"mlflow ui --backend-store-uri {mask_uri(uri)}"
    lines.append(f"MLflow UI:         {where}  "
                 f"(Experiments > {cfg.main.experiment_name} > Training runs > {run_id[:8]}…)")
    print("\n".join(lines))


EXIT_CODES: list[int] = []   # one per job: a sweep (-m) runs several in this process


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def go(cfg: DictConfig) -> int:
    """One job. Returns, never exits: sys.exit here would end a Hydra sweep after job 0."""
    from utils.pipeline.failures import run_entry

    try:
        resolve_task(cfg)   # the embedded data's specifics never leak into another table
        code = run_entry(lambda: run_chain(cfg))   # operational failures: one line, exit 1
    except ConfigError as exc:
        log.error("%s", exc)
        code = 2
    except PipelineError as exc:
        log.error("%s", exc)
        code = 1
    EXIT_CODES.append(code)
    return code


def _terminated(signum: int, _frame: Any) -> None:
    """SIGTERM (kill, systemctl stop, a job runner) as Ctrl-C: MLflow then stops the running step
    and marks it FAILED, and the pipeline lock's record is cleared, instead of an orphaned step."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    from utils.pipeline.cli_help import help_requested, help_text
    from utils.pipeline.failures import run_hydra_entry

    if kind := help_requested(sys.argv[1:]):   # Hydra's own help walks the whole repo root
        print(help_text(kind, REPO_ROOT, [a for a in sys.argv[1:] if not a.startswith("-")]))
        sys.exit(0)

    signal.signal(signal.SIGTERM, _terminated)
    try:
        run_hydra_entry(go)   # disk full, read-only state dir, corrupt DB, server down: one line
    except KeyboardInterrupt as stop:
        print(f"error: interrupted ({stop or 'SIGINT'}): the running step was stopped and marked FAILED; "
              "production is unchanged unless model_deployment had finished", file=sys.stderr)
        sys.exit(130)
    sys.exit(max(EXIT_CODES, default=1))
