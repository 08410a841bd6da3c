"""`python main.py task=forecast` end to end on tiny generated data, then one daily arrival."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, load_step_module, run_main
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths

GENERATOR = str(REPO_ROOT / "01_data" / "generate_forecast_data.py")
GEN_ARGS = ["--stores", "2", "--items", "4", "--start", "2025-01-01", "--seed", "21"]
TINY = ["task.horizon=7", "scoring.backtest_windows=2", "training.n_estimators=30", "training.num_leaves=15",
        "training.min_child_samples=5", "training.lags=[1,7,14]", "training.rolling_windows=[7]",
        "training.seasonal_windows=[2]", "diagnostics.latency_calls=2"]


@pytest.fixture(scope="module")
def forecast_chain(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("forecast_chain")
    source, state, test = root / "source", root / "state", root / "test.csv"
    state.mkdir()
    subprocess.run([sys.executable, GENERATOR, "--out", str(source), "--days", "100", "--test-days", "7",
                    "--test-path", str(test), *GEN_ARGS], check=True, capture_output=True)
    pd.read_csv(source / "sales_2025-04.csv").assign(date="2099-04-01").head(3).to_csv(
        source / "future_export.csv", index=False)                      # future dates: quarantined
    proc = run_main("task=forecast", f"data.source_dir={source}", f"data.test_path={test}", *TINY,
                    state_dir=state, timeout=900)
    (root / "stdout.txt").write_text(proc.stdout + proc.stderr)
    return {"root": root, "source": source, "state": state, "test": test}


def test_chain_deploys_a_model_scored_beside_seasonal_naive(forecast_chain) -> None:
    store = ModelStore(StatePaths.of(forecast_chain["state"]).model("sales_forecast").models_dir)
    assert store.production_version() == "sales_forecast-v1"
    scores = store.read_scores("sales_forecast-v1")
    assert scores["primary_metric"] == "wmape"
    metrics = scores["metrics"]
    assert {"mae", "rmse", "wmape", "tweedie_deviance", "mase", "baseline_wmape", "baseline_mase",
            "wmape_vs_baseline", "holdout_wmape"} <= set(metrics)
    assert store.read_score("sales_forecast-v1") == metrics["wmape"]
    report = json.loads((store.version_dir("sales_forecast-v1") / "forecast_report.json").read_text())
    assert len(report["backtest"]["cutoffs"]) == 2
    assert {r["store_id"] for r in report["per_group"]} == {"S01", "S02"}
    assert report["holdout"]["n_rows"] == 8 * 7


def test_future_file_is_quarantined(forecast_chain) -> None:
    notes = list(StatePaths.of(forecast_chain["state"]).model("sales_forecast").quarantine_dir.glob("*future_export.csv.reason.txt"))
    assert len(notes) == 1 and "after today + task.horizon" in notes[0].read_text()


def test_report_has_the_forecast_plot_and_tables(forecast_chain) -> None:
    reports = StatePaths.of(forecast_chain["state"]).model("sales_forecast").reports_dir
    html = (reports / "report.html").read_text()
    assert (reports / "forecast.png").stat().st_size > 10_000
    assert "Rolling-origin backtest: 2 windows of 7 days" in html and "Backtest error per store_id" in html
    diagnostics = json.loads((reports / "diagnostics.json").read_text())
    assert diagnostics["predictions"]["n_examples"] == 8 * 7 and diagnostics["timing"]["latency"]["n_calls"] == 2


def test_next_day_arrival_retrains_and_the_gate_prefers_lower_wmape(forecast_chain) -> None:
    source, state = forecast_chain["source"], forecast_chain["state"]
    subprocess.run([sys.executable, GENERATOR, "--out", str(source), "--next-day", *GEN_ARGS], check=True,
                   capture_output=True)
    assert (source / "sales_2025-04-11.csv").is_file()
    run_main("task=forecast", f"data.source_dir={source}", f"data.test_path={forecast_chain['test']}", *TINY,
             "main.steps='data_ingestion,model_training,model_scoring,model_deployment'", state_dir=state,
             timeout=900)
    paths = StatePaths.of(state).model("sales_forecast")
    assert pd.read_csv(paths.finaldata_csv)["date"].max() == "2025-04-11"
    store = ModelStore(paths.models_dir)
    assert store.latest_version("sales_forecast") == "sales_forecast-v2"
    last = store.history()[-1]
    assert last["version"] == "sales_forecast-v2" and "(lower is better)" in last["reason"]
    better = store.read_score("sales_forecast-v2") <= store.read_score("sales_forecast-v1")
    assert (last["event"] == "deploy") is better


def test_gate_direction() -> None:
    deployment = load_step_module("04_deployment/deployment.py")
    assert deployment.decide(0.40, 0.45, 0.0, False, direction="lower")[0] is True
    assert deployment.decide(0.50, 0.45, 0.0, False, direction="lower")[0] is False
    assert deployment.decide(0.46, 0.45, 0.02, False, direction="lower")[0] is True
    assert deployment.decide(0.50, 0.45, 0.0, False)[0] is True        # higher is better (default)
