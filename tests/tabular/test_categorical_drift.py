"""Drift on categorical columns: chi-square on the categories and the unseen-category rate."""
from __future__ import annotations

import numpy as np
import pandas as pd

from utils.monitoring.drift import DriftSettings, performance_drift, tabular_drift


def frame(n: int, p: list[float], seed: int, categories=("red", "green", "blue")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(0, 1, n), "colour": rng.choice(list(categories), n, p=p)})


def test_same_distribution_no_signal():
    report = tabular_drift(frame(2000, [0.5, 0.3, 0.2], 0), frame(800, [0.5, 0.3, 0.2], 1), ["x"], ["colour"])
    assert not report.drift and report.unseen == {"colour": 0.0}


def test_shifted_categories_are_a_chi_square_signal():
    report = tabular_drift(frame(2000, [0.5, 0.3, 0.2], 0), frame(800, [0.2, 0.3, 0.5], 1), ["x"], ["colour"])
    assert "chi2:colour" in report.signals and "ks:x" not in report.signals


def test_unseen_categories_against_the_training_categories():
    new = frame(300, [0.4, 0.3, 0.3], 2, categories=("red", "green", "violet"))
    report = tabular_drift(frame(2000, [0.5, 0.3, 0.2], 0), new, ["x"], ["colour"],
                           DriftSettings(unseen_max=0.05), known_categories={"colour": ["red", "green", "blue"]})
    assert 0.2 < report.unseen["colour"] < 0.4 and "unseen:colour" in report.signals


def test_missing_values_are_not_categories():
    ref = frame(500, [0.5, 0.3, 0.2], 0).astype({"colour": object})
    new = frame(500, [0.5, 0.3, 0.2], 1).astype({"colour": object})
    new.loc[:100, "colour"] = np.nan
    report = tabular_drift(ref, new, [], ["colour"])
    assert report.unseen["colour"] == 0.0


def test_performance_drift_for_an_error_metric():
    assert performance_drift(12.0, 10.0, 0.1, direction="lower")[0] is True
    assert performance_drift(10.5, 10.0, 0.1, direction="lower")[0] is False
    assert performance_drift(0.5, 0.6)[0] is True


def test_significant_rule_for_an_error_metric_uses_the_lower_bound():
    """RMSE: drift only when even the optimistic (lower) bound of the new error is past the limit."""
    assert performance_drift(12.0, 10.0, 0.1, rule="significant", upper_bound=11.5, alpha=0.01,
                             direction="lower")[0] is True
    drift, reason = performance_drift(12.0, 10.0, 0.1, rule="significant", upper_bound=10.8, alpha=0.01,
                                      direction="lower")
    assert drift is False and "lower 99% bound" in reason and "sampling noise" in reason
