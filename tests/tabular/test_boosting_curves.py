"""Validation curves where the estimator has them: histogram gradient boosting logs a train and
a validation loss per iteration (MLflow metrics with steps) and the report plots them."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tests.conftest import load_step_module, tracking_at
from utils.monitoring import report_lib as rl

train = load_step_module("02_training/train.py")


def frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = ((x["a"] + 0.5 * x["b"] + rng.normal(scale=0.5, size=n)) > 0).astype(int).to_numpy()
    return x, y


def pipeline_of(estimator):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", estimator)])


def test_boosting_logs_a_loss_per_iteration_and_the_report_plots_it(tmp_path, empty_tracking_db):
    import mlflow
    from PIL import Image
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    (x_train, y_train), (x_val, y_val) = frame(400, 1), frame(150, 2)
    boosted = pipeline_of(HistGradientBoostingClassifier(max_iter=25, learning_rate=0.1,
                                                         early_stopping=False, random_state=0)).fit(x_train, y_train)
    linear = pipeline_of(LogisticRegression()).fit(x_train, y_train)
    with tracking_at(tmp_path, empty_tracking_db):
        with mlflow.start_run() as run:
            train.log_boosting_curves(boosted, x_train, y_train, x_val, y_val)
        with mlflow.start_run() as one_go:
            train.log_boosting_curves(linear, x_train, y_train, x_val, y_val)
        client = mlflow.MlflowClient()
        curves = rl.training_curves(client, run.info.run_id)
        assert rl.training_curves(client, one_go.info.run_id) == {}, "fitted in one go: no curve"
    assert sorted(curves) == ["train_loss", "val_loss"]
    assert [s for s, _ in curves["val_loss"]] == list(range(1, 26))
    train_loss = [v for _, v in curves["train_loss"]]
    assert train_loss[-1] < train_loss[0] * 0.8, "boosting lowers the training loss"
    assert curves["val_loss"][-1][1] < curves["val_loss"][0][1]
    from sklearn.ensemble import HistGradientBoostingRegressor

    regressor = pipeline_of(HistGradientBoostingRegressor(max_iter=10, early_stopping=False)).fit(x_train, x_train["a"])
    (tmp_path / "r").mkdir()
    with tracking_at(tmp_path / "r", empty_tracking_db):
        with mlflow.start_run() as reg_run:
            train.log_boosting_curves(regressor, x_train, x_train["a"], x_val, x_val["a"])
        mse = rl.training_curves(mlflow.MlflowClient(), reg_run.info.run_id)["val_loss"]
    assert len(mse) == 10 and mse[-1][1] < mse[0][1]          # mean squared error, falling
    path = rl.training_curves_png(curves, tmp_path / "curves.png", "boosting", unit="iteration")
    with Image.open(path) as img:
        assert img.size == rl.CURVES_SIZE_PX
