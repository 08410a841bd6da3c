"""`python main.py task=nlu` end to end on a small sample with the tiny encoder (no downloads)."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from tests.conftest import run_main
from utils.models.model_store import ModelStore
from utils.data.nlu_data import write_jsonl
from utils.pipeline.paths import StatePaths


@pytest.fixture(scope="module")
def nlu_chain(tmp_path_factory, generated, tiny_encoder) -> Path:
    root = tmp_path_factory.mktemp("nlu_chain")
    source, state = root / "source", root / "state"
    source.mkdir()
    state.mkdir()
    write_jsonl(generated[:160], source / "queries_a.jsonl")
    write_jsonl(generated[120:240], source / "queries_b.jsonl")        # overlaps queries_a
    (source / "broken.jsonl").write_text('{"text": "rain in kenya", "intent": "search_dataset", '
                                         '"tags": ["O"]}\n')            # 3 tokens, 1 tag
    write_jsonl(generated[500:560], root / "test.jsonl")
    proc = run_main("task=nlu", f"task.encoder={tiny_encoder}", f"data.source_dir={source}",
                    f"data.test_path={root / 'test.jsonl'}", "training.epochs=3",
                    "training.batch_size=16", "training.lr=5e-3", "training.head_lr=5e-3",
                    "main.steps='data_ingestion,model_training,model_scoring,model_deployment'",
                    state_dir=state, timeout=900)
    (root / "stdout.txt").write_text(proc.stdout + proc.stderr)
    return state


def test_nlu_chain_deploys_a_scored_model(nlu_chain):
    store = ModelStore(StatePaths.of(nlu_chain).model("nlu_query_model").models_dir)
    assert store.production_version() == "nlu_query_model-v1"
    scores = store.read_scores("nlu_query_model-v1")
    assert scores["primary_metric"] == "exact_match"
    assert {"intent_accuracy", "slot_f1", "exact_match"} <= set(scores["metrics"])
    assert store.read_score("nlu_query_model-v1") == scores["metrics"]["exact_match"]


def test_nlu_ingestion_dedups_and_quarantines(nlu_chain):
    paths = StatePaths.of(nlu_chain).model("nlu_query_model")
    rows = [json.loads(line) for line in paths.finaldata_jsonl.read_text().splitlines()]
    assert len(rows) == len({(r["text"], r["intent"], tuple(r["tags"])) for r in rows}) <= 240
    reasons = list(paths.quarantine_dir.glob("*broken.jsonl.reason.txt"))
    assert len(reasons) == 1 and "tag" in reasons[0].read_text()


def test_deployed_nlu_model_returns_spans_with_offsets(nlu_chain):
    model_dir = ModelStore(StatePaths.of(nlu_chain).model("nlu_query_model").models_dir).production_model_dir()
    model = mlflow.pyfunc.load_model(str(model_dir))
    text = "monthly  rainfall in northern Kenya 2015 to 2020 as geotiff"
    out = model.predict([text])
    row = out.iloc[0]
    assert isinstance(row["intent"], str) and 0.0 <= row["confidence"] <= 1.0
    assert len(row["tags"]) == len(text.split())
    for slot in row["slots"]:
        assert text[slot["start"]:slot["end"]] == slot["text"]
