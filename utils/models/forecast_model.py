"""The forecasting model: one global LightGBM over all series (mlforecast), and seasonal-naive.

Self-contained on purpose (no imports from ``utils``): the logged MLflow model carries this
file in its code/ folder and imports it as ``forecast_model`` wherever it is loaded.

Features (mlforecast builds them, recursively for the horizon): lags of the target, rolling
means of lag 1, a seasonal rolling mean of lag 7, calendar fields of the date, and the
covariates of the data: numeric columns that vary inside a series are dynamic (each also as a
ratio to its series mean: the relative price of a promotion), columns constant per series
are static (categorical), text columns that vary (events) become a 0/1 flag. The objective
is Tweedie, for intermittent, zero-heavy demand.

Future covariates at prediction time: the caller may give them per (series, date); missing
ones are filled as documented in ``fill_future``: 0/1 indicators (promo) off, flags off,
other numeric covariates (price) at their last known value.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL_COLUMN = "lgbm"
BASELINE_COLUMN = "seasonal_naive"
ID, DS, Y = "unique_id", "ds", "y"


@dataclass
class ForecastParams:
    """Hyperparameters (`training:` of utils/conf/task/forecast.yaml)."""

    lags: list[int] = field(default_factory=lambda: [1, 7, 14, 28])
    rolling_windows: list[int] = field(default_factory=lambda: [7, 28])   # rolling means of lag 1
    seasonal_windows: list[int] = field(default_factory=lambda: [4])      # same-weekday means of lag 7
    date_features: list[str] = field(default_factory=lambda: ["day_of_week", "month", "day"])
    n_estimators: int = 150        # x learning_rate 0.1: the WMAPE of 300 x 0.05, half the fit time
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 20
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    season: int = 7               # of the seasonal-naive baseline and MASE
    seed: int = 42
    n_jobs: int = 1                # LightGBM threads: 1 is fastest on shared, busy cores


@dataclass
class Columns:
    """How the user's columns map onto the model (inferred once from the training data)."""

    series: str
    time: str
    target: str
    freq: str = "D"
    horizon: int = 28
    tweedie_power: float = 1.2
    statics: list[str] = field(default_factory=list)      # constant per series, categorical
    numeric: list[str] = field(default_factory=list)      # dynamic numeric covariates
    indicators: list[str] = field(default_factory=list)   # dynamic 0/1 columns among `numeric`
    flags: list[str] = field(default_factory=list)        # dynamic text columns -> 0/1 flag

    @property
    def dynamic_features(self) -> list[str]:
        return [*self.numeric, *(f"{c}_ratio" for c in self.numeric if c not in self.indicators),
                *self.flags]


def infer_columns(frame: pd.DataFrame, series: str, time: str, target: str, **kwargs: Any) -> Columns:
    """Type the covariates: static / dynamic numeric / indicator / flag (see module docstring)."""
    cols = Columns(series, time, target, **kwargs)
    grouped = frame.groupby(series, sort=False)
    for name in frame.columns:
        if name in (series, time, target):
            continue
        values = frame[name]
        constant = bool((grouped[name].nunique(dropna=False) <= 1).all())
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            if constant:
                cols.statics.append(name)
            else:
                cols.numeric.append(name)
                if set(values.dropna().unique()) <= {0, 1}:
                    cols.indicators.append(name)
        elif constant:
            cols.statics.append(name)
        else:
            cols.flags.append(name)
    return cols


def covariate_means(frame: pd.DataFrame, cols: Columns) -> dict[str, dict[str, float]]:
    """Per series mean of each non-indicator numeric covariate (the ratio features' base)."""
    out = {}
    for c in cols.numeric:
        if c not in cols.indicators:
            out[c] = frame.groupby(cols.series)[c].mean().astype(float).to_dict()
    return out


def _flag(values: pd.Series) -> pd.Series:
    text = values.astype("string").fillna("").str.strip()
    return (~text.isin(["", "0", "none", "None", "nan"])).astype(np.int8)


