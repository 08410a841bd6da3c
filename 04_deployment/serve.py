"""Serve the production model: the Flask API (04_deployment/api) under gunicorn, foreground.

    python 04_deployment/serve.py [hydra overrides]          # = ./run_pipeline.sh serve [overrides]
    API_KEY=... python 04_deployment/serve.py paths.state_dir=/srv/mlops api.port=9000
    python 04_deployment/serve.py --dry-run                   # print the gunicorn command only

Composes the same config as main.py (config.yaml + overrides), resolves it once into
`<state_dir>/logs/api/config.json` for the workers, then replaces itself with gunicorn
(workers/threads/host/port from `api:`), so Ctrl-C and SIGTERM reach gunicorn directly.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import shutil
import sys
from pathlib import Path

API_DIR = Path(__file__).resolve().parent           # 04_deployment: holds the `api` package
REPO_ROOT = API_DIR.parent
for _p in (str(REPO_ROOT), str(API_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from api.settings import (  # noqa: E402
    CONFIG_ENV,
    OVERRIDES_ENV,
    ApiConfigError,
    ApiPaths,
    ApiSettings,
    api_settings,
    resolved_config,
)

from utils.pipeline.paths import StatePaths  # noqa: E402
from utils.tick.tick_lock import pid_alive  # noqa: E402

log = logging.getLogger("serve")


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gunicorn_command(settings: ApiSettings, conf_file: Path) -> list[str]:
    """gevent workers by default: a client that sends its body slowly (or never) holds a
    greenlet, not one of a few threads, so slow clients cannot make the API unreachable."""
    concurrency = (["--worker-connections", str(settings.worker_connections)]
                   if settings.worker_class == "gevent" else ["--threads", str(settings.threads)])
    return [sys.executable, "-m", "gunicorn",
            "--config", str(conf_file),
            "--bind", bind_address(settings.host, settings.port),
            "--workers", str(settings.workers), *concurrency,
            "--worker-class", settings.worker_class, "--timeout", str(settings.timeout_s),
            "--graceful-timeout", "30", "--name", "mlops-api", "--no-control-socket",
            "--pythonpath", f"{API_DIR},{REPO_ROOT}",
            "api.app:create_app()"]


def fresh_run_dir(parent: Path) -> Path:
    """An empty folder for this server's resolved config and metrics files (named by its pid,
    which survives the exec). Folders of servers that are gone are removed: their metrics
    files would otherwise be summed into a new server's."""
    parent.mkdir(parents=True, exist_ok=True)
    for child in parent.iterdir():
        if child.is_dir() and not (child.name.isdigit() and pid_alive(int(child.name))):
            shutil.rmtree(child, ignore_errors=True)
    mine = parent / str(os.getpid())
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    return mine


def prepare(overrides: list[str], write: bool = True) -> tuple[list[str], dict[str, str]]:
    """Compose the config, lay out logs/api/ (when ``write``), return (gunicorn command, environment)."""
    from utils.pipeline.config import load_config

    cfg = load_config(overrides)
    settings = api_settings(cfg)
    paths = StatePaths.of(cfg.paths.state_dir)
    from utils.pipeline.failures import note_context

    note_context(state_dir=paths.state_dir)
    api_paths = ApiPaths(paths)
    if write:
        api_paths.root.mkdir(parents=True, exist_ok=True)
        run_dir = fresh_run_dir(api_paths.runs_dir)
        (run_dir / "prometheus").mkdir()
        (run_dir / "config.json").write_text(json.dumps(resolved_config(cfg), indent=2, default=str))
    else:
        run_dir = api_paths.runs_dir / str(os.getpid())
    env = dict(os.environ)
    env.update({
        CONFIG_ENV: str(run_dir / "config.json"),
        OVERRIDES_ENV: json.dumps(overrides),
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "prometheus"),
        "MLOPS_API_LOG_DIR": str(api_paths.root),
        "PYTHONPATH": os.pathsep.join([str(API_DIR), str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
    })
    if not is_loopback(settings.host):
        log.warning("api.host=%s: the API is reachable from other machines; put it behind a "
                    "TLS proxy and a firewall", settings.host)
    if not (env.get(settings.api_key_env) or "").strip():
        log.warning("$%s is not set: /scoring, ?refresh=1 and /admin/* will answer 403 "
                    "(e.g. %s=$(openssl rand -hex 32) ./run_pipeline.sh serve)",
                    settings.api_key_env, settings.api_key_env)
    log.info("serving every model of %s on http://%s (workers=%d %s); logs in %s", paths.models_root,
             bind_address(settings.host, settings.port), settings.workers,
             f"gevent, {settings.worker_connections} connections each" if settings.worker_class == "gevent"
             else f"gthread, {settings.threads} threads each", api_paths.root)
    return gunicorn_command(settings, API_DIR / "api" / "gunicorn_conf.py"), env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for main.py (e.g. api.port=9000)")
    parser.add_argument("--dry-run", action="store_true", help="print the gunicorn command and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from hydra.errors import HydraException

    try:
        command, env = prepare(args.overrides, write=not args.dry_run)
    except (ApiConfigError, HydraException) as exc:
        log.error("%s", exc)
        return 2
    if args.dry_run:
        print(" ".join(command))
        return 0
    os.chdir(REPO_ROOT)
    os.execvpe(command[0], command, env)
    return 1  # not reached


if __name__ == "__main__":
    from utils.pipeline.failures import run_entry

    sys.exit(run_entry(lambda: main(sys.argv[1:])))   # read-only state dir, full disk: one line
