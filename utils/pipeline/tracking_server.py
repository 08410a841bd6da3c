"""The team's MLflow tracking server: PostgreSQL backend store, proxied artifacts, one command.

    MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://mlflow@db-host:5432/mlflow PGPASSWORD=... \\
        ./run_pipeline.sh tracking-server [tracking_server.port=5000 tracking_server.workers=4 ...]
    python -m utils.pipeline.tracking_server --dry-run      # what would run (password masked)
    python -m utils.pipeline.tracking_server --check        # connect + schema check, then exit

Settings come from the ``tracking_server:`` section of config.yaml (Hydra overrides as for
main.py). The backend URI is read from the environment variable it names (never from a file,
never on a command line, where ``ps`` would show it) and the password from ``PGPASSWORD`` or
the URI; whatever this module logs or prints has the password masked. Before the server starts:
one connection to the database (a wrong password or an unreachable host ends in one line,
exit 1), then the schema migrations ``mlflow db upgrade`` would run, only when the schema is not
at MLflow's head revision. Then it replaces itself with ``mlflow server --serve-artifacts
--artifacts-destination <folder or s3://...>``, so SIGTERM from systemd reaches the server.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("tracking_server")

_PASSWORD_IN_URI = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s]*)@", re.IGNORECASE)


class TrackingServerError(RuntimeError):
    """A problem the operator can fix; the message is one line and names no password."""


def mask_uri(uri: str) -> str:
    """``scheme://user:secret@host/db`` -> ``scheme://user:***@host/db`` (anywhere in a text)."""
    return _PASSWORD_IN_URI.sub(lambda m: f"{m.group('head')}:***@", uri)


def mask_text(text: str, secrets: list[str]) -> str:
    """``text`` with every URI password and every known secret replaced by ``***``."""
    out = mask_uri(text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return out


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    workers: int
    backend_store_uri_env: str
    artifacts_destination: str
    db_upgrade: bool
    allowed_hosts: str | None
    extra_args: tuple[str, ...]

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "ServerSettings":
        workers = int(section.get("workers", 4))
        port = int(section.get("port", 5000))
        if workers < 1:
            raise TrackingServerError(f"tracking_server.workers={workers}: must be >= 1")
        if not 0 < port < 65536:
            raise TrackingServerError(f"tracking_server.port={port}: must be 1..65535")
        destination = str(section.get("artifacts_destination") or "").strip()
        if not destination:
            raise TrackingServerError("tracking_server.artifacts_destination is empty: set a folder or s3://bucket/prefix")
        return cls(host=str(section.get("host", "127.0.0.1")), port=port, workers=workers,
                   backend_store_uri_env=str(section.get("backend_store_uri_env", "MLFLOW_BACKEND_STORE_URI")),
                   artifacts_destination=destination, db_upgrade=bool(section.get("db_upgrade", True)),
                   allowed_hosts=section.get("allowed_hosts") or None,
                   extra_args=tuple(str(a) for a in section.get("extra_args") or ()))


def backend_uri(settings: ServerSettings, environ: dict[str, str] | os._Environ = os.environ) -> str:
    """The backend store URI from the environment; a SQLite/file URI is refused (one machine only)."""
    uri = (environ.get(settings.backend_store_uri_env) or "").strip()
    if not uri:
        raise TrackingServerError(
            f"${settings.backend_store_uri_env} is not set: export "
            f"{settings.backend_store_uri_env}=postgresql+psycopg://<role>@<host>:5432/<database> and the "
            "password in PGPASSWORD (see README, 'Team scale: the tracking server')")
    scheme = urlsplit(uri).scheme.lower()
    if not scheme.startswith(("postgresql", "mysql", "mssql")):
        raise TrackingServerError(
            f"${settings.backend_store_uri_env}={mask_uri(uri)}: the team server needs a database server "
            "(postgresql+psycopg://...); SQLite is for one machine (main.tracking_uri=null)")
    return uri


def _where(uri: str) -> str:
    """``role@host:port/db`` of a URI, for messages (no password)."""
    parts = urlsplit(uri)
    user = parts.username or os.environ.get("PGUSER") or "?"
    return f"{user}@{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"


def database_error_message(exc: BaseException, uri: str, setting: str = "$MLFLOW_BACKEND_STORE_URI") -> str:
    """One line for a failed database connection: what, where, the remedy; no password."""
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())
    low = text.lower()
    where = _where(uri)
    secrets = [urlsplit(uri).password or "", os.environ.get("PGPASSWORD", "")]
    if "password authentication failed" in low or "no password supplied" in low:
        return (f"database {where}: password authentication failed for role {urlsplit(uri).username!r}: "
                f"set the right password in PGPASSWORD (or in {setting}); it is never printed")
    if "does not exist" in low and "database" in low:
        return f"database {where} does not exist: create it (README: CREATE DATABASE ... OWNER ...)"
    if "does not exist" in low and "role" in low:
        return f"database {where}: the role does not exist: create it (README: CREATE ROLE ... LOGIN PASSWORD ...)"
    if any(s in low for s in ("connection refused", "could not connect", "connection failed",
                              "timeout expired", "could not translate host name", "name or service not known")):
        return (f"database {where} is unreachable: start PostgreSQL there or fix the host/port in "
                f"{setting} ({mask_text(text, secrets)[:200]})")
    return f"database {where}: cannot connect ({mask_text(text, secrets)[:300]})"