def model_frame(frame: pd.DataFrame, cols: Columns, means: dict[str, dict[str, float]],
                categories: dict[str, list[str]] | None = None, with_target: bool = True) -> pd.DataFrame:
    """The user's long frame -> mlforecast's (unique_id, ds, y, statics..., dynamics...)."""
    out = pd.DataFrame({ID: frame[cols.series].astype(str).to_numpy(),
                        DS: pd.to_datetime(frame[cols.time], format="ISO8601").to_numpy()})
    if with_target:
        out[Y] = pd.to_numeric(frame[cols.target]).astype(float).to_numpy()
    for c in cols.statics:
        values = frame[c].astype(str).to_numpy()
        cats = (categories or {}).get(c) or sorted(set(values))
        out[c] = pd.Categorical(values, categories=cats)
    for c in cols.numeric:
        out[c] = pd.to_numeric(frame[c], errors="coerce").astype(float).to_numpy()
        if c not in cols.indicators:
            base = out[ID].map(means.get(c, {})).astype(float)
            out[f"{c}_ratio"] = (out[c] / base.where(base != 0)).fillna(1.0).to_numpy()
    for c in cols.flags:
        out[c] = _flag(frame[c]).to_numpy()
    return out.sort_values([ID, DS], kind="stable").reset_index(drop=True)


def request_frame(frame: pd.DataFrame, cols: Columns) -> pd.DataFrame:
    """The pyfunc's input typed as its signature wants: ids and dates as text, numbers as float,
    flags as text (an all-empty event column reads as float NaN from CSV and would be refused)."""
    out = pd.DataFrame({cols.series: frame[cols.series].astype(str).to_numpy()})
    if cols.time in frame.columns:
        out[cols.time] = frame[cols.time].astype(str).to_numpy()
    for c in cols.numeric:
        if c in frame.columns:
            out[c] = pd.to_numeric(frame[c], errors="coerce").astype(float).to_numpy()
    for c in cols.flags:
        if c in frame.columns:
            out[c] = frame[c].astype("string").fillna("").astype(object).to_numpy()
    return out


def make_forecaster(params: ForecastParams, cols: Columns) -> Any:
    """An unfitted MLForecast with the global LightGBM (Tweedie) and the lag features."""
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, SeasonalRollingMean

    from utils.models.lgbm_progress import ProgressLGBMRegressor   # LightGBM + progress lines

    model = ProgressLGBMRegressor(
        objective="tweedie", tweedie_variance_power=cols.tweedie_power, n_estimators=params.n_estimators,
        learning_rate=params.learning_rate, num_leaves=params.num_leaves,
        min_child_samples=params.min_child_samples, colsample_bytree=params.feature_fraction,
        subsample=params.bagging_fraction, subsample_freq=params.bagging_freq,
        random_state=params.seed, n_jobs=params.n_jobs, verbose=-1)
    lag_transforms: dict[int, list[Any]] = {}
    if params.rolling_windows:
        lag_transforms[1] = [RollingMean(window_size=w) for w in params.rolling_windows]
    if params.seasonal_windows:
        lag_transforms[params.season] = [SeasonalRollingMean(season_length=params.season, window_size=w)
                                         for w in params.seasonal_windows]
    return MLForecast(models={MODEL_COLUMN: model}, freq=cols.freq, lags=list(params.lags),
                      lag_transforms=lag_transforms, date_features=list(params.date_features),
                      num_threads=1)


def seasonal_naive(history: pd.DataFrame, horizon: int, freq: str, season: int = 7) -> pd.DataFrame:
    """(unique_id, ds, seasonal_naive): each step repeats the value one season earlier."""
    ordered = history.sort_values([ID, DS], kind="stable")
    tail = ordered.groupby(ID, sort=True).tail(season)
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    sizes = tail.groupby(ID, sort=True).size()
    if sizes.empty:
        return pd.DataFrame(columns=[ID, DS, BASELINE_COLUMN])
    k = np.arange(horizon)
    if (sizes == season).all():  # the usual case, vectorised: value at last + (k+1) steps = tail[k % season]
        values = tail[Y].to_numpy().reshape(len(sizes), season)[:, k % season]
        last = tail.groupby(ID, sort=True)[DS].max().to_numpy()
        dates = last[:, None] + (k + 1) * step
        return pd.DataFrame({ID: np.repeat(sizes.index.to_numpy(), horizon), DS: dates.ravel(),
                             BASELINE_COLUMN: values.ravel()})
    rows = []
    for uid, part in tail.groupby(ID, sort=True):  # series shorter than a season: cycle what there is
        values = part[Y].to_numpy()
        rows.append(pd.DataFrame({ID: uid, DS: part[DS].iloc[-1] + (k + 1) * step,
                                  BASELINE_COLUMN: values[k % len(values)]}))
    return pd.concat(rows, ignore_index=True)


