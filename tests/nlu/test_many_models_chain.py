"""Two models in one state dir, end to end (slow): the README's two chains in a row.

`python main.py` (tabular) then `python main.py task=nlu` (tiny encoder) into one state dir:
both deployed, each with its own alias, both served by one gunicorn API with no cross-talk;
a tick with new data for the tabular model retrains that one only; deleting the NLU model
removes it from serving and the registry while its MLflow runs remain.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests

from tests.api.conftest import RECORD, LiveServer
from tests.conftest import REPO_ROOT, run_main
from utils.data.nlu_data import write_jsonl
from utils.models.model_store import ModelStore
from utils.tick.tick_state import read_ticks

pytestmark = pytest.mark.slow
TABULAR = REPO_ROOT / "01_data" / "sourcedata" / "tabular"
CHAIN = "main.steps='data_ingestion,model_training,model_scoring,model_deployment'"


@pytest.fixture(scope="module")
def two_chains(tmp_path_factory, generated, tiny_encoder) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("two_models")
    state, tab_source, nlu_source = root / "state", root / "tabular", root / "nlu"
    state.mkdir()
    tab_source.mkdir()
    nlu_source.mkdir()
    shutil.copy(TABULAR / "dataset1.csv", tab_source / "dataset1.csv")
    write_jsonl(generated[:200], nlu_source / "queries.jsonl")
    write_jsonl(generated[500:560], root / "nlu_test.jsonl")
    run_main(f"data.source_dir={tab_source}", CHAIN, state_dir=state)
    first = ModelStore(state / "models" / "attrition_model").production_version()
    run_main("task=nlu", f"task.encoder={tiny_encoder}", f"data.source_dir={nlu_source}",
             f"data.test_path={root / 'nlu_test.jsonl'}", "training.epochs=2", "training.batch_size=16",
             "training.lr=5e-3", "training.head_lr=5e-3", CHAIN, state_dir=state, timeout=900)
    return {"state": state, "tab_source": tab_source, "first_tabular": Path(first or "")}


def test_both_models_deployed_side_by_side(two_chains):
    state = two_chains["state"]
    tab = ModelStore(state / "models" / "attrition_model")
    nlu = ModelStore(state / "models" / "nlu_query_model")
    assert tab.production_version() == str(two_chains["first_tabular"]) == "attrition_model-v1"
    assert nlu.production_version() == "nlu_query_model-v1"
    assert (state / "ingested" / "attrition_model" / "finaldata.csv").is_file()
    assert (state / "ingested" / "nlu_query_model" / "finaldata.jsonl").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    for name in ("attrition_model", "nlu_query_model"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    for name in ("attrition_model", "nlu_query_model"):
        manifest = json.loads((state / "models" / name / "model.json").read_text())
        assert manifest["task"] == ("nlu" if name.startswith("nlu") else "tabular")


def test_one_gunicorn_serves_both_without_cross_talk(two_chains):
    server = LiveServer(two_chains["state"]).wait_ready()
    try:
        url = server.url
        models = {m["name"]: m for m in requests.get(f"{url}/models", timeout=30).json()["models"]}
        assert sorted(models) == ["attrition_model", "nlu_query_model"]
        r = requests.post(f"{url}/models/attrition_model/prediction", json={"records": [RECORD]}, timeout=60)
        assert r.status_code == 200 and r.json()["model_version"] == "attrition_model-v1"
        r = requests.post(f"{url}/models/nlu_query_model/prediction",
                          json={"texts": ["sentinel-2 images of Kenya"]}, timeout=60)
        assert r.status_code == 200 and r.json()["task"] == "nlu"
        assert "intent" in r.json()["predictions"][0]
        r = requests.post(f"{url}/prediction", json={"records": [RECORD]}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["models"] == ["attrition_model", "nlu_query_model"]
        assert requests.get(f"{url}/health", timeout=30).json()["status"] == "ok"
    finally:
        assert server.stop() == 0


def test_a_tick_with_new_data_for_one_model_retrains_only_that_one(two_chains):
    state = two_chains["state"]
    shutil.copy(TABULAR / "dataset2.csv", two_chains["tab_source"] / "dataset2.csv")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "fullprocess.py"), f"paths.state_dir={state}",
                           "drift.policy=always", "fullprocess.chain_to=model_deployment"],
                          capture_output=True, text=True, timeout=900, cwd=state.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {t["model"]: t for t in read_ticks(state)[-2:]}
    assert lines["attrition_model"]["decision"] == "retrain" and lines["attrition_model"]["new_files"] == ["dataset2.csv"]
    assert lines["attrition_model"]["trained_version"] == "attrition_model-v2"
    assert lines["nlu_query_model"]["decision"] == "noop"
    assert ModelStore(state / "models" / "nlu_query_model").list_versions() == ["nlu_query_model-v1"]


def test_delete_removes_serving_and_registry_and_keeps_the_runs(two_chains):
    state = two_chains["state"]
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "04_deployment" / "manage.py"), "delete",
                           "nlu_query_model", "--yes", "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    listed = subprocess.run([sys.executable, str(REPO_ROOT / "04_deployment" / "manage.py"), "list", "--json",
                             "--state-dir", str(state)], capture_output=True, text=True, timeout=120)
    assert [m["name"] for m in json.loads(listed.stdout)] == ["attrition_model"]
    client = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    assert [m.name for m in client.search_registered_models()] == ["attrition_model"]
    experiment = client.get_experiment_by_name("mlops_pipeline")
    nlu_runs = client.search_runs([experiment.experiment_id], "tags.`pipeline.task` = 'nlu'")
    assert nlu_runs, "the deleted model's runs are kept"
    again = subprocess.run([sys.executable, str(REPO_ROOT / "04_deployment" / "manage.py"), "pause",
                            "nlu_query_model", "--state-dir", str(state)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "models: attrition_model" in again.stderr
