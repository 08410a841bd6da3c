"""Every route and error through the Flask test client (the real app, a real model store)."""
from __future__ import annotations

import json

import pytest

from tests.api.conftest import API_KEY, RECORD, TEST_CSV, auth
from utils.models.model_store import ModelStore
from utils.monitoring.prediction_log import read_predictions

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


# ---- info, health, metrics -----------------------------------------------------------------
def test_index_names_service_model_and_links(client):
    r = client.get("/")
    assert r.status_code == 200
    body = r.get_json()
    assert body["service"] and body["version"] == "0.1.0"
    assert body["model"]["version"] == "attrition_model-v1" and body["task"] == "tabular"
    assert body["links"]["prediction"]["href"] == "/prediction"
    assert r.headers["X-Request-ID"]


def test_health_reports_model(client):
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["model_loaded"] is True
    assert body["model_version"] == body["production"] == "attrition_model-v1"


def test_health_without_model_is_503_and_prediction_says_why(make_app, tmp_path):
    app = make_app(tmp_path / "empty")
    c = app.test_client()
    r = c.get("/health")
    assert r.status_code == 503 and r.get_json()["model_loaded"] is False
    r = c.post("/prediction", json={"records": [RECORD]})
    assert r.status_code == 503
    assert "no model" in r.get_json()["error"]["message"]


