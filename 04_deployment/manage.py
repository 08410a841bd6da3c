"""Manage the models of a state dir: list, pause/resume, retrain, evaluate, rollback, delete.

    python 04_deployment/manage.py list                       [--state-dir DIR]
    python 04_deployment/manage.py pause   MODEL [--reason "..."]
    python 04_deployment/manage.py resume  MODEL
    python 04_deployment/manage.py retrain MODEL             (training -> scoring -> deployment; resumes a paused model)
    python 04_deployment/manage.py evaluate MODEL            (score production now, append to its history)
    python 04_deployment/manage.py rollback MODEL
    python 04_deployment/manage.py delete  MODEL [--yes]     (asks to type the name unless --yes)

The same actions as the API's /admin/models/<name>/... and the dashboard's buttons.
Exit 0 done, 1 the action failed (busy, nothing to roll back to...), 2 bad usage or unknown model.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.models import management  # noqa: E402
from utils.models.catalog import (  # noqa: E402
    CatalogError,
    UnknownModel,
    list_models,
    migrate_legacy_layout,
    read_control,
    read_manifest,
)
from utils.models.model_store import ModelStore, ModelStoreError  # noqa: E402
from utils.models.registry import tracking_uri_for  # noqa: E402
from utils.pipeline.paths import REPO_ROOT, StatePaths  # noqa: E402
from utils.pipeline.step_config import configure_logging  # noqa: E402

log = logging.getLogger("manage")
NEEDS_MODEL = ("pause", "resume", "retrain", "evaluate", "rollback", "delete")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Manage the models of a pipeline state dir.")
    parser.add_argument("action", choices=("list", *NEEDS_MODEL))
    parser.add_argument("model", nargs="?", help="the model's name (task.model_name)")
    parser.add_argument("--state-dir", default=str(REPO_ROOT), help="the pipeline's paths.state_dir")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite under the state dir)")
    parser.add_argument("--reason", default="", help="why (pause/resume), kept in the model's history")
    parser.add_argument("--default-model", default=None,
                        help="api.default_model of the API (delete refuses it; default: config.yaml's)")
    parser.add_argument("--yes", action="store_true", help="delete without asking")
    parser.add_argument("--json", action="store_true", help="list as JSON")
    return parser.parse_args(argv)


def list_rows(paths: StatePaths) -> list[dict[str, object]]:
    rows = []
    for name in list_models(paths):
        store = ModelStore(paths.model(name).models_dir)
        manifest = read_manifest(paths, name) or {}
        try:
            production = store.production_version()
            score = store.read_score(production) if production else None
        except (OSError, ValueError) as exc:
            production, score = f"unreadable ({exc})", None
        rows.append({"name": name, "task": manifest.get("task"), "production": production, "score": score,
                     "paused": read_control(paths, name).paused, "schedule": manifest.get("schedule") or {}})
    return rows


def print_list(rows: list[dict[str, object]]) -> None:
    if not rows:
        print("no models in this state dir yet: run the pipeline (./run_pipeline.sh)")
        return
    print(f"{'model':24} {'task':8} {'state':7} {'production':28} {'score':>7}  schedule")
    for r in rows:
        schedule = r["schedule"] or {}
        score = f"{r['score']:.4f}" if isinstance(r["score"], float) else "-"
        print(f"{r['name']:24} {str(r['task'] or '-'):8} {'paused' if r['paused'] else 'active':7} "
              f"{str(r['production'] or '-'):28} {score:>7}  retrain {schedule.get('retrain_every') or '-'}, "
              f"monitor {schedule.get('monitor_every') or '-'}")


def configured_default_model() -> str | None:
    """config.yaml's api.default_model: delete refuses the model the API answers /prediction with
    even when --default-model is not given."""
    from utils.pipeline.config import load_config

    value = load_config([]).api.get("default_model")
    return str(value) if value else None


def retrain(paths: StatePaths, name: str, command: list[str]) -> int:
    """The model's chain under the pipeline lock, as the tick and the API's retrain jobs run it:
    one chain at a time, and a delete meanwhile is refused instead of racing the deployment."""
    from utils.pipeline.tracking_server import mask_uri
    from utils.tick.tick_lock import LockBusy, chain_lock, describe_holder, read_holder

    shown = mask_uri(" ".join(command))
    paths.lock_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with chain_lock(paths.lock_file, f"manage.py retrain {name}: {shown}"):
            management.resume(paths, name, "manual retrain")
            print(f"{name}: retraining: {shown}", flush=True)
            return subprocess.call(command, cwd=str(REPO_ROOT))
    except LockBusy as exc:
        print(f"error: {name}: {exc}, {describe_holder(read_holder(paths.lock_file))}; "
              "retrain again when it has finished", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging()
    paths = StatePaths.of(args.state_dir)
    migrate_legacy_layout(paths)
    if args.action == "list":
        rows = list_rows(paths)
        print(json.dumps(rows, indent=2)) if args.json else print_list(rows)
        return 0
    if not args.model:
        print(f"error: {args.action} needs a model; models: {', '.join(list_models(paths)) or 'none yet'}",
              file=sys.stderr)
        return 2
    name = args.model
    uri = tracking_uri_for(paths.state_dir, args.tracking_uri)
    try:
        if args.action == "pause":
            control = management.pause(paths, name, args.reason)
            print(f"{name}: automatic retraining paused (since {control.since}); the tick skips it")
        elif args.action == "resume":
            control = management.resume(paths, name, args.reason)
            print(f"{name}: automatic retraining active again")
        elif args.action == "evaluate":
            record = management.evaluate(paths, name)
            print(f"{name}: {record['version']} {record['primary_metric']} = {record['score']:.4f} on "
                  f"{record['test_data']} (appended to its monitoring history)")
        elif args.action == "rollback":
            outcome = management.rollback(paths, name, uri)
            event = outcome["event"]
            print(f"{name}: rolled back, production is now {event['version']} (was {event['replaced']})")
        elif args.action == "delete":
            if not args.yes:
                answer = input(f"delete model {name} (serving, store, registry; runs and logs are kept)? "
                               f"type its name to confirm: ") if sys.stdin.isatty() else ""
                if answer.strip() != name:
                    print("not deleted (confirm by typing the name, or pass --yes)", file=sys.stderr)
                    return 1
            outcome = management.delete(paths, name, uri, args.default_model if args.default_model is not None
                                        else configured_default_model())
            print(f"{name}: deleted; record in {outcome['record']}")
        elif args.action == "retrain":
            command = management.retrain_command(paths, name, [f"main.tracking_uri={args.tracking_uri}"]
                                                 if args.tracking_uri else [])
            return retrain(paths, name, command)
    except UnknownModel as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CatalogError, ModelStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
