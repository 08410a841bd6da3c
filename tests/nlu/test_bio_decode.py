"""BIO-constrained Viterbi (utils/models/bio_decode.py) and its use in the NLU model's predictions."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.models.bio_decode import allowed_transitions, decode_bio_tags, is_valid_bio, viterbi_bio

LABELS = ["O", "B-loc", "I-loc", "B-date", "I-date", "B-x.y", "I-x.y"]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def brute_force(scores: np.ndarray, labels: list[str]) -> tuple[float, list[str]]:
    """Best valid sequence by enumerating every one (tiny inputs only)."""
    logp = _log_softmax(scores)
    best: tuple[float, list[str]] = (-np.inf, [])
    for seq in itertools.product(range(len(labels)), repeat=scores.shape[0]):
        tags = [labels[k] for k in seq]
        if is_valid_bio(tags):
            total = float(sum(logp[t, k] for t, k in enumerate(seq)))
            if total > best[0]:
                best = (total, tags)
    return best


def test_transitions_forbid_i_after_o_or_other_type() -> None:
    start_ok, trans_ok = allowed_transitions(LABELS)
    idx = {t: i for i, t in enumerate(LABELS)}
    assert not start_ok[idx["I-loc"]] and start_ok[idx["B-loc"]] and start_ok[idx["O"]]
    assert trans_ok[idx["B-loc"], idx["I-loc"]] and trans_ok[idx["I-loc"], idx["I-loc"]]
    assert not trans_ok[idx["O"], idx["I-loc"]]
    assert not trans_ok[idx["B-date"], idx["I-loc"]]
    assert not trans_ok[idx["I-x.y"], idx["I-loc"]]
    assert trans_ok[idx["I-loc"], idx["B-loc"]] and trans_ok[idx["I-date"], idx["O"]]


def test_confident_inside_tag_extends_the_span_instead_of_splitting_it() -> None:
    # words: "new" (O slightly over B-loc), "york" (I-loc very sure)
    scores = np.full((1, 2, len(LABELS)), -5.0)
    scores[0, 0, 0], scores[0, 0, 1] = 1.0, 0.8
    scores[0, 1, 2] = 4.0
    argmax = [LABELS[k] for k in scores[0].argmax(-1)]
    assert argmax == ["O", "I-loc"] and not is_valid_bio(argmax)
    assert decode_bio_tags(scores, [2], LABELS) == [["B-loc", "I-loc"]]


def test_padding_rows_and_lengths() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 5, len(LABELS)))
    paths = viterbi_bio(scores, [5, 2, 0], LABELS)
    assert [len(p) for p in paths] == [5, 2, 0]
    # a row's answer does not depend on the padding after its end
    alone = viterbi_bio(scores[1:2, :2], [2], LABELS)
    assert paths[1] == alone[0]
    assert viterbi_bio(np.zeros((0, 4, len(LABELS))), [], LABELS) == []
    assert viterbi_bio(np.zeros((2, 0, len(LABELS))), [0, 0], LABELS) == [[], []]  # only empty texts


@pytest.mark.parametrize("bad", [np.zeros((2, len(LABELS))), np.zeros((1, 3, 2))])
def test_bad_shapes_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="scores must be"):
        viterbi_bio(bad, [1], LABELS)


def test_bad_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="lengths"):
        viterbi_bio(np.zeros((1, 3, len(LABELS))), [4], LABELS)


scores_strategy = st.integers(1, 4).flatmap(
    lambda n: st.lists(st.lists(st.floats(-20, 20, allow_nan=False), min_size=len(LABELS),
                                max_size=len(LABELS)), min_size=n, max_size=n)
)


@settings(max_examples=150, deadline=None)
@given(scores_strategy)
def test_viterbi_is_the_best_valid_sequence(rows: list[list[float]]) -> None:
    scores = np.array(rows)
    tags = decode_bio_tags(scores[None], [len(rows)], LABELS)[0]
    assert is_valid_bio(tags)
    best_score, _ = brute_force(scores, LABELS)
    logp = _log_softmax(scores)
    got = sum(logp[t, LABELS.index(tag)] for t, tag in enumerate(tags))
    assert got == pytest.approx(best_score, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
                         min_size=len(LABELS), max_size=len(LABELS)), min_size=1, max_size=40),
       st.booleans())
def test_never_an_invalid_sequence_and_argmax_kept_when_valid(rows: list[list[float]], logp: bool) -> None:
    scores = np.array(rows)
    tags = [LABELS[k] for k in viterbi_bio(scores[None], [len(rows)], LABELS, log_probs=logp)[0]]
    assert len(tags) == len(rows) and is_valid_bio(tags)
    argmax = [LABELS[k] for k in scores.argmax(-1)]
    top2 = np.sort(scores, axis=-1)[:, -2:]
    if is_valid_bio(argmax) and (top2[:, 1] - top2[:, 0] > 1e-6).all():  # no (near-)ties
        assert tags == argmax


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([-np.inf, 0.0, -3.0]), min_size=len(LABELS), max_size=len(LABELS)),
       st.integers(1, 6))
def test_minus_infinity_log_probs_still_valid(row: list[float], n: int) -> None:
    scores = np.array([row] * n)[None]
    tags = decode_bio_tags(scores, [n], LABELS)
    assert is_valid_bio(tags[0]) and len(tags[0]) == n


def test_model_predictions_are_valid_bio_with_both_decoders(fitted, generated) -> None:
    import nlu_model

    trained = fitted["trained"]
    texts = [ex.text for ex in generated[100:160]]
    before = trained.slot_decoder
    try:
        by_decoder = {}
        for decoder in ("viterbi", "argmax"):      # "crf" needs a CRF model: test_nlu_crf.py
            trained.slot_decoder = decoder
            by_decoder[decoder] = nlu_model.predict(trained, texts)
            assert all(is_valid_bio(p["tags"]) for p in by_decoder[decoder])
        # the decoders differ only in tags, never in intents
        assert [p["intent"] for p in by_decoder["viterbi"]] == [p["intent"] for p in by_decoder["argmax"]]
    finally:
        trained.slot_decoder = before


def test_word_log_probs_forces_o_for_words_without_subtokens() -> None:
    import nlu_model
    import torch

    logits = torch.randn(1, 4, len(LABELS))
    scores, lengths = nlu_model.word_log_probs(logits, [[1, -1, 2]], o_index=0)
    assert lengths == [3] and scores.shape == (1, 3, len(LABELS))
    assert scores[0, 1, 0] == 0.0 and (scores[0, 1, 1:] < -1e5).all()
    np.testing.assert_allclose(np.exp(scores[0, 0]).sum(), 1.0, rtol=1e-5)
    tags = nlu_model.decode_slots(logits, [[1, -1, 2]], LABELS)[0]
    assert tags[1] == "O" and is_valid_bio(tags)
    # numpy logits (an exported runtime's output) decode exactly like the torch tensor
    rng = np.random.default_rng(3)
    crf = (rng.normal(size=len(LABELS)), rng.normal(size=(len(LABELS), len(LABELS))), rng.normal(size=len(LABELS)))
    for decoder in nlu_model.SLOT_DECODERS:
        assert (nlu_model.decode_slots(logits.numpy(), [[1, -1, 2]], LABELS, decoder, crf=crf)
                == nlu_model.decode_slots(logits, [[1, -1, 2]], LABELS, decoder, crf=crf))
    assert nlu_model.decode_slots(logits, [[1, -1, 2]], LABELS, "crf", crf=crf)[0][1] == "O"


def test_bundle_keeps_its_decoder_and_old_bundles_keep_argmax(fitted, tmp_path) -> None:
    import json

    import nlu_model

    trained = fitted["trained"]
    out = nlu_model.save_bundle(trained, tmp_path / "bundle")
    assert nlu_model.load_bundle(out).slot_decoder == trained.slot_decoder == "viterbi"
    meta_path = out / "nlu_bundle.json"
    meta = json.loads(meta_path.read_text())
    del meta["slot_decoder"]  # a bundle written before the setting existed
    meta_path.write_text(json.dumps(meta))
    assert nlu_model.load_bundle(out).slot_decoder == "argmax"


def test_unknown_decoder_is_refused(small_train, tiny_cfg) -> None:
    import nlu_model

    with pytest.raises(ValueError, match="slot_decoder must be one of"):
        nlu_model.train_nlu(small_train, small_train, tiny_cfg(slot_decoder="beam", epochs=1))


def test_layer_wise_lr_decay_groups(tiny_encoder) -> None:
    import nlu_model

    model = nlu_model.JointIntentSlotModel(nlu_model._encoder_from(tiny_encoder), 3, 5)
    cfg = nlu_model.NluTrainConfig(lr=1e-3, head_lr=1e-2, layer_lr_decay=0.5)
    lr_of = {id(p): g["lr"] for g in nlu_model._param_groups(model, cfg) for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(lr_of) == len(named)  # every parameter in exactly one group
    # 2 layers: embeddings 1e-3 * 0.25, layer 0 1e-3 * 0.5, layer 1 (top) 1e-3, heads 1e-2
    assert lr_of[id(named["encoder.embeddings.word_embeddings.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(named["encoder.encoder.layer.0.attention.self.query.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["encoder.encoder.layer.1.output.dense.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(named["slot_head.weight"])] == pytest.approx(1e-2)
    flat = nlu_model._param_groups(model, nlu_model.NluTrainConfig(lr=1e-3, head_lr=1e-2))
    assert {g["lr"] for g in flat} == {1e-3, 1e-2}
