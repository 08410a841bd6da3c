"""End to end with the real pipeline (slow): a chain-built state dir, /scoring agrees with the
scoring step, /admin/retrain runs the chain in the background, /admin/rollback moves the alias."""
from __future__ import annotations

import time

import mlflow
import pytest

from tests.api.conftest import auth
from tests.conftest import run_main
from utils.models.model_store import ModelStore

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:X does not have valid feature names")]


def test_retrain_and_rollback_through_the_api(make_app, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    run_main(state_dir=state)
    store = ModelStore(state / "models" / "attrition_model")
    assert store.production_version() == "attrition_model-v1"

    # a manual retrain trains anew with the model's own config (no reuse of the cached run):
    # a new version with the same score passes the gate (ties deploy)
    app = make_app(state)
    client = app.test_client()
    scoring = client.get("/scoring", headers=auth()).get_json()
    assert scoring["metrics"]["f1"] == pytest.approx(store.read_score("attrition_model-v1"))

    r = client.post("/admin/retrain", headers=auth())
    assert r.status_code == 202
    job_id = r.get_json()["job_id"]
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        job = client.get(f"/admin/jobs/{job_id}", headers=auth()).get_json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(1)
    assert job["state"] == "succeeded", job
    assert store.production_version() == "attrition_model-v2"
    assert client.post("/prediction", json={"records": [{"lastmonth_activity": 1, "lastyear_activity": 2,
                                                         "number_of_employees": 3}]}).get_json()["model_version"] \
        == "attrition_model-v2"
    ml = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    assert str(ml.get_model_version_by_alias("attrition_model", "champion").version) == "2"

    r = client.post("/admin/rollback", headers=auth())
    assert r.status_code == 200 and r.get_json()["registry"]["moved"] is True
    assert r.get_json()["model_version"] == "attrition_model-v1"
    assert str(ml.get_model_version_by_alias("attrition_model", "champion").version) == "1"
