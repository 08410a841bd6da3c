"""MLflow "models from code" definition of the forecasting model (logged by forecast_training.py).

Prediction contract (what `POST /models/<name>/prediction` and `mlflow models serve` pass on):

input   a DataFrame (or records / ``{"<series column>": [...]}`` / a list of ids) with
          <series column>   required: the series to forecast (one row per series is enough)
          <time column>     optional: with covariate columns, future covariates per (series, date)
          <covariates>      optional: e.g. price, promo, event; missing ones take the defaults
                            of forecast_model.FittedForecaster.fill_future
params  ``horizon`` (int, 1..task.horizon; default task.horizon)
output  a DataFrame, one row per series and future date, ordered by series then date:
          <series column>, <time column> (ISO date text), forecast (float >= 0),
          seasonal_naive (float: the baseline's forecast, for comparison)
errors  ValueError (the API answers 400): unknown series id(s) (the message names them),
        no series column, horizon out of range.

The model code (forecast_model.py) travels as ``code_paths``; the fitted mlforecast object
and its metadata are the ``bundle`` artifact. Loading needs neither the repo nor its sys.path.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd


def _import_forecast_model() -> Any:
    """``forecast_model`` from the model's code/ folder (on sys.path at load), else from the repo."""
    try:
        import forecast_model
    except ImportError:  # loading from the repo before code_paths are in place
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "utils" / "models"))
        import forecast_model
    return forecast_model


def ids_and_covariates(model_input: Any, series: str, time: str) -> tuple[list[str], pd.DataFrame | None]:
    """Series ids to forecast and the future covariate rows (if any) from the usual input shapes."""
    if isinstance(model_input, str):
        return [model_input], None
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input if not isinstance(model_input.get(series), str)
                                   else {series: [model_input[series]]})
    if isinstance(model_input, (list, tuple, pd.Series)):
        if model_input and all(isinstance(r, dict) for r in model_input):
            model_input = pd.DataFrame(list(model_input))
        else:
            return [str(v) for v in list(model_input)], None
    if not isinstance(model_input, pd.DataFrame):
        raise ValueError(f"unsupported input type {type(model_input).__name__}: send a '{series}' column")
    if series not in model_input.columns:
        if model_input.shape[1] == 1 and time not in model_input.columns:
            model_input = model_input.set_axis([series], axis=1)
        else:
            raise ValueError(f"expected a '{series}' column with the series ids, got columns "
                             f"{list(model_input.columns)}")
    frame = model_input.dropna(subset=[series])
    ids = list(dict.fromkeys(frame[series].astype(str)))
    has_covariates = time in frame.columns and frame.shape[1] > 2 and frame[time].notna().any()
    return ids, (frame[frame[time].notna()] if has_covariates else None)


class SalesForecastModel(mlflow.pyfunc.PythonModel):
    """Series ids in; the horizon's daily forecasts per series out (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        fm = _import_forecast_model()
        self._model = fm.FittedForecaster.load(Path(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:  # noqa: ANN001
        cols = self._model.cols
        ids, covariates = ids_and_covariates(model_input, cols.series, cols.time)
        horizon = (params or {}).get("horizon") or cols.horizon
        return self._model.predict(ids, int(horizon), covariates)


mlflow.models.set_model(SalesForecastModel())