def backtest(df: pd.DataFrame, cols: Columns, params: ForecastParams, windows: int,
             refit: bool = True) -> pd.DataFrame:
    """Rolling-origin backtest of the model and seasonal-naive over the last ``windows`` horizons.

    Rows: unique_id, ds, cutoff, y, lgbm, seasonal_naive (+ the static columns, for grouping).
    """
    h = cols.horizon
    need = max([*params.lags, 1]) + max([*params.rolling_windows, *[w * params.season for w in params.seasonal_windows], 1])
    shortest = int(df.groupby(ID).size().min())
    if shortest < windows * h + need:
        raise ValueError(f"too little history for {windows} backtest window(s) of {h} steps: the shortest "
                         f"series has {shortest} rows, needs >= {windows * h + need} "
                         "(lower scoring.backtest_windows or task.horizon)")
    forecaster = make_forecaster(params, cols)
    cv = forecaster.cross_validation(df, n_windows=windows, h=h, step_size=h, refit=refit,
                                     static_features=list(cols.statics))
    baselines = []
    for cutoff in sorted(cv["cutoff"].unique()):
        sn = seasonal_naive(df[df[DS] <= cutoff], h, cols.freq, params.season)
        baselines.append(sn.assign(cutoff=cutoff))
    cv = cv.merge(pd.concat(baselines, ignore_index=True), on=[ID, DS, "cutoff"], how="left")
    if cols.statics:
        cv = cv.merge(df.drop_duplicates(ID)[[ID, *cols.statics]], on=ID, how="left")
    cv[MODEL_COLUMN] = cv[MODEL_COLUMN].clip(lower=0.0)
    return cv


