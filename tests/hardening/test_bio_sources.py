"""A BIO benchmark folder given directly as data.source_dir, and a lone split folder."""
from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.conftest import load_step_module
from utils.data.ingest_record import scan_source
from utils.data.nlu_data import NluExample, write_bio_folder
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_config import TaskConfig

ingest = load_step_module("01_data/ingest.py")


def examples(n: int, prefix: str) -> list[NluExample]:
    return [NluExample(text=f"show {prefix} {i} images", intent="search",
                       tags=("O", "B-thing", "I-thing", "O")) for i in range(n)]


def benchmark(folder: Path) -> Path:
    write_bio_folder({"train": examples(8, "tr"), "dev": examples(3, "dv"), "test": examples(4, "te")},
                     folder)
    return folder


def run_ingestion(state_dir: Path, source: Path, experiment_id: str) -> int:
    config = ingest.IngestionConfig(state_dir=str(state_dir), task=TaskConfig(name="nlu"),
                                    data=ingest.DataSection(source_dir=str(source)))
    with mlflow.start_run(experiment_id=experiment_id):
        return ingest.go(config)


def ingested(state_dir: Path) -> pd.DataFrame:
    return pd.read_json(StatePaths.of(state_dir).model("attrition_model").finaldata_jsonl, lines=True)


def statuses(state_dir: Path) -> list[str]:
    with open(StatePaths.of(state_dir).model("attrition_model").ingest_record, newline="") as fh:
        return [r["status"] for r in csv.DictReader(fh)]


def test_benchmark_folder_itself_is_one_source(tmp_path, state_dir, tracking):
    bench = benchmark(tmp_path / "snips")
    scan = scan_source(bench)
    assert [e.path for e in scan.entries] == [bench] and scan.entries[0].is_dir
    assert run_ingestion(state_dir, bench, tracking) == 0
    assert statuses(state_dir) == ["ingested"]
    frame = ingested(state_dir)
    assert sorted(frame["split"].value_counts().items()) == [("dev", 3), ("test", 4), ("train", 8)]


def test_lone_split_folder_is_a_source(tmp_path, state_dir, tracking):
    bench = benchmark(tmp_path / "snips")
    assert run_ingestion(state_dir, bench / "train", tracking) == 0
    frame = ingested(state_dir)
    assert len(frame) == 8 and set(frame["split"]) == {"train"}


def test_split_folders_inside_a_source_folder_are_sources(tmp_path, state_dir, tracking):
    src = tmp_path / "incoming"
    bench = benchmark(tmp_path / "snips")
    src.mkdir()
    (bench / "dev").rename(src / "batch1")      # a split folder under a non-split name
    assert run_ingestion(state_dir, src, tracking) == 0
    frame = ingested(state_dir)
    assert len(frame) == 3 and set(frame["split"].fillna("")) == {""}


def test_benchmark_inside_a_source_folder_still_works(tmp_path, state_dir, tracking):
    src = tmp_path / "incoming"
    benchmark(src / "snips")
    assert run_ingestion(state_dir, src, tracking) == 0
    assert statuses(state_dir) == ["ingested"] and len(ingested(state_dir)) == 15


@pytest.mark.timeout(60)
def test_links_inside_a_bio_folder_are_not_followed(tmp_path, state_dir, tracking):
    bench = benchmark(tmp_path / "snips")
    label = bench / "test" / "label"
    label.unlink()
    label.symlink_to("/etc/passwd")
    assert run_ingestion(state_dir, bench, tracking) == 0   # train and dev still read
    assert set(ingested(state_dir)["split"]) == {"train", "dev"}