def test_metrics_count_requests_latency_predictions_and_model(client):
    client.post("/prediction", json={"records": [RECORD, RECORD]})
    client.get("/nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'mlops_api_requests_total{method="POST",route="/prediction",status="200"} 1.0' in text
    assert 'mlops_api_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'mlops_api_request_duration_seconds_bucket{le="0.005",method="POST",route="/prediction",status="200"}' in text
    assert 'mlops_api_predictions_total{model_version="attrition_model-v1",prediction="0"} 2.0' in text
    assert 'mlops_api_model_info{task="tabular",version="attrition_model-v1"} 1.0' in text


# ---- prediction ----------------------------------------------------------------------------
def test_prediction_tabular_json(client, app):
    r = client.post("/prediction", json={"records": [RECORD, {**RECORD, "corporation": "x2", "lastmonth_activity": 900}]})
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["model_version"] == "attrition_model-v1" and body["n"] == 2
    first = body["predictions"][0]
    assert first["id"] == "abcd1234" and first["label"] in (0, 1) and set(first) == {"id", "label", "probability"}
    assert 0.5 <= first["probability"] <= 1.0
    # same answer as the model itself
    estimator = app.extensions["mlops"].fleet.current("attrition_model").estimator
    import pandas as pd

    expected = estimator.predict_proba(pd.DataFrame([RECORD])[list(estimator.feature_names_in_)])[0]
    assert first["probability"] == pytest.approx(expected[first["label"]])
    assert first["label"] == int(expected.argmax())


def test_prediction_without_ids_and_label_column_ignored(client):
    rec = {k: v for k, v in RECORD.items() if k != "corporation"}
    r = client.post("/prediction", json={"records": [{**rec, "exited": 1}]})
    assert r.status_code == 200
    assert "id" not in r.get_json()["predictions"][0]


def test_prediction_csv_body(client):
    r = client.post("/prediction", data=TEST_CSV.read_bytes(), content_type="text/csv")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["n"] == 400 and body["predictions"][0]["id"] == "ppfu1200"


def test_prediction_is_logged(client, app, state):
    r = client.post("/prediction", json={"records": [RECORD, {**RECORD, "corporation": "b"}]},
                    headers={"X-Request-ID": "req-0123456789"})
    assert r.headers["X-Request-ID"] == "req-0123456789"
    assert app.extensions["mlops"].prediction_log.flush()
    rows = read_predictions(state / "predictions.db")
    assert len(rows) == 2
    assert rows[0]["request_id"] == "req-0123456789" and rows[0]["model_version"] == "attrition_model-v1"
    assert rows[0]["input"] == {"lastmonth_activity": 10.0, "lastyear_activity": 100.0,
                                "number_of_employees": 5.0, "id": "abcd1234"}
    assert rows[1]["input"]["id"] == "b"
    assert rows[0]["output"] == r.get_json()["predictions"][0]          # what the caller got
    assert rows[0]["latency_ms"] > 0


@pytest.mark.parametrize("body, field, row, fragment", [
    ({"records": [{**RECORD, "lastmonth_activity": -1}]}, "lastmonth_activity", 0, ">= 0"),
    ({"records": [RECORD, {**RECORD, "lastyear_activity": "12"}]}, "lastyear_activity", 1, "must be a number"),
    ({"records": [{k: v for k, v in RECORD.items() if k != "number_of_employees"}]}, "number_of_employees", 0, "missing"),
    ({"records": [{**RECORD, "colour": "red"}]}, "colour", 0, "unknown field"),
    ({"records": [{**RECORD, "lastmonth_activity": True}]}, "lastmonth_activity", 0, "boolean"),
    ({"records": [{**RECORD, "corporation": {"a": 1}}]}, "corporation", 0, "string"),
    ({"records": [7]}, None, 0, "object"),
    ({"records": "x"}, "records", None, "list"),
    ({"texts": ["hello"]}, "texts", None, "tabular"),
    ({"records": [RECORD], "extra": 1}, "extra", None, "unknown key"),
])
def test_prediction_bad_input_is_400_naming_field_and_row(client, body, field, row, fragment):
    r = client.post("/prediction", json=body)
    assert r.status_code == 400, r.get_data(as_text=True)
    error = r.get_json()["error"]
    assert error["request_id"] == r.headers["X-Request-ID"]
    assert fragment in error["message"]
    first = error["errors"][0]
    assert first["field"] == field and first["row"] == row


@pytest.mark.parametrize("data, content_type, status, fragment", [
    (b"", "application/json", 400, "empty body"),
    (b"{not json", "application/json", 400, "invalid JSON"),
    (b'{"records": [{"lastmonth_activity": NaN}]}', "application/json", 400, "NaN"),
    (b'{"records": [{"lastmonth_activity": 1e400, "lastyear_activity": 1, "number_of_employees": 1}]}',
     "application/json", 400, "finite"),
    (b"[" * 100000, "application/json", 400, "invalid JSON"),
    (b"[1, 2]", "application/json", 400, "must be an object"),
    (b"a=1", "application/x-www-form-urlencoded", 415, "Content-Type"),
    (b"\xff\xfe\x00", "text/csv", 400, "UTF-8"),
    (b"lastmonth_activity,lastyear_activity\n1,2\n", "text/csv", 400, "missing"),
    (b"lastmonth_activity,lastyear_activity,number_of_employees\n1,x,3\n", "text/csv", 400, "not a number"),
    (b"lastmonth_activity,lastyear_activity,number_of_employees\n1,2\n", "text/csv", 400, "2 values for 3"),
    (b"lastmonth_activity,lastyear_activity,number_of_employees\n", "text/csv", 400, "no data rows"),
])
def test_prediction_bad_bodies(client, data, content_type, status, fragment):
    r = client.post("/prediction", data=data, content_type=content_type)
    assert r.status_code == status, r.get_data(as_text=True)
    assert fragment in r.get_json()["error"]["message"]


def test_prediction_body_over_limit_is_413(make_app, state):
    app = make_app(state, "api.max_body_bytes=2000")
    c = app.test_client()
    r = c.post("/prediction", json={"records": [RECORD] * 100})
    assert r.status_code == 413
    assert "api.max_body_bytes=2000" in r.get_json()["error"]["message"]
    assert c.post("/prediction", json={"records": [RECORD]}).status_code == 200


def test_too_many_records_is_413(make_app, state):
    c = make_app(state, "api.max_records=3").test_client()
    r = c.post("/prediction", json={"records": [RECORD] * 4})
    assert r.status_code == 413 and "api.max_records=3" in r.get_json()["error"]["message"]


def test_integer_signature_and_feature_max(make_app, state, model_dirs):
    # task ranges come from the config: a max makes larger values a 400
    c = make_app(state, "task.features.number_of_employees.max=1000").test_client()
    r = c.post("/prediction", json={"records": [{**RECORD, "number_of_employees": 1001}]})
    assert r.status_code == 400 and "<= 1000" in r.get_json()["error"]["message"]


# ---- errors --------------------------------------------------------------------------------
def test_404_405_are_json_with_request_id(client):
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.is_json
    assert r.get_json()["error"]["request_id"] == r.headers["X-Request-ID"]
    r = client.get("/prediction")
    assert r.status_code == 405 and r.is_json and "POST" in r.headers["Allow"]
    assert "not allowed" in r.get_json()["error"]["message"]


def test_500_is_json_with_request_id_and_logged(client, app, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(app.extensions["mlops"].fleet.current("attrition_model"), "predict_matrix", boom)
    r = client.post("/prediction", json={"records": [RECORD]})
    assert r.status_code == 500 and r.is_json
    rid = r.get_json()["error"]["request_id"]
    assert "kaboom" not in r.get_data(as_text=True)      # no internals leak to the caller
    assert rid in caplog.text and "kaboom" in caplog.text


def test_security_headers(client):
    r = client.get("/")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"


# ---- API key -------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path", [
    ("GET", "/scoring"), ("GET", "/summarystats?refresh=1"), ("GET", "/diagnostics?refresh=1"),
    ("POST", "/admin/reload"), ("POST", "/admin/rollback"), ("POST", "/admin/retrain"),
    ("GET", "/admin/jobs"), ("GET", "/admin/jobs/" + "0" * 32),
])
def test_protected_routes(make_app, state, method, path):
    c = make_app(state).test_client()
    assert c.open(path, method=method).status_code == 401
    assert c.open(path, method=method, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.open(path, method=method, headers={"X-API-Key": API_KEY + "x"}).status_code == 401
    closed = make_app(state, key=None).test_client()
    r = closed.open(path, method=method, headers=auth())
    assert r.status_code == 403 and "API_KEY" in r.get_json()["error"]["message"]


def test_bad_flag_value_is_400(client):
    r = client.get("/summarystats?refresh=maybe")
    assert r.status_code == 400 and "refresh" in r.get_json()["error"]["message"]


# ---- scoring -------------------------------------------------------------------------------
def test_scoring_matches_the_step_and_is_cached(client):
    r = client.get("/scoring", headers=auth())
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["model_version"] == "attrition_model-v1" and body["n_examples"] == 400
    assert body["primary_metric"] == "f1" and 0 < body["metrics"]["f1"] < 1
    assert body["test_data"] == "testdata.csv" and body["cached"] is False
    assert str(TEST_CSV.parent) not in r.get_data(as_text=True)   # no server paths
    again = client.get("/scoring", headers=auth()).get_json()
    assert again["cached"] is True and again["metrics"] == body["metrics"]


def test_scoring_without_test_data_is_503(make_app, state, tmp_path):
    c = make_app(state, f"data.test_path={tmp_path / 'missing.csv'}").test_client()
    r = c.get("/scoring", headers=auth())
    assert r.status_code == 503 and "missing.csv" in r.get_json()["error"]["message"]


# ---- summarystats / diagnostics ------------------------------------------------------------
def test_summarystats_and_diagnostics_404_before_the_step(client):
    for path in ("/summarystats", "/diagnostics"):
        r = client.get(path)
        assert r.status_code == 404 and "diagnostics step" in r.get_json()["error"]["message"]


def write_diagnostics(state):
    report = {"generated": "2026-01-02T03:04:05+0000", "task": "tabular", "state_dir": str(state),
              "model_version": "attrition_model-v1",
              "predictions": {"n_examples": 2, "accuracy": 0.5, "rows": [{"id": "a"}, {"id": "b"}]},
              "summary_stats": {"n_rows": 3, "columns": ["a"], "summary": {"a": {"mean": 1.0}}},
              "missing_values": {"a": 0.0}, "timing": {"latency": {"p50_ms": 1.0, "p99_ms": 2.0}},
              "dependencies": {"n_mismatch": 0, "packages": []}, "system": {"python": "3.11"}}
    (state / "reports" / "attrition_model").mkdir(parents=True, exist_ok=True)
    (state / "reports" / "attrition_model" / "diagnostics.json").write_text(json.dumps(report))
    return report


def test_summarystats_and_diagnostics_from_the_report(client, state):
    report = write_diagnostics(state)
    body = client.get("/summarystats").get_json()
    assert body["generated"] == report["generated"] and body["summary_stats"]["n_rows"] == 3
    assert body["missing_values"] == {"a": 0.0}
    body = client.get("/diagnostics").get_json()
    assert body["generated"] == report["generated"] and body["timing"]["latency"]["p99_ms"] == 2.0
    assert "rows" not in body["predictions"] and "state_dir" not in body


def test_refresh_recomputes(client, state, tmp_path):
    import shutil

    ingested = state / "ingested" / "attrition_model"
    ingested.mkdir(parents=True)
    shutil.copy(TEST_CSV, ingested / "finaldata.csv")
    body = client.get("/summarystats?refresh=1", headers=auth()).get_json()
    assert body["source"] == "recomputed" and body["summary_stats"]["n_rows"] == 400
    assert "lastmonth_activity" in body["summary_stats"]["summary"]
    body = client.get("/diagnostics?refresh=1", headers=auth()).get_json()
    assert body["source"] == "recomputed" and body["model_version"] == "attrition_model-v1"
    assert body["timing"]["latency"]["p50_ms"] > 0
    assert body["dependencies"]["packages"] and body["system"]["python"]


def test_refresh_without_data_is_404(client):
    r = client.get("/summarystats?refresh=1", headers=auth())
    assert r.status_code == 404 and "data_ingestion" in r.get_json()["error"]["message"]


# ---- dashboard -----------------------------------------------------------------------------
def test_dashboard_renders_everything(client, state, app):
    client.post("/prediction", json={"records": [RECORD] * 3})
    app.extensions["mlops"].prediction_log.flush()
    write_diagnostics(state)
    from tests.diagnostics.builders import drift_doc

    (state / "reports" / "attrition_model" / "drift.json").write_text(json.dumps(drift_doc(True)))
    r = client.get("/dashboard")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for fragment in ("attrition_model-v1", 'id="metric-history-plot"', "data:image/png;base64,",
                     "Deployments", "drift", "lastmonth_activity: KS", "diagnostics", "(3 predictions)",
                     'formaction="/admin/models/attrition_model/retrain"'):
        assert fragment in html, fragment
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "form-action 'self'" in r.headers["Content-Security-Policy"]


def test_dashboard_escapes_untrusted_text(client, state):
    ModelStore(state / "models" / "attrition_model").append_history({"event": "deploy", "version": "<script>x</script>"})
    html = client.get("/dashboard").get_data(as_text=True)
    assert "<script>x" not in html and "&lt;script&gt;" in html


def test_dashboard_without_anything(make_app, tmp_path):
    r = make_app(tmp_path / "empty").test_client().get("/dashboard")
    assert r.status_code == 200 and "No model deployed yet" in r.get_data(as_text=True)
