"""Step `model_deployment`: gate the candidate against the champion, then swap atomically.

Gate: deploy when candidate score >= champion score - `deployment.tolerance` (scores from
`latestscore.txt`, same test data), or candidate <= champion + tolerance for a metric where
lower is better (RMSE, forecast WMAPE: `direction` in the candidate's `scores.json`), or always
with `deployment.force=true`. Deploying points
`models/production` at the version folder (new symlink + os.replace), appends to
`models/deployments.jsonl` and moves the registry alias `champion`.

Also an operator CLI, without main.py:
    python 04_deployment/deployment.py --rollback --state-dir /srv/mlops
    python 04_deployment/deployment.py --status --state-dir /srv/mlops
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.models.model_store import ModelStore, ModelStoreError, parse_version_id
from utils.pipeline.paths import StatePaths
from utils.models.registry import CHAMPION_ALIAS, set_champion_alias, tracking_uri_for
from utils.pipeline.step_config import TaskConfig, configure_logging
from utils.pipeline.step_runner import run_step
from deployment_config import DeploymentConfig, DeploymentSection  # 04_deployment/  # noqa: E402,F401

log = logging.getLogger("model_deployment")

def champion_version(store: ModelStore, model_name: str) -> str | None:
    """The deployed version of this model: production if it is one of ours, else the alias."""
    current = store.production_version()
    if current and parse_version_id(current)[0] == model_name:
        return current
    import mlflow

    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except mlflow.exceptions.MlflowException:
        return None
    version = f"{model_name}-v{mv.version}"
    return version if store.has_version(version) else None


def decide(candidate_score: float, champion_score: float | None, tolerance: float,
           force: bool, direction: str = "higher") -> tuple[bool, str]:
    """The gate, as a pure function so it is easy to test and to read."""
    if force:
        return True, "forced (deployment.force=true)"
    if champion_score is None:
        return True, "no champion yet"
    if direction == "lower":
        if candidate_score <= champion_score + tolerance:
            return True, f"candidate {candidate_score:.4f} <= champion {champion_score:.4f} + {tolerance} (lower is better)"
        return False, f"candidate {candidate_score:.4f} > champion {champion_score:.4f} + {tolerance} (lower is better)"
    if candidate_score >= champion_score - tolerance:
        return True, f"candidate {candidate_score:.4f} >= champion {champion_score:.4f} - {tolerance}"
    return False, f"candidate {candidate_score:.4f} < champion {champion_score:.4f} - {tolerance}"


def go(config: DeploymentConfig) -> int:
    import mlflow

    paths = StatePaths.of(config.state_dir).model(config.task.model_name)
    store = ModelStore(paths.models_dir)
    for event in store.recover_locked():   # a killed earlier deploy/rollback, a lost link
        log.warning("model store recovered: %s", event)
    task = config.task
    candidate = config.model_version or store.latest_version(task.model_name)
    if candidate is None or not store.has_version(candidate):
        log.error("no candidate model version in %s: run model_training first", store.versions_dir)
        return 2
    candidate_score = store.read_score(candidate)
    if candidate_score is None:
        log.error("%s has no latestscore.txt: run model_scoring before model_deployment", candidate)
        return 2
    direction = store.read_direction(candidate)
    metric = (store.read_scores(candidate) or {}).get("primary_metric") or task.primary_metric
    if registry_is_source(config.deployment.champion_source, mlflow.get_tracking_uri()):
        mlflow.set_tag("pipeline.model_version", candidate)
        mlflow.log_params({"candidate": candidate, "tolerance": config.deployment.tolerance,
                           "force": config.deployment.force})
        mlflow.log_metric("candidate_score", candidate_score)
        return registry_gate(config, store, candidate, candidate_score, direction, metric)
    champion = champion_version(store, task.model_name)
    champion_score = store.read_score(champion) if champion else None
    mlflow.set_tags({"pipeline.model_version": candidate, "pipeline.champion": champion or ""})
    mlflow.log_params({"candidate": candidate, "champion": champion, "tolerance": config.deployment.tolerance,
                       "force": config.deployment.force})
    mlflow.log_metric("candidate_score", candidate_score)
    if champion_score is not None:
        mlflow.log_metric("champion_score", champion_score)

    if champion == candidate and store.production_version() == candidate:
        log.info("%s is already in production: nothing to do", candidate)
        mlflow.set_tags({"pipeline.deployment": "unchanged",
                         "pipeline.deployment_reason": "already in production"})
        return 0
    deploy, reason = decide(candidate_score, champion_score, config.deployment.tolerance,
                            config.deployment.force, direction)
    run = mlflow.active_run()
    mlflow.set_tag("pipeline.deployment_reason", reason)   # main.py's summary reads it
    details = {"metric": metric, "direction": direction, "score": candidate_score, "champion": champion,
               "champion_score": champion_score, "reason": reason,
               "run_id": run.info.run_id if run else None}
    if not deploy:
        store.append_history({"event": "rejected", "version": candidate, **details})
        mlflow.set_tag("pipeline.deployment", "rejected")
        log.info("not deploying %s: %s; production stays %s", candidate, reason,
                 store.production_version())
        return 0
    store.deploy(candidate, **details)
    set_champion_alias(candidate)
    mlflow.set_tag("pipeline.deployment", "deployed")
    log.info("deployed %s (%s): %s", candidate, reason, store.production_link)
    return 0


def registry_is_source(champion_source: str, tracking_uri: str) -> bool:
    """deployment.champion_source: registry, store, or auto (registry for a tracking server)."""
    if champion_source == "auto":
        return tracking_uri.startswith(("http://", "https://"))
    return champion_source == "registry"


def registry_gate(config: DeploymentConfig, store: ModelStore, candidate: str, candidate_score: float,
                  direction: str, metric: str) -> int:
    """The gate against the registry's champion, under its lock (utils/models/registry_gate.py):
    another host's deploy is waited for, read, and compared against; the alias moves first."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from utils.models.registry_gate import RegistryLockTimeout, gate_and_move

    name, number = parse_version_id(candidate)
    run = mlflow.active_run()
    details: dict[str, object] = {"metric": metric, "direction": direction, "score": candidate_score,
                                  "run_id": run.info.run_id if run else None, "champion_source": "registry"}

    decided: dict[str, str] = {}

    def rule(score: float, champion_score: float | None) -> tuple[bool, str]:
        ok, decided["reason"] = decide(score, champion_score, config.deployment.tolerance,
                                       config.deployment.force, direction)
        return ok, decided["reason"]

    def local_score(champion) -> float | None:      # a champion scored before the score tags existed
        version = champion.store_version(name)
        return store.read_score(version) if version and store.has_version(version) else None

    def deploy_locally(champion, champion_score: float | None) -> None:
        store.deploy(candidate, **details, champion=champion.store_version(name), champion_score=champion_score,
                     reason=decided.get("reason"))

    uri = mlflow.get_tracking_uri()
    try:
        result = gate_and_move(mlflow.MlflowClient(), name, number, candidate_score, rule,
                               deploy_locally, local_score, metric, wait_s=config.deployment.lock_wait_s)
    except RegistryLockTimeout as exc:
        log.error("%s; production unchanged", exc)
        return 1
    except MlflowException as exc:
        log.error("the registry at %s failed during the gate (%s); production unchanged, rerun "
                  "model_deployment when it answers", uri, str(exc).splitlines()[0][:300])
        return 1
    champion = result.champion.store_version(name)
    mlflow.set_tags({"pipeline.champion": champion or "", "pipeline.deployment_reason": result.reason,
                     "pipeline.champion_source": "registry"})
    if result.champion_score is not None:
        mlflow.log_metric("champion_score", result.champion_score)
    if result.deployed:
        mlflow.set_tag("pipeline.deployment", "deployed")
        log.info("deployed %s (%s; registry champion was %s): %s", candidate, result.reason,
                 champion or "none", store.production_link)
        return 0
    if result.reason == "already the champion":
        mlflow.set_tag("pipeline.deployment", "unchanged")
        log.info("%s is already the registry's champion: nothing to do", candidate)
        return 0
    store.append_history({"event": "rejected", "version": candidate, **details, "champion": champion,
                          "champion_score": result.champion_score, "reason": result.reason})
    mlflow.set_tag("pipeline.deployment", "rejected")
    log.info("not deploying %s: %s; the registry's champion stays %s", candidate, result.reason, champion)
    return 0


