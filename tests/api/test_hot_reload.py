"""Hot reload: the app follows models/production without a restart and without failed requests."""
from __future__ import annotations

import threading

import pandas as pd
import pytest

from tests.api.conftest import FEATURES, RECORD, add_version, auth, run_probe
from utils.models.model_store import ModelStore

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


def p_one(prediction: dict) -> float:
    """P(label 1) from an answer (label + probability of that label)."""
    return prediction["probability"] if prediction["label"] == 1 else 1.0 - prediction["probability"]


def expected_p1(model_dir, record=RECORD) -> float:
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(str(model_dir))
    return float(model.predict_proba(pd.DataFrame([record])[FEATURES])[0, 1])


def test_follows_the_production_link(client, state):
    store = ModelStore(state / "models" / "attrition_model")
    assert client.post("/prediction", json={"records": [RECORD]}).get_json()["model_version"] == "attrition_model-v1"
    store.deploy("attrition_model-v2")
    assert client.post("/prediction", json={"records": [RECORD]}).get_json()["model_version"] == "attrition_model-v2"
    assert client.get("/health").get_json()["model_version"] == "attrition_model-v2"
    store.rollback()
    assert client.get("/").get_json()["model"]["version"] == "attrition_model-v1"


def test_broken_version_keeps_the_old_model_serving(client, state, tmp_path, app):
    store = ModelStore(state / "models" / "attrition_model")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: {}\n")
    add_version(store, "attrition_model-v3", broken)
    store.deploy("attrition_model-v3")
    r = client.post("/prediction", json={"records": [RECORD]})
    assert r.status_code == 200 and r.get_json()["model_version"] == "attrition_model-v1"
    health = client.get("/health").get_json()
    assert health["production"] == "attrition_model-v3" and health["model_version"] == "attrition_model-v1"
    assert "attrition_model-v3" in health["error"]
    assert 'mlops_api_model_loads_total{result="error"} 1.0' in client.get("/metrics").get_data(as_text=True)
    store.deploy("attrition_model-v2")
    assert client.post("/prediction", json={"records": [RECORD]}).get_json()["model_version"] == "attrition_model-v2"
    assert client.get("/health").get_json()["error"] is None


def test_requests_in_flight_during_swaps_all_succeed_and_match_their_version(app, state, model_dirs):
    """Four threads predict while the link flips 20 times: no failure, and every answer's
    probability is that of the model version the answer names."""
    store = ModelStore(state / "models" / "attrition_model")
    expected = {"attrition_model-v1": expected_p1(model_dirs["v1"]),
                "attrition_model-v2": expected_p1(model_dirs["v2"])}
    assert abs(expected["attrition_model-v1"] - expected["attrition_model-v2"]) > 1e-3
    stop = threading.Event()
    results: list[tuple[int, str | None, float | None]] = []
    lock = threading.Lock()

    def hammer() -> None:
        client = app.test_client()
        while not stop.is_set():
            r = client.post("/prediction", json={"records": [RECORD]})
            body = r.get_json()
            with lock:
                results.append((r.status_code, body.get("model_version"),
                                p_one(body["predictions"][0]) if r.status_code == 200 else None))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            store.deploy("attrition_model-v2" if i % 2 == 0 else "attrition_model-v1")
            while True:   # wait until some request saw this swap
                with lock:
                    seen = results[-1][1] if results else None
                if seen == store.production_version():
                    break
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(results) > 40
    assert {code for code, _, _ in results} == {200}
    for _, version, p1 in results:
        assert p1 == pytest.approx(expected[version])
    assert {v for _, v, _ in results} == set(expected)


def test_reload_interval_and_admin_reload(make_app, state):
    app = make_app(state, "api.reload_check_ms=3600000")
    client = app.test_client()
    client.get("/health")
    ModelStore(state / "models" / "attrition_model").deploy("attrition_model-v2")
    assert client.get("/health").get_json()["model_version"] == "attrition_model-v1"   # not checked yet
    r = client.post("/admin/reload", headers=auth())
    assert r.status_code == 200
    body = r.get_json()
    assert (body["model"], body["model_version"], body["previous"], body["error"]) == (
        "attrition_model", "attrition_model-v2", "attrition_model-v1", None)
    assert client.get("/health").get_json()["model_version"] == "attrition_model-v2"


def test_production_link_removed_keeps_serving(client, state):
    (state / "models" / "attrition_model" / "production").unlink()
    r = client.post("/prediction", json={"records": [RECORD]})
    assert r.status_code == 200 and r.get_json()["model_version"] == "attrition_model-v1"


