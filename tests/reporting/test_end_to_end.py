"""The whole tabular chain through main.py, ending in diagnostics and reporting."""
from __future__ import annotations

import json

import mlflow
import pytest

from tests.conftest import run_main

EARLIER = ["data_ingestion", "model_training", "model_scoring", "model_deployment"]


@pytest.mark.slow
def test_main_all_writes_diagnostics_and_report(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    run_main("main.steps='all'", "diagnostics.pypi_url=null", "diagnostics.latency_calls=50", state_dir=state)
    reports = state / "reports" / "attrition_model"
    for name in ("diagnostics.json", "confusionmatrix.png", "metric_history.png", "report.html"):
        assert (reports / name).is_file() and (reports / name).stat().st_size > 1000, name
    d = json.loads((reports / "diagnostics.json").read_text())
    assert d["model_version"] == "attrition_model-v1" and d["predictions"]["n_examples"] == 400
    steps = {s["step"]: s for s in d["timing"]["pipeline"]["steps"]}
    assert all(steps[s]["status"] == "FINISHED" and steps[s]["duration_s"] > 0 for s in EARLIER)
    # diagnostics.json is written mid-run; report.html is rewritten by main.py at the end
    assert steps["diagnostics"]["status"] == "RUNNING" and steps["reporting"]["status"] == "PENDING"
    assert d["timing"]["latency"]["n_calls"] == 50
    html = (reports / "report.html").read_text()
    assert "attrition_model-v1" in html and html.count("data:image/png;base64,") == 3  # + timeline
    assert "<td>reporting</td><td>FINISHED</td>" in html

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    [parent] = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                if r.data.tags.get("pipeline.kind") == "parent"]
    for step, artifact in (("diagnostics", "diagnostics.json"), ("reporting", "reports")):
        run = client.get_run(parent.data.tags[f"pipeline.run.{step}"])
        assert run.info.status == "FINISHED"
        assert artifact in [a.path for a in client.list_artifacts(run.info.run_id)]
