"""data_ingestion: hashing, dedup, validation, quarantine, never touching raw files."""
from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, copy_embedded_tabular, load_step_module
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_config import TaskConfig

ingest = load_step_module("01_data/ingest.py")
HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"


def tabular_task() -> TaskConfig:
    from utils.pipeline.config import load_config
    from omegaconf import OmegaConf

    cfg = load_config(["task=tabular"])
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TaskConfig), cfg.task))


def run_ingestion(state_dir: Path, source: Path, experiment_id: str) -> int:
    config = ingest.IngestionConfig(state_dir=str(state_dir), task=tabular_task(),
                                    data=ingest.DataSection(source_dir=str(source)))
    with mlflow.start_run(experiment_id=experiment_id):
        return ingest.go(config)


def record(state_dir: Path) -> list[dict]:
    with open(StatePaths.of(state_dir).model("attrition_model").ingest_record, newline="") as fh:
        return list(csv.DictReader(fh))


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every raw file: ingestion must change neither."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return copy_embedded_tabular(tmp_path / "source")


def test_ingests_all_files_and_dedups_rows(state_dir, source, tracking):
    assert run_ingestion(state_dir, source, tracking) == 0
    final = pd.read_csv(StatePaths.of(state_dir).model("attrition_model").finaldata_csv)
    raw = pd.concat([pd.read_csv(p) for p in sorted(source.glob("*.csv"))])
    assert len(raw) > len(final) == len(raw.drop_duplicates())
    assert [r["status"] for r in record(state_dir)] == ["ingested"] * 3
    assert all(len(r["sha256"]) == 64 and int(r["rows"]) > 0 for r in record(state_dir))


def test_rerun_with_nothing_new_does_no_work(state_dir, source, tracking):
    paths = StatePaths.of(state_dir).model("attrition_model")
    run_ingestion(state_dir, source, tracking)
    before = (paths.ingest_record.read_bytes(), paths.finaldata_csv.stat().st_mtime_ns)
    assert run_ingestion(state_dir, source, tracking) == 0
    assert (paths.ingest_record.read_bytes(), paths.finaldata_csv.stat().st_mtime_ns) == before


def test_renamed_copy_is_recorded_as_duplicate(state_dir, source, tracking):
    run_ingestion(state_dir, source, tracking)
    rows_before = len(pd.read_csv(StatePaths.of(state_dir).model("attrition_model").finaldata_csv))
    shutil.copy(source / "dataset1.csv", source / "export_copy.csv")
    assert run_ingestion(state_dir, source, tracking) == 0
    last = record(state_dir)[-1]
    assert last["file"].endswith("export_copy.csv") and last["status"] == "duplicate"
    assert len(pd.read_csv(StatePaths.of(state_dir).model("attrition_model").finaldata_csv)) == rows_before


@pytest.mark.parametrize("name, content, reason", [
    ("empty.csv", b"", "empty file"),
    ("header_only.csv", HEADER.encode(), "header only"),
    ("wrong_columns.csv", b"a,b,c\n1,2,3\n", "wrong columns"),
    ("latin1.csv", (HEADER + "soci\xe9t\xe9,1,2,3,0\n").encode("latin-1"), "bad encoding"),
    ("binary.csv", bytes(range(256)) * 4, "binary file"),
    ("ragged.csv", (HEADER + "abc,1,2,3,0\nabd,1,2,3,0,9,9\n").encode(), "unparsable rows"),
    ("negative.csv", (HEADER + "abc,-5,2,3,0\n").encode(), "lastmonth_activity"),
    ("bad_label.csv", (HEADER + "abc,1,2,3,7\n").encode(), "exited"),
    ("not_numbers.csv", (HEADER + "abc,lots,2,3,0\n").encode(), "lastmonth_activity"),
])
def test_bad_file_is_quarantined_with_reason_and_rest_goes_on(state_dir, source, tracking, name,
                                                             content, reason):
    (source / name).write_bytes(content)
    raw_before = snapshot(source)
    assert run_ingestion(state_dir, source, tracking) == 0
    paths = StatePaths.of(state_dir).model("attrition_model")
    rows = {Path(r["file"]).name: r for r in record(state_dir)}
    assert rows[name]["status"] == "quarantined"
    assert reason in rows[name]["reason"], rows[name]["reason"]
    assert sum(r["status"] == "ingested" for r in rows.values()) == 3
    copies = list(paths.quarantine_dir.glob(f"*-{name}"))
    assert len(copies) == 1 and copies[0].read_bytes() == content
    assert reason in Path(str(copies[0]) + ".reason.txt").read_text()
    assert snapshot(source) == raw_before, "raw files must never be modified, moved or deleted"


def test_all_files_bad_fails_clearly(state_dir, tmp_path, tracking, caplog):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.csv").write_bytes(b"a,b\n1,2\n")
    assert run_ingestion(state_dir, folder, tracking) != 0
    assert "no usable data" in caplog.text


def test_missing_source_dir_fails_clearly(state_dir, tmp_path, tracking, caplog):
    assert run_ingestion(state_dir, tmp_path / "nope", tracking) != 0
    assert "does not exist" in caplog.text


def test_changed_file_is_rehashed_and_new_rows_added(state_dir, source, tracking):
    run_ingestion(state_dir, source, tracking)
    final = StatePaths.of(state_dir).model("attrition_model").finaldata_csv
    n = len(pd.read_csv(final))
    with open(source / "dataset1.csv", "a") as fh:
        fh.write("zzzz9999,10,200,30,1\n")
    run_ingestion(state_dir, source, tracking)
    assert len(pd.read_csv(final)) == n + 1
    assert "zzzz9999" in set(pd.read_csv(final)["corporation"])
