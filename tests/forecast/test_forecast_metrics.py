"""Forecast metrics against values computed by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from tests.forecast.conftest import forecast_task
from utils.models.forecast_metrics import forecast_report, point_metrics

Y, YHAT = [0.0, 2.0, 4.0], [1.0, 2.0, 2.0]


def test_mae_rmse_wmape() -> None:
    m = point_metrics(Y, YHAT, power=1.5)
    assert m["mae"] == pytest.approx(1.0)                      # (1 + 0 + 2) / 3
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))         # sqrt((1 + 0 + 4) / 3)
    assert m["wmape"] == pytest.approx(0.5)                     # 3 / 6


def test_tweedie_deviance_power_1_5() -> None:
    # unit deviance 2 (y^(2-p)/((1-p)(2-p)) - y mu^(1-p)/(1-p) + mu^(2-p)/(2-p)), p = 1.5:
    # (0, 1): 2 * 1/0.5 = 4 ; (2, 2): 0 ; (4, 2): 2 (-8 + 4 sqrt2 + 2 sqrt2) = 12 sqrt2 - 16
    assert point_metrics(Y, YHAT, power=1.5)["tweedie_deviance"] == pytest.approx(4 * (math.sqrt(2) - 1))


def test_tweedie_deviance_with_the_task_power() -> None:
    p = forecast_task().tweedie_power
    assert p == 1.2

    def unit(y: float, mu: float) -> float:
        first = y ** (2 - p) / ((1 - p) * (2 - p)) if y > 0 else 0.0
        return 2 * (first - y * mu ** (1 - p) / (1 - p) + mu ** (2 - p) / (2 - p))

    # (0, 1): 2 * 1/0.8 = 2.5 exactly
    assert unit(0.0, 1.0) == pytest.approx(2.5)
    expected = (unit(0, 1) + unit(2, 2) + unit(4, 2)) / 3
    assert point_metrics(Y, YHAT, power=p)["tweedie_deviance"] == pytest.approx(expected)


def test_zero_forecast_is_floored_and_all_zero_actuals_have_no_wmape() -> None:
    m = point_metrics([0.0, 0.0], [0.0, 0.0], power=1.2)
    assert math.isnan(m["wmape"]) and m["mae"] == 0
    assert math.isfinite(point_metrics([3.0], [0.0], power=1.2)["tweedie_deviance"])


def test_mase_and_per_group_tables() -> None:
    # series a: in-sample |y_t - y_{t-7}| = 2,0,0,0,0,0,0 -> scale 2/7; b: scale 1
    ds = pd.date_range("2025-01-01", periods=14)
    history = pd.concat([
        pd.DataFrame({"unique_id": "a", "ds": ds, "y": [1, 2, 3, 4, 5, 6, 7, 3, 2, 3, 4, 5, 6, 7]}),
        pd.DataFrame({"unique_id": "b", "ds": ds, "y": [1] * 7 + [2] * 7}),
    ])
    cv = pd.DataFrame({"unique_id": ["a", "a", "b", "b"], "ds": [ds[-1] + pd.Timedelta(days=i) for i in (1, 2, 1, 2)],
                       "cutoff": ds[-1], "y": [4.0, 4.0, 2.0, 2.0], "m": [5.0, 3.0, 2.0, 4.0],
                       "store": ["s1", "s1", "s2", "s2"]})
    report = forecast_report(cv, history, ["m"], power=1.5, group_col="store")
    # per series MAE: a 1, b 1 -> pooled 1 / mean scale ((2/7 + 1) / 2)
    assert report["metrics"]["m_mase"] == pytest.approx(1 / ((2 / 7 + 1) / 2))
    assert report["metrics"]["m_wmape"] == pytest.approx(4 / 12)
    groups = {g["store"]: g for g in report["per_group"]}
    assert groups["s1"]["wmape"] == pytest.approx(2 / 8) and groups["s2"]["mae"] == pytest.approx(1.0)
    assert len(report["per_window"]) == 1
