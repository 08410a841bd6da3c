"""Seeded generator of M5-like daily unit sales (stores x items) in long format.

Columns: ``series_id, date, sales, store_id, item_id, dept_id, price, promo, event``.
Demand is Poisson around a mean built from: store size x item base rate, a weekly profile per
department, yearly seasonality, a per-series trend, price elasticity (price steps and promo
discounts), a promo uplift, calendar events (shops closed on Christmas), gamma noise. About a
third of the items are slow movers (mean well below one a day): intermittent, zero-heavy.

Every random component draws from its own stream in day-major order, so the first N days are
the same whatever the number of days generated: ``--next-day`` regenerates up to the day after
the newest file in ``--out`` and writes only that day, consistent with the history.

    python 01_data/generate_forecast_data.py --out 01_data/sourcedata/forecast          # history, monthly files
    python 01_data/generate_forecast_data.py --out 01_data/sourcedata/forecast --next-day
    python 01_data/generate_forecast_data.py --out /tmp/big --stores 10 --items 1000 --days 730
Pass the same --stores/--items/--start/--seed to --next-day as to the history.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["series_id", "date", "sales", "store_id", "item_id", "dept_id", "price", "promo", "event"]
DEPTS = ("FOODS", "HOUSEHOLD", "HOBBIES")
DEPT_CODE = {"FOODS": "FO", "HOUSEHOLD": "HH", "HOBBIES": "HB"}
# weekly profile (Mon..Sun) and month of the yearly peak, per department
WEEKLY = {"FOODS": (0.92, 0.88, 0.88, 0.92, 1.05, 1.25, 1.20),
          "HOUSEHOLD": (0.95, 0.92, 0.92, 0.95, 1.02, 1.18, 1.10),
          "HOBBIES": (0.85, 0.82, 0.85, 0.90, 1.05, 1.35, 1.30)}
YEARLY_PEAK_DAY = {"FOODS": 200, "HOUSEHOLD": 120, "HOBBIES": 350}
# (month, day) -> (event name, demand multiplier); Thanksgiving is computed per year
FIXED_EVENTS = {(1, 1): ("NewYear", 0.6), (2, 14): ("ValentinesDay", 1.15), (7, 4): ("IndependenceDay", 1.3),
                (10, 31): ("Halloween", 1.2), (12, 24): ("ChristmasEve", 1.4), (12, 25): ("Christmas", 0.0)}
SLOW_SHARE = 0.35
FILE_RE = re.compile(r"^sales_(\d{4}-\d{2})(-\d{2})?\.csv$")


@dataclass(frozen=True)
class Hierarchy:
    stores: int = 4
    items: int = 50
    start: str = "2025-01-01"
    seed: int = 7

    @property
    def n_series(self) -> int:
        return self.stores * self.items


def event_calendar(dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """(event name or '', demand multiplier) per date."""
    names = np.full(len(dates), "", dtype=object)
    effect = np.ones(len(dates))
    for i, d in enumerate(dates):
        hit = FIXED_EVENTS.get((d.month, d.day))
        if d.month == 11 and d.weekday() == 3 and 22 <= d.day <= 28:
            hit = ("Thanksgiving", 0.7)
        if hit:
            names[i], effect[i] = hit
    return names, effect


def _stream(seed: int, component: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, component]))


def generate(h: Hierarchy, days: int) -> pd.DataFrame:
    """``days`` days of every series from ``h.start``, rows ordered by date then series."""
    n = h.n_series
    dates = pd.date_range(h.start, periods=days, freq="D")
    static = _stream(h.seed, 0)
    store_idx = np.repeat(np.arange(h.stores), h.items)
    item_idx = np.tile(np.arange(h.items), h.stores)
    dept_of_item = static.integers(0, len(DEPTS), h.items)
    slow_item = static.random(h.items) < SLOW_SHARE
    item_rate = np.where(slow_item, static.uniform(0.05, 0.6, h.items), static.lognormal(1.6, 0.6, h.items))
    item_price = np.round(static.lognormal(1.2, 0.5, h.items), 2) + 0.49
    store_size = static.lognormal(0.0, 0.3, h.stores)
    trend = static.normal(0.0, 0.25, n)            # log change per year
    amplitude = static.uniform(0.05, 0.3, n)
    elasticity = static.uniform(1.0, 2.0, n)

    dept = np.array(DEPTS)[dept_of_item[item_idx]]
    t = np.arange(days)[:, None]
    dow = dates.day_of_week.to_numpy()
    weekly = np.stack([np.array(WEEKLY[d])[dow] for d in dept], axis=1)
    peak = np.array([YEARLY_PEAK_DAY[d] for d in dept])
    doy = dates.day_of_year.to_numpy()[:, None]
    yearly = 1.0 + amplitude * np.cos(2 * np.pi * (doy - peak) / 365.25)
    growth = np.exp(trend * t / 365.25)

    # prices: occasional permanent steps (+-10 %) and promo blocks (20 % off, ~a week long)
    steps = _stream(h.seed, 1).random((days, n))
    step_size = np.where(steps < 1 / 120, _stream(h.seed, 2).choice([0.9, 1.1], (days, n)), 1.0)
    regular = item_price[item_idx] * np.cumprod(step_size, axis=0)
    promo_draw = _stream(h.seed, 3).random((days, n))
    promo = np.zeros((days, n), dtype=np.int8)
    state = np.zeros(n, dtype=bool)
    for d in range(days):  # a two-state Markov chain: start ~1 in 40 days, stop ~1 in 7
        state = np.where(state, promo_draw[d] > 1 / 7, promo_draw[d] < 1 / 40)
        promo[d] = state
    price = np.round(regular * np.where(promo == 1, 0.8, 1.0), 2)
    price_effect = (price / item_price[item_idx]) ** (-elasticity)
    promo_effect = np.where(promo == 1, 1.3, 1.0)

    event_name, event_effect = event_calendar(dates)
    noise = _stream(h.seed, 4).gamma(8.0, 1 / 8.0, (days, n))
    mean = (item_rate[item_idx] * store_size[store_idx] * weekly * yearly * growth * price_effect
            * promo_effect * event_effect[:, None] * noise)
    sales = _stream(h.seed, 5).poisson(mean)

    store_id = np.array([f"S{i + 1:02d}" for i in range(h.stores)])[store_idx]
    item_id = np.array([f"{DEPT_CODE[DEPTS[dept_of_item[i]]]}{i + 1:03d}" for i in range(h.items)])[item_idx]
    series_id = np.char.add(np.char.add(item_id.astype(str), "_"), store_id.astype(str))
    return pd.DataFrame({
        "series_id": np.tile(series_id, days),
        "date": np.repeat(dates.strftime("%Y-%m-%d").to_numpy(), n),
        "sales": sales.ravel(),
        "store_id": np.tile(store_id, days), "item_id": np.tile(item_id, days),
        "dept_id": np.tile(dept, days),
        "price": price.ravel(), "promo": promo.ravel(),
        "event": np.repeat(event_name, n),
    })[COLUMNS]


def write_monthly(frame: pd.DataFrame, out: Path) -> list[Path]:
    """One ``sales_YYYY-MM.csv`` per month (the history as a warehouse would export it)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for month, part in frame.groupby(frame["date"].str[:7], sort=True):
        path = out / f"sales_{month}.csv"
        part.to_csv(path, index=False)
        written.append(path)
    return written


