"""Training glue of task=forecast: validate against seasonal-naive, fit on everything, log a pyfunc.

The global LightGBM (utils/models/forecast_model.py) is first fitted on all but the last
``task.horizon`` days and scored beside the seasonal-naive baseline on those days (logged as
``val_*`` and ``val_baseline_*``), then refitted on all the data and logged as an MLflow pyfunc
(forecast_pyfunc.py) with forecast_model.py as code and the fitted model as the ``bundle``.
"""
from __future__ import annotations

import importlib.metadata
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from utils.data.forecast_data import read_dataset, series_col
from utils.models import forecast_model as fm
from utils.models.forecast_metrics import forecast_report

log = logging.getLogger("model_training")

HERE = Path(__file__).resolve().parent
PYFUNC_FILE = HERE / "forecast_pyfunc.py"
CODE_PATHS = [HERE.parent / "utils" / "models" / "forecast_model.py"]


def columns_of(frame: pd.DataFrame, task: Any) -> fm.Columns:
    return fm.infer_columns(frame, series_col(task), task.time_column, task.target_column,
                            freq=task.freq, horizon=int(task.horizon), tweedie_power=float(task.tweedie_power))


def validation_report(frame: pd.DataFrame, cols: fm.Columns, params: fm.ForecastParams,
                      group_col: str | None) -> dict[str, Any]:
    """Model and seasonal-naive on the last horizon, trained on what comes before it."""
    df = fm.model_frame(frame, cols, fm.covariate_means(frame, cols))
    cv = fm.backtest(df, cols, params, windows=1)
    return forecast_report(cv, df, [fm.MODEL_COLUMN, fm.BASELINE_COLUMN], cols.tweedie_power,
                           group_col=group_col if group_col in cols.statics else None)


def signature(cols: fm.Columns) -> ModelSignature:
    """Input: series ids (+ optional date and future covariates); output: the long forecast frame."""
    inputs = [ColSpec("string", cols.series), ColSpec("string", cols.time, required=False)]
    inputs += [ColSpec("double", c, required=False) for c in cols.numeric]
    inputs += [ColSpec("string", c, required=False) for c in cols.flags]
    return ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema([ColSpec("string", cols.series), ColSpec("string", cols.time),
                        ColSpec("double", "forecast"), ColSpec("double", fm.BASELINE_COLUMN)]),
        params=ParamSchema([ParamSpec("horizon", "long", int(cols.horizon))]))


def pip_requirements() -> list[str]:
    return [f"{p}=={importlib.metadata.version(p)}"
            for p in ("mlflow", "mlforecast", "lightgbm", "pandas", "numpy", "scikit-learn")]


def log_forecast_model(fitted: fm.FittedForecaster, registered_model_name: str | None,
                       name: str = "model") -> Any:
    """Log ``fitted`` as a pyfunc that loads anywhere (and under ``mlflow models serve``)."""
    with tempfile.TemporaryDirectory(prefix="forecast_bundle_") as tmp:
        bundle = fitted.save(Path(tmp) / "bundle")
        example = pd.DataFrame({fitted.cols.series: fitted.series_ids[:2]})
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(PYFUNC_FILE), artifacts={"bundle": str(bundle)},
            code_paths=[str(p) for p in CODE_PATHS], signature=signature(fitted.cols),
            input_example=(example, {"horizon": min(7, fitted.cols.horizon)}),
            pip_requirements=pip_requirements(), registered_model_name=registered_model_name)


def train_forecast(task: Any, training: dict[str, Any], data_path: Path,
                   progress_every_s: float = 0.0) -> tuple[Any, dict[str, float]]:
    """Validate, fit on all data, log and register; (model info, validation metrics)."""
    from omegaconf import OmegaConf

    from utils.models.lgbm_progress import fit_progress
    from utils.pipeline.tracking import flatten

    params: fm.ForecastParams = OmegaConf.to_object(OmegaConf.merge(
        OmegaConf.structured(fm.ForecastParams), training))  # type: ignore[assignment]
    frame = read_dataset(data_path, task)
    cols = columns_of(frame, task)
    log.info("forecast training on %d series x %d rows; statics %s, dynamic %s, flags %s",
             frame[cols.series].nunique(), len(frame), cols.statics, cols.numeric, cols.flags)
    with fit_progress("forecast validation fit", progress_every_s):
        report = validation_report(frame, cols, params, task.group_column)
    model, base = f"{fm.MODEL_COLUMN}_", f"{fm.BASELINE_COLUMN}_"
    metrics = {k.removeprefix(model): v for k, v in report["metrics"].items() if k.startswith(model)}
    metrics.update({f"baseline_{k.removeprefix(base)}": v for k, v in report["metrics"].items()
                    if k.startswith(base)})
    mlflow.log_params({**flatten("training", vars(params)), "rows_train": len(frame),
                       "n_series": int(frame[cols.series].nunique()), "horizon": cols.horizon,
                       "static_features": ",".join(cols.statics), "dynamic_features": ",".join(cols.dynamic_features)})
    mlflow.log_metrics({f"val_{k}": v for k, v in metrics.items() if v == v})  # NaN-free
    mlflow.log_dict(report, "validation_report.json")
    log.info("validation (last %d days): model wmape %.4f, seasonal-naive wmape %.4f",
             cols.horizon, metrics["wmape"], metrics["baseline_wmape"])
    with fit_progress("forecast final fit", progress_every_s):
        fitted = fm.fit(frame, cols, params)
    info = log_forecast_model(fitted, registered_model_name=task.model_name)
    return info, metrics
