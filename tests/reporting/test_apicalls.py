"""06_reporting/apicalls.py against a small local HTTP server and against a closed port."""
from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, load_step_module, local_http_server
from tests.diagnostics.builders import NLU_TASK, NLU_TEST, TABULAR_TASK, write_jsonl

TEST_CSV = REPO_ROOT / "01_data" / "testdata" / "tabular" / "testdata.csv"


class FakeApi(http.server.BaseHTTPRequestHandler):
    """Answers the four endpoints with JSON; /scoring fails when the server says so."""

    requests: list[dict] = []
    scoring_status = 200

    def _answer(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, body: bytes | None) -> None:
        FakeApi.requests.append({"method": self.command, "path": self.path.split("?")[0],
                                 "query": self.path.partition("?")[2],
                                 "api_key": self.headers.get("X-API-Key"),
                                 "json": json.loads(body) if body else None})

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._record(body)
        n = len(json.loads(body).get("records") or json.loads(body).get("texts"))
        self._answer(200, {"predictions": [0] * n, "model_version": "attrition_model-v1"})

    def do_GET(self):  # noqa: N802
        self._record(None)
        path = self.path.split("?")[0]
        if path == "/scoring":
            self._answer(self.scoring_status, {"f1": 0.5} if self.scoring_status == 200 else {"error": "boom"})
        else:
            self._answer(200, {"endpoint": path})

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    FakeApi.requests = []
    FakeApi.scoring_status = 200
    with local_http_server(FakeApi) as url:
        yield url


@pytest.fixture(scope="module")
def apicalls():
    return load_step_module("06_reporting/apicalls.py")


def test_calls_every_endpoint_and_records_answers(api, apicalls, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_TEST_KEY", "s3cret")
    code = apicalls.main(["--url", api, "--api-key-env", "MLOPS_TEST_KEY", "--state-dir", str(tmp_path),
                          "--examples", "3", f"data.test_path={TEST_CSV}"])
    assert code == 0
    lines = (tmp_path / "reports" / "attrition_model" / "apireturns.txt").read_text().splitlines()
    docs = [json.loads(line) for line in lines]       # one JSON document per endpoint
    assert [d["endpoint"] for d in docs] == ["/prediction", "/scoring", "/summarystats", "/diagnostics"]
    assert all(d["status"] == 200 and d["ok"] and d["elapsed_ms"] >= 0 for d in docs)
    assert docs[0]["response"] == {"predictions": [0, 0, 0], "model_version": "attrition_model-v1"}
    assert docs[2]["response"] == {"endpoint": "/summarystats"}
    sent = FakeApi.requests[0]
    assert sent["method"] == "POST" and all(r["api_key"] == "s3cret" for r in FakeApi.requests)
    records = sent["json"]["records"]
    assert len(records) == 3 and set(records[0]) == {"corporation", *TABULAR_TASK.features}, "no label sent"
    assert "/diagnostics" in capsys.readouterr().out


def test_endpoint_error_is_recorded_and_exit_1(api, apicalls, tmp_path, monkeypatch):
    monkeypatch.delenv("API_KEY", raising=False)
    FakeApi.scoring_status = 500
    code = apicalls.main(["--url", api, "--state-dir", str(tmp_path), f"data.test_path={TEST_CSV}"])
    assert code == 1
    docs = [json.loads(x) for x in (tmp_path / "reports" / "attrition_model" / "apireturns.txt").read_text().splitlines()]
    scoring = docs[1]
    assert scoring["status"] == 500 and scoring["ok"] is False and scoring["response"] == {"error": "boom"}
    assert FakeApi.requests[0]["api_key"] is None


def test_unreachable_api_exits_non_zero_with_a_clear_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # closed once the block ends: nothing listens there
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "06_reporting" / "apicalls.py"),
                           "--url", f"http://127.0.0.1:{port}", "--state-dir", str(tmp_path),
                           "--timeout", "5", f"data.test_path={TEST_CSV}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 3
    assert f"API is not reachable at http://127.0.0.1:{port}" in proc.stderr
    assert "./run_pipeline.sh serve" in proc.stderr
    assert not (tmp_path / "reports" / "attrition_model" / "apireturns.txt").exists()


def test_nlu_prediction_payload_is_texts(apicalls, tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", NLU_TEST)
    assert apicalls.prediction_payload(NLU_TASK, path, 2) == {"texts": [NLU_TEST[0]["text"], NLU_TEST[1]["text"]]}