def operator_cli(argv: list[str]) -> int:
    """--rollback / --status for people and the API, outside any pipeline run."""
    parser = argparse.ArgumentParser(description="Model store operations")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--rollback", action="store_true", help="return production to the previous version")
    group.add_argument("--status", action="store_true", help="print production version and history")
    parser.add_argument("--state-dir", default=".", help="the pipeline's paths.state_dir")
    parser.add_argument("--model", default=None, help="the model (default: the only model of the state dir)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: sqlite under the state dir)")
    args = parser.parse_args(argv)
    configure_logging()
    from utils.models.catalog import list_models, migrate_legacy_layout

    shared = StatePaths.of(args.state_dir)
    migrate_legacy_layout(shared)
    models = list_models(shared)
    name = args.model or (models[0] if len(models) == 1 else None)
    if name not in models:
        log.error("%s; models: %s", f"no model {name!r}" if args.model else "name the model with --model",
                  ", ".join(models) or "none yet")
        return 2
    paths = shared.model(name)
    from utils.pipeline.failures import note_context

    note_context(state_dir=shared.state_dir, tracking_uri=args.tracking_uri, tracking_setting="--tracking-uri")
    store = ModelStore(paths.models_dir)
    if args.status:
        print(json.dumps({"model": name, "production": store.production_version(),
                          "rollback_to": store.rollback_target(),
                          "history": store.history()[-10:]}, indent=2))
        return 0
    try:
        event = store.rollback(source="cli")
    except ModelStoreError as exc:
        log.error("%s", exc)
        return 1
    try:
        set_champion_alias(event["version"], tracking_uri_for(paths.state_dir, args.tracking_uri))
    except Exception as exc:  # the store is the source of truth; the alias follows when it can
        from utils.pipeline.failures import describe

        log.warning("production rolled back, but the registry alias could not be moved (the next deploy or "
                    "rollback moves it): %s", describe(exc) or exc)
    print(f"rolled back: production is now {event['version']} (was {event['replaced']})")
    return 0


if __name__ == "__main__":
    if "--config" in sys.argv:
        run_step(__doc__.splitlines()[0], DeploymentConfig, go)
    else:
        from utils.pipeline.failures import run_entry

        sys.exit(run_entry(lambda: operator_cli(sys.argv[1:])))
