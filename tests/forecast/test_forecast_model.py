"""The global model and the seasonal-naive baseline: exactness on known futures, the predict contract."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.forecast.conftest import TINY_TRAINING
from utils.models import forecast_model as fm
from utils.models.forecast_metrics import forecast_report

PATTERN = np.array([5.0, 3.0, 3.0, 4.0, 6.0, 9.0, 8.0])   # Mon..Sun


def weekly_panel(n_series: int = 8, days: int = 150) -> pd.DataFrame:
    """Series whose future is known exactly: a pure weekly pattern times a per-series level."""
    dates = pd.date_range("2025-01-06", periods=days, freq="D")   # a Monday
    rows = [pd.DataFrame({"series_id": f"s{i}", "date": dates.strftime("%Y-%m-%d"),
                          "sales": PATTERN[dates.day_of_week] * (1 + i)}) for i in range(n_series)]
    return pd.concat(rows, ignore_index=True)


def test_backtest_on_a_pure_weekly_pattern_is_near_exact() -> None:
    frame = weekly_panel()
    cols = fm.infer_columns(frame, "series_id", "date", "sales", horizon=14)
    params = fm.ForecastParams(**{**TINY_TRAINING, "n_estimators": 200, "min_child_samples": 2})
    df = fm.model_frame(frame, cols, {})
    cv = fm.backtest(df, cols, params, windows=2)
    assert sorted(cv["cutoff"].dt.strftime("%Y-%m-%d").unique()) == ["2025-05-07", "2025-05-21"]
    assert len(cv) == 8 * 14 * 2
    metrics = forecast_report(cv, df, [fm.MODEL_COLUMN, fm.BASELINE_COLUMN], 1.2)["metrics"]
    assert metrics["seasonal_naive_wmape"] == 0.0
    assert metrics["lgbm_wmape"] < 0.02


def test_seasonal_naive_repeats_the_last_week() -> None:
    frame = weekly_panel(n_series=1, days=10)
    df = fm.model_frame(frame, fm.infer_columns(frame, "series_id", "date", "sales"), {})
    out = fm.seasonal_naive(df, horizon=9, freq="D")
    last_week = df["y"].to_numpy()[-7:]
    assert out[fm.BASELINE_COLUMN].tolist() == [*last_week, *last_week[:2]]
    assert out[fm.DS].iloc[0] == df[fm.DS].iloc[-1] + pd.Timedelta(days=1)


def test_covariates_are_typed_from_the_data(small_panel) -> None:
    cols = fm.infer_columns(small_panel, "series_id", "date", "sales")
    assert cols.statics == ["store_id", "item_id", "dept_id"]
    assert cols.numeric == ["price", "promo"] and cols.indicators == ["promo"] and cols.flags == ["event"]
    assert cols.dynamic_features == ["price", "promo", "price_ratio", "event"]


def test_predict_contract(fitted_small, small_panel) -> None:
    ids = ["HH002_S01", "FO001_S02"] if "HH002_S01" in fitted_small.series_ids else fitted_small.series_ids[:2]
    out = fitted_small.predict(ids)
    assert list(out.columns) == ["series_id", "date", "forecast", "seasonal_naive"]
    assert out.groupby("series_id").size().to_dict() == {i: 7 for i in ids}
    assert out["date"].min() == "2025-05-01" and out["date"].max() == "2025-05-07"
    assert (out["forecast"] >= 0).all() and out["forecast"].notna().all()
    assert len(fitted_small.predict(ids, horizon=3)) == 6
    with pytest.raises(ValueError, match="unknown series id.*nope"):
        fitted_small.predict([ids[0], "nope"])
    with pytest.raises(ValueError, match="horizon must be between 1 and 7"):
        fitted_small.predict(ids, horizon=8)


def test_future_promo_raises_the_forecast(fitted_small) -> None:
    ids = fitted_small.series_ids
    base = fitted_small.predict(ids)
    promo = base[["series_id", "date"]].assign(promo=1.0)
    boosted = fitted_small.predict(ids, covariates=promo)
    assert boosted["forecast"].sum() > base["forecast"].sum()


def test_save_and_load_predict_the_same(fitted_small, tmp_path) -> None:
    loaded = fm.FittedForecaster.load(fitted_small.save(tmp_path / "bundle"))
    pd.testing.assert_frame_equal(loaded.predict(), fitted_small.predict())


def test_too_short_history_names_the_remedy() -> None:
    frame = weekly_panel(n_series=2, days=30)
    cols = fm.infer_columns(frame, "series_id", "date", "sales", horizon=14)
    with pytest.raises(ValueError, match="scoring.backtest_windows"):
        fm.backtest(fm.model_frame(frame, cols, {}), cols, fm.ForecastParams(**TINY_TRAINING), windows=2)


def test_monitoring_scores_the_frozen_model_on_the_newest_days(fitted_small) -> None:
    import generate_forecast_data as gen

    from utils.models.forecast_monitoring import monitor_recent

    later = gen.generate(gen.Hierarchy(stores=2, items=6, start="2025-01-01", seed=3), 125)  # 5 new days
    later = pd.concat([later, later.tail(1).assign(series_id="NEW_S09")])
    out = monitor_recent(fitted_small, later, days=5)
    assert out["origin"] == "2025-04-30" and out["last_date"] == "2025-05-05"
    assert out["n_rows"] == 12 * 5 and out["n_unknown_series"] == 1
    assert set(out["metrics"]) == {"mae", "rmse", "wmape", "tweedie_deviance"}
    assert 0 < out["metrics"]["wmape"] < 1.5 and out["baseline_metrics"]["mae"] >= 0
    with pytest.raises(ValueError, match="between 1 and the model's horizon 7"):
        monitor_recent(fitted_small, later, days=8)
