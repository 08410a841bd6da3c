"""The team server with ``tracking_server.artifacts_destination=s3://bucket/prefix``.

S3 here is a STAND-IN: moto's server mode (tests/fixtures/s3_standin.py), a real HTTP process
on loopback that speaks the S3 API to boto3; it is not S3. The tracking server is the
project's command (`python -m utils.pipeline.tracking_server`) on a throwaway PostgreSQL
cluster; the S3 credentials and endpoint (AWS_ACCESS_KEY_ID/SECRET, MLFLOW_S3_ENDPOINT_URL)
are in the SERVER's environment only. Clients get `main.tracking_uri=http://127.0.0.1:<port>`
and an environment with no AWS credentials, no endpoint and no credentials file: any direct
S3 call of theirs would fail. The objects are listed with boto3 against the stand-in.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import FEATURES, RECORD, train_tabular_model
from tests.api.registry_server import register_version, set_champion
from tests.conftest import PYTHON, REPO_ROOT, copy_embedded_tabular, run_main
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.postgres import PostgresCluster, postgres_cluster  # noqa: F401 (fixture)
from tests.fixtures.s3_standin import SECRET_KEY, S3StandIn, s3_standin  # noqa: F401 (fixture)
from tests.team.test_team_server import Team, client_env
from utils.models.model_store import ModelStore
from utils.models.registry import CHAMPION_ALIAS
from utils.pipeline.paths import StatePaths

BUCKET = "mlflow-team-artifacts"
PREFIX = "mlops/artifacts"
MODEL = "attrition_model"
CLIENT_S3_SETTINGS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                      "MLFLOW_S3_ENDPOINT_URL")
CHAIN = ("main.steps='data_ingestion,model_training,model_scoring,model_deployment'", "main.reuse_runs=false")

# The client loads a registered model through the server (models:/...), in its own process.
LOAD_BACK = r"""
import json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
names = model.metadata.get_input_schema().input_names()
row = json.loads(sys.argv[3])
out = model.predict(pd.DataFrame([{n: float(row[n]) for n in names}]))
print(json.dumps({"inputs": names, "rows": len(out)}))
"""


# The control: the same client environment cannot read the bucket itself (no credentials).
DIRECT_READ = r"""
import sys
import boto3, botocore.exceptions
try:
    boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").list_objects_v2(Bucket=sys.argv[2])
except botocore.exceptions.NoCredentialsError:
    print("no credentials")
"""


def objects(s3: S3StandIn) -> list[str]:
    return s3.keys(BUCKET, PREFIX + "/")


def no_s3_client_env() -> dict[str, str]:
    """A client machine: no database password, no AWS credentials, endpoint or config file."""
    return {**client_env(), "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
            "AWS_EC2_METADATA_DISABLED": "true", "MLFLOW_S3_ENDPOINT_URL": ""}


@pytest.fixture(scope="module")
def s3_team(postgres_cluster: PostgresCluster, s3_standin: S3StandIn,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    held = [k for k in CLIENT_S3_SETTINGS if os.environ.get(k)]
    assert not held, f"the test process (a client) must hold no S3 settings: {held}"
    base = tmp_path_factory.mktemp("s3team")
    s3_standin.create_bucket(BUCKET)
    db = postgres_cluster.create_database("mlflow_s3", role="mlflow_s3")
    server = MlflowServer(db.uri, f"s3://{BUCKET}/{PREFIX}", base / "server.log", workers=2,
                          env={"PGPASSWORD": db.password, **s3_standin.server_env()})
    server.start(timeout_s=300)
    try:
        yield Team(db, server, base)
    finally:
        server.stop()


def model_files(s3: S3StandIn, version) -> dict[str, str]:
    """The bucket's objects of a registered version's logged model: {file name: key}.
    MLflow 3 stores a logged model at <experiment>/models/<model_id>/artifacts/ of the root."""
    found = re.search(r"\bm-[0-9a-f]{32}\b", f"{version.model_id} {version.source}")
    assert found, f"no logged-model id in the version ({version.model_id!r}, {version.source!r})"
    marker = f"/models/{found.group(0)}/artifacts/"
    return {k.split(marker, 1)[1]: k for k in objects(s3) if marker in k}


def as_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-c", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **no_s3_client_env()})


def load_back(url: str, model_uri: str) -> dict:
    proc = as_client(LOAD_BACK, url, model_uri, json.dumps(RECORD))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET_KEY not in proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(1200)   # the first one pays for the fixture (a PostgreSQL migration: 1-3 min here)
def test_a_registered_model_lands_in_the_bucket_and_loads_back(s3_team: Team, s3_standin: S3StandIn,  # noqa: F811
                                                              tmp_path: Path) -> None:
    import mlflow

    assert not objects(s3_standin)
    number = register_version(s3_team.url, "s3_model", train_tabular_model(tmp_path / "m"), 0.6)
    set_champion(s3_team.url, "s3_model", number)
    client = mlflow.MlflowClient(s3_team.url)
    version = client.get_model_version("s3_model", str(number))
    run = client.get_run(version.run_id)
    # the client saw only the server's proxy URI, never the bucket
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    assert not version.source.startswith("s3:"), version.source
    files = model_files(s3_standin, version)
    assert {"MLmodel", "requirements.txt"} <= set(files), (files, version.source, objects(s3_standin))
    # the bytes the client downloads through the server are the bucket's
    local = Path(mlflow.artifacts.download_artifacts(client.get_model_version_download_uri("s3_model", str(number)),
                                                     dst_path=str(tmp_path / "dl"), tracking_uri=s3_team.url))
    assert (local / "MLmodel").read_bytes() == s3_standin.read(BUCKET, files["MLmodel"])
    loaded = load_back(s3_team.url, "models:/s3_model@champion")
    assert loaded == {"inputs": FEATURES, "rows": 1}
    direct = as_client(DIRECT_READ, s3_standin.endpoint_url, BUCKET)
    assert direct.returncode == 0 and direct.stdout.strip() == "no credentials", direct.stdout + direct.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)   # the first one pays for the fixture (a PostgreSQL migration: 1-3 min here)
def test_short_chain_stores_the_model_in_the_bucket(s3_team: Team, s3_standin: S3StandIn) -> None:  # noqa: F811
    import mlflow

    state, source = s3_team.base / "state", s3_team.base / "src"
    state.mkdir()
    copy_embedded_tabular(source)
    before = set(objects(s3_standin))
    run_main(f"data.source_dir={source}", f"main.tracking_uri={s3_team.url}", *CHAIN, state_dir=state,
             env=no_s3_client_env(), timeout=1200)
    assert ModelStore(StatePaths.of(state).model(MODEL).models_dir).production_version() == f"{MODEL}-v1"
    assert not (state / "mlartifacts").exists() and not (state / "mlflow.db").exists()
    champion = mlflow.MlflowClient(s3_team.url).get_model_version_by_alias(MODEL, CHAMPION_ALIAS)
    assert champion.version == "1"
    files = model_files(s3_standin, champion)
    assert "MLmodel" in files, (files, champion.source, objects(s3_standin))
    assert not set(files.values()) & before
    # the chain's own artifacts (its run's metadata) went to the bucket too, through the server
    assert any(f"/{champion.run_id}/artifacts/" in k for k in objects(s3_standin)), objects(s3_standin)
    loaded = load_back(s3_team.url, f"models:/{MODEL}@{CHAMPION_ALIAS}")
    assert loaded["rows"] == 1 and loaded["inputs"]
