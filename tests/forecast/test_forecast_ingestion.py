"""data_ingestion for task=forecast: good history and daily files, each date rule, late corrections."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import generate_forecast_data as gen
import mlflow
import pandas as pd
import pytest

from tests.conftest import load_step_module
from tests.forecast.conftest import forecast_task
from utils.pipeline.paths import StatePaths

ingest = load_step_module("01_data/ingest.py")
H = gen.Hierarchy(stores=2, items=3, start="2025-01-01", seed=9)


def run_ingestion(state_dir: Path, source: Path, experiment_id: str, **task_overrides) -> int:
    config = ingest.IngestionConfig(state_dir=str(state_dir), task=forecast_task(**task_overrides),
                                    data=ingest.DataSection(source_dir=str(source)))
    with mlflow.start_run(experiment_id=experiment_id):
        return ingest.go(config)


def statuses(state_dir: Path) -> dict[str, tuple[str, str]]:
    with open(StatePaths.of(state_dir).model("sales_forecast").ingest_record, newline="") as fh:
        return {Path(r["file"]).name: (r["status"], r["reason"]) for r in csv.DictReader(fh)}


def dataset(state_dir: Path) -> pd.DataFrame:
    return pd.read_csv(StatePaths.of(state_dir).model("sales_forecast").finaldata_csv)


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """40 days of history in monthly files, plus the next 5 days generated (not written)."""
    frame = gen.generate(H, 45)
    source = tmp_path / "source"
    gen.write_monthly(frame[frame["date"] < "2025-02-10"], source)
    return source, frame


def day(frame: pd.DataFrame, date: str) -> pd.DataFrame:
    return frame[frame["date"] == date].copy()


def test_history_then_daily_files_append(state_dir, history, tracking) -> None:
    source, frame = history
    assert run_ingestion(state_dir, source, tracking) == 0
    assert len(dataset(state_dir)) == 40 * H.n_series
    # the daily file sorts before the monthly one by name; files are checked oldest first anyway
    day(frame, "2025-02-10").to_csv(source / "sales_2025-02-10.csv", index=False)
    day(frame, "2025-02-11").to_csv(source / "a_late_name.csv", index=False)
    assert run_ingestion(state_dir, source, tracking) == 0
    final = dataset(state_dir)
    assert len(final) == 42 * H.n_series and final["date"].max() == "2025-02-11"
    assert not final.duplicated(["series_id", "date"]).any()
    assert {s for s, _ in statuses(state_dir).values()} == {"ingested"}


@pytest.mark.parametrize("breakage, reason", [
    (lambda d: pd.concat([d, d.head(1)]), "repeat a (series, date)"),
    (lambda d: d.assign(date="2099-01-01"), "after today + task.horizon"),
    (lambda d: d.assign(date=["2025-02-10"] * (len(d) - 1) + ["10/02/2025x"]), "unparsable date"),
    (lambda d: d.assign(sales=-1), "negative value"),
    (lambda d: d.assign(sales="many"), "non-numeric"),
    (lambda d: d.drop(columns=["sales"]), "missing column(s) ['sales']"),
    (lambda d: d.assign(date="2025-02-12"), "gap: series"),           # 2025-02-10 and -11 missing
])
def test_bad_daily_file_is_quarantined_with_its_reason(state_dir, history, tracking, breakage, reason) -> None:
    source, frame = history
    assert run_ingestion(state_dir, source, tracking) == 0
    breakage(day(frame, "2025-02-10")).to_csv(source / "sales_2025-02-10.csv", index=False)
    before = (source / "sales_2025-02-10.csv").read_bytes()
    assert run_ingestion(state_dir, source, tracking) == 0
    status, why = statuses(state_dir)["sales_2025-02-10.csv"]
    assert status == "quarantined" and reason in why
    assert len(dataset(state_dir)) == 40 * H.n_series
    assert (source / "sales_2025-02-10.csv").read_bytes() == before     # raw file untouched
    notes = list(StatePaths.of(state_dir).model("sales_forecast").quarantine_dir.glob("*sales_2025-02-10.csv.reason.txt"))
    assert len(notes) == 1 and reason in notes[0].read_text()


def test_gap_inside_one_file_unless_gaps_are_allowed(state_dir, history, tracking, tmp_path) -> None:
    source, frame = history
    two = pd.concat([day(frame, "2025-02-10"), day(frame, "2025-02-12")])
    two.to_csv(source / "sales_2025-02-1x.csv", index=False)
    assert run_ingestion(state_dir, source, tracking) == 0
    assert "gap in series" in statuses(state_dir)["sales_2025-02-1x.csv"][1]
    other = tmp_path / "other_state"
    other.mkdir()
    shutil.copy(StatePaths.of(state_dir).model("sales_forecast").mlflow_db, other / "mlflow.db")
    assert run_ingestion(other, source, tracking, allow_gaps="true") == 0
    assert statuses(other)["sales_2025-02-1x.csv"][0] == "ingested"


def test_late_correction_replaces_the_value_and_is_counted(state_dir, history, tracking) -> None:
    source, frame = history
    assert run_ingestion(state_dir, source, tracking) == 0
    fixed = day(frame, "2025-02-05").head(2).assign(sales=[77, 78])
    same = day(frame, "2025-02-06").head(1)                  # re-sent unchanged: a plain duplicate
    pd.concat([fixed, same]).to_csv(source / "corrections_2025-02-05.csv", index=False)
    assert run_ingestion(state_dir, source, tracking) == 0
    final = dataset(state_dir)
    assert len(final) == 40 * H.n_series
    got = final.set_index(["series_id", "date"]).loc[list(zip(fixed["series_id"], fixed["date"])), "sales"]
    assert got.tolist() == [77, 78]
    run = mlflow.search_runs(experiment_ids=[tracking], order_by=["attributes.start_time DESC"]).iloc[0]
    assert run["metrics.rows_corrected"] == 2
    summary = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run["run_id"], artifact_path="ingest_summary.json")).read_text())
    assert summary["rows_corrected"] == 2


def test_single_series_without_a_series_column(state_dir, tmp_path, tracking) -> None:
    source = tmp_path / "bikes"
    source.mkdir()
    dates = pd.date_range("2024-01-01", periods=30, freq="D").strftime("%Y-%m-%d")
    pd.DataFrame({"dteday": dates, "cnt": range(30), "temp": 0.5}).to_csv(source / "day.csv", index=False)
    assert run_ingestion(state_dir, source, tracking, series_column="null", time_column="dteday",
                         target_column="cnt", group_column="null") == 0
    final = dataset(state_dir)
    assert len(final) == 30 and set(final["series_id"]) == {"all"}
