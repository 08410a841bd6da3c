"""Step `data_ingestion`: raw files in `data.source_dir` -> one deduplicated dataset.

Top to bottom: find files that changed since the last run (path, size, mtime), hash them,
skip content already seen (any name), validate the rest (pandera for CSV; BIO rules for NLU),
copy a bad file to the quarantine folder with its reason and go on, then append the accepted
rows to the ingested dataset with duplicates removed. Raw files are only ever read.
Work is proportional to new files: unchanged files are not opened.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import mlflow
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.data.hashing import open_regular, regular_files
from utils.data.ingest_record import (
    IngestRecord,
    RecordRow,
    SourceEntry,
    now,
    scan_source,
)
from utils.pipeline.paths import StatePaths, resolve_path
from utils.pipeline.step_config import TaskConfig
from utils.pipeline.step_runner import run_step
from utils.data.tabular_data import TabularDataError, read_tabular_csv
from utils.pipeline.tracking import log_json_artifact

from ingest_config import DataSection, IngestionConfig  # 01_data/  # noqa: E402,F401

log = logging.getLogger("data_ingestion")


class BadFile(ValueError):
    """A raw file that is quarantined; the message is the reason."""


def read_unit(entry: SourceEntry, task: TaskConfig) -> pd.DataFrame:
    """Parse and validate one raw file (or BIO folder) into rows of the ingested dataset."""
    if task.name == "tabular":
        if entry.is_dir:
            raise BadFile("a folder, not a CSV file (tabular sources are CSV files)")
        try:
            return read_tabular_csv(entry.path, task)
        except TabularDataError as exc:
            raise BadFile(str(exc)) from exc
    from utils.data.nlu_data import NluDataError, is_bio_folder, is_bio_split, read_bio_source, read_jsonl

    try:
        if entry.is_dir and (is_bio_folder(entry.path) or is_bio_split(entry.path)):
            examples = read_bio_source(entry.path)
        elif not entry.is_dir and entry.path.suffix.lower() in {".jsonl", ".json"}:
            examples = read_jsonl(entry.path)
        else:
            raise BadFile("unsupported source: NLU sources are .jsonl files, BIO folders "
                          "(train/ dev/ test/ with seq.in, seq.out, label) or one BIO split "
                          "folder (seq.in, seq.out, label)")
    except NluDataError as exc:
        raise BadFile(str(exc)) from exc
    if not examples:
        raise BadFile("no examples")
    return pd.DataFrame({"text": [e.text for e in examples],
                         "intent": [e.intent for e in examples],
                         "tags": [" ".join(e.tags) for e in examples],
                         "split": [e.split or "" for e in examples]})


def _copy_regular(src: Path, dst: Path, follow_symlinks: bool) -> None:
    """Copy a regular file's bytes through a checked descriptor (never a FIFO or a device)."""
    with os.fdopen(open_regular(src, follow_symlinks), "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    shutil.copystat(src, dst, follow_symlinks=follow_symlinks)


def quarantine(entry: SourceEntry, sha256: str, reason: str, paths: StatePaths) -> Path:
    """Copy (never move) the bad file next to a note with the reason.

    Links are never followed here: a followed link is copied as the link itself, and only the
    regular files of a folder are copied, so nothing outside the source folder lands here.
    """
    paths.quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = paths.quarantine_dir / f"{sha256[:12]}-{entry.path.name}"
    if entry.is_dir:
        for src in regular_files(entry.path):
            dst = target / src.relative_to(entry.path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            _copy_regular(src, dst, follow_symlinks=False)
    elif entry.path.is_symlink():
        if target.is_symlink() or target.exists():
            target.unlink()
        os.symlink(os.readlink(entry.path), target)
    else:
        _copy_regular(entry.path, target, follow_symlinks=False)
    target.with_name(target.name + ".reason.txt").write_text(
        f"file: {entry.path}\nsha256: {sha256}\ntime: {now()}\nreason: {reason}\n")
    return target


def dataset_path(paths: StatePaths, task: TaskConfig) -> Path:
    return paths.finaldata_csv if task.name == "tabular" else paths.finaldata_jsonl


def read_dataset(path: Path, task: TaskConfig) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    if task.name == "tabular":
        return pd.read_csv(path, dtype={task.id_column: str})
    return pd.read_json(path, lines=True, dtype=False).assign(
        tags=lambda f: f["tags"].map(" ".join), split=lambda f: f["split"].fillna(""))


def write_dataset(frame: pd.DataFrame, path: Path, task: TaskConfig) -> None:
    """Write atomically so a crash never leaves a half-written dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if task.name == "tabular":
        frame.to_csv(tmp, index=False)
    else:
        out = frame.assign(tags=frame["tags"].str.split(" "),
                           split=frame["split"].replace("", None))
        out.to_json(tmp, orient="records", lines=True, force_ascii=False)
    os.replace(tmp, path)


def dedup_key(frame: pd.DataFrame, task: TaskConfig) -> list[str]:
    return list(frame.columns) if task.name == "tabular" else ["text", "intent", "tags"]


def go(config: IngestionConfig) -> int:
    paths = StatePaths.of(config.state_dir)
    task = config.task
    source_dir = resolve_path(config.data.source_dir)
    if not source_dir.is_dir():
        log.error("data.source_dir %s does not exist or is not a folder: set data.source_dir "
                  "to the folder holding the raw files", source_dir)
        return 2

    record = IngestRecord.load(paths.ingest_record)
    scan = scan_source(source_dir, config.data.follow_symlinks)
    entries = scan.entries
    changed = record.changed_entries(entries)
    log.info("%d source entries in %s, %d new or changed, %d skipped (not regular files)",
             len(entries), source_dir, len(changed), len(scan.skipped))

    accepted: list[pd.DataFrame] = []
    counts = {"ingested": 0, "duplicate": 0, "quarantined": 0, "skipped": 0, "unreadable": 0}
    record_changed = False

    def note(path: Path, size: int, mtime_ns: int, status: str, reason: str) -> None:
        """Record a name that was not read, once per (name, size, mtime, reason)."""
        nonlocal record_changed
        counts[status] += 1
        if record.has_row(str(path), size, mtime_ns, status, reason):
            return
        log.warning("%s %s: %s", status, path, reason)
        record.add(RecordRow(file=str(path), sha256="", rows=0, status=status, reason=reason,
                             time=now(), size=size, mtime_ns=mtime_ns))
        record_changed = True

    for skipped in scan.skipped:
        note(skipped.path, skipped.size, skipped.mtime_ns, "skipped", skipped.reason)
    for entry in changed:
        try:
            sha256 = entry.sha256(config.data.read_timeout_s)
        except OSError as exc:
            note(entry.path, entry.size, entry.mtime_ns, "unreadable",
                 f"{exc.strerror or exc} (retried next run)")
            continue
        seen = record.status_of_hash(sha256)
        rows, reason = 0, ""
        if seen in {"ingested", "duplicate"}:
            status, reason = "duplicate", "same content as an already ingested file"
        elif seen == "quarantined":
            status, reason = "quarantined", "same content as an already quarantined file"
        else:
            try:
                frame = read_unit(entry, task)
                accepted.append(frame)
                status, rows = "ingested", len(frame)
            except BadFile as exc:
                status, reason = "quarantined", str(exc)
                target = quarantine(entry, sha256, reason, paths)
                log.warning("quarantined %s -> %s: %s", entry.path.name, target, reason)
        counts[status] += 1
        record.add(RecordRow(file=str(entry.path), sha256=sha256, rows=rows, status=status,
                             reason=reason, time=now(), size=entry.size, mtime_ns=entry.mtime_ns))
        log.info("%-11s %s (%d rows)%s", status, entry.path.name, rows, f": {reason}" if reason else "")

    target = dataset_path(paths, task)
    existing = read_dataset(target, task)
    rows_before = len(existing)
    if accepted:
        combined = pd.concat([existing, *accepted], ignore_index=True)
        combined = combined.drop_duplicates(subset=dedup_key(combined, task), keep="first")
        write_dataset(combined, target, task)
    else:
        combined = existing
    if changed or record_changed:
        record.save()

    mlflow.log_params({"source_dir": str(source_dir), "task": task.name})
    mlflow.log_metrics({"files_seen": len(entries), "files_new": len(changed),
                        "files_ingested": counts["ingested"], "files_duplicate": counts["duplicate"],
                        "files_quarantined": counts["quarantined"], "files_skipped": counts["skipped"],
                        "files_unreadable": counts["unreadable"], "rows_total": len(combined),
                        "rows_added": len(combined) - rows_before})
    if paths.ingest_record.is_file():
        mlflow.log_artifact(str(paths.ingest_record))
    log_json_artifact(counts, "ingest_summary.json")

    if combined.empty:
        log.error("no usable data: every file in %s was rejected (%d quarantined, see %s and %s)",
                  source_dir, counts["quarantined"], paths.quarantine_dir, paths.ingest_record)
        return 3
    targets = task.label_column if task.name == "tabular" else "intent"
    dataset = mlflow.data.from_pandas(combined, source=str(target), name=target.name, targets=targets)
    mlflow.log_input(dataset, context="ingested")
    mlflow.set_tags({"pipeline.data_digest": dataset.digest, "pipeline.dataset": str(target)})
    log.info("dataset %s: %d rows (%+d), digest %s", target, len(combined),
             len(combined) - rows_before, dataset.digest)
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], IngestionConfig, go)
