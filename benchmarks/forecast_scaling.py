"""Forecasting cost as the number of series grows, beside the seasonal-naive baseline.

For each size (series x days of generated M5-like data, 01_data/generate_forecast_data.py):
hold out the last `--horizon` days, then
  * model:     fit the global LightGBM (mlforecast, the default hyperparameters of
               utils/conf/task/forecast.yaml) on the rest, forecast the horizon for every series
  * baseline:  seasonal-naive (season 7) "fit" (nothing) and forecast, same series, same run
and report wall times, rows per second, and the WMAPE of both on the held-out days
(a one-window rolling-origin backtest), with the model/baseline ratios.

    python benchmarks/forecast_scaling.py                          # 100 and 1,000 series x 730 days
    python benchmarks/forecast_scaling.py --sizes 100 1000 10000   # 10,000 takes minutes on 2 cores
    python benchmarks/forecast_scaling.py --json out.json

Nothing is written to the repo; the numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.append(str(REPO_ROOT / "01_data"))

import pandas as pd  # noqa: E402

import generate_forecast_data as gen  # noqa: E402
from utils.models import forecast_model as fm  # noqa: E402
from utils.models.forecast_metrics import point_metrics  # noqa: E402


def hierarchy_for(n_series: int, seed: int) -> gen.Hierarchy:
    stores = 10 if n_series >= 1000 else max(1, n_series // 50)
    return gen.Hierarchy(stores=stores, items=n_series // stores, start="2024-01-01", seed=seed)


def measure(n_series: int, days: int, horizon: int, params: fm.ForecastParams, seed: int) -> dict[str, Any]:
    h = hierarchy_for(n_series, seed)
    t0 = time.perf_counter()
    frame = gen.generate(h, days)
    generate_s = time.perf_counter() - t0
    cut = (pd.Timestamp(h.start) + pd.Timedelta(days=days - horizon)).strftime("%Y-%m-%d")
    train, test = frame[frame["date"] < cut], frame[frame["date"] >= cut]
    cols = fm.infer_columns(train, "series_id", "date", "sales", horizon=horizon)

    t0 = time.perf_counter()
    fitted = fm.fit(train, cols, params)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    forecast = fitted.predict(covariates=fm.request_frame(test, cols))
    predict_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    history = train.rename(columns={"series_id": fm.ID, "date": fm.DS, "sales": fm.Y}).assign(
        ds=lambda f: pd.to_datetime(f[fm.DS]))
    baseline = fm.seasonal_naive(history[[fm.ID, fm.DS, fm.Y]], horizon, "D", params.season)
    baseline_s = time.perf_counter() - t0

    actual = test[["series_id", "date", "sales"]]
    joined = forecast.drop(columns=[fm.BASELINE_COLUMN]).merge(actual, on=["series_id", "date"])
    base = baseline.assign(series_id=baseline[fm.ID], date=baseline[fm.DS].dt.strftime("%Y-%m-%d")).merge(
        actual, on=["series_id", "date"])
    model_wmape = point_metrics(joined["sales"], joined["forecast"], cols.tweedie_power)["wmape"]
    base_wmape = point_metrics(base["sales"], base[fm.BASELINE_COLUMN], cols.tweedie_power)["wmape"]
    return {"series": h.n_series, "days": days, "train_rows": len(train), "generate_s": generate_s,
            "fit_s": fit_s, "predict_s": predict_s, "baseline_s": baseline_s,
            "model_wmape": model_wmape, "baseline_wmape": base_wmape,
            "wmape_ratio": model_wmape / base_wmape, "train_rows_per_s": len(train) / fit_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="numbers of series")
    parser.add_argument("--days", type=int, default=730, help="days per series (2 years)")
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--n-estimators", type=int, default=fm.ForecastParams.n_estimators)
    parser.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    params = fm.ForecastParams(n_estimators=args.n_estimators, n_jobs=args.n_jobs)
    rows = []
    header = (f"{'series':>7} {'days':>5} {'train rows':>11} {'fit s':>8} {'forecast s':>10} {'naive s':>8} "
              f"{'model WMAPE':>11} {'naive WMAPE':>11} {'ratio':>6}")
    print(header)
    for n in args.sizes:
        row = measure(n, args.days, args.horizon, params, args.seed)
        rows.append(row)
        print(f"{row['series']:>7} {row['days']:>5} {row['train_rows']:>11,} {row['fit_s']:>8.1f} "
              f"{row['predict_s']:>10.2f} {row['baseline_s']:>8.2f} {row['model_wmape']:>11.4f} "
              f"{row['baseline_wmape']:>11.4f} {row['wmape_ratio']:>6.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
