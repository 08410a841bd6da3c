"""Admin routes: rollback (store + registry alias), retrain jobs and their state."""
from __future__ import annotations

import sys
import time

import pytest
from filelock import FileLock

from tests.api.conftest import auth
from utils.models.model_store import ModelStore

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


def wait_job(client, job_id: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/admin/jobs/{job_id}", headers=auth()).get_json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s} s")


def test_rollback_moves_production_and_the_served_model(client, state):
    store = ModelStore(state / "models" / "attrition_model")
    store.deploy("attrition_model-v2")
    r = client.post("/admin/rollback", headers=auth())
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["event"]["version"] == "attrition_model-v1" and body["event"]["source"] == "api"
    assert body["model_version"] == "attrition_model-v1"
    assert body["registry"]["moved"] is False and "no tracking database" in body["registry"]["error"]
    assert store.production_version() == "attrition_model-v1"
    assert store.history()[-1]["request_id"] == r.headers["X-Request-ID"]


def test_rollback_with_nothing_to_return_to_is_409(client):
    r = client.post("/admin/rollback", headers=auth())
    assert r.status_code == 409 and "nothing to roll back to" in r.get_json()["error"]["message"]


def test_rollback_moves_the_registry_alias(make_app, state, empty_tracking_db, model_dirs):
    import shutil

    import mlflow

    shutil.copy(empty_tracking_db, state / "mlflow.db")
    client_ml = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    client_ml.create_registered_model("attrition_model")
    for version in ("v1", "v2"):
        client_ml.create_model_version("attrition_model", str(model_dirs[version]))
    client_ml.set_registered_model_alias("attrition_model", "champion", "2")
    ModelStore(state / "models" / "attrition_model").deploy("attrition_model-v2")
    r = make_app(state).test_client().post("/admin/rollback", headers=auth())
    assert r.status_code == 200 and r.get_json()["registry"] == {"alias": "champion", "moved": True}
    assert str(client_ml.get_model_version_by_alias("attrition_model", "champion").version) == "1"


def fake_command(code: int, seconds: float = 0.0) -> list[str]:
    return [sys.executable, "-c", f"import time, sys; print('chain output'); time.sleep({seconds}); sys.exit({code})"]


def test_retrain_runs_in_the_background_and_reports_its_state(client, state, monkeypatch):
    from utils.models import management

    seen = {}

    def command(paths, name, extra):
        seen["args"] = (paths.state_dir, name)
        return fake_command(0, 1.0)

    monkeypatch.setattr(management, "retrain_command", command)
    r = client.post("/admin/retrain", headers=auth())
    assert r.status_code == 202, r.get_data(as_text=True)
    job_id = r.get_json()["job_id"]
    assert r.get_json()["links"]["job"] == f"/admin/jobs/{job_id}"
    assert seen["args"] == (state, "attrition_model")
    second = client.post("/admin/retrain", headers=auth())       # one at a time
    assert second.status_code == 409 and second.get_json()["error"]["job_id"] == job_id
    job = wait_job(client, job_id)
    assert job["state"] == "succeeded" and job["returncode"] == 0
    assert "chain output" in job["log_tail"]
    listed = client.get("/admin/jobs", headers=auth()).get_json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]


def test_a_running_job_names_itself_in_the_lock_file(client, state, monkeypatch):
    """A tick or a dry run that finds the lock held says "an API retrain job", not "holder unknown"."""
    from fullprocess import describe_holder
    from utils.models import management
    from utils.tick.tick_lock import read_holder

    monkeypatch.setattr(management, "retrain_command", lambda *a: fake_command(0, 3.0))
    job_id = client.post("/admin/retrain", headers=auth()).get_json()["job_id"]
    deadline = time.monotonic() + 20
    holder = None
    while holder is None and time.monotonic() < deadline:
        holder = read_holder(state / "fullprocess.lock")
        time.sleep(0.05)
    assert holder is not None and job_id in holder.command
    assert describe_holder(holder).startswith("an API retrain job")
    assert wait_job(client, job_id)["state"] == "succeeded"
    assert read_holder(state / "fullprocess.lock") is None      # cleared before release


def test_failed_job_and_unknown_ids(client, monkeypatch):
    from utils.models import management

    monkeypatch.setattr(management, "retrain_command", lambda *a: fake_command(3))
    job_id = client.post("/admin/retrain", headers=auth()).get_json()["job_id"]
    job = wait_job(client, job_id)
    assert job["state"] == "failed" and job["returncode"] == 3 and "exit status 3" in job["error"]
    for bad in ("0" * 32, "../../etc/passwd", "x" * 40):
        r = client.get(f"/admin/jobs/{bad}", headers=auth())
        assert r.status_code == 404 and r.is_json


def test_job_waits_for_no_one_when_the_pipeline_lock_is_held(client, state, monkeypatch):
    from utils.models import management

    monkeypatch.setattr(management, "retrain_command", lambda *a: fake_command(0))
    with FileLock(str(state / "fullprocess.lock")):
        job_id = client.post("/admin/retrain", headers=auth()).get_json()["job_id"]
        job = wait_job(client, job_id)
    assert job["state"] == "failed" and "another pipeline run holds" in job["error"]


def test_retrain_command_is_the_models_chain_from_training(tmp_path):
    from utils.models.catalog import write_manifest
    from utils.models.management import retrain_command
    from utils.pipeline.paths import StatePaths

    paths = StatePaths.of(tmp_path / "x")
    write_manifest(paths, "churn_eu", {"task": "tabular", "overrides": [
        "task=tabular", "task.model_name=churn_eu", "data.source_dir=/data/eu", "training.C=0.5"]})
    cmd = retrain_command(paths, "churn_eu", ["main.tracking_uri=http://127.0.0.1:5000"])
    assert cmd[1].endswith("main.py")
    assert "main.steps='model_training,model_scoring,model_deployment'" in cmd
    assert cmd[-1] == f"paths.state_dir={paths.state_dir}"
    assert {"task=tabular", "data.source_dir=/data/eu", "training.C=0.5", "task.model_name=churn_eu",
            "main.tracking_uri=http://127.0.0.1:5000", "main.reuse_runs=false"} <= set(cmd)
    with pytest.raises(Exception, match="no model 'other'.*churn_eu"):
        retrain_command(paths, "other")
