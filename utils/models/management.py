"""Management actions on one model, shared by the CLI (04_deployment/manage.py), the API's
admin routes and the cron tick: pause, resume, evaluate, rollback, delete, the retrain command.

Each action holds the model's management lock (catalog.managing): two actions on one model
at once get ModelBusy (409 in the API, exit 1 in the CLI), never a half-done mix. A retrain is
a chain under the pipeline lock (`fullprocess.lock`, as the tick's and the API's jobs): delete
refuses while any chain runs, since it could be writing the very model being deleted.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from utils.models.catalog import (
    CatalogError,
    Control,
    ModelBusy,
    append_monitoring,
    delete_model,
    managing,
    read_manifest,
    require_model,
    set_paused,
)
from utils.models.model_store import ModelStore
from utils.pipeline.paths import REPO_ROOT, StatePaths

RETRAIN_STEPS = ("model_training", "model_scoring", "model_deployment")


def pause(paths: StatePaths, name: str, reason: str = "", by: str = "cli") -> Control:
    with managing(paths, name, "pause"):
        return set_paused(paths, name, True, reason, by)


def resume(paths: StatePaths, name: str, reason: str = "", by: str = "cli") -> Control:
    with managing(paths, name, "resume"):
        return set_paused(paths, name, False, reason, by)


def retrain_command(paths: StatePaths, name: str, extra_overrides: Sequence[str] = (),
                    steps: Sequence[str] = RETRAIN_STEPS) -> list[str]:
    """main.py for this model (its manifest's overrides) from training to deployment.

    A manual retrain trains anew (`main.reuse_runs=false`): an operator who presses "retrain"
    wants a fresh version, not the cached run of the same inputs; the gate still decides.
    """
    require_model(paths, name)
    manifest = read_manifest(paths, name)
    if not manifest:
        raise CatalogError(f"model {name!r} has no manifest (models/{name}/model.json): run its chain "
                           "once with main.py so the pipeline knows its task and data")
    recorded = [o for o in manifest.get("overrides") or []
                if not o.lstrip("+~").startswith(("task.model_name=", "paths.state_dir=", "main.steps="))]
    return [sys.executable, str(REPO_ROOT / "main.py"), *recorded, *extra_overrides,
            f"task.model_name={name}", "main.reuse_runs=false", f"main.steps='{','.join(steps)}'",
            f"paths.state_dir={paths.state_dir}"]


def evaluate(paths: StatePaths, name: str, test_path: Path | None = None, batch_size: int = 256,
             source: str = "evaluate") -> dict[str, Any]:
    """Score production on the model's test data now; the metrics go to its monitoring history."""
    with managing(paths, name, "evaluate"):
        return _evaluate(paths, name, test_path, batch_size, source)


def monitor(paths: StatePaths, name: str, test_path: Path | None = None, batch_size: int = 256) -> dict[str, Any]:
    """The tick's scheduled evaluation (same as evaluate, recorded as `monitor`)."""
    return evaluate(paths, name, test_path, batch_size, source="monitor")


def _evaluate(paths: StatePaths, name: str, test_path: Path | None, batch_size: int,
              source: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from utils.models.scoring_lib import score_model_dir

    require_model(paths, name)
    store = ModelStore(paths.model(name).models_dir)
    version = store.production_version()
    if version is None:
        raise CatalogError(f"model {name!r} has no production version to evaluate: deploy one first")
    metadata = store.read_metadata(version)
    manifest = read_manifest(paths, name) or {}
    task_config = metadata.get("task_config") or manifest.get("task_config")
    if not isinstance(task_config, dict):
        raise CatalogError(f"{version}: metadata.json has no task_config (trained before it was recorded); "
                           "retrain the model to evaluate it")
    task = OmegaConf.create(task_config)
    if task.name == "forecast":
        return _monitor_forecast(paths, name, store, version, task, source)
    test = Path(test_path or manifest.get("test_path") or "")
    if not test.exists():
        raise CatalogError(f"model {name!r}: test data {test} does not exist; rerun its chain with "
                           "data.test_path=<labelled test data>")
    try:
        report = score_model_dir(store.model_dir(version), task, test, batch_size)
    except ValueError as exc:
        raise CatalogError(f"model {name!r}: cannot score on {test}: {exc}") from None
    from utils.models.scoring_lib import primary_metric_for

    primary = metadata.get("primary_metric") or primary_metric_for(task.primary_metric, report.get("problem"))
    record = {"version": version, "primary_metric": primary, "metrics": report["metrics"],
              "score": report["metrics"].get(primary), "test_data": str(test), "source": source}
    append_monitoring(paths, name, record)
    return record


MONITOR_DAYS = 7     # forecasting: the newest week of ingested days, forecast from just before it


def _monitor_forecast(paths: StatePaths, name: str, store: ModelStore, version: str, task: Any,
                      source: str) -> dict[str, Any]:
    """A forecaster is checked on the newest ingested days (frozen model, no refit): MAE, RMSE,
    WMAPE, Tweedie of the model and of seasonal-naive."""
    import pandas as pd

    from utils.models.forecast_monitoring import monitor_recent

    dataset = paths.model(name).dataset(task.name)
    if not dataset.is_file():
        raise CatalogError(f"model {name!r}: no ingested data at {dataset} to monitor on")
    try:
        result = monitor_recent(store.model_dir(version), pd.read_csv(dataset),
                                min(MONITOR_DAYS, int(task.horizon)))
    except ValueError as exc:
        raise CatalogError(f"model {name!r}: cannot monitor on {dataset}: {exc}") from None
    record = {"version": version, "primary_metric": task.primary_metric, "metrics": result["metrics"],
              "baseline_metrics": result["baseline_metrics"], "score": result["metrics"].get(task.primary_metric),
              "test_data": f"{dataset} ({result['origin']} .. {result['last_date']})", "source": source}
    append_monitoring(paths, name, record)
    return record


def rollback(paths: StatePaths, name: str, tracking_uri: str | None, by: str = "cli",
             **details: Any) -> dict[str, Any]:
    """Production of this model back to the version the current one replaced; alias follows."""
    from utils.models.registry import move_champion_alias

    with managing(paths, name, "rollback"):
        require_model(paths, name)
        event = ModelStore(paths.model(name).models_dir).rollback(source=by, **details)
        return {"event": event, "registry": move_champion_alias(event["version"], tracking_uri)}


def delete(paths: StatePaths, name: str, tracking_uri: str | None, default_model: str | None = None,
           by: str = "cli") -> dict[str, Any]:
    if default_model and name == default_model:
        raise CatalogError(f"model {name!r} is api.default_model: set api.default_model to another model "
                           "(or null) before deleting it")
    with managing(paths, name, "delete"):
        require_no_chain(paths, name, "delete")
        return delete_model(paths, name, by=by, tracking_uri=tracking_uri)


def require_no_chain(paths: StatePaths, name: str, action: str) -> None:
    """ModelBusy while a chain (tick, API retrain job, manual retrain, main.py) holds the pipeline lock:
    it may be training or deploying this model, and would recreate what ``action`` removes."""
    from utils.tick.tick_lock import describe_holder, lock_held, read_holder

    if lock_held(paths.lock_file):
        raise ModelBusy(f"model {name!r}: a pipeline run is in progress, held by "
                        f"{describe_holder(read_holder(paths.lock_file))} ({paths.lock_file}); "
                        f"try {action} again when it has finished")
