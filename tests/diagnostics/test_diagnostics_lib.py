"""utils/monitoring/diagnostics_lib.py: statistics, missing values, latency, step timing, dependencies, system."""
from __future__ import annotations

import http.server
import json
import socket
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import local_http_server
from tests.diagnostics.builders import NLU_INGESTED
from utils.monitoring import diagnostics_lib as dl


# ------------------------------------------------------------------------------ statistics
def test_tabular_summary_matches_numpy_and_skips_missing():
    frame = pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "x": [1.0, 2.0, 3.0, 4.0, 100.0],
                          "y": [10, np.nan, 30, np.nan, 50]})
    summary = dl.tabular_summary(frame)
    assert set(summary) == {"x", "y"}, "only numeric columns are summarised"
    x = summary["x"]
    assert x["count"] == 5 and x["mean"] == pytest.approx(22.0) and x["median"] == 3.0
    assert x["std"] == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1))
    assert (x["min"], x["max"]) == (1.0, 100.0)
    assert x["quantiles"] == pytest.approx({"0.05": 1.2, "0.25": 2.0, "0.5": 3.0, "0.75": 4.0, "0.95": 80.8})
    assert summary["y"]["count"] == 3 and summary["y"]["mean"] == pytest.approx(30.0)
    json.dumps(summary, allow_nan=False)  # JSON-safe: no NaN leaks


def test_tabular_missing_percentages():
    frame = pd.DataFrame({"id": ["a", " ", None, "d"], "x": [1.0, np.nan, np.nan, 4.0], "z": [1, 2, 3, 4]})
    assert dl.tabular_missing(frame) == {"id": 50.0, "x": 50.0, "z": 0.0}


def test_distribution_of_nothing_is_empty_not_invented():
    d = dl.distribution([])
    assert d["count"] == 0 and d["mean"] is None and d["quantiles"]["0.5"] is None


def test_nlu_summary_counts_intents_slots_lengths_vocabulary():
    s = dl.nlu_summary(NLU_INGESTED)
    assert s["n_examples"] == 8
    assert s["intents"] == {"search_dataset": 3, "get_help": 3, "subscribe_alert": 1}
    assert s["slot_types"] == {"location": 3, "dataset": 2, "theme": 1}
    lengths = [5, 6, 2, 2, 6, 1, 2]           # the empty text has no length
    ul = s["utterance_length"]
    assert ul["count"] == 7 and ul["mean"] == pytest.approx(np.mean(lengths)) and ul["max"] == 6
    assert ul["histogram"] == {"1": 1, "2": 3, "5": 1, "6": 2}
    vocab = {t.lower() for r in NLU_INGESTED for t in r["text"].split()}
    assert s["vocabulary_size"] == len(vocab) == 17   # "help" and "Help" count once


def test_nlu_missing_counts_empty_text_tags_and_intent():
    assert dl.nlu_missing(NLU_INGESTED) == {"text": 12.5, "intent": 12.5, "tags": 25.0}
    assert dl.nlu_missing([]) == {"text": 0.0, "intent": 0.0, "tags": 0.0}


# ---------------------------------------------------------------------------------- latency
def test_latency_stats_percentiles_of_timed_calls():
    calls = []

    def call(i: int) -> None:
        calls.append(i)
        time.sleep(0.004 if i == 17 else 0.0)

    lat = dl.latency_stats(call, n_calls=20, warmup=2)
    assert len(calls) == 22 and lat["n_calls"] == 20
    assert 0 <= lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["max_ms"] >= 4.0 > lat["p50_ms"]
    with pytest.raises(ValueError):
        dl.latency_stats(call, n_calls=0)


# ----------------------------------------------------------------------------- step timing
def _finished_run(client, experiment_id, name, parent_id, start_ms, seconds):
    run = client.create_run(experiment_id, start_time=start_ms, run_name=name,
                            tags={"mlflow.parentRunId": parent_id, "pipeline.step": name})
    client.set_terminated(run.info.run_id, end_time=start_ms + int(seconds * 1000))
    return run.info.run_id


