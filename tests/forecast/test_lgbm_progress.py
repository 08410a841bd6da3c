"""The forecast's LightGBM reports progress (a 10,000-series fit takes minutes) without changing
what it learns or what a saved model needs to load."""
from __future__ import annotations

import logging
import pickle

import lightgbm as lgb
import numpy as np

from tests.forecast.conftest import TINY_TRAINING
from utils.models import forecast_model as fm
from utils.models.lgbm_progress import ProgressLGBMRegressor, fit_progress

LOGGERS = ("utils.models.lgbm_progress", "utils.pipeline.progress")   # start/end, progress lines
PARAMS = {"objective": "tweedie", "n_estimators": 40, "learning_rate": 0.1, "num_leaves": 15,
          "random_state": 3, "n_jobs": 1, "verbose": -1}


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((3000, 6))
    return x, rng.poisson(3 * x[:, 0] + x[:, 1]).astype(float)


def test_same_predictions_as_lightgbm_and_it_pickles_as_lightgbm(caplog):
    x, y = data()
    plain = lgb.LGBMRegressor(**PARAMS).fit(x, y)
    with caplog.at_level(logging.INFO), fit_progress("test fit", every_s=1e-9):
        ours = ProgressLGBMRegressor(**PARAMS).fit(x, y)
    assert np.array_equal(ours.predict(x), plain.predict(x))
    loaded = pickle.loads(pickle.dumps(ours))
    assert type(loaded) is lgb.LGBMRegressor and np.array_equal(loaded.predict(x), plain.predict(x))
    lines = [r.getMessage() for r in caplog.records if r.name in LOGGERS]
    assert lines[0] == "test fit: LightGBM on 3000 rows x 6 features, 40 rounds"
    assert any(line.startswith("progress test fit: 1/40 rounds, ") and "rounds/s, ETA " in line for line in lines)
    assert any(line.startswith("progress test fit: 39/40 rounds") for line in lines)
    assert lines[-1].startswith("test fit: fitted in ")


def test_silent_outside_a_progress_block_and_every_s_zero_logs_no_progress(caplog):
    x, y = data()
    with caplog.at_level(logging.INFO):
        ProgressLGBMRegressor(**PARAMS).fit(x, y)
        assert not [r for r in caplog.records if r.name in LOGGERS]
        with fit_progress("quiet fit", every_s=0):
            ProgressLGBMRegressor(**PARAMS).fit(x, y)
    lines = [r.getMessage() for r in caplog.records if r.name in LOGGERS]
    assert len(lines) == 2 and not [line for line in lines if line.startswith("progress")]


def test_every_fit_of_a_backtest_and_the_final_fit_report(small_panel, caplog):
    cols = fm.infer_columns(small_panel, "series_id", "date", "sales", horizon=7)
    params = fm.ForecastParams(**TINY_TRAINING)
    df = fm.model_frame(small_panel, cols, fm.covariate_means(small_panel, cols))
    with caplog.at_level(logging.INFO), fit_progress("bt", every_s=1e-9, fits=2):
        fm.backtest(df, cols, params, windows=2)
    with caplog.at_level(logging.INFO), fit_progress("final", every_s=1e-9):
        fitted = fm.fit(small_panel, cols, params)
    starts = [r.getMessage() for r in caplog.records if r.name in LOGGERS and "LightGBM on" in r.getMessage()]
    assert [s.split(":")[0] for s in starts] == ["bt, fit 1/2", "bt, fit 2/2", "final"]   # one per window
    assert type(pickle.loads(pickle.dumps(fitted.forecaster.models_[fm.MODEL_COLUMN]))) is lgb.LGBMRegressor
