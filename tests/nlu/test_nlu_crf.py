"""The CRF slot layer (training.slot_decoder=crf): its loss, its decoding, and every path that
serves it (bundle, ONNX fast path, logged pyfunc) answering as the trained model does.

The loss and the decoder are checked against brute force over every tag sequence of tiny
inputs, and against pytorch-crf's own decoder where the BIO constraints forbid nothing.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchcrf = pytest.importorskip("torchcrf")

from utils.models.bio_decode import is_valid_bio, viterbi_bio  # noqa: E402

LABELS = ["O", "B-loc", "I-loc", "B-date", "I-date"]


def _path_score(emit: np.ndarray, seq: tuple[int, ...], start: np.ndarray, trans: np.ndarray,
                end: np.ndarray) -> float:
    total = start[seq[0]] + emit[0, seq[0]] + end[seq[-1]]
    for t in range(1, len(seq)):
        total += trans[seq[t - 1], seq[t]] + emit[t, seq[t]]
    return float(total)


def _random_crf(n_labels: int, seed: int) -> Any:
    torch.manual_seed(seed)
    crf = torchcrf.CRF(n_labels, batch_first=True)
    with torch.no_grad():    # pytorch-crf starts near zero: spread the transitions so they matter
        for p in crf.parameters():
            p.normal_(0.0, 1.5)
    return crf


def test_loss_is_the_word_level_sequence_likelihood_skipping_unlabelled_sub_tokens() -> None:
    import nlu_model

    n_labels, crf = len(LABELS), _random_crf(len(LABELS), 0)
    logits = torch.randn(3, 6, n_labels)
    ignore = nlu_model.IGNORE_INDEX
    labels = torch.tensor([
        [ignore, 1, ignore, 2, 0, ignore],        # [CLS] w1 (w1 piece) w2 w3 [SEP]
        [ignore, 0, 3, 4, ignore, ignore],
        [ignore, ignore, ignore, ignore, ignore, ignore],   # no labelled token: left out
    ])
    start, trans, end = (p.detach().double().numpy() for p in
                         (crf.start_transitions, crf.transitions, crf.end_transitions))
    total_nll, total_words = 0.0, 0
    for row in range(2):
        positions = [t for t in range(6) if labels[row, t] != ignore]
        emit = logits[row, positions].double().numpy()
        gold = tuple(int(labels[row, t]) for t in positions)
        every = [_path_score(emit, seq, start, trans, end)
                 for seq in itertools.product(range(n_labels), repeat=len(positions))]
        log_z = float(np.logaddexp.reduce(every))
        total_nll += log_z - _path_score(emit, gold, start, trans, end)
        total_words += len(positions)
    got = float(nlu_model.crf_nll(crf, logits, labels).detach())
    assert got == pytest.approx(total_nll / total_words, rel=1e-5)   # pytorch-crf's token_mean

    empty = torch.full((2, 4), ignore)
    zero = nlu_model.crf_nll(crf, torch.randn(2, 4, n_labels, requires_grad=True), empty)
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_viterbi_with_transitions_is_the_best_valid_path() -> None:
    rng = np.random.default_rng(1)
    n_labels = len(LABELS)
    start, trans, end = rng.normal(0, 2, n_labels), rng.normal(0, 2, (n_labels, n_labels)), rng.normal(0, 2, n_labels)
    for _ in range(20):
        length = int(rng.integers(1, 5))
        emit = rng.normal(0, 2, (length, n_labels))
        best = max((seq for seq in itertools.product(range(n_labels), repeat=length)
                    if is_valid_bio([LABELS[k] for k in seq])),
                   key=lambda seq: _path_score(emit, seq, start, trans, end))
        padded = np.concatenate([emit, rng.normal(size=(5 - length, n_labels))])[None]
        got = viterbi_bio(padded, [length], LABELS, log_probs=True, transitions=(start, trans, end))
        assert tuple(got[0]) == best


def test_without_inside_tags_it_agrees_with_pytorch_crf_decoding() -> None:
    """No I- tag: the BIO constraints forbid nothing, so the answer is the plain CRF's."""
    labels = ["O", "B-a", "B-b", "B-c"]
    crf = _random_crf(len(labels), 2)
    emissions = torch.randn(4, 7, len(labels))
    lengths = [7, 3, 1, 5]
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]
    scores = tuple(p.detach().double().numpy() for p in (crf.start_transitions, crf.transitions, crf.end_transitions))
    ours = viterbi_bio(emissions.double().numpy(), lengths, labels, log_probs=True, transitions=scores)
    assert ours == crf.decode(emissions, mask)


def test_transition_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="transitions must be"):
        viterbi_bio(np.zeros((1, 2, 5)), [2], LABELS, transitions=(np.zeros(5), np.zeros((4, 4)), np.zeros(5)))


