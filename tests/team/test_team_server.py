"""The chain, the cron tick and their faults against a real team tracking server: PostgreSQL
(a throwaway cluster of the Debian binaries) behind `mlflow server` started by the project's
own command (`python -m utils.pipeline.tracking_server`), artifacts proxied to a folder of the
server's. Clients know only `main.tracking_uri=http://127.0.0.1:<port>`.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO_ROOT, copy_embedded_tabular, run_main
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.postgres import Database, PostgresCluster, postgres_cluster  # noqa: F401 (fixture)
from tests.fullprocess.helpers import generate, run_tick, summary_of, write_csv
from utils.models.model_store import ModelStore
from utils.models.registry import CHAMPION_ALIAS
from utils.pipeline.paths import StatePaths

MODEL = "attrition_model"
FAST = ("fullprocess.chain_to=model_deployment",)
# a client gives up on a dead server in seconds, not MLflow's default of minutes of retries
QUICK_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


@dataclass
class Team:
    db: Database
    server: MlflowServer
    base: Path

    @property
    def url(self) -> str:
        return self.server.url


def client_env() -> dict[str, str]:
    """What a client machine has: no database password."""
    return {"PGPASSWORD": "", "MLFLOW_BACKEND_STORE_URI": ""}


@pytest.fixture(scope="module")
def team(postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:  # noqa: F811
    base = tmp_path_factory.mktemp("team")
    db = postgres_cluster.create_database("mlflow_team", role="mlflow_team")
    server = MlflowServer(db.uri, base / "server-artifacts", base / "server.log", workers=2,
                          env={"PGPASSWORD": db.password})
    server.start(timeout_s=300)
    try:
        yield Team(db, server, base)
    finally:
        server.stop()


def production(state: Path) -> str | None:
    return ModelStore(StatePaths.of(state).model(MODEL).models_dir).production_version()


def client(url: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=url)


@pytest.fixture(scope="module")
def chain_on_server(team: Team) -> tuple[Path, Path]:
    """The whole default tabular chain through main.py against the server."""
    state, source = team.base / "state", team.base / "src"
    state.mkdir()
    copy_embedded_tabular(source)
    proc = run_main(f"data.source_dir={source}", f"main.tracking_uri={team.url}", state_dir=state,
                    env=client_env())
    (team.base / "chain_stdout.txt").write_text(proc.stdout + proc.stderr)
    return state, source


@pytest.mark.slow
@pytest.mark.timeout(2400)   # the first one also pays for the chain fixture; shared CI cores
def test_chain_registers_and_stores_everything_on_the_server(team: Team, chain_on_server) -> None:
    state, _ = chain_on_server
    version = production(state)
    assert version == f"{MODEL}-v1"
    c = client(team.url)
    champion = c.get_model_version_by_alias(MODEL, CHAMPION_ALIAS)
    assert champion.version == "1"
    # artifacts went through the server into its destination, none into the state dir
    assert not (state / "mlartifacts").exists() and not (state / "mlflow.db").exists()
    assert champion.source.startswith(("mlflow-artifacts:", "models:/")), champion.source
    served = list((team.base / "server-artifacts").rglob("MLmodel"))
    assert served, "no model files under the server's artifacts destination"
    # the parent/child structure and the datasets, as on SQLite
    experiment = c.get_experiment_by_name("mlops_pipeline")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    parents = c.search_runs([experiment.experiment_id], "tags.`pipeline.kind` = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = c.search_runs([experiment.experiment_id],
                             f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert sorted(r.data.tags["pipeline.step"] for r in children) == sorted(
        ["data_ingestion", "model_training", "model_scoring", "model_deployment", "diagnostics", "reporting"])
    assert all(r.info.status == "FINISHED" for r in children)
    assert parents[0].inputs.dataset_inputs, "the parent run shows no dataset"
    reporting = next(r for r in children if r.data.tags["pipeline.step"] == "reporting")
    names = [a.path for a in c.list_artifacts(reporting.info.run_id, "reports")]
    assert any(n.endswith("report.html") for n in names), names
    assert (state / "reports" / MODEL / "report.html").is_file()
    assert "MLflow UI:         open " + team.url in (team.base / "chain_stdout.txt").read_text()


@pytest.mark.slow
@pytest.mark.timeout(2400)   # the first one also pays for the chain fixture; shared CI cores
def test_tick_retrains_and_deploys_through_the_server(team: Team, chain_on_server) -> None:
    state, source = chain_on_server
    write_csv(generate(300, seed=7, id_prefix="x").assign(exited=lambda f: 1 - f["exited"]), source / "flipped.csv")
    proc = run_tick(state, source, *FAST, "deployment.tolerance=1.0", f"main.tracking_uri={team.url}",
                    env=client_env())
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-2000:]
    summary = summary_of(proc)
    assert summary["decision"] == "retrain" and summary["production_after"] == f"{MODEL}-v2"
    assert production(state) == f"{MODEL}-v2"
    c = client(team.url)
    assert c.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version == "2"
    drift_runs = c.search_runs([c.get_experiment_by_name("mlops_pipeline").experiment_id],
                               "tags.`pipeline.kind` = 'drift_check'")
    assert drift_runs, "the tick's drift check logged no run on the server"
    # an admin action (manage.py = the API's management functions): rollback moves the alias there
    rollback = subprocess.run([PYTHON, str(REPO_ROOT / "04_deployment" / "manage.py"), "rollback", MODEL,
                               "--state-dir", str(state), "--tracking-uri", team.url],
                              capture_output=True, text=True, timeout=300, env={**os.environ, **client_env()})
    assert rollback.returncode == 0, rollback.stderr[-3000:]
    assert production(state) == f"{MODEL}-v1"
    assert c.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version == "1"


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.timeout(2400)   # the first one also pays for the chain fixture; shared CI cores
def test_server_stopped_mid_chain_then_the_next_run_recovers(team: Team, chain_on_server) -> None:
    state, source = chain_on_server
    before = production(state)
    c = client(team.url)
    champion_before = c.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version
    log = team.base / "midchain.log"
    cmd = [PYTHON, str(REPO_ROOT / "main.py"), f"paths.state_dir={state}", "diagnostics.pypi_url=null",
           f"data.source_dir={source}", f"main.tracking_uri={team.url}", "main.reuse_runs=false",
           "deployment.force=true"]   # had it reached the gate, it would have deployed
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=state.parent, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **client_env(), **QUICK_CLIENT})
    try:
        # the training step's own process is running: the server goes away under the step
        assert wait_for(log, "Running command 'python train.py", proc, 300), log.read_text()[-3000:]
        time.sleep(2)
        team.server.stop()
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        team.server.start(timeout_s=300)
    text = log.read_text(errors="replace")
    assert code == 1, text[-4000:]
    errors = [line for line in text.splitlines() if line.startswith("error:") or "ERROR pipeline" in line]
    assert errors and any(team.url in e or "failed" in e for e in errors), text[-4000:]
    assert team.db.password not in text
    assert production(state) == before                                   # production unchanged
    assert c.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version == champion_before
    # the server is back: the next run recovers (what the dead run left RUNNING is ended)
    again = run_main(f"data.source_dir={source}", f"main.tracking_uri={team.url}", "main.reuse_runs=false",
                     "deployment.force=true", "main.steps='data_ingestion,model_training,model_scoring,model_deployment'",
                     state_dir=state, env=client_env())
    assert again.returncode == 0
    after = production(state)
    assert after != before and after is not None
    number = after.rsplit("-v", 1)[1]
    assert c.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version == number
    experiment = c.get_experiment_by_name("mlops_pipeline")
    assert not c.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")


def test_wrong_database_password_server_command(postgres_cluster: PostgresCluster, tmp_path: Path) -> None:  # noqa: F811
    db = postgres_cluster.create_database("mlflow_pw", role="mlflow_pw", password="right-Pa55")
    wrong = "wrong-Pa55-do-not-print"
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": db.uri, "PGPASSWORD": wrong}
    proc = subprocess.run([PYTHON, "-m", "utils.pipeline.tracking_server", "--check",
                           f"tracking_server.artifacts_destination={tmp_path / 'art'}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert wrong not in out and "Traceback" not in out
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "password authentication failed" in errors[0]
    assert f"{db.host}:{db.port}/mlflow_pw" in errors[0]
    # the same password inside the URI: still never printed
    env["MLFLOW_BACKEND_STORE_URI"] = db.uri_with_password(wrong)
    env.pop("PGPASSWORD")
    proc = subprocess.run([PYTHON, "-m", "utils.pipeline.tracking_server", "--check",
                           f"tracking_server.artifacts_destination={tmp_path / 'art'}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and wrong not in proc.stdout + proc.stderr
    assert "password authentication failed" in proc.stderr
    # and the right one: the schema is created (mlflow db upgrade), then at head
    env["MLFLOW_BACKEND_STORE_URI"] = db.uri
    env["PGPASSWORD"] = db.password
    first = subprocess.run([PYTHON, "-m", "utils.pipeline.tracking_server", "--check",
                            f"tracking_server.artifacts_destination={tmp_path / 'art'}"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "schema migrated from an empty database" in first.stderr
    second = subprocess.run([PYTHON, "-m", "utils.pipeline.tracking_server", "--check",
                             f"tracking_server.artifacts_destination={tmp_path / 'art'}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0 and "schema at MLflow's head revision" in second.stderr
    # the right password inside the URI: it works, and it is not printed either
    env["MLFLOW_BACKEND_STORE_URI"] = db.uri_with_password()
    env.pop("PGPASSWORD")
    third = subprocess.run([PYTHON, "-m", "utils.pipeline.tracking_server", "--check",
                            f"tracking_server.artifacts_destination={tmp_path / 'art'}"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert third.returncode == 0 and db.password not in third.stdout + third.stderr
    assert "mlflow_pw@127.0.0.1" in third.stderr


def test_wrong_database_password_client(postgres_cluster: PostgresCluster, state_dir: Path) -> None:  # noqa: F811
    """A client pointed straight at the database (main.tracking_uri=postgresql+psycopg://...)."""
    db = postgres_cluster.create_database("mlflow_direct", role="mlflow_direct", password="right-Pa55")
    wrong = "wrong-Pa55-do-not-print"
    proc = run_main(f"main.tracking_uri={db.uri_with_password(wrong)}", state_dir=state_dir, check=False,
                    timeout=300, env=client_env())
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert wrong not in out and "Traceback" not in out
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "password authentication failed" in errors[0], proc.stderr[-2000:]
