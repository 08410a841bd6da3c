"""nlu_metrics: intent accuracy, seqeval slot scores, exact match, per-intent/per-slot tables."""
from __future__ import annotations

import subprocess
import sys

import pytest

from utils.data.nlu_data import NluExample
from utils.models.nlu_metrics import nlu_metrics

GOLD = [
    NluExample("rainfall in northern Kenya", "search_dataset", ("B-theme", "O", "B-location", "I-location")),
    NluExample("download NDVI as geotiff", "download_data", ("O", "B-theme", "O", "B-file_format")),
    NluExample("what is SPI", "ask_definition", ("O", "O", "B-theme")),
]


def test_perfect_predictions() -> None:
    m = nlu_metrics(GOLD, [g.intent for g in GOLD], [list(g.tags) for g in GOLD])
    assert m["n_examples"] == 3
    for key in ("intent_accuracy", "slot_precision", "slot_recall", "slot_f1", "exact_match"):
        assert m[key] == 1.0
    assert m["per_intent"]["download_data"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert set(m["per_slot"]) >= {"theme", "location", "file_format", "micro avg"}


def test_partial_predictions_by_hand() -> None:
    intents = ["search_dataset", "search_dataset", "ask_definition"]  # 2nd wrong
    tags = [
        ["B-theme", "O", "B-location", "O"],        # location span cut short: 1 of 2 right
        ["O", "B-theme", "O", "B-file_format"],     # tags right, intent wrong
        ["O", "O", "B-theme"],                      # all right
    ]
    m = nlu_metrics(GOLD, intents, tags)
    # gold spans 5, predicted 5, correct 4
    assert m["slot_precision"] == pytest.approx(4 / 5)
    assert m["slot_recall"] == pytest.approx(4 / 5)
    assert m["slot_f1"] == pytest.approx(4 / 5)
    assert m["intent_accuracy"] == pytest.approx(2 / 3)
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert m["per_intent"]["search_dataset"]["precision"] == pytest.approx(0.5)
    assert m["per_intent"]["download_data"]["recall"] == 0.0
    assert m["per_slot"]["location"]["recall"] == 0.0
    assert m["per_slot"]["location"]["support"] == 1


def test_stray_i_tag_counts_as_a_span_like_seqeval_default() -> None:
    m = nlu_metrics(GOLD[2:], ["ask_definition"], [["O", "O", "I-theme"]])
    assert m["slot_f1"] == 1.0
    assert m["exact_match"] == 0.0  # tags differ from gold


def test_length_mismatches_raise() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        nlu_metrics(GOLD, ["x"], [["O"]])
    with pytest.raises(ValueError, match="example 0"):
        nlu_metrics(GOLD[:1], ["search_dataset"], [["O"]])


def test_no_spans_anywhere() -> None:
    gold = [NluExample("help", "get_help", ("O",))]
    m = nlu_metrics(gold, ["get_help"], [["O"]])
    assert m["slot_f1"] == 1.0 and m["exact_match"] == 1.0 and m["per_slot"] == {}


def test_importing_data_and_metrics_modules_stays_cheap(repo_root) -> None:
    code = ("import sys; import utils.data.nlu_data, utils.models.nlu_metrics; "
            "heavy = {'torch', 'seqeval', 'mlflow', 'transformers', 'pandas'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=repo_root, check=True)
