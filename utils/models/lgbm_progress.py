"""LightGBM that reports its own progress: a forecast fit on 10,000 series takes minutes.

mlforecast fits ``clone(model).fit(X, y)`` with no way to pass LightGBM callbacks (its final fit,
and every window of ``cross_validation``). This subclass adds one inside ``fit`` while a
``fit_progress`` block is active: a line when a fit starts and ends, and a progress line (round,
rounds/s, ETA) at least every ``every_s``. Parameters, training and predictions are LightGBM's own
(a test checks identical predictions); outside a ``fit_progress`` block it is silent. It pickles
as LightGBM's own class, so a saved forecaster loads where this module cannot be imported (the
logged pyfunc carries forecast_model.py only, and `mlflow models serve` builds its own env).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb

from utils.pipeline.progress import CountProgress, duration

log = logging.getLogger(__name__)


@dataclass
class _Block:
    label: str
    every_s: float
    fits: int          # how many fits the block makes (a backtest refits once per window)
    started: int = 0

    def next_label(self) -> str:
        self.started += 1
        return f"{self.label}, fit {self.started}/{self.fits}" if self.fits > 1 else self.label


_ACTIVE: ContextVar[_Block | None] = ContextVar("lgbm_fit_progress", default=None)


@contextmanager
def fit_progress(label: str, every_s: float, fits: int = 1) -> Iterator[None]:
    """LightGBM fits in this block log as ``label`` (every_s: logging.progress_every_s)."""
    token = _ACTIVE.set(_Block(label, every_s, fits))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class ProgressLGBMRegressor(lgb.LGBMRegressor):
    """LGBMRegressor plus the progress callback of an active ``fit_progress`` block."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> "ProgressLGBMRegressor":
        block = _ACTIVE.get()
        if block is None:
            return super().fit(X, y, **kwargs)
        label = block.next_label()
        rounds = int(self.get_params()["n_estimators"])
        log.info("%s: LightGBM on %d rows x %d features, %d rounds", label, len(X), X.shape[1], rounds)
        progress = CountProgress(label, rounds, "rounds", block.every_s)

        def report(env: Any) -> None:
            progress.update(env.iteration + 1 - env.begin_iteration)

        started = time.perf_counter()
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), report]
        fitted = super().fit(X, y, **kwargs)
        log.info("%s: fitted in %s", label, duration(time.perf_counter() - started))
        return fitted

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A plain LGBMRegressor with this one's state. Protocol 1's form (copyreg._reconstructor):
        # pickle refuses protocol 2's __newobj__ for an object of another class.
        plain = object.__new__(lgb.LGBMRegressor)     # not copy.copy: that would call this again
        plain.__dict__.update(self.__dict__)
        return plain.__reduce_ex__(1)
