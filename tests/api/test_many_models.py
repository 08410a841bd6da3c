"""One API, many models: /models, per-model routes, the default model, management routes.

The state dir holds a tabular model (attrition_model, two versions) and an NLU stand-in
(nlu_query_model), each in its own namespace, as two chains of main.py would leave them.
"""
from __future__ import annotations

import json
import shutil

import pytest

from tests.api.conftest import RECORD, TEST_CSV, add_version, auth
from utils.models.catalog import read_control, read_monitoring, write_manifest
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_models_lists_every_model_with_its_facts(make_app, two_models):
    client = make_app(two_models).test_client()
    body = client.get("/models").get_json()
    by_name = {m["name"]: m for m in body["models"]}
    assert sorted(by_name) == ["attrition_model", "nlu_query_model"]
    assert by_name["attrition_model"]["task"] == "tabular"
    assert by_name["attrition_model"]["production"] == "attrition_model-v1"
    assert by_name["attrition_model"]["score"] == pytest.approx(0.53)
    assert by_name["attrition_model"]["schedule"] == {"retrain_every": "7d"}
    assert by_name["attrition_model"]["deployed_at"] and by_name["attrition_model"]["state"] == "active"
    assert by_name["nlu_query_model"]["task"] == "nlu" and by_name["nlu_query_model"]["paused"] is False


def test_models_names_the_resolved_metric_not_auto(make_app, two_models):
    """A manifest of task.primary_metric=auto lists the metric the production score is in."""
    write_manifest(StatePaths.of(two_models), "attrition_model",
                   {"task": "tabular", "primary_metric": "auto", "overrides": [], "test_path": str(TEST_CSV)})
    body = make_app(two_models).test_client().get("/models").get_json()
    assert {m["name"]: m["primary_metric"] for m in body["models"]}["attrition_model"] == "f1"


def test_each_model_answers_on_its_own_path(make_app, two_models):
    client = make_app(two_models).test_client()
    r = client.post("/models/attrition_model/prediction", json={"records": [RECORD]})
    assert r.status_code == 200 and r.get_json()["model_version"] == "attrition_model-v1"
    r = client.post("/models/nlu_query_model/prediction", json={"texts": ["hello Anna"]})
    assert r.status_code == 200 and r.get_json()["predictions"][0]["intent"] == "greet"
    r = client.post("/prediction?model=nlu_query_model", json={"texts": ["hello"]})
    assert r.status_code == 200 and r.get_json()["task"] == "nlu"
    # no cross-talk: a tabular body to the NLU model is a 400 naming what to send
    r = client.post("/models/nlu_query_model/prediction", json={"records": [RECORD]})
    assert r.status_code == 400 and "texts" in r.get_json()["error"]["message"]


def test_prediction_without_a_model_name(make_app, two_models):
    r = make_app(two_models).test_client().post("/prediction", json={"records": [RECORD]})
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert "attrition_model" in error["message"] and error["models"] == ["attrition_model", "nlu_query_model"]
    r = make_app(two_models, "api.default_model=attrition_model").test_client().post(
        "/prediction", json={"records": [RECORD]})
    assert r.status_code == 200 and r.get_json()["model_version"] == "attrition_model-v1"


def test_unknown_model_is_404_listing_the_models(make_app, two_models):
    client = make_app(two_models).test_client()
    for method, path in (("post", "/models/nope/prediction"), ("get", "/models/nope/summarystats"),
                         ("post", "/admin/models/nope/pause")):
        r = getattr(client, method)(path, json={"texts": ["x"]}, headers=auth())
        assert r.status_code == 404, path
        assert "nlu_query_model" in r.get_json()["error"]["message"]