def test_step_timing_reads_durations_of_the_current_pipeline(tracking):
    client = mlflow.MlflowClient()
    parent = client.create_run(tracking, start_time=1_000_000, run_name="pipeline-tabular", tags={
        "pipeline.kind": "parent", "pipeline.task": "tabular",
        "pipeline.steps": "data_ingestion,model_training,diagnostics,reporting"}).info.run_id
    ingest = _finished_run(client, tracking, "data_ingestion", parent, 1_000_000, 6.5)
    reused = _finished_run(client, tracking, "model_training", "an-older-pipeline", 500_000, 12.25)
    for step, run_id, wall in (("data_ingestion", ingest, 7.0), ("model_training", reused, 0.4)):
        client.set_tag(parent, f"pipeline.run.{step}", run_id)
        client.log_metric(parent, f"duration_s.{step}", wall)
    current = client.create_run(tracking, run_name="diagnostics", tags={"mlflow.parentRunId": parent}).info.run_id

    timing = dl.step_timing(client, current)
    assert timing["pipeline_run_id"] == parent and timing["task"] == "tabular"
    steps = {s["step"]: s for s in timing["steps"]}
    assert [s["step"] for s in timing["steps"]] == ["data_ingestion", "model_training", "diagnostics", "reporting"]
    assert steps["data_ingestion"] == {"step": "data_ingestion", "run_id": ingest, "status": "FINISHED",
                                       "duration_s": 6.5, "wall_s": 7.0, "reused": False}
    assert steps["model_training"]["reused"] is True and steps["model_training"]["duration_s"] == 12.25
    assert steps["diagnostics"]["status"] == "RUNNING" and steps["diagnostics"]["run_id"] == current
    assert steps["reporting"]["status"] == "PENDING" and steps["reporting"]["duration_s"] is None
    assert timing["total_wall_s"] == pytest.approx(7.4)


def test_step_timing_alone_falls_back_to_last_finished_pipeline(tracking):
    client = mlflow.MlflowClient()
    old = client.create_run(tracking, start_time=1_000, tags={"pipeline.kind": "parent",
                                                             "pipeline.steps": "data_ingestion"}).info.run_id
    run_id = _finished_run(client, tracking, "data_ingestion", old, 1_000, 2.0)
    client.set_tag(old, "pipeline.run.data_ingestion", run_id)
    client.set_terminated(old, end_time=5_000)
    # a later pipeline that runs only diagnostics: nothing earlier in it to report
    now = client.create_run(tracking, start_time=9_000, tags={"pipeline.kind": "parent",
                                                             "pipeline.steps": "diagnostics"}).info.run_id
    current = client.create_run(tracking, run_name="diagnostics", tags={"mlflow.parentRunId": now}).info.run_id
    timing = dl.step_timing(client, current)
    assert timing["pipeline_run_id"] == old
    assert timing["steps"][0]["duration_s"] == 2.0


def test_step_timing_without_any_pipeline_says_so(tracking):
    timing = dl.step_timing(mlflow.MlflowClient(), None, tracking)
    assert timing["pipeline_run_id"] is None and timing["steps"] == [] and "no pipeline run" in timing["reason"]


# ---------------------------------------------------------------------------- dependencies
def _pyproject(tmp_path: Path, deps: list[str]) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text("[project]\nname = 'x'\nversion = '0'\ndependencies = [\n"
                    + "".join(f"  {d!r},\n" for d in deps[:-1])
                    + f"]\n[project.optional-dependencies]\ntest = [{deps[-1]!r}]\n")
    return path


