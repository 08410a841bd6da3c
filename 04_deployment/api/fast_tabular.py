"""A numpy replay of a fitted numeric scikit-learn pipeline: the API's fast path.

scikit-learn checks its input on every call (validate_data, feature names, tags: ~1-2 ms per
request on this machine, more than everything else the API does for one record). For the
pipelines the training step builds on an all-numeric table (SimpleImputer -> StandardScaler ->
LogisticRegression) the same answer is a few numpy operations on the fitted attributes, done
here in the order scikit-learn does them, so the probabilities come out the same to the last
bits (tests/api/test_fast_tabular.py compares every test row against predict_proba).

scikit-learn stays authoritative: ``export`` returns None for anything it does not know
(other steps, options it does not replay, sparse output), and the caller also compares the
two on probe rows at load time; either way the estimator itself answers.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Step = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LinearProbaModel:
    """Numeric transforms, then a linear classifier's probabilities (scikit-learn's formulas)."""

    steps: tuple[Step, ...]
    coef_t: np.ndarray          # (n_features, n_outputs)
    intercept: np.ndarray       # (n_outputs,)
    binary: bool                # one output: expit -> [1 - p, p]; else softmax
    n_features: int

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """(n, n_classes) probabilities for a float matrix in the fitted column order."""
        x = np.array(matrix, dtype=np.float64, copy=True)   # the steps work in place, like sklearn's
        for step in self.steps:
            x = step(x)
        scores = x @ self.coef_t + self.intercept
        if self.binary:
            from scipy.special import expit

            p = expit(scores.reshape(-1))
            return np.stack([1 - p, p], axis=1)
        from sklearn.utils.extmath import softmax

        return softmax(scores, copy=False)


def _imputer(step: Any) -> Step | None:
    """SimpleImputer on NaN without an indicator; every column has a statistic."""
    stats = np.asarray(getattr(step, "statistics_", None), dtype=np.float64)
    missing = getattr(step, "missing_values", None)
    if (getattr(step, "add_indicator", True) or not (isinstance(missing, float) and missing != missing)
            or stats.ndim != 1 or not np.isfinite(stats).all()):
        return None

    def impute(x: np.ndarray) -> np.ndarray:
        mask = np.isnan(x)
        if mask.any():
            x[mask] = np.broadcast_to(stats, x.shape)[mask]
        return x

    return impute


def _scaler(step: Any) -> Step | None:
    mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else None
    scale = np.asarray(step.scale_, dtype=np.float64) if step.with_std else None

    def standardize(x: np.ndarray) -> np.ndarray:
        if mean is not None:
            x -= mean
        if scale is not None:
            x /= scale
        return x

    return standardize


def _step(step: Any) -> Step | None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    if type(step) is SimpleImputer:
        return _imputer(step)
    if type(step) is StandardScaler:
        return _scaler(step)
    if step == "passthrough" or step is None:
        return lambda x: x
    return None


def export(estimator: Any) -> LinearProbaModel | None:
    """The numpy replay of ``estimator``, or None when it is not a pipeline this module knows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if type(estimator) is Pipeline:
        *transforms, (_, final) = estimator.steps
    else:
        transforms, final = [], estimator
    if type(final) is not LogisticRegression or getattr(final, "coef_", None) is None:
        return None
    steps = []
    for _, step in transforms:
        replay = _step(step)
        if replay is None:
            return None
        steps.append(replay)
    coef = np.asarray(final.coef_, dtype=np.float64)
    intercept = np.asarray(final.intercept_, dtype=np.float64)
    n_classes = len(final.classes_)
    if coef.ndim != 2 or n_classes < 2 or coef.shape[0] != (1 if n_classes == 2 else n_classes):
        return None
    return LinearProbaModel(steps=tuple(steps), coef_t=coef.T, intercept=intercept,
                            binary=n_classes == 2, n_features=coef.shape[1])


def agrees(fast: LinearProbaModel, estimator: Any, rows: np.ndarray, tolerance: float = 1e-12) -> bool:
    """Same labels and probabilities within ``tolerance`` as ``estimator.predict_proba`` on ``rows``."""
    import warnings

    try:
        with warnings.catch_warnings():   # a matrix without feature names: expected here
            warnings.simplefilter("ignore")
            reference = np.asarray(estimator.predict_proba(rows), dtype=np.float64)
        mine = fast.predict_proba(rows)
    except Exception:
        return False
    return (mine.shape == reference.shape and bool(np.array_equal(mine.argmax(1), reference.argmax(1)))
            and bool(np.allclose(mine, reference, rtol=0.0, atol=tolerance)))