def test_deploying_one_model_leaves_the_other_served(make_app, two_models):
    client = make_app(two_models).test_client()
    assert client.post("/models/nlu_query_model/prediction", json={"texts": ["hi"]}).status_code == 200
    ModelStore(two_models / "models" / "attrition_model").deploy("attrition_model-v2")
    r = client.post("/models/attrition_model/prediction", json={"records": [RECORD]})
    assert r.get_json()["model_version"] == "attrition_model-v2"
    r = client.post("/models/nlu_query_model/prediction", json={"texts": ["hi"]})
    assert r.get_json()["model_version"] == "nlu_query_model-v1"
    health = client.get("/health").get_json()
    assert health["status"] == "ok"
    assert {k: v["loaded"] for k, v in health["models"].items()} == {
        "attrition_model": "attrition_model-v2", "nlu_query_model": "nlu_query_model-v1"}


def test_per_model_scoring_uses_each_models_test_data(make_app, two_models):
    client = make_app(two_models).test_client()
    tab = client.get("/models/attrition_model/scoring", headers=auth()).get_json()
    nlu = client.get("/models/nlu_query_model/scoring", headers=auth()).get_json()
    assert tab["model"] == "attrition_model" and "f1" in tab["metrics"]
    assert nlu["model"] == "nlu_query_model" and nlu["test_data"] == "nlu_test.jsonl"
    assert nlu["metrics"]["intent_accuracy"] == pytest.approx(1.0)


def test_pause_resume_and_busy(make_app, two_models):
    from utils.models.catalog import managing

    client = make_app(two_models).test_client()
    r = client.post("/admin/models/nlu_query_model/pause", json={"reason": "holiday"}, headers=auth())
    assert r.status_code == 200 and r.get_json()["paused"] is True
    control = read_control(StatePaths.of(two_models), "nlu_query_model")
    assert control.paused and control.reason == "holiday"
    assert client.get("/models").get_json()["models"][1]["state"] == "paused"
    with managing(StatePaths.of(two_models), "nlu_query_model", "test"):      # another action in flight
        r = client.post("/admin/models/nlu_query_model/resume", headers=auth())
        assert r.status_code == 409 and "busy" in r.get_json()["error"]["message"]
    assert read_control(StatePaths.of(two_models), "nlu_query_model").paused
    assert client.post("/admin/models/nlu_query_model/resume", headers=auth()).status_code == 200
    assert not read_control(StatePaths.of(two_models), "nlu_query_model").paused
    events = [e["event"] for e in ModelStore(two_models / "models" / "nlu_query_model").history()]
    assert events[-2:] == ["paused", "resumed"]


def test_manual_retrain_reactivates_a_paused_model(make_app, two_models, monkeypatch):
    import sys

    from utils.models import management

    monkeypatch.setattr(management, "retrain_command",
                        lambda paths, name, extra: [sys.executable, "-c", "print('retrained')"])
    client = make_app(two_models).test_client()
    client.post("/admin/models/attrition_model/pause", headers=auth())
    r = client.post("/admin/models/attrition_model/retrain", headers=auth())
    assert r.status_code == 202 and r.get_json()["model"] == "attrition_model"
    assert not read_control(StatePaths.of(two_models), "attrition_model").paused


def test_evaluate_appends_to_the_models_history(make_app, two_models):
    client = make_app(two_models).test_client()
    r = client.post("/admin/models/nlu_query_model/evaluate", headers=auth())
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["score"] == pytest.approx(1.0)      # the stand-in gets both examples right
    history = read_monitoring(StatePaths.of(two_models), "nlu_query_model")
    assert len(history) == 1 and history[0]["source"] == "evaluate"
    assert read_monitoring(StatePaths.of(two_models), "attrition_model") == []


def test_delete_needs_confirmation_refuses_the_default_and_removes_the_model(make_app, two_models):
    client = make_app(two_models, "api.default_model=attrition_model").test_client()
    r = client.post("/admin/models/nlu_query_model/delete", headers=auth())
    assert r.status_code == 400 and "confirm=nlu_query_model" in r.get_json()["error"]["message"]
    r = client.post("/admin/models/attrition_model/delete", json={"confirm": "attrition_model"}, headers=auth())
    assert r.status_code == 409 and "api.default_model" in r.get_json()["error"]["message"]
    r = client.post("/admin/models/nlu_query_model/delete", json={"confirm": "nlu_query_model"}, headers=auth())
    assert r.status_code == 200, r.get_data(as_text=True)
    assert [m["name"] for m in client.get("/models").get_json()["models"]] == ["attrition_model"]
    assert client.post("/models/nlu_query_model/prediction", json={"texts": ["hi"]}).status_code == 404
    record = next((two_models / "models" / ".deleted").iterdir())
    assert json.loads((record / "deleted.json").read_text())["production"] == "nlu_query_model-v1"
    assert (record / "models" / "deployments.jsonl").read_text().splitlines()[-1].count('"deleted"') == 1
    assert not (record / "models" / "versions").exists()      # the weights are gone, the history stays


