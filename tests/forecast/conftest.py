"""Fixtures of the forecast tests: generated panels, the forecast task config, a fitted tiny model."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
for _p in (REPO_ROOT / "01_data", REPO_ROOT / "02_training"):  # appended: step folders must not shadow anything
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

# tiny, fast settings shared by the model tests and the chain test
TINY_TRAINING = {"n_estimators": 30, "num_leaves": 15, "min_child_samples": 5,
                 "lags": [1, 7, 14], "rolling_windows": [7], "seasonal_windows": [2]}


def forecast_task(**overrides: Any) -> Any:
    """The `task` section of task=forecast as the steps receive it (a TaskConfig)."""
    from omegaconf import OmegaConf

    from utils.pipeline.config import load_config
    from utils.pipeline.step_config import TaskConfig

    cfg = load_config(["task=forecast", *[f"task.{k}={v}" for k, v in overrides.items()]])
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TaskConfig), cfg.task))


@pytest.fixture(scope="session")
def small_panel() -> pd.DataFrame:
    """2 stores x 6 items x 120 days of generated sales."""
    import generate_forecast_data as gen

    return gen.generate(gen.Hierarchy(stores=2, items=6, start="2025-01-01", seed=3), 120)


@pytest.fixture(scope="session")
def fitted_small(small_panel: pd.DataFrame) -> Any:
    """The global model fitted on ``small_panel`` with a 7-day horizon."""
    from utils.models import forecast_model as fm

    cols = fm.infer_columns(small_panel, "series_id", "date", "sales", horizon=7)
    return fm.fit(small_panel, cols, fm.ForecastParams(**TINY_TRAINING))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
