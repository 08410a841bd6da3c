"""The tracking-server command and the clients' preflight, without a database: masking, and
the one-line errors (no traceback, no password) for what an operator gets wrong first."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, run_main
from tests.fixtures.mlflow_server import free_port
from utils.pipeline import failures
from utils.pipeline.paths import StatePaths
from utils.pipeline.tracking import TrackingUnavailable, artifact_location, check_tracking_store
from utils.pipeline.tracking_server import ServerSettings, mask_text, mask_uri, server_command

SECRET = "s3cr3t-Pa55"


def server_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_BACKEND_STORE_URI", "PGPASSWORD")}
    return subprocess.run([sys.executable, "-m", "utils.pipeline.tracking_server", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env={**base, **(env or {})})


@pytest.mark.parametrize("uri, masked", [
    ("postgresql+psycopg://mlflow:pw@db:5432/mlflow", "postgresql+psycopg://mlflow:***@db:5432/mlflow"),
    ("postgresql+psycopg://mlflow@db/mlflow", "postgresql+psycopg://mlflow@db/mlflow"),
    ("http://user:p%40ss@host:5000", "http://user:***@host:5000"),
    ("sqlite:////srv/mlops/mlflow.db", "sqlite:////srv/mlops/mlflow.db"),
    ("see postgresql://a:b@h/d and mysql://c:d@h/e", "see postgresql://a:***@h/d and mysql://c:***@h/e"),
])
def test_mask_uri(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


def test_mask_text_hides_known_secrets_too() -> None:
    assert SECRET not in mask_text(f"failed for {SECRET} at postgresql://u:{SECRET}@h/d", [SECRET])


def test_server_command_never_carries_the_backend_uri() -> None:
    settings = ServerSettings.from_config({"host": "127.0.0.1", "port": 5123, "workers": 3,
                                           "artifacts_destination": "/srv/art"})
    cmd = server_command(settings)
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert "--backend-store-uri" not in cmd and "--serve-artifacts" in cmd
    assert cmd[cmd.index("--workers") + 1] == "3" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--artifacts-destination") + 1] == "/srv/art"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(Exception, match="workers"):
        ServerSettings.from_config({"workers": 0, "artifacts_destination": "/x"})
    with pytest.raises(Exception, match="artifacts_destination"):
        ServerSettings.from_config({"artifacts_destination": ""})


def test_missing_backend_uri_is_one_line() -> None:
    proc = server_cli()
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "$MLFLOW_BACKEND_STORE_URI is not set" in lines[0]
    assert "Traceback" not in proc.stderr


def test_sqlite_backend_is_refused(tmp_path) -> None:
    proc = server_cli(env={"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/m.db"})
    assert proc.returncode == 1 and "SQLite is for one machine" in proc.stderr


def test_dry_run_masks_the_password() -> None:
    proc = server_cli("--dry-run", "tracking_server.port=5999", "tracking_server.workers=2",
                      env={"MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://mlflow:{SECRET}@db:5432/mlflow"})
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "mlflow:***@db:5432/mlflow" in proc.stdout and "--port 5999" in proc.stdout
    assert "--workers 2" in proc.stdout and "--serve-artifacts" in proc.stdout


def test_unreachable_database_is_one_line_without_the_password(tmp_path) -> None:
    port = free_port()   # nothing listens there
    proc = server_cli(f"tracking_server.artifacts_destination={tmp_path / 'art'}",
                      env={"MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://mlflow@127.0.0.1:{port}/mlflow",
                           "PGPASSWORD": SECRET})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"127.0.0.1:{port}/mlflow is unreachable" in lines[0], proc.stderr


def test_artifacts_stay_on_the_server_for_a_server_uri(tmp_path) -> None:
    paths = StatePaths.of(tmp_path)
    assert artifact_location("http://127.0.0.1:5000", paths) is None
    assert artifact_location("https://mlflow.example.com", paths) is None
    assert artifact_location(f"sqlite:///{tmp_path}/mlflow.db", paths) == (tmp_path / "mlartifacts").as_uri()


def test_server_down_is_a_known_failure_naming_the_uri() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingUnavailable) as caught:
        check_tracking_store(uri, timeout_s=2)
    message = failures.describe(caught.value)
    assert message is not None and uri in message and "tracking-server" in message


def test_chain_with_the_server_down_is_one_line(state_dir) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    proc = run_main(f"main.tracking_uri={uri}", state_dir=state_dir, check=False, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"tracking server {uri} is unreachable" in errors[0], proc.stderr[-2000:]
    assert not (state_dir / "models").exists() or not any((state_dir / "models").rglob("production"))
