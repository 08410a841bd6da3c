"""Scoring a forecasting model: rolling-origin backtest of its recipe, and a hold-out check.

Backtest: the candidate's own recipe (columns, hyperparameters) refitted at each of the last
``windows`` origins of the ingested data, one horizon apart, next to seasonal-naive on the
same origins; MAE, RMSE, WMAPE, Tweedie deviance and MASE overall, per window and per group
(``task.group_column``, e.g. store). Hold-out: when the test file has dates after the
model's training data, the logged pyfunc itself forecasts them (the serving path) and the
same metrics are reported as ``holdout_*``. The gate's number is the backtest ``wmape``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from utils.data.forecast_data import ForecastDataError, read_dataset, read_forecast_csv
from utils.models import forecast_model as fm
from utils.models.forecast_metrics import forecast_report, point_metrics


def bundle_dir(model_dir: Path) -> Path:
    """The fitted model inside a logged pyfunc folder (artifact ``bundle``)."""
    return Path(model_dir) / "artifacts" / "bundle"


def _rename(metrics: dict[str, float]) -> dict[str, float]:
    """lgbm_wmape -> wmape, seasonal_naive_wmape -> baseline_wmape."""
    out = {}
    for key, value in metrics.items():
        if key.startswith(f"{fm.MODEL_COLUMN}_"):
            out[key.removeprefix(f"{fm.MODEL_COLUMN}_")] = value
        elif key.startswith(f"{fm.BASELINE_COLUMN}_"):
            out["baseline_" + key.removeprefix(f"{fm.BASELINE_COLUMN}_")] = value
    return out


def holdout(model_dir: Path, fitted: fm.FittedForecaster, test_path: Path, task: Any) -> dict[str, Any] | None:
    """Metrics of the logged pyfunc on test rows after its training data; None when none are."""
    import mlflow.pyfunc

    cols = fitted.cols
    test = read_forecast_csv(Path(test_path), task)
    test = test[test[cols.series].isin(set(fitted.series_ids))]
    if test.empty:
        return None
    model = mlflow.pyfunc.load_model(str(model_dir))
    ids = sorted(test[cols.series].unique())
    covariates = fm.request_frame(test, cols)
    forecast = model.predict(covariates if cols.dynamic_features else pd.DataFrame({cols.series: ids}),
                             params={"horizon": cols.horizon})
    joined = forecast.merge(test[[cols.series, cols.time, cols.target]], on=[cols.series, cols.time])
    if joined.empty:
        return None
    return {"metrics": {f"holdout_{k}": v for k, v in point_metrics(joined[cols.target], joined["forecast"],
                                                                    cols.tweedie_power).items()}
            | {f"holdout_baseline_{k}": v for k, v in point_metrics(joined[cols.target], joined[fm.BASELINE_COLUMN],
                                                                    cols.tweedie_power).items()},
            "n_rows": int(len(joined)), "n_series": int(joined[cols.series].nunique()),
            "first_date": str(joined[cols.time].min()), "last_date": str(joined[cols.time].max())}


def score_forecast(model_dir: Path, dataset: Path, test_path: Path, task: Any, windows: int,
                   refit: bool = True, progress_every_s: float = 0.0) -> dict[str, Any]:
    """Backtest + hold-out report; ``metrics`` holds floats only (the store's scores.json)."""
    from utils.models.lgbm_progress import fit_progress

    fitted = fm.FittedForecaster.load(bundle_dir(model_dir))
    cols, params = fitted.cols, fitted.params
    frame = read_dataset(dataset, task)
    if frame.empty:
        raise ValueError(f"no ingested dataset at {dataset}: run data_ingestion first")
    df = fm.model_frame(frame, cols, fm.covariate_means(frame, cols), fitted.categories)
    with fit_progress("forecast backtest", progress_every_s, fits=windows if refit else 1):
        cv = fm.backtest(df, cols, params, windows=windows, refit=refit)
    group = task.group_column if task.group_column in cols.statics else None
    report = forecast_report(cv, df, [fm.MODEL_COLUMN, fm.BASELINE_COLUMN], cols.tweedie_power, group_col=group)
    metrics = _rename(report["metrics"])
    if metrics.get("baseline_wmape"):
        metrics["wmape_vs_baseline"] = metrics["wmape"] / metrics["baseline_wmape"]
    try:
        held = holdout(model_dir, fitted, test_path, task)
    except ForecastDataError as exc:
        raise ValueError(str(exc)) from exc
    if held:
        metrics.update(held.pop("metrics"))
    rename = {fm.MODEL_COLUMN: "model", fm.BASELINE_COLUMN: "seasonal_naive"}
    return {"metrics": {k: float(v) for k, v in metrics.items()},
            "backtest": {"windows": windows, "horizon": cols.horizon, "refit": refit,
                         "cutoffs": sorted(str(pd.Timestamp(c).date()) for c in cv["cutoff"].unique()),
                         "n_series": int(df[fm.ID].nunique()), "n_rows": int(len(cv))},
            "per_window": [{**r, "model": rename[r["model"]]} for r in report["per_window"]],
            "per_group": [{**r, "model": rename[r["model"]]} for r in report["per_group"]],
            "group_column": group, "holdout": held}
