"""The prediction lane (api/fast_lane.py) answers exactly as Flask does, and only what succeeds.

Two apps over two copies of one state dir (a tabular and an NLU model): one with the lane
(the default), one with `api.fast_lane=false`. Every request below goes to both; the
answers (status, headers, body), the request metrics, the access-log entries and the
prediction-log rows must be the same. A view-function counter shows who answered.
"""
from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import RECORD
from utils.monitoring.prediction_log import read_predictions

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")
TAB = "/models/attrition_model/prediction"
NLU = "/models/nlu_query_model/prediction"
OTHER = dict(RECORD, corporation="zz999999", lastmonth_activity=250)
CSV_BODY = ("corporation,lastmonth_activity,lastyear_activity,number_of_employees\n"
            "abcd1234,10,100,5\nefgh5678,900,20000,60\n")


def _json(payload: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps(payload).encode()


# (name, method, path, content type, body, extra headers, answered by the lane)
CASES = [
    ("one record", "POST", TAB, *_json({"records": [RECORD]}), {}, True),
    ("a batch by ?model=", "POST", "/prediction?model=attrition_model", *_json({"records": [RECORD, OTHER] * 3}),
     {}, True),
    ("a CSV body", "POST", TAB, "text/csv", CSV_BODY.encode(), {}, True),
    ("charset in the type", "POST", TAB, "application/json; charset=utf-8", _json({"records": [OTHER]})[1], {},
     True),
    ("NLU texts", "POST", NLU, *_json({"texts": ["hello Anna", "status of order"]}), {}, True),
    ("an escaped query", "POST", "/prediction?model=%61ttrition_model", *_json({"records": [RECORD]}), {}, False),
    ("invalid JSON", "POST", TAB, "application/json", b'{"records": [', {}, False),
    ("a field out of range", "POST", TAB, *_json({"records": [dict(RECORD, number_of_employees=-5)]}), {}, False),
    ("a missing field", "POST", TAB, *_json({"records": [{"corporation": "x1"}]}), {}, False),
    ("texts to a tabular model", "POST", TAB, *_json({"texts": ["hello"]}), {}, False),
    ("an empty body", "POST", TAB, "application/json", b"", {}, False),
    ("an unsupported type", "POST", TAB, "application/xml", b"<records/>", {}, False),
    ("over max_body_bytes", "POST", TAB, *_json({"records": [RECORD] * 40}), {}, False),
    ("an unknown model", "POST", "/models/nope/prediction", *_json({"records": [RECORD]}), {}, False),
    ("no model named, two served", "POST", "/prediction", *_json({"records": [RECORD]}), {}, False),
    ("a percent-encoded name", "POST", "/models/attrition%5Fmodel/prediction", *_json({"records": [RECORD]}), {},
     True),                          # the server decodes PATH_INFO: the lane sees the plain name
    ("a non-ASCII name", "POST", "/models/na%C3%AFve/prediction", *_json({"records": [RECORD]}), {}, False),
    ("GET on the route", "GET", TAB, "", b"", {}, False),
]


class Recorder:
    """One app: its test client, Flask dispatch counts and access-log entries."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.dispatched: Counter[str] = Counter()
        self.entries: list[tuple[Any, ...]] = []
        svc = app.extensions["mlops"]
        svc.access_log.enabled = lambda: True
        svc.access_log.add = self.entries.append
        for endpoint in ("api.prediction", "api.model_prediction"):
            view = app.view_functions[endpoint]
            app.view_functions[endpoint] = self._counting(endpoint, view)

    def _counting(self, endpoint: str, view: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.dispatched[endpoint] += 1
            return view(*args, **kwargs)
        return counted

    def send(self, request_id: str, method: str, path: str, content_type: str, body: bytes,
             headers: dict[str, str]) -> Any:
        headers = {"X-Request-ID": request_id, **headers}
        if content_type:
            headers["Content-Type"] = content_type
        return self.client.open(path, method=method, data=body, headers=headers)


@pytest.fixture
def both(make_app: Any, two_models: Path, tmp_path: Path) -> tuple[Recorder, Recorder, Path, Path]:
    plain_state = tmp_path / "plain-state"
    shutil.copytree(two_models, plain_state, symlinks=True)
    common = ["api.max_body_bytes=2000"]
    lane = Recorder(make_app(two_models, *common))
    plain = Recorder(make_app(plain_state, *common, "api.fast_lane=false"))
    return lane, plain, two_models, plain_state


def _request_counts(app: Any) -> list[str]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return sorted(line for line in text.splitlines()
                  if line.startswith(("mlops_api_requests_total{", "mlops_api_predictions_total{",
                                      "mlops_api_request_duration_seconds_count{")) and "/metrics" not in line)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_lane_answers_as_flask_does(both: tuple[Recorder, Recorder, Path, Path], case: tuple[Any, ...]) -> None:
    lane, plain, _, _ = both
    name, method, path, content_type, body, headers, by_lane = case
    a = lane.send("lane-case-0001", method, path, content_type, body, headers)
    b = plain.send("lane-case-0001", method, path, content_type, body, headers)
    assert (a.status_code, a.get_data()) == (b.status_code, b.get_data())
    assert list(a.headers.items()) == list(b.headers.items())
    if by_lane:
        assert a.status_code == 200
    posted = int(method == "POST")          # a GET never reaches the view: 405 from the URL map
    assert sum(lane.dispatched.values()) == (0 if by_lane else posted)
    assert sum(plain.dispatched.values()) == posted


def test_metrics_access_log_and_prediction_log_match(both: tuple[Recorder, Recorder, Path, Path]) -> None:
    lane, plain, lane_state, plain_state = both
    answered = set()
    for i, (_, method, path, content_type, body, headers, _) in enumerate(CASES):
        for recorder in (lane, plain):
            if recorder.send(f"lane-case-{i:04d}", method, path, content_type, body, headers).status_code == 200:
                answered.add(f"lane-case-{i:04d}")

    def comparable(entries: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # FIELDS: time, request_id, remote, method, path, route, status, ms, bytes_in, bytes_out, model_version, pid
        return [e[1:7] + e[8:11] for e in entries]

    assert len(lane.entries) == len(CASES)
    assert comparable(lane.entries) == comparable(plain.entries)
    assert _request_counts(lane.app) == _request_counts(plain.app)

    rows = []
    for recorder, state in ((lane, lane_state), (plain, plain_state)):
        assert recorder.app.extensions["mlops"].prediction_log.flush()
        rows.append(sorted((r["request_id"], r["model_version"], json.dumps(r["input"]), json.dumps(r["output"]))
                           for r in read_predictions(state / "predictions.db")))
    assert rows[0] == rows[1]
    assert {r[0] for r in rows[0]} == answered and len(answered) == sum(1 for c in CASES if c[-1]) + 1


def test_a_body_cut_short_goes_to_flask(both: tuple[Recorder, Recorder, Path, Path]) -> None:
    """Content-Length says more than arrives: Flask answers (400), what was read is handed over."""
    lane, plain, _, _ = both
    body = json.dumps({"records": [RECORD]}).encode()
    answers = []
    for recorder in (lane, plain):
        environ_overrides = {"wsgi.input": io.BytesIO(body[:-5]), "CONTENT_LENGTH": str(len(body))}
        answers.append(recorder.client.post(TAB, headers={"Content-Type": "application/json",
                                                          "X-Request-ID": "lane-short-0001"},
                                            environ_overrides=environ_overrides))
    assert answers[0].status_code == answers[1].status_code == 400
    assert answers[0].get_json() == answers[1].get_json()
    assert lane.dispatched["api.model_prediction"] == 1


def test_the_lane_is_off_when_configured(both: tuple[Recorder, Recorder, Path, Path]) -> None:
    lane, plain, _, _ = both
    from api.fast_lane import PredictionLane

    assert isinstance(lane.app.wsgi_app, PredictionLane)
    assert not isinstance(plain.app.wsgi_app, PredictionLane)


def test_a_request_handed_to_flask_keeps_the_lane_s_request_id(both: tuple[Recorder, Recorder, Path, Path]) -> None:
    """Without the caller's X-Request-ID the ids run on one counter per worker: a request the
    lane gave up on keeps the id it was given, so the next one follows it as without the lane."""
    lane, plain, _, _ = both
    suffixes = []
    for recorder in (lane, plain):
        answers = [recorder.client.post(TAB, json={"records": [record]})
                   for record in (RECORD, {"corporation": "x1"}, RECORD)]
        assert [a.status_code for a in answers] == [200, 400, 200]
        ids = [a.headers["X-Request-ID"] for a in answers]
        assert len({i[:16] for i in ids}) == 1                 # one worker's prefix
        suffixes.append([int(i[16:], 16) - int(ids[0][16:], 16) for i in ids])
    assert suffixes[0] == suffixes[1] == [0, 1, 2]