def test_dashboard_buttons_are_csrf_safe_forms(make_app, two_models):
    from tests.api.conftest import API_KEY

    client = make_app(two_models).test_client()
    html = client.get("/dashboard").get_data(as_text=True)
    assert 'id="model-attrition_model"' in html and 'id="model-nlu_query_model"' in html
    assert html.count('method="post"') == 2 and html.count("formaction=") == 2 * 5 and 'name="api_key"' in html
    assert client.get("/admin/models/attrition_model/pause").status_code == 405     # no action on a GET
    r = client.post("/admin/models/attrition_model/pause", data={"api_key": "wrong-key"})
    assert r.status_code == 303 and "wrong%20API%20key" in r.headers["Location"]
    assert not read_control(StatePaths.of(two_models), "attrition_model").paused
    r = client.post("/admin/models/attrition_model/delete", data={"api_key": API_KEY})      # no confirmation
    assert r.status_code == 303 and "confirm" in r.headers["Location"]
    assert (two_models / "models" / "attrition_model" / "production").exists()
    r = client.post("/admin/models/attrition_model/pause", data={"api_key": API_KEY},
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and not read_control(StatePaths.of(two_models), "attrition_model").paused
    r = client.post("/admin/models/attrition_model/pause", data={"api_key": API_KEY},
                    headers={"Origin": "http://localhost"})
    assert r.status_code == 303 and "/dashboard?notice=" in r.headers["Location"]
    assert read_control(StatePaths.of(two_models), "attrition_model").paused
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "automatic retraining paused" in page and "state-paused" in page


def test_an_unreadable_version_of_one_model_does_not_take_the_page_down(make_app, two_models):
    (two_models / "models" / "attrition_model" / "versions" / "attrition_model-v2" / "scores.json").write_text("{")
    client = make_app(two_models).test_client()
    r = client.get("/dashboard")
    assert r.status_code == 200 and "unreadable version(s), skipped: attrition_model-v2" in r.get_data(as_text=True)
    assert client.get("/models").status_code == 200


def test_a_state_dir_of_the_first_layout_is_migrated_and_served(make_app, model_dirs, tmp_path):
    """models/versions + models/production (one model per state dir) -> models/<model>/..."""
    state = tmp_path / "old"
    old = ModelStore(state / "models")          # the first layout's store root
    add_version(old, "attrition_model-v1", model_dirs["v1"], score=0.53)
    old.deploy("attrition_model-v1", reason="test")
    (state / "ingested").mkdir()
    shutil.copy(TEST_CSV, state / "ingested" / "finaldata.csv")
    (state / "fullprocess.state.json").write_text(json.dumps({"pending": None, "reference": None}))
    client = make_app(state).test_client()
    r = client.post("/prediction", json={"records": [RECORD]})
    assert r.status_code == 200 and r.get_json()["model_version"] == "attrition_model-v1"
    new = ModelStore(state / "models" / "attrition_model")
    assert new.production_version() == "attrition_model-v1"
    assert [e["event"] for e in new.history()] == ["deploy"]
    assert not (state / "models" / "production").exists() and not (state / "models" / "versions").exists()
    assert (state / "ingested" / "attrition_model" / "finaldata.csv").is_file()
    assert (state / "models" / "attrition_model" / "tick_state.json").is_file()
    assert new.rollback_target() is None     # history carried over: nothing earlier to roll back to


def test_a_broken_state_file_degrades_one_model_never_the_service(make_app, two_models):
    """Unreadable metadata.json: the running API keeps the last good model and says degraded;
    a fresh API starts, serves the other model and answers 503 with the reason for this one."""
    tab = ModelStore(two_models / "models" / "attrition_model")
    client = make_app(two_models).test_client()
    assert client.post("/models/attrition_model/prediction", json={"records": [RECORD]}).status_code == 200
    (tab.version_dir("attrition_model-v2") / "metadata.json").write_text("{not json")
    tab.deploy("attrition_model-v2")
    r = client.post("/models/attrition_model/prediction", json={"records": [RECORD]})
    assert r.status_code == 200 and r.get_json()["model_version"] == "attrition_model-v1"
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "degraded"
    assert "metadata.json" in " ".join(health.get_json()["problems"])

    fresh = make_app(two_models).test_client()                 # a new server: nothing good for this model
    r = fresh.post("/models/attrition_model/prediction", json={"records": [RECORD]})
    assert r.status_code == 503 and "metadata.json" in r.get_json()["error"]["message"]
    assert fresh.post("/models/nlu_query_model/prediction", json={"texts": ["hi"]}).status_code == 200
    assert fresh.get("/health").get_json()["status"] == "degraded"
    assert fresh.get("/dashboard").status_code == 200 and fresh.get("/models").status_code == 200


def test_each_models_card_shows_its_facts_and_why_it_drifted(make_app, two_models):
    """The card: task, production, schedule, state, last retrain, the drift verdict with its signals."""
    import re

    from tests.diagnostics.builders import drift_doc

    reports = StatePaths.of(two_models).model("attrition_model").reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "drift.json").write_text(json.dumps(drift_doc(True)))
    html = make_app(two_models).test_client().get("/dashboard").get_data(as_text=True)
    cards = {name: body for name, body in re.findall(r'<section class="card" id="model-(\w+)">(.*?)</section>',
                                                     html, re.S)}
    tab, nlu = cards["attrition_model"], cards["nlu_query_model"]
    assert "<td>tabular</td>" in tab and "<td>attrition_model-v1" in tab and "state-active" in tab
    assert "retrain every 7d, monitor every —" in tab
    last_retrain = re.search(r"<th>last retrain</th><td>([^<]+)</td>", tab).group(1)
    assert re.match(r"\d{4}-\d\d-\d\d", last_retrain), last_retrain      # v2 was trained: a date, not a dash
    assert '<span class="bad">drift</span>' in tab
    reasons = re.search(r'<ul class="reasons">(.*?)</ul>', tab, re.S).group(1)
    assert "new data: lastmonth_activity: KS" in reasons, "the verdict names the signal that caused it"
    assert "<td>nlu</td>" in nlu and "retrain every — (drift only)" in nlu
    assert re.search(r'<th>last drift check</th><td class="drift">—</td>', nlu), "no drift check yet: a dash"


