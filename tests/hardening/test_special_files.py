"""Hostile names in the source folder: FIFOs, devices, dangling links, loops, links out.

Each is skipped by lstat with its reason, recorded once, and the good files still ingest; no
read blocks (hard pytest timeouts: a regression hangs rather than fails, and is killed).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import mlflow
import pytest

from tests.conftest import load_step_module
from utils.data.hashing import ReadTimeoutError, SpecialFileError, open_regular, sha256_file
from utils.data.ingest_record import SkippedEntry, scan_source
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_config import TaskConfig

ingest = load_step_module("01_data/ingest.py")
HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"


def tabular_task() -> TaskConfig:
    return TaskConfig(name="tabular", model_name="attrition_model", primary_metric="f1",
                      id_column="corporation", label_column="exited", label_values=[0, 1],
                      features={c: {"min": 0, "max": None} for c in
                                ("lastmonth_activity", "lastyear_activity", "number_of_employees")})


def good_csv(path: Path, rows: int = 20, offset: int = 0) -> Path:
    lines = [f"c{offset + i},{i},{i * 2},{i + 1},{i % 2}\n" for i in range(rows)]
    path.write_text(HEADER + "".join(lines))
    return path


def hostile_source(tmp_path: Path) -> Path:
    src = tmp_path / "source"
    src.mkdir()
    good_csv(src / "a.csv")
    good_csv(src / "b.csv", offset=100)
    os.mkfifo(src / "pipe.csv")
    os.symlink("/dev/zero", src / "zero.csv")
    os.symlink(src / "gone.csv", src / "dangling.csv")
    os.symlink(src / "loop2.csv", src / "loop1.csv")
    os.symlink(src / "loop1.csv", src / "loop2.csv")
    outside = good_csv(tmp_path / "outside.csv", offset=500)
    os.symlink(outside, src / "link_to_regular.csv")
    os.symlink("/etc/passwd", src / "system.csv")
    return src


def run_ingestion(state_dir: Path, source: Path, experiment_id: str, **data) -> int:
    config = ingest.IngestionConfig(state_dir=str(state_dir), task=tabular_task(),
                                    data=ingest.DataSection(source_dir=str(source), **data))
    with mlflow.start_run(experiment_id=experiment_id):
        return ingest.go(config)


def record(state_dir: Path) -> list[dict]:
    with open(StatePaths.of(state_dir).model("attrition_model").ingest_record, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.timeout(30)
def test_open_regular_refuses_fifo_and_devices_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SpecialFileError, match="FIFO"):
        open_regular(tmp_path / "fifo")           # O_NONBLOCK: no writer needed to return
    with pytest.raises(SpecialFileError, match="character device"):
        sha256_file("/dev/zero")                   # would otherwise read forever
    os.symlink(good_csv(tmp_path / "x.csv"), tmp_path / "link")
    with pytest.raises(SpecialFileError, match="link"):
        open_regular(tmp_path / "link", follow_symlinks=False)
    os.close(open_regular(tmp_path / "link", follow_symlinks=True))


@pytest.mark.timeout(30)
def test_reads_stop_at_the_time_bound(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 << 20))
    with pytest.raises(ReadTimeoutError, match="not read within"):
        sha256_file(big, read_timeout_s=1e-9)


@pytest.mark.timeout(30)
def test_scan_is_lstat_based_with_reasons(tmp_path):
    src = hostile_source(tmp_path)
    scan = scan_source(src)
    assert [e.path.name for e in scan.entries] == ["a.csv", "b.csv"]
    reasons = {s.path.name: s.reason for s in scan.skipped}
    assert reasons["pipe.csv"] == "FIFO (named pipe)"
    assert reasons["dangling.csv"].startswith("dangling symbolic link")
    assert reasons["loop1.csv"] == reasons["loop2.csv"] == "symbolic link loop"
    assert reasons["zero.csv"].startswith("symbolic link, not followed")
    assert reasons["link_to_regular.csv"].startswith("symbolic link, not followed")

    followed = scan_source(src, follow_symlinks=True)
    names = [e.path.name for e in followed.entries]
    assert names == ["a.csv", "b.csv", "link_to_regular.csv", "system.csv"]
    reasons = {s.path.name: s.reason for s in followed.skipped}
    assert reasons["zero.csv"] == ("symbolic link to a character device (only links to regular "
                                   "files are followed)")
    assert all(isinstance(s, SkippedEntry) for s in followed.skipped)


@pytest.mark.timeout(120)
def test_ingestion_skips_special_files_records_them_once_and_ingests_the_rest(tmp_path, state_dir, tracking):
    src = hostile_source(tmp_path)
    assert run_ingestion(state_dir, src, tracking) == 0
    rows = record(state_dir)
    by_file = {Path(r["file"]).name: r for r in rows}
    assert {n for n, r in by_file.items() if r["status"] == "ingested"} == {"a.csv", "b.csv"}
    skipped = {n: r["reason"] for n, r in by_file.items() if r["status"] == "skipped"}
    assert set(skipped) == {"pipe.csv", "zero.csv", "dangling.csv", "loop1.csv", "loop2.csv",
                            "link_to_regular.csv", "system.csv"}
    assert len(rows) == 9
    paths = StatePaths.of(state_dir).model("attrition_model")
    assert len(paths.finaldata_csv.read_text().splitlines()) == 41
    # the second run records nothing new: each skipped name is recorded once
    assert run_ingestion(state_dir, src, tracking) == 0
    assert len(record(state_dir)) == 9
    # nothing from outside the source folder was copied anywhere
    assert not paths.quarantine_dir.exists() or "root:" not in "".join(
        p.read_text(errors="replace") for p in paths.quarantine_dir.rglob("*") if p.is_file())


@pytest.mark.timeout(120)
def test_follow_symlinks_reads_only_links_to_regular_files(tmp_path, state_dir, tracking):
    src = hostile_source(tmp_path)
    assert run_ingestion(state_dir, src, tracking, follow_symlinks=True) == 0
    by_file = {Path(r["file"]).name: r for r in record(state_dir)}
    assert by_file["link_to_regular.csv"]["status"] == "ingested"
    assert by_file["zero.csv"]["status"] == "skipped"
    # /etc/passwd is read (the user asked for links) but is no CSV of the schema: quarantined,
    # and the quarantine holds the link itself, never the system file's contents
    assert by_file["system.csv"]["status"] == "quarantined"
    q = next(p for p in StatePaths.of(state_dir).model("attrition_model").quarantine_dir.iterdir() if p.name.endswith("system.csv"))
    assert q.is_symlink() and os.readlink(q) == "/etc/passwd"


@pytest.mark.timeout(120)
def test_unreadable_in_time_is_recorded_and_retried(tmp_path, state_dir, tracking):
    src = tmp_path / "source"
    src.mkdir()
    good_csv(src / "a.csv", rows=60000)   # > 1 MiB: the deadline is checked after the first chunk
    assert run_ingestion(state_dir, src, tracking, read_timeout_s=1e-9) == 3   # nothing usable yet
    assert [r["status"] for r in record(state_dir)] == ["unreadable"]
    assert run_ingestion(state_dir, src, tracking) == 0                          # retried
    assert [r["status"] for r in record(state_dir)] == ["unreadable", "ingested"]


@pytest.mark.timeout(120)
def test_tick_source_changes_ignore_special_files(tmp_path):
    import importlib

    fullprocess = importlib.import_module("fullprocess")
    src = hostile_source(tmp_path)
    changes = fullprocess.source_changes(src, tmp_path / "none.csv")
    assert sorted(e.path.name for e in changes.new_content) == ["a.csv", "b.csv"]
