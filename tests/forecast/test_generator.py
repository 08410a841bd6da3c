"""The M5-like generator: seeded, prefix-stable (next-day files agree with the history), realistic."""
from __future__ import annotations

import subprocess
import sys

import generate_forecast_data as gen
import pandas as pd

from tests.conftest import REPO_ROOT

H = gen.Hierarchy(stores=2, items=20, start="2025-01-01", seed=11)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = gen.generate(H, 60), gen.generate(H, 60)
    pd.testing.assert_frame_equal(a, b)
    other = gen.generate(gen.Hierarchy(2, 20, "2025-01-01", seed=12), 60)
    assert not a["sales"].equals(other["sales"])


def test_first_days_do_not_depend_on_how_many_days_are_generated() -> None:
    short, long = gen.generate(H, 40), gen.generate(H, 90)
    pd.testing.assert_frame_equal(short, long.iloc[:len(short)].reset_index(drop=True))


def test_long_format_hierarchy_and_columns() -> None:
    frame = gen.generate(H, 30)
    assert list(frame.columns) == gen.COLUMNS
    assert frame["series_id"].nunique() == H.n_series == 40
    assert frame.groupby("series_id").size().eq(30).all()
    assert (frame["series_id"] == frame["item_id"] + "_" + frame["store_id"]).all()
    assert frame.groupby("item_id")["dept_id"].nunique().eq(1).all()
    assert (frame["sales"] >= 0).all() and (frame["price"] > 0).all()
    assert set(frame["promo"].unique()) <= {0, 1}


def test_weekly_seasonality_slow_movers_promos_and_events() -> None:
    frame = gen.generate(gen.Hierarchy(stores=3, items=40, seed=5), 400)
    dow = pd.to_datetime(frame["date"]).dt.day_of_week
    by_day = frame.groupby(dow)["sales"].mean()
    assert by_day[[5, 6]].mean() > 1.2 * by_day[[0, 1, 2, 3]].mean()   # weekend peak
    mean = frame.groupby("series_id")["sales"].mean()
    zeros = frame.groupby("series_id")["sales"].apply(lambda s: (s == 0).mean())
    slow, fast = mean < 0.5, mean > 3
    assert slow.sum() >= 10 and fast.sum() >= 10
    assert zeros[slow].mean() > 0.6 and zeros[fast].mean() < 0.15      # intermittent slow movers
    promo = frame.groupby("promo")["sales"].mean()
    assert promo[1] > 1.3 * promo[0]
    assert frame.loc[frame["date"] == "2025-12-25", "sales"].sum() == 0  # shops closed
    assert set(frame.loc[frame["date"] == "2025-11-27", "event"]) == {"Thanksgiving"}


def test_next_day_cli_writes_the_following_day_consistent_with_the_history(tmp_path) -> None:
    script = str(REPO_ROOT / "01_data" / "generate_forecast_data.py")
    args = ["--stores", "2", "--items", "5", "--start", "2025-01-01", "--seed", "4"]
    subprocess.run([sys.executable, script, "--out", str(tmp_path), "--days", "40", *args], check=True,
                   capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sales_2025-01.csv", "sales_2025-02.csv"]
    for _ in range(2):
        subprocess.run([sys.executable, script, "--out", str(tmp_path), "--next-day", *args], check=True,
                       capture_output=True)
    day1, day2 = (pd.read_csv(tmp_path / f"sales_2025-02-{d}.csv") for d in ("10", "11"))
    assert len(day1) == len(day2) == 10 and set(day1["date"]) == {"2025-02-10"}
    full = gen.generate(gen.Hierarchy(2, 5, "2025-01-01", 4), 42)
    expected = full[full["date"] == "2025-02-11"].reset_index(drop=True)
    pd.testing.assert_frame_equal(day2.fillna({"event": ""}), expected, check_dtype=False)
