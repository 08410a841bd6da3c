"""The performance drift rule fires on significant drops only: sampling noise does not retrain."""
from __future__ import annotations

import numpy as np

from utils.monitoring.drift import binary_metric, bootstrap_upper_bound, performance_drift

F1 = binary_metric("f1")


def population(rng: np.random.Generator, n: int, flip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions of a fixed noisy model); ``flip``: share of labels changed (drift)."""
    x = rng.normal(size=n)
    y = (x + rng.normal(scale=1.2, size=n) > 0.8).astype(int)
    pred = (x > 0.5).astype(int)
    if flip:
        change = rng.random(n) < flip
        y = np.where(change, 1 - y, y)
    return y, pred


def verdict(y: np.ndarray, p: np.ndarray, recorded: float, rule: str, alpha: float = 0.05) -> bool:
    score = F1(y, p)
    upper = bootstrap_upper_bound(lambda idx: F1(y[idx], p[idx]), len(y), alpha, n_boot=400,
                                  seed=int(y.sum()))
    return performance_drift(score, recorded, rule=rule, upper_bound=upper, alpha=alpha)[0]


def test_same_distribution_batches_rarely_retrain():
    rng = np.random.default_rng(12)
    recorded = F1(*population(rng, 200_000))           # the score the model was deployed with
    batches = [population(rng, 400) for _ in range(150)]
    raw = np.mean([verdict(y, p, recorded, "lower") for y, p in batches])
    significant = np.mean([verdict(y, p, recorded, "significant") for y, p in batches])
    assert raw > 0.3            # the raw comparison retrains on noise about half the time
    assert significant <= 0.1   # the significance rule about alpha (0.05) of the time


def test_a_real_drop_is_still_caught():
    rng = np.random.default_rng(7)
    recorded = F1(*population(rng, 200_000))
    drifted = [population(rng, 400, flip=0.3) for _ in range(40)]
    assert np.mean([verdict(y, p, recorded, "significant") for y, p in drifted]) >= 0.95


def test_reasons_say_why():
    assert performance_drift(0.47, 0.53, rule="significant", upper_bound=0.55, alpha=0.01) == (
        False, "new score 0.4700, upper 99% bound 0.5500 >= recorded 0.5300: not a significant drop "
               "(sampling noise)")
    drift, reason = performance_drift(0.30, 0.53, rule="significant", upper_bound=0.40, alpha=0.01)
    assert drift and "a significant drop" in reason
    assert performance_drift(0.30, 0.53, rule="significant", upper_bound=None)[0] is False


def test_numpy_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    rng = np.random.default_rng(3)
    y, p = population(rng, 500)
    for name, ref in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        assert abs(binary_metric(name)(y, p) - ref(y, p, zero_division=0)) < 1e-12
    assert abs(binary_metric("accuracy")(y, p) - accuracy_score(y, p)) < 1e-12
    zeros = np.zeros(5, dtype=int)
    assert binary_metric("f1")(zeros, zeros) == f1_score(zeros, zeros, zero_division=0)