def test_model_selecting_columns_by_name_gets_a_dataframe(make_app, tmp_path):
    """A ColumnTransformer pipeline cannot take a bare matrix: the app must notice and still answer right."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.conftest import REPO_ROOT

    frame = pd.read_csv(REPO_ROOT / "01_data/sourcedata/tabular/dataset1.csv")
    x = frame[list(reversed(FEATURES))].astype(float)      # training column order != config order
    model = Pipeline([("cols", ColumnTransformer([("s", StandardScaler(), ["number_of_employees", "lastmonth_activity"])])),
                      ("lr", LogisticRegression())]).fit(x, frame["exited"])
    saved = tmp_path / "ct"
    mlflow.sklearn.save_model(model, str(saved), signature=infer_signature(x, model.predict(x)),
                              pip_requirements=["scikit-learn"])
    state = tmp_path / "state"
    store = ModelStore(state / "models" / "attrition_model")
    add_version(store, "attrition_model-v1", saved)
    store.deploy("attrition_model-v1")
    app = make_app(state)
    served = app.extensions["mlops"].fleet.current("attrition_model")
    assert served.takes_matrix is False and served.spec.columns == tuple(reversed(FEATURES))
    r = app.test_client().post("/prediction", json={"records": [RECORD]})
    assert r.status_code == 200, r.get_data(as_text=True)
    expected = model.predict_proba(pd.DataFrame([RECORD])[list(reversed(FEATURES))])[0, 1]
    assert p_one(r.get_json()["predictions"][0]) == pytest.approx(expected)


def test_plain_pipeline_takes_the_fast_path(app):
    assert app.extensions["mlops"].fleet.current("attrition_model").takes_matrix is True


def test_a_load_freezes_the_heap_and_frees_what_an_earlier_freeze_held(state):
    """After a load the worker's objects are out of the collector's reach (gc.freeze: no full
    collection walks the model again, the p99 tail of issue 16), and garbage cycles frozen by an
    earlier load (a replaced model) are still freed at the next one."""
    import gc
    import weakref

    from api.model_service import load_served_model

    class Node:
        pass

    cycle = Node()
    cycle.self = cycle                       # only the cyclic collector can free it
    alive = weakref.ref(cycle)
    gc.freeze()                              # as an earlier load left it
    del cycle
    gc.collect()
    assert alive() is not None               # frozen: a plain collection does not see it
    try:
        store = ModelStore(state / "models" / "attrition_model")
        load_served_model(store, "attrition_model-v2", use_cache=False)
        assert alive() is None and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


GEVENT_RELOAD_PROBE = r"""
import json, sys
from gevent import monkey
monkey.patch_all()
import gevent, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/04_deployment"]
from pathlib import Path
import api.model_service as model_service
from utils.models.model_store import ModelStore

native_sleep = monkey.get_original("time", "sleep")
real_load = model_service.load_served_model

def slow_load(*args, **kwargs):     # a model that takes 0.5 s to load, in native time
    native_sleep(0.5)
    return real_load(*args, **kwargs)

model_service.load_served_model = slow_load
store = ModelStore(Path(sys.argv[2]))
holder = model_service.ModelHolder(store)
first = holder.current().version
store.deploy("attrition_model-v2")
served = []                          # (time, version) another request of this worker got

def other_requests():
    gevent.sleep(0.05)               # after the request below has noticed the deploy
    while len(served) < 2000:
        served.append((time.monotonic(), holder.current().version))
        gevent.sleep(0.01)

g = gevent.spawn(other_requests)
started = time.monotonic()
noticed = holder.current().version   # this request notices the new link and loads it
ended = time.monotonic()
gevent.sleep(0.1)
g.kill()
during = [v for t, v in served if started < t < ended]
print(json.dumps({"first": first, "noticed": noticed, "load_s": ended - started,
                  "during": sorted(set(during)), "n_during": len(during), "last": served[-1][1]}))
"""


def test_a_reload_under_gevent_keeps_the_worker_serving_the_old_model(state):
    """Under gevent (gunicorn's workers) the request that notices a deploy loads the new model
    in a real thread: the worker's other requests go on, answered by the old model, during the
    whole load, and get the new one after it."""
    from tests.conftest import REPO_ROOT

    result = run_probe(GEVENT_RELOAD_PROBE, str(REPO_ROOT), str(state / "models" / "attrition_model"))
    assert (result["first"], result["noticed"]) == ("attrition_model-v1", "attrition_model-v2")
    assert result["load_s"] >= 0.5
    assert result["n_during"] >= 10          # ~50 at 10 ms: the loop was not blocked by the load
    assert result["during"] == ["attrition_model-v1"]
    assert result["last"] == "attrition_model-v2"
