"""The tick's drift check for a forecaster: the newest days against the frozen model and the history."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.forecast.conftest import TINY_TRAINING
from utils.models.model_store import ModelStore
from utils.monitoring.drift import DriftSettings, level_drift
from utils.pipeline.config import load_config
from utils.pipeline.paths import StatePaths
from utils.tick.drift_check import run_drift_check
from utils.tick.forecast_drift import new_rows, season_matched

NEW_DAYS = 5


@pytest.fixture(scope="module")
def recorded_wmape(small_panel: pd.DataFrame) -> float:
    """The tiny model's rolling-origin backtest WMAPE on its training panel (what scoring records)."""
    from utils.models import forecast_model as fm
    from utils.models.forecast_metrics import point_metrics

    cols = fm.infer_columns(small_panel, "series_id", "date", "sales", horizon=7)
    cv = fm.backtest(fm.model_frame(small_panel, cols, fm.covariate_means(small_panel, cols)), cols,
                     fm.ForecastParams(**TINY_TRAINING), windows=2)
    return point_metrics(cv[fm.Y], cv[fm.MODEL_COLUMN], cols.tweedie_power)["wmape"]


@pytest.fixture
def forecaster(state_dir: Path, empty_tracking_db: Path, fitted_small, recorded_wmape, small_panel, tmp_path):
    """A state dir with the tiny forecaster in production, its training panel as the reference."""
    paths = StatePaths.of(state_dir).model("sales_forecast")
    paths.ingested_dir.mkdir(parents=True)
    shutil.copy(empty_tracking_db, paths.mlflow_db)
    fitted_small.save(tmp_path / "model" / "artifacts" / "bundle")
    store = ModelStore(paths.models_dir)
    store.add_version("sales_forecast-v1", tmp_path / "model", {"model_name": "sales_forecast", "task": "forecast"})
    store.write_score("sales_forecast-v1", {"wmape": recorded_wmape}, "wmape")
    store.deploy("sales_forecast-v1")
    reference = paths.ingested_dir / "drift_reference.csv"
    small_panel.to_csv(reference, index=False)
    cfg = load_config(["task=forecast", f"paths.state_dir={state_dir}", "task.horizon=7"])
    return paths, cfg, reference


def continuation(days: int = 120 + NEW_DAYS) -> pd.DataFrame:
    """The same generated panel, NEW_DAYS days longer: the days that really follow."""
    import generate_forecast_data as gen

    return gen.generate(gen.Hierarchy(stores=2, items=6, start="2025-01-01", seed=3), days)


def check(paths: StatePaths, cfg, reference: Path, current: pd.DataFrame, tick: str) -> tuple:
    current.to_csv(paths.finaldata_csv, index=False)
    outcome = run_drift_check(cfg, paths, reference, paths.finaldata_csv, None, tick)
    return outcome, json.loads((paths.reports_dir / "drift.json").read_text())


def test_the_days_that_follow_are_no_drift_a_level_shift_is(forecaster, small_panel) -> None:
    paths, cfg, reference = forecaster
    later = continuation()
    calm, report = check(paths, cfg, reference, later, "tick-1")
    assert (calm.n_reference, calm.n_new) == (len(small_panel), 12 * NEW_DAYS)
    assert calm.signals == {"performance": False, "distribution": False}, report
    perf = report["performance"]
    assert perf["window"] == {"origin": "2025-04-30", "last_date": "2025-05-05", "days": NEW_DAYS}
    assert perf["n_series"] == 12 and perf["metric"] == "wmape" and perf["direction"] == "lower"
    assert perf["versus_baseline"]["drift"] is False and "vs seasonal-naive" in perf["reason"]
    assert {t["feature"] for t in report["distribution"]["tests"]} == {"sales", "sales@store_id=S01", "sales@store_id=S02"}

    new = later["date"] > small_panel["date"].max()
    shifted = later.assign(sales=np.where(new, later["sales"] * 3, later["sales"]))   # demand triples
    alarm, report = check(paths, cfg, reference, shifted, "tick-2")
    assert alarm.signals == {"performance": True, "distribution": True}, report
    perf = report["performance"]
    assert perf["new_score"] > perf["upper_bound"] > perf["recorded_score"]    # its better-side bound too
    assert "ks:sales@store_id=S01" in report["distribution"]["signals"] and "ks:sales@store_id=S02" in report["distribution"]["signals"]
    assert report["tick"] == "tick-2" and report["task"] == "forecast"


def test_a_model_worse_than_seasonal_naive_on_the_new_days_is_performance_drift(forecaster, small_panel) -> None:
    """The new days repeat the week before exactly: seasonal-naive is perfect, the model is not."""
    paths, cfg, reference = forecaster
    last = pd.to_datetime(small_panel["date"]).max()
    week = small_panel[pd.to_datetime(small_panel["date"]) > last - pd.Timedelta(days=7)]
    repeat = week[pd.to_datetime(week["date"]) <= last - pd.Timedelta(days=7 - NEW_DAYS)].assign(
        date=lambda f: (pd.to_datetime(f["date"]) + pd.Timedelta(days=7)).dt.strftime("%Y-%m-%d"))
    outcome, report = check(paths, cfg, reference, pd.concat([small_panel, repeat], ignore_index=True), "tick-3")
    versus = report["performance"]["versus_baseline"]
    assert versus["baseline_score"] == 0.0 and versus["excess_lower_bound"] > 0 and versus["drift"] is True
    assert outcome.performance is True
    assert outcome.distribution is False, report["distribution"]      # the same values as a week before


def test_new_rows_are_new_days_and_late_corrections() -> None:
    key = ["series_id", "date"]
    ref = pd.DataFrame({"series_id": ["a", "a", "b"], "date": ["2025-01-01", "2025-01-02", "2025-01-01"],
                        "sales": [1.0, 2.0, 3.0]})
    cur = pd.concat([ref.assign(sales=[1.0, 5.0, 3.0]),
                     pd.DataFrame({"series_id": ["b"], "date": ["2025-01-02"], "sales": [0.0]})])
    new = new_rows(ref, cur, key, "sales")
    assert new[key].values.tolist() == [["a", "2025-01-02"], ["b", "2025-01-02"]]


def test_reference_rows_are_the_same_weekdays_of_the_weeks_before() -> None:
    dates = pd.date_range("2025-01-01", periods=60, freq="D")
    history = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "sales": 1.0})
    new = pd.DataFrame({"date": ["2025-03-02", "2025-03-03"], "sales": 1.0})       # Sunday, Monday
    picked = pd.to_datetime(season_matched(history, new, "date", pd.Timedelta(days=1), 7, 4)["date"])
    assert len(picked) == 8 and set(picked.dt.dayofweek) == {6, 0}
    assert picked.min() == pd.Timestamp("2025-02-02") and picked.max() == pd.Timestamp("2025-02-24")


def test_level_drift_per_group_is_corrected_together() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"g": np.repeat(["x", "y", "z"], 300), "v": rng.poisson(5, 900)})
    same = pd.DataFrame({"g": np.repeat(["x", "y", "z"], 100), "v": rng.poisson(5, 300)})
    moved = same.assign(v=np.where(same["g"] == "z", rng.poisson(9, 300), same["v"]))
    assert level_drift(ref, same, "v", "g", DriftSettings()).signals == []
    report = level_drift(ref, moved, "v", "g", DriftSettings())
    assert "ks:v@g=z" in report.signals and "ks:v@g=x" not in report.signals and "ks:v@g=y" not in report.signals
    assert len(report.tests) == 4 and set(report.distributions) == {"v", "v@g=x", "v@g=y", "v@g=z"}