def test_dependency_report_compares_installed_with_pins(tmp_path):
    import importlib.metadata

    pytest_version = importlib.metadata.version("pytest")
    pyproject = _pyproject(tmp_path, [f"pytest=={pytest_version}", "requests==0.0.1",
                                      "no-such-package-for-mlops-tests==1.0"])
    report = dl.dependency_report(pyproject, index_url=None)
    by_name = {p["name"]: p for p in report["packages"]}
    assert by_name["pytest"] == {"name": "pytest", "pinned": pytest_version, "installed": pytest_version,
                                 "status": "ok", "latest": "unknown", "update_available": None}
    assert by_name["requests"]["status"] == "mismatch"
    assert by_name["requests"]["installed"] == importlib.metadata.version("requests")
    assert by_name["no-such-package-for-mlops-tests"]["status"] == "not installed"
    assert by_name["no-such-package-for-mlops-tests"]["installed"] is None
    assert report["n_mismatch"] == 2


def test_project_pins_cover_every_pyproject_dependency():
    import tomllib

    from utils.pipeline.paths import REPO_ROOT

    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    count = len(data["dependencies"]) + sum(len(v) for v in data["optional-dependencies"].values())
    pins = dl.project_pins()
    assert len(pins) == count and "mlflow" in pins and "torch" in pins


class _Index(http.server.BaseHTTPRequestHandler):
    """A PyPI JSON API stand-in: every package's latest version is 99.0."""

    def do_GET(self):  # noqa: N802
        name = self.path.strip("/").split("/")[-2]   # /pypi/<name>/json
        if name == "broken":
            body, status = b"{not json", 200
        elif name == "gone":
            body, status = b"{}", 404
        else:
            body, status = json.dumps({"info": {"name": name, "version": "99.0"}}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_index():
    with local_http_server(_Index) as url:
        yield f"{url}/pypi"


def test_latest_versions_from_an_answering_index(local_index, tmp_path):
    assert dl.latest_versions(["pandas", "broken", "gone"], local_index, timeout_s=2) == {
        "pandas": "99.0", "broken": "unknown", "gone": "unknown"}
    pyproject = _pyproject(tmp_path, ["pytest==1.0", "pandas==1.0"])
    report = dl.dependency_report(pyproject, index_url=local_index, timeout_s=2)
    assert all(p["latest"] == "99.0" and p["update_available"] is True for p in report["packages"])


@pytest.fixture
def silent_index():
    """A server socket that accepts connections (kernel backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/pypi"
    sock.close()


def test_dependency_check_against_a_silent_index_is_quick_and_unknown(silent_index):
    started = time.monotonic()
    report = dl.dependency_report(index_url=silent_index, timeout_s=0.5)   # the real pyproject
    elapsed = time.monotonic() - started
    assert elapsed < 4.0, f"took {elapsed:.1f} s: the deadline must bound the lookup"
    assert report["packages"] and all(p["latest"] == "unknown" for p in report["packages"])
    assert all(p["update_available"] is None for p in report["packages"])


def test_dependency_check_against_a_closed_port_is_unknown():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    latest = dl.latest_versions(["numpy", "pandas"], f"http://127.0.0.1:{port}/pypi", timeout_s=1)
    assert latest == {"numpy": "unknown", "pandas": "unknown"}
    assert time.monotonic() - started < 3.0


# ---------------------------------------------------------------------------------- system
def test_system_info_reports_cpu_memory_disk_and_gpu(tmp_path):
    import psutil

    info = dl.system_info(tmp_path / "not-created-yet")
    assert info["cpu"]["logical"] == psutil.cpu_count() >= 1
    assert 0 < info["memory"]["available_mb"] <= info["memory"]["total_mb"]
    assert info["disk"]["total_gb"] > 0 and 0 <= info["disk"]["percent"] <= 100
    gpu = info["gpu"]
    assert isinstance(gpu["available"], bool)
    if gpu["available"]:
        assert gpu["devices"][0]["name"] and gpu["devices"][0]["memory_total_mb"] > 0
    else:
        assert gpu["reason"] and gpu["devices"] == []
    json.dumps(info)
