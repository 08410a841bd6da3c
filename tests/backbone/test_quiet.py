"""Known-harmless output is silenced in every step, and PIPELINE_SHOW_WARNINGS=1 turns it back on."""
from __future__ import annotations

import logging
import os
import warnings

import pytest

from utils.pipeline import quiet


@pytest.mark.parametrize("show", ["", "1"])
def test_harmless_warnings_and_bars_silenced_unless_asked_for(monkeypatch, show):
    monkeypatch.setenv(quiet.SHOW_ENV, show)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    projects = logging.getLogger("mlflow.projects.utils")
    monkeypatch.setattr(projects, "level", projects.level)       # restored after the test
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        applied = quiet.silence_known_noise()
        warnings.warn("The specified dataset source can be interpreted in multiple ways: A, B", UserWarning)
        warnings.warn("Hint: Inferred schema contains integer column(s).", UserWarning)
        warnings.warn("a warning that means something", UserWarning)
    messages = [str(w.message) for w in caught]
    if show:
        assert not applied and len(messages) == 3
        assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    else:
        assert applied and messages == ["a warning that means something"], "only the meaningful one is left"
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
        assert projects.level == logging.WARNING