def test_crf_decoding_needs_a_crf_model(fitted: dict) -> None:
    import nlu_model

    trained = fitted["trained"]            # trained with the softmax slot head
    assert trained.model.crf is None and trained.model.crf_scores() is None
    with pytest.raises(ValueError, match="no CRF layer"):
        nlu_model.crf_scores_of(trained.model)
    with pytest.raises(ValueError, match="transition scores"):
        nlu_model.decode_slots(torch.zeros(1, 3, len(trained.slot_labels)), [[1]], trained.slot_labels, "crf")


@pytest.fixture(scope="module")
def crf_fitted(small_train: list, tiny_cfg: Callable[..., Any]) -> Any:
    import nlu_model

    return nlu_model.train_nlu(small_train, small_train, tiny_cfg(slot_decoder="crf"))


def test_fits_a_tiny_dataset_and_learns_transitions(crf_fitted: Any, small_train: list, tiny_cfg: Callable) -> None:
    import nlu_model

    assert crf_fitted.slot_decoder == "crf" and crf_fitted.model.crf is not None
    assert crf_fitted.best_metrics["exact_match"] == 1.0
    assert nlu_model.evaluate(crf_fitted, small_train)["exact_match"] == 1.0
    start, trans, end = crf_fitted.model.crf_scores()
    fresh = nlu_model.JointIntentSlotModel(crf_fitted.model.encoder, 2, len(crf_fitted.slot_labels), crf=True)
    assert not np.allclose(trans, fresh.crf_scores()[1])      # the transitions were trained
    for result in nlu_model.predict(crf_fitted, [ex.text for ex in small_train] + ["x", ""]):
        assert is_valid_bio(result["tags"])


def test_bundle_round_trip_keeps_the_crf(crf_fitted: Any, generated: list, tmp_path: Path) -> None:
    import nlu_model

    bundle = nlu_model.save_bundle(crf_fitted, tmp_path / "bundle")
    loaded = nlu_model.load_bundle(bundle)
    assert loaded.slot_decoder == "crf" and loaded.model.crf is not None
    for a, b in zip(loaded.model.crf_scores(), crf_fitted.model.crf_scores()):
        np.testing.assert_array_equal(a, b)
    texts = [ex.text for ex in generated]
    assert nlu_model.predict(loaded, texts) == nlu_model.predict(crf_fitted, texts)


def test_onnx_fast_path_answers_as_torch_on_every_query(crf_fitted: Any, generated: list, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    import nlu_model
    import nlu_onnx

    monkeypatch.setenv(nlu_onnx.THREADS_ENV, "1")
    monkeypatch.setenv(nlu_onnx.BATCH_THREADS_ENV, "2")
    bundle = nlu_model.save_bundle(crf_fitted, tmp_path / "bundle")
    nlu_onnx.export_onnx(crf_fitted.model, bundle / nlu_onnx.ONNX_FILE)
    trained = nlu_model.load_bundle(bundle)
    fast = nlu_onnx.load_fast(nlu_model, trained, bundle)
    assert isinstance(fast.model, nlu_onnx.OrtJointModel) and fast.slot_decoder == "crf"
    texts = [ex.text for ex in generated] + ["", "x", "What IS   ndvi ?"]
    for batch_size in (1, 64):
        reference = nlu_model.predict(trained, texts, batch_size=batch_size)
        mine = nlu_model.predict(fast, texts, batch_size=batch_size)
        for text, ref, got in zip(texts, reference, mine):
            assert (got["intent"], got["tags"], got["slots"]) == (ref["intent"], ref["tags"], ref["slots"]), text


def test_logged_pyfunc_pins_pytorch_crf_and_answers_as_trained(crf_fitted: Any, small_train: list,
                                                                tmp_path: Path) -> None:
    import mlflow
    import nlu_model
    from nlu_logging import log_nlu_model, nlu_pip_requirements

    from tests.fixtures.pyfunc_models import throwaway_registry

    assert not any(r.startswith("pytorch-crf==") for r in nlu_pip_requirements())
    texts = [ex.text for ex in small_train]
    with throwaway_registry(tmp_path / "mlflow", "nlu_crf") as (_uri, exp):
        with mlflow.start_run(experiment_id=exp):
            info = log_nlu_model(crf_fitted, name="model")
        local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "copy")))
        assert "pytorch-crf==0.7.2" in (local / "requirements.txt").read_text().split()
        served = mlflow.pyfunc.load_model(info.model_uri)
        got = served.predict(texts)
    expected = nlu_model.predict(crf_fitted, texts)
    assert [(r["intent"], list(r["tags"])) for r in got.to_dict(orient="records")] == \
        [(e["intent"], e["tags"]) for e in expected]
