"""A simulated week of the forecasting model's life: one new day a day, one real cron tick a day.

Day 0 `python main.py task=forecast` trains and deploys; then each day the generator writes the
next day's file (`--next-day`) and `fullprocess.py` runs with a simulated clock (MLOPS_NOW,
utils/pipeline/clock.py, one day later each time): it ingests the day, checks it for drift
(none: the days are what the generator makes), monitors production on the newest days, and on
day 7 `schedule.retrain_every: 7d` (the forecast task's default) retrains. The real tick, the
real chain, real MLflow: several minutes on two shared cores, so slow.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PYTHON, REPO_ROOT, run_main
from tests.forecast.test_forecast_chain import GEN_ARGS, GENERATOR, TINY
from utils.models.catalog import read_monitoring
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.tick.tick_state import read_ticks

DAY = 86400.0
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]   # ~10 min idle, ~25 min on busy cores


def tick(state: Path, now: float) -> dict:
    """One real tick (a subprocess, cwd outside the repo, as cron runs it) at the simulated ``now``."""
    proc = subprocess.run([PYTHON, str(REPO_ROOT / "fullprocess.py"), f"paths.state_dir={state}"],
                          cwd=state.parent, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "MLOPS_NOW": f"{now:.0f}"})
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"tick failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return lines[-1]


def test_a_week_of_daily_ticks_retrains_once_and_monitors_seven_times(tmp_path: Path) -> None:
    source, state, test = tmp_path / "source", tmp_path / "state", tmp_path / "test.csv"
    state.mkdir()
    subprocess.run([sys.executable, GENERATOR, "--out", str(source), "--days", "100", "--test-days", "7",
                    "--test-path", str(test), *GEN_ARGS], check=True, capture_output=True)
    run_main("task=forecast", f"data.source_dir={source}", f"data.test_path={test}", *TINY, state_dir=state,
             timeout=900)
    paths = StatePaths.of(state).model("sales_forecast")
    store = ModelStore(paths.models_dir)
    assert store.production_version() == "sales_forecast-v1"
    t0 = time.time()

    days = []
    for day in range(1, 8):
        subprocess.run([sys.executable, GENERATOR, "--out", str(source), "--next-day", *GEN_ARGS], check=True,
                       capture_output=True)
        days.append(tick(state, t0 + day * DAY + 3600))

    assert [d["new_files"] for d in days] == [[f"sales_2025-04-{11 + i:02d}.csv"] for i in range(7)]
    assert pd.read_csv(paths.finaldata_csv)["date"].max() == "2025-04-17"
    assert all(d["rows_new"] == 8 for d in days)                     # 8 series, one new day each
    drift = [d["drift"]["signals"] for d in days]
    assert drift == [{"performance": False, "distribution": False}] * 7, drift
    assert [d["decision"] for d in days] == ["no-retrain"] * 6 + ["retrain"]
    assert "schedule.retrain_every=7d elapsed" in days[-1]["reason"]
    assert days[-1]["trained_version"] == "sales_forecast-v2"
    assert store.latest_version("sales_forecast") == "sales_forecast-v2"

    history = read_monitoring(StatePaths.of(state), "sales_forecast")
    assert len(history) == 7 and {h["source"] for h in history} == {"monitor"}
    assert [round(h["epoch"] - t0) for h in history] == [round(d * DAY + 3600) for d in range(1, 8)]
    for h in history:                                               # the four metrics, model and baseline
        assert set(h["metrics"]) == set(h["baseline_metrics"]) == {"mae", "rmse", "wmape", "tweedie_deviance"}
    assert history[-1]["test_data"].endswith("(2025-04-10 .. 2025-04-17)")
    assert [t["decision"] for t in read_ticks(state, limit=100) if t.get("model") == "sales_forecast"] == \
        [d["decision"] for d in days]
