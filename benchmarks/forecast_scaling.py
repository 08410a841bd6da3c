"""Forecasting cost as the number of series grows, beside the seasonal-naive baseline.

For each size (series x days of generated M5-like data, 01_data/generate_forecast_data.py):
hold out the last `--horizon` days, then
  * model:     fit the global LightGBM (mlforecast, the default hyperparameters of
               utils/conf/task/forecast.yaml) on the rest, forecast the horizon for every series
  * baseline:  seasonal-naive (season 7) "fit" (nothing) and forecast, same series, same run
and report wall and CPU times, rows per second, the process's peak memory, and the WMAPE of
both on the held-out days (a one-window rolling-origin backtest), with the model/baseline
ratios of time (fit + forecast over seasonal-naive, CPU) and of WMAPE.

    python benchmarks/forecast_scaling.py                          # 100 and 1,000 series x 730 days
    python benchmarks/forecast_scaling.py --sizes 100 1000 10000   # 10,000 takes minutes on 2 cores
    python benchmarks/forecast_scaling.py --json out.json
    python benchmarks/forecast_scaling.py --compare learning_rate=0.05 n_estimators=300   # vs other settings

Times: wall seconds and CPU seconds of this process (all threads); on shared, busy cores the
CPU seconds are the steadier measure of the work. `cpu x` = (fit + forecast CPU) / seasonal-naive
CPU; `peak MB` = the process's peak resident memory so far (the largest size sets it).

Nothing is written to the repo; the numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import resource
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


def split(n_series: int, days: int, horizon: int, seed: int) -> tuple[gen.Hierarchy, pd.DataFrame, pd.DataFrame, float]:
    """Generated data, all but the last ``horizon`` days to train on, those days to score."""
    h = hierarchy_for(n_series, seed)
    t0 = time.perf_counter()
    frame = gen.generate(h, days)
    generate_s = time.perf_counter() - t0
    cut = (pd.Timestamp(h.start) + pd.Timedelta(days=days - horizon)).strftime("%Y-%m-%d")
    return h, frame[frame["date"] < cut], frame[frame["date"] >= cut], generate_s


def measure(data: tuple[gen.Hierarchy, pd.DataFrame, pd.DataFrame, float], days: int, horizon: int,
            params: fm.ForecastParams) -> dict[str, Any]:
    """Wall and CPU seconds (CPU: this process, all threads; steadier than wall time on shared,
    busy cores) of fit and forecast, and the WMAPE of the model and of seasonal-naive."""
    h, train, test, generate_s = data
    cols = fm.infer_columns(train, "series_id", "date", "sales", horizon=horizon)

    t0, c0 = time.perf_counter(), time.process_time()
    fitted = fm.fit(train, cols, params)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    forecast = fitted.predict(covariates=fm.request_frame(test, cols))
    predict_s, predict_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    history = train.rename(columns={"series_id": fm.ID, "date": fm.DS, "sales": fm.Y}).assign(
        ds=lambda f: pd.to_datetime(f[fm.DS]))
    baseline = fm.seasonal_naive(history[[fm.ID, fm.DS, fm.Y]], horizon, "D", params.season)
    baseline_s, baseline_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    actual = test[["series_id", "date", "sales"]]
    joined = forecast.drop(columns=[fm.BASELINE_COLUMN]).merge(actual, on=["series_id", "date"])
    base = baseline.assign(series_id=baseline[fm.ID], date=baseline[fm.DS].dt.strftime("%Y-%m-%d")).merge(
        actual, on=["series_id", "date"])
    model_wmape = point_metrics(joined["sales"], joined["forecast"], cols.tweedie_power)["wmape"]
    base_wmape = point_metrics(base["sales"], base[fm.BASELINE_COLUMN], cols.tweedie_power)["wmape"]
    return {"series": h.n_series, "days": days, "train_rows": len(train), "generate_s": generate_s,
            "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "predict_s": predict_s, "predict_cpu_s": predict_cpu_s,
            "baseline_s": baseline_s, "baseline_cpu_s": baseline_cpu_s,
            "time_ratio_cpu": (fit_cpu_s + predict_cpu_s) / max(baseline_cpu_s, 1e-9),
            "peak_rss_mb": peak_rss_mb(),
            "model_wmape": model_wmape, "baseline_wmape": base_wmape,
            "wmape_ratio": model_wmape / base_wmape, "train_rows_per_s": len(train) / fit_s}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB; sizes run smallest first, so per size)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``learning_rate=0.05 n_estimators=300`` -> ForecastParams fields (values parsed as JSON)."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fm.ForecastParams.__dataclass_fields__:
            raise SystemExit(f"--compare {item}: {key!r} is not a ForecastParams field")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="numbers of series")
    parser.add_argument("--days", type=int, default=730, help="days per series (2 years)")
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--compare", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="also fit with these ForecastParams changed (e.g. the previous defaults "
                             "learning_rate=0.05 n_estimators=300), on the same data, and print the ratios")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    settings = {"default": fm.ForecastParams(n_jobs=args.n_jobs)}
    if args.compare:
        settings["compare"] = fm.ForecastParams(**{"n_jobs": args.n_jobs, **parse_overrides(args.compare)})
        print(f"compare: {parse_overrides(args.compare)}")
    rows = []
    header = (f"{'setting':>8} {'series':>7} {'days':>5} {'train rows':>11} {'fit s':>7} {'fit cpu':>7} "
              f"{'fcst s':>7} {'fcst cpu':>8} {'naive s':>7} {'naive cpu':>9} {'cpu x':>7} {'peak MB':>7} "
              f"{'model WMAPE':>11} {'naive WMAPE':>11} {'ratio':>6}")
    print(header)
    for n in args.sizes:
        data = split(n, args.days, args.horizon, args.seed)
        for name, params in settings.items():
            row = {"setting": name, **measure(data, args.days, args.horizon, params)}
            rows.append(row)
            print(f"{name:>8} {row['series']:>7} {row['days']:>5} {row['train_rows']:>11,} {row['fit_s']:>7.1f} "
                  f"{row['fit_cpu_s']:>7.1f} {row['predict_s']:>7.2f} {row['predict_cpu_s']:>8.2f} "
                  f"{row['baseline_s']:>7.2f} {row['baseline_cpu_s']:>9.2f} {row['time_ratio_cpu']:>7.1f} "
                  f"{row['peak_rss_mb']:>7.0f} {row['model_wmape']:>11.4f} {row['baseline_wmape']:>11.4f} "
                  f"{row['wmape_ratio']:>6.3f}", flush=True)
        if len(settings) > 1:
            a, b = rows[-2], rows[-1]
            print(f"   {n} series: default / compare fit CPU {a['fit_cpu_s'] / b['fit_cpu_s']:.2f}x, "
                  f"forecast CPU {a['predict_cpu_s'] / b['predict_cpu_s']:.2f}x, WMAPE "
                  f"{a['model_wmape']:.4f} vs {b['model_wmape']:.4f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
