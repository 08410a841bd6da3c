"""task=nlu through the API, with a rule-based stand-in that honours the NLU pyfunc contract."""
from __future__ import annotations

import json

import pytest

from tests.api.conftest import RECORD, add_version, auth
from utils.models.model_store import ModelStore
from utils.monitoring.prediction_log import read_predictions


@pytest.fixture
def nlu_state(tmp_path, model_dirs):
    state = tmp_path / "state"
    store = ModelStore(state / "models" / "nlu_query_model")
    add_version(store, "nlu_query_model-v1", model_dirs["nlu"], task="nlu", score=0.8, metric="exact_match")
    store.deploy("nlu_query_model-v1")
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps(x) for x in [
        {"text": "hello Anna", "intent": "greet", "tags": ["O", "B-name"]},
        {"text": "status of order", "intent": "status", "tags": ["O", "O", "O"]},
        {"text": "hello there", "intent": "status", "tags": ["O", "O"]},
    ]) + "\n")
    return state, test


@pytest.fixture
def nlu_client(make_app, nlu_state):
    state, test = nlu_state
    app = make_app(state, "task=nlu", f"data.test_path={test}")
    return app, app.test_client()


def test_nlu_prediction_intent_confidence_slots(nlu_client, nlu_state):
    app, client = nlu_client
    r = client.post("/prediction", json={"texts": ["hello  Anna and Bob", "where is my order"]})
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["task"] == "nlu" and body["model_version"] == "nlu_query_model-v1"
    first, second = body["predictions"]
    assert first["intent"] == "greet" and first["confidence"] == pytest.approx(0.9)
    assert first["slots"] == [{"text": "Anna", "type": "name", "start": 7, "end": 11},
                              {"text": "Bob", "type": "name", "start": 16, "end": 19}]
    text = "hello  Anna and Bob"
    assert all(text[s["start"]:s["end"]] == s["text"] for s in first["slots"])
    assert second["intent"] == "status" and second["slots"] == []
    assert app.extensions["mlops"].prediction_log.flush()
    rows = read_predictions(nlu_state[0] / "predictions.db")
    assert [r["input"] for r in rows] == [{"text": "hello  Anna and Bob"}, {"text": "where is my order"}]
    assert rows[0]["output"]["intent"] == "greet" and rows[0]["task"] == "nlu"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'mlops_api_predictions_total{model_version="nlu_query_model-v1",prediction="greet"} 1.0' in metrics


def test_nlu_csv_body(nlu_client):
    _, client = nlu_client
    r = client.post("/prediction", data=b'text,other\n"hello, World",1\nstatus please,2\n', content_type="text/csv")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert [p["intent"] for p in r.get_json()["predictions"]] == ["greet", "status"]


@pytest.mark.parametrize("body, fragment", [
    ({"records": [RECORD]}, "nlu model"),
    ({"texts": ["ok", "  "]}, "empty text"),
    ({"texts": ["ok", 3]}, "must be a string"),
    ({"texts": ["x" * 2001]}, "longer than 2000"),
    ({"texts": ["nul\x00byte"]}, "not valid text"),
    ({"texts": []}, "empty"),
])
def test_nlu_bad_input(nlu_client, body, fragment):
    _, client = nlu_client
    r = client.post("/prediction", json=body)
    assert r.status_code == 400 and fragment in r.get_json()["error"]["message"]


def test_nlu_lone_surrogate_is_400(nlu_client):
    _, client = nlu_client
    r = client.post("/prediction", data=b'{"texts": ["a \\ud800 b"]}', content_type="application/json")
    assert r.status_code == 400 and "not valid text" in r.get_json()["error"]["message"]


def test_nlu_csv_needs_a_text_column(nlu_client):
    _, client = nlu_client
    r = client.post("/prediction", data=b"query\nhello\n", content_type="text/csv")
    assert r.status_code == 400 and "'text' column" in r.get_json()["error"]["message"]


def test_nlu_scoring(nlu_client):
    _, client = nlu_client
    r = client.get("/scoring", headers=auth())
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["n_examples"] == 3 and body["primary_metric"] == "exact_match"
    assert body["metrics"]["intent_accuracy"] == pytest.approx(2 / 3)
    assert body["metrics"]["exact_match"] == pytest.approx(2 / 3)
    assert body["metrics"]["slot_f1"] == pytest.approx(1.0)