def check_database(uri: str, setting: str = "$MLFLOW_BACKEND_STORE_URI") -> str | None:
    """Connect once; the schema revision (None: an empty database). Raises TrackingServerError."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": 10})
    try:
        try:
            with engine.connect() as conn:
                tables = sqlalchemy.inspect(conn).get_table_names()
                if "alembic_version" not in tables:
                    return None
                row = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).first()
                return row[0] if row else None
        except sqlalchemy.exc.OperationalError as exc:
            raise TrackingServerError(database_error_message(exc, uri, setting)) from None
        except ModuleNotFoundError as exc:
            raise TrackingServerError(f"the database driver is missing ({exc.name}): install the pins "
                                      "(./run_pipeline.sh installs psycopg[binary])") from None
    finally:
        engine.dispose()


def head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def upgrade_database(uri: str) -> None:
    """Exactly what ``mlflow db upgrade <uri>`` runs, in-process: no password on a command line."""
    from mlflow.db import upgrade

    upgrade.callback(uri)


def ensure_schema(uri: str, settings: ServerSettings) -> str:
    """Migrate when needed; returns what was done (for the log)."""
    current = check_database(uri, f"${settings.backend_store_uri_env}")
    head = head_revision()
    if current == head:
        return f"schema at MLflow's head revision {head}"
    if not settings.db_upgrade:
        raise TrackingServerError(
            f"database {_where(uri)} has schema {current or 'none'}, MLflow needs {head}: back it up "
            "(pg_dump), then run with tracking_server.db_upgrade=true")
    log.info("database %s: schema %s -> %s (mlflow db upgrade)", _where(uri), current or "empty", head)
    upgrade_database(uri)
    return f"schema migrated from {current or 'an empty database'} to {head}"


def server_command(settings: ServerSettings) -> list[str]:
    """``mlflow server``; the backend URI reaches it as $MLFLOW_BACKEND_STORE_URI, not as an argument."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", settings.host, "--port", str(settings.port),
           "--workers", str(settings.workers), "--serve-artifacts",
           "--artifacts-destination", settings.artifacts_destination]
    if settings.allowed_hosts:
        cmd += ["--allowed-hosts", settings.allowed_hosts]
    return cmd + list(settings.extra_args)


def server_env(settings: ServerSettings, uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_BACKEND_STORE_URI"] = uri          # mlflow server's own envvar for --backend-store-uri
    env.pop("MLFLOW_TRACKING_URI", None)           # a client setting; the server must not inherit one
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")   # offline machines
    return env


def load_settings(overrides: list[str]) -> ServerSettings:
    from omegaconf import OmegaConf

    from utils.pipeline.config import load_config

    cfg = load_config(overrides)
    section = OmegaConf.to_container(cfg.tracking_server, resolve=True) if "tracking_server" in cfg else {}
    return ServerSettings.from_config(section)  # type: ignore[arg-type]


def prepare_destination(destination: str) -> None:
    """A local artifacts folder is created (and must be writable); s3://... is the server's business."""
    if "://" in destination and not destination.startswith("file://"):
        return
    folder = Path(destination.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise TrackingServerError(f"artifacts folder {folder} is not writable by this user: chown it or set "
                                  "tracking_server.artifacts_destination")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./run_pipeline.sh tracking-server",
        description="MLflow tracking server on PostgreSQL with proxied artifacts "
                    "(settings: tracking_server: in config.yaml; backend URI: $MLFLOW_BACKEND_STORE_URI, "
                    "password: $PGPASSWORD).")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. tracking_server.port=5000")
    parser.add_argument("--dry-run", action="store_true", help="print the server command (password masked) and exit")
    parser.add_argument("--check", action="store_true", help="connect, migrate if needed, and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from hydra.errors import HydraException

    try:
        settings = load_settings(args.overrides)
    except HydraException as exc:
        print(f"error: {str(exc).strip()}", file=sys.stderr)
        return 2
    try:
        uri = backend_uri(settings)
        command = server_command(settings)
        if args.dry_run:
            print(f"MLFLOW_BACKEND_STORE_URI={mask_uri(uri)} {' '.join(command)}")
            return 0
        prepare_destination(settings.artifacts_destination)
        done = ensure_schema(uri, settings)
    except TrackingServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("database %s: %s", _where(uri), done)
    if args.check:
        return 0
    log.info("mlflow server on http://%s:%d (%d workers), artifacts proxied to %s; clients: "
             "main.tracking_uri=http://%s:%d", settings.host, settings.port, settings.workers,
             settings.artifacts_destination, settings.host, settings.port)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("tracking_server.host=%s: the server (no authentication) is reachable from other "
                    "machines; keep it behind a firewall or a TLS proxy with auth", settings.host)
    sys.stdout.flush()
    os.execve(command[0], command, server_env(settings, uri))
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