def newest_date(out: Path) -> pd.Timestamp | None:
    """The last date in the sales files of ``out`` (read from the newest file)."""
    files = sorted((p for p in out.glob("sales_*.csv") if FILE_RE.match(p.name)),
                   key=lambda p: p.name.removesuffix(".csv"))
    if not files:
        return None
    return max(pd.to_datetime(pd.read_csv(f, usecols=["date"])["date"]).max() for f in files[-2:])


def write_next_day(h: Hierarchy, out: Path) -> Path:
    """``sales_YYYY-MM-DD.csv`` with the day after the newest one in ``out``."""
    last = newest_date(out)
    if last is None:
        raise SystemExit(f"error: no sales_*.csv in {out}: write the history first (without --next-day)")
    days = (last - pd.Timestamp(h.start)).days + 2
    day = generate(h, days)
    day = day[day["date"] == (last + pd.Timedelta(days=1)).strftime("%Y-%m-%d")]
    path = out / f"sales_{day['date'].iloc[0]}.csv"
    day.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the sales CSV files")
    parser.add_argument("--stores", type=int, default=Hierarchy.stores)
    parser.add_argument("--items", type=int, default=Hierarchy.items)
    parser.add_argument("--start", default=Hierarchy.start, help="first date (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=300, help="days of history")
    parser.add_argument("--seed", type=int, default=Hierarchy.seed)
    parser.add_argument("--next-day", action="store_true",
                        help="write only the day after the newest file in --out")
    parser.add_argument("--test-days", type=int, default=0,
                        help="also write the days after the history to --test-path (held-out actuals)")
    parser.add_argument("--test-path", type=Path, default=None)
    args = parser.parse_args()
    h = Hierarchy(args.stores, args.items, args.start, args.seed)
    if args.next_day:
        print(f"wrote {write_next_day(h, args.out)}")
        return
    frame = generate(h, args.days + args.test_days)
    cut = (pd.Timestamp(h.start) + pd.Timedelta(days=args.days)).strftime("%Y-%m-%d")
    for path in write_monthly(frame[frame["date"] < cut], args.out):
        print(f"wrote {path}")
    if args.test_days and args.test_path:
        args.test_path.parent.mkdir(parents=True, exist_ok=True)
        frame[frame["date"] >= cut].to_csv(args.test_path, index=False)
        print(f"wrote {args.test_path}")


if __name__ == "__main__":
    main()