@dataclass
class FittedForecaster:
    """What the pyfunc holds: the fitted mlforecast object and what prediction needs besides."""

    forecaster: Any
    cols: Columns
    params: ForecastParams
    means: dict[str, dict[str, float]]
    categories: dict[str, list[str]]
    last_values: pd.DataFrame        # per series: last date and last value of each numeric covariate
    tails: pd.DataFrame              # the last `season` observations per series (seasonal-naive)

    @property
    def series_ids(self) -> list[str]:
        return self.last_values[ID].tolist()

    # ---- persistence (a folder: mlforecast's own save + JSON + CSV) ----------------------
    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.forecaster.save(str(folder / "mlforecast"))
        (folder / "meta.json").write_text(json.dumps({
            "columns": asdict(self.cols), "params": asdict(self.params), "means": self.means,
            "categories": self.categories}, indent=2, default=str))
        self.last_values.to_csv(folder / "last_values.csv", index=False)
        self.tails.to_csv(folder / "tails.csv", index=False)
        return folder

    @classmethod
    def load(cls, folder: Path) -> "FittedForecaster":
        from mlforecast import MLForecast

        meta = json.loads((folder / "meta.json").read_text())
        last = pd.read_csv(folder / "last_values.csv", dtype={ID: str}, parse_dates=[DS])
        tails = pd.read_csv(folder / "tails.csv", dtype={ID: str}, parse_dates=[DS])
        return cls(MLForecast.load(str(folder / "mlforecast")), Columns(**meta["columns"]),
                   ForecastParams(**meta["params"]), meta["means"], meta["categories"], last, tails)

    # ---- prediction --------------------------------------------------------------------------
    def fill_future(self, ids: list[str], horizon: int, given: pd.DataFrame | None) -> pd.DataFrame:
        """Future covariates for ``ids`` over the horizon: the given ones, else the defaults."""
        cols = self.cols
        step = pd.tseries.frequencies.to_offset(cols.freq)
        last = self.last_values.set_index(ID).loc[ids]
        grid = pd.DataFrame({
            cols.series: np.repeat(ids, horizon),
            cols.time: np.concatenate([pd.date_range(d + step, periods=horizon, freq=cols.freq)
                                       for d in last[DS]]),
        })
        for c in cols.numeric:
            grid[c] = 0.0 if c in cols.indicators else np.repeat(last[c].to_numpy(dtype=float), horizon)
        for c in cols.flags:
            grid[c] = ""
        if given is not None and not given.empty:
            given = given.copy()
            given[cols.series] = given[cols.series].astype(str)
            given[cols.time] = pd.to_datetime(given[cols.time], format="ISO8601")
            known = [c for c in [*cols.numeric, *cols.flags] if c in given.columns]
            merged = grid.merge(given[[cols.series, cols.time, *known]], on=[cols.series, cols.time],
                                how="left", suffixes=("", "_given"))
            for c in known:
                merged[c] = merged[f"{c}_given"].where(merged[f"{c}_given"].notna(), merged[c])
            grid = merged[grid.columns]
        for c in cols.statics:
            grid[c] = ""  # statics come from training; model_frame needs the column
        frame = model_frame(grid, cols, self.means, self.categories, with_target=False)
        return frame.drop(columns=list(cols.statics))

    def predict(self, ids: list[str] | None = None, horizon: int | None = None,
                covariates: pd.DataFrame | None = None) -> pd.DataFrame:
        """Long frame (series, date, forecast, seasonal_naive) for ``ids`` (None: every series)."""
        cols = self.cols
        horizon = int(horizon or cols.horizon)
        if not 1 <= horizon <= cols.horizon:
            raise ValueError(f"horizon must be between 1 and {cols.horizon} (the trained task.horizon), got {horizon}")
        known = set(self.series_ids)
        ids = list(dict.fromkeys(str(i) for i in ids)) if ids is not None else self.series_ids
        if not ids:
            raise ValueError(f"no series ids given: send a '{cols.series}' column")
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ValueError(f"unknown series id(s): {', '.join(unknown[:5])}"
                             f"{' ...' if len(unknown) > 5 else ''} (the model knows {len(known)} series, "
                             f"e.g. {', '.join(self.series_ids[:3])})")
        x_df = self.fill_future(ids, horizon, covariates)
        out = self.forecaster.predict(h=horizon, X_df=x_df if cols.dynamic_features else None, ids=ids)
        sn = self._seasonal_naive(ids, horizon)
        out = out.merge(sn, on=[ID, DS], how="left")
        return pd.DataFrame({
            cols.series: out[ID].astype(str),
            cols.time: out[DS].dt.strftime("%Y-%m-%d" if pd.Timedelta(pd.tseries.frequencies.to_offset(cols.freq))
                                           >= pd.Timedelta(days=1) else "%Y-%m-%dT%H:%M:%S"),
            "forecast": out[MODEL_COLUMN].clip(lower=0.0).astype(float),
            BASELINE_COLUMN: out[BASELINE_COLUMN].astype(float),
        })

    def _seasonal_naive(self, ids: list[str], horizon: int) -> pd.DataFrame:
        return seasonal_naive(self.tails[self.tails[ID].isin(ids)], horizon, self.cols.freq, self.params.season)


def fit(frame: pd.DataFrame, cols: Columns, params: ForecastParams) -> FittedForecaster:
    """Fit the global model on every series of ``frame`` (the user's long format)."""
    means = covariate_means(frame, cols)
    df = model_frame(frame, cols, means)
    categories = {c: list(df[c].cat.categories) for c in cols.statics}
    forecaster = make_forecaster(params, cols)
    forecaster.fit(df, static_features=list(cols.statics))
    last = df.groupby(ID, sort=True).tail(1)[[ID, DS, *cols.numeric]].reset_index(drop=True)
    tails = df.groupby(ID, sort=True).tail(params.season)[[ID, DS, Y]].reset_index(drop=True)
    return FittedForecaster(forecaster, cols, params, means, categories, last, tails)
