"""BIO-constrained Viterbi decoding of per-word slot scores.

Argmax per word can emit ``I-x`` after ``O`` or after another type's tag; ``repair_bio`` then
turns it into ``B-x``, a guess that often splits one entity in two. Viterbi instead picks the
highest-scoring sequence among the *valid* ones (no ``I-x`` unless the previous tag is ``B-x``
or ``I-x``), so a confident ``I-x`` pulls the word before it into the same span. When the
argmax sequence is already valid it is also the Viterbi answer, so this only ever changes the
sequences argmax got structurally wrong.

Numpy only (no torch): the same function serves the torch path of ``nlu_model`` and any
exported runtime (ONNX) that hands back slot logits as arrays. Shipped with the logged model
(``nlu_logging.CODE_PATHS``), so a pyfunc can import it as ``bio_decode``.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

NEG = -1e9  # a forbidden move: far below any sum of log-probabilities, still finite (no NaN)


def allowed_transitions(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """See ``_allowed_transitions``; cached per label list (it is the same on every call of a
    served model, and building it costs more than decoding a short query)."""
    return _allowed_transitions(tuple(labels))


@lru_cache(maxsize=32)
def _allowed_transitions(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(start_ok [L], trans_ok [L, L])``: may a sequence start with tag j / go from i to j.

    ``I-x`` may only follow ``B-x`` or ``I-x`` and never starts a sequence; everything else
    (``O``, ``B-*``, and any tag that is not ``I-``) is always allowed.
    """
    n = len(labels)
    start_ok = np.ones(n, dtype=bool)
    trans_ok = np.ones((n, n), dtype=bool)
    for j, tag in enumerate(labels):
        if tag.startswith("I-"):
            start_ok[j] = False
            typ = tag[2:]
            for i, prev in enumerate(labels):
                trans_ok[i, j] = prev in (f"B-{typ}", f"I-{typ}")
    start_ok.flags.writeable = trans_ok.flags.writeable = False    # shared by every caller
    return start_ok, trans_ok


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def viterbi_bio(
    scores: np.ndarray, lengths: Sequence[int] | np.ndarray, labels: Sequence[str],
    log_probs: bool = False, transitions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> list[list[int]]:
    """Best valid BIO label ids per sequence.

    ``scores``: ``[B, W, L]`` per-word logits (or log-probabilities with ``log_probs=True``)
    padded along W; ``lengths``: number of real words per row (0 gives ``[]``). Logits are
    turned into log-probabilities first so the path score is the sum of per-word log-probs,
    the quantity whose unconstrained maximum is the per-word argmax.

    ``transitions``: a linear-chain CRF's learned ``(start [L], trans [from, to], end [L])``
    scores, added to the path score (pytorch-crf's layout); the BIO constraints still apply.
    """
    scores = np.asarray(scores)
    if scores.ndim != 3 or scores.shape[-1] != len(labels):
        raise ValueError(f"scores must be [batch, words, {len(labels)}], got {scores.shape}")
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    n_batch, n_words, n_labels = scores.shape
    if lengths.shape[0] != n_batch or (n_batch and (lengths.min() < 0 or lengths.max() > n_words)):
        raise ValueError(f"lengths must be {n_batch} values in [0, {n_words}]")
    if n_batch == 0 or n_words == 0:
        return [[] for _ in range(n_batch)]
    # +-inf and NaN become large finite numbers first, so a forbidden move still dominates
    finite = np.nan_to_num(scores.astype(np.float64), nan=NEG / 1e3, neginf=NEG / 1e3, posinf=-NEG / 1e3)
    emit = np.maximum(finite if log_probs else _log_softmax(finite), NEG / 1e3)
    start_ok, trans_ok = allowed_transitions(labels)
    trans = np.where(trans_ok, 0.0, NEG)  # [L, L]
    start = np.where(start_ok, 0.0, NEG)
    end = np.zeros(n_labels)
    if transitions is not None:
        learned = [np.asarray(t, dtype=np.float64) for t in transitions]
        if [t.shape for t in learned] != [(n_labels,), (n_labels, n_labels), (n_labels,)]:
            raise ValueError(f"transitions must be (start [{n_labels}], trans [{n_labels}, {n_labels}], "
                             f"end [{n_labels}]), got {[t.shape for t in learned]}")
        start, trans, end = start + learned[0], trans + learned[1], end + learned[2]
    score = emit[:, 0] + start  # [B, L]
    back = np.zeros((n_batch, max(n_words - 1, 0), n_labels), dtype=np.int64)
    for t in range(1, n_words):
        cand = score[:, :, None] + trans[None]  # [B, from, to]
        best_prev = cand.argmax(axis=1)  # [B, to]
        new = np.take_along_axis(cand, best_prev[:, None, :], axis=1)[:, 0] + emit[:, t]
        live = (t < lengths)[:, None]  # rows already past their end keep their score
        score = np.where(live, new, score)
        back[:, t - 1] = best_prev
    score = score + end
    out: list[list[int]] = []
    for b in range(n_batch):
        n = int(lengths[b])
        if n == 0:
            out.append([])
            continue
        path = [int(score[b].argmax())]
        for t in range(n - 1, 0, -1):
            path.append(int(back[b, t - 1, path[-1]]))
        out.append(path[::-1])
    return out


def decode_bio_tags(
    scores: np.ndarray, lengths: Sequence[int] | np.ndarray, labels: Sequence[str],
) -> list[list[str]]:
    """``viterbi_bio`` as tag strings: one valid BIO sequence per row."""
    return [[labels[i] for i in path] for path in viterbi_bio(scores, lengths, labels)]


def is_valid_bio(tags: Sequence[str]) -> bool:
    """True when every ``I-x`` continues a span of type x."""
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            return False
        prev = tag
    return True
