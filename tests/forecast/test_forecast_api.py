"""POST /models/<name>/prediction for a forecasting model: series ids in, daily forecasts out."""
from __future__ import annotations

import sys
from dataclasses import asdict

import pytest

from tests.conftest import REPO_ROOT
from tests.forecast.conftest import forecast_task

API_DIR = REPO_ROOT / "04_deployment"
if str(API_DIR) not in sys.path:
    sys.path.insert(0, str(API_DIR))


@pytest.fixture(scope="module")
def forecast_client(fitted_small, tmp_path_factory):
    """A state dir with the tiny fitted forecaster deployed as sales_forecast-v1, and its API."""
    import mlflow
    from forecast_training import log_forecast_model

    from api.app import create_app
    from utils.models.model_store import ModelStore

    root = tmp_path_factory.mktemp("forecast_api")
    state = root / "state"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    try:
        exp = mlflow.create_experiment("t", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            info = log_forecast_model(fitted_small, registered_model_name="sales_forecast")
        local = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(root / "dl"))
    finally:
        mlflow.set_tracking_uri(previous)
    task = {**asdict(forecast_task()), "horizon": 7}
    store = ModelStore(state / "models" / "sales_forecast")
    store.add_version("sales_forecast-v1", local, {"model_name": "sales_forecast", "task": "forecast",
                                                   "task_config": task})
    store.write_score("sales_forecast-v1", {"wmape": 0.4}, "wmape")
    store.deploy("sales_forecast-v1")
    app = create_app(overrides=[f"paths.state_dir={state}", "task=forecast"])
    app.extensions["state_dir"] = state
    yield app.test_client(), fitted_small.series_ids
    app.extensions["mlops"].close()


def test_series_ids_get_the_horizons_daily_forecasts(forecast_client):
    client, ids = forecast_client
    r = client.post("/models/sales_forecast/prediction", json={"series": ids[:2], "horizon": 3})
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["task"] == "forecast" and body["horizon"] == 3 and body["n"] == 6
    rows = body["predictions"]
    assert [row["series_id"] for row in rows] == [ids[0]] * 3 + [ids[1]] * 3
    assert all(row["forecast"] >= 0 and "seasonal_naive" in row and len(row["date"]) == 10 for row in rows)
    default = client.post("/models/sales_forecast/prediction", json={"series": ids[:1]}).get_json()
    assert default["horizon"] == 7 and default["n"] == 7          # the task's horizon


@pytest.mark.parametrize("body, status, message", [
    ({"series": ["no-such-series"]}, 400, "unknown series"),
    ({"series": ["x"], "horizon": 99}, 400, "horizon must be"),
    ({"series": ["x"], "horizon": True}, 400, "horizon must be"),
    ({"series": []}, 400, "non-empty"),
    ({"series": [{"a": 1}]}, 400, "series ids must be strings"),
    ({"records": [{"date": "2025-05-01"}]}, 400, "'series_id' field"),
    ({"texts": ["hello"]}, 400, "unknown key"),
])
def test_bad_forecast_requests_are_400_with_a_reason(forecast_client, body, status, message):
    client, _ = forecast_client
    r = client.post("/models/sales_forecast/prediction", json=body)
    assert r.status_code == status and message in r.get_json()["error"]["message"], r.get_json()


def test_csv_is_415_for_a_forecasting_model(forecast_client):
    client, _ = forecast_client
    r = client.post("/models/sales_forecast/prediction", data="series_id\nx\n", content_type="text/csv")
    assert r.status_code == 415


def test_monitoring_scores_production_on_the_newest_ingested_days(forecast_client, small_panel):
    """What the tick's schedule.monitor_every (and the Evaluate button) records for a forecaster."""
    from utils.models.catalog import read_monitoring
    from utils.models.management import evaluate
    from utils.pipeline.paths import StatePaths

    client, _ = forecast_client
    state = client.application.extensions["state_dir"]
    paths = StatePaths.of(state)
    dataset = paths.model("sales_forecast").dataset("forecast")
    dataset.parent.mkdir(parents=True, exist_ok=True)
    small_panel.to_csv(dataset, index=False)
    record = evaluate(paths, "sales_forecast", source="monitor")
    assert set(record["metrics"]) >= {"mae", "rmse", "wmape", "tweedie_deviance"}
    assert record["primary_metric"] == "wmape" and record["score"] == record["metrics"]["wmape"]
    assert record["baseline_metrics"]["wmape"] > 0
    assert read_monitoring(paths, "sales_forecast")[-1]["source"] == "monitor"
    r = client.post("/admin/models/sales_forecast/evaluate")
    assert r.status_code in (401, 403)        # admin routes need the key