def test_per_model_diagnostics_and_summarystats_by_path_or_query(make_app, two_models):
    """Each model's own reports/<model>/diagnostics.json, by path or ?model=; no name: 400 listing them."""
    for name, rows in (("attrition_model", 3), ("nlu_query_model", 7)):
        reports = StatePaths.of(two_models).model(name).reports_dir
        reports.mkdir(parents=True, exist_ok=True)
        (reports / "diagnostics.json").write_text(json.dumps({
            "generated": f"2026-01-0{rows}T00:00:00+0000", "model_version": f"{name}-v1",
            "summary_stats": {"n_rows": rows}, "missing_values": {}, "timing": {}}))
    client = make_app(two_models).test_client()
    for name, rows in (("attrition_model", 3), ("nlu_query_model", 7)):
        for path in (f"/models/{name}/diagnostics", f"/diagnostics?model={name}"):
            body = client.get(path).get_json()
            assert body["model"] == name and body["model_version"] == f"{name}-v1", path
        for path in (f"/models/{name}/summarystats", f"/summarystats?model={name}"):
            assert client.get(path).get_json()["summary_stats"]["n_rows"] == rows, path
    for path in ("/diagnostics", "/summarystats"):
        r = client.get(path)
        assert r.status_code == 400 and r.get_json()["error"]["models"] == ["attrition_model", "nlu_query_model"]
