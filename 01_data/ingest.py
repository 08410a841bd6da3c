"""Step `data_ingestion`: raw files in `data.source_dir` -> one deduplicated dataset.

Top to bottom: find files that changed since the last run (path, size, mtime), hash them,
skip content already seen (any name), validate the rest (the frozen table schema for CSV,
see utils/data/table_schema.py; BIO rules for NLU), copy a bad file to the quarantine folder
with its reason and go on, then append the accepted rows to the ingested dataset with
duplicates removed. Forecast: date rules per series (utils/data/forecast_data.py), one row per
series and date, later files win (late corrections). Tabular: the first ingestion infers the schema from the first files and
freezes it (`schema.yaml` in the ingested state, logged to MLflow). Raw files are only ever
read. Work is proportional to new files: unchanged files are not opened.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

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
from utils.data.table_schema import MIN_ROWS, SchemaError, TableSchema, infer_schema
from utils.data.tabular_data import (
    BAD_ROW_POLICIES,
    TableRead,
    TabularDataError,
    read_raw_csv,
    read_table,
    validate_table,
)
from utils.pipeline.tracking import log_json_artifact

from ingest_config import DataSection, IngestionConfig  # 01_data/  # noqa: E402,F401

log = logging.getLogger("data_ingestion")


class BadFile(ValueError):
    """A raw file that is quarantined; the message is the reason."""


TASKS = ("tabular", "nlu", "forecast")


def read_unit(entry: SourceEntry, task: TaskConfig, schema: TableSchema | None = None,
              bad_rows: str = "quarantine_file", ledger: Any = None) -> TableRead:
    """Parse and validate one raw file (or BIO folder) into rows of the ingested dataset."""
    if task.name == "forecast":
        return TableRead(read_forecast_unit(entry, task, ledger))
    if task.name == "tabular":
        if entry.is_dir:
            raise BadFile("a folder, not a CSV file (tabular sources are CSV files)")
        try:
            if schema is None:
                raw = read_raw_csv(entry.path)   # says why the file is unreadable
                if task.label_column not in raw.columns:
                    raise BadFile(f"label column {task.label_column!r} (task.label_column) is not in this "
                                  f"file; its columns are {list(raw.columns)[:20]}: set task.label_column")
                raise BadFile("no table schema to validate against")
            return read_table(entry.path, schema, bad_rows)
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
    return TableRead(pd.DataFrame({"text": [e.text for e in examples],
                         "intent": [e.intent for e in examples],
                         "tags": [" ".join(e.tags) for e in examples],
                         "split": [e.split or "" for e in examples]}))


def read_forecast_unit(entry: SourceEntry, task: TaskConfig, ledger: Any) -> pd.DataFrame:
    """One long-format CSV, checked alone and against the series' history (utils/data/forecast_data.py)."""
    from utils.data.forecast_data import ForecastDataError, read_forecast_csv

    if entry.is_dir:
        raise BadFile("a folder, not a CSV file (forecast sources are long-format CSV files)")
    try:
        frame = read_forecast_csv(entry.path, task)
        ledger.check(frame)
    except ForecastDataError as exc:
        raise BadFile(str(exc)) from exc
    ledger.add(frame)
    return frame


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
    return paths.dataset(task.name)


def read_dataset(path: Path, task: TaskConfig, schema: TableSchema | None = None) -> pd.DataFrame:
    """The ingested dataset, typed by the schema (the same dtypes on every read: stable digest)."""
    if not path.is_file():
        return pd.DataFrame()
    if task.name == "tabular":
        if schema is None:
            return pd.read_csv(path, dtype=str)
        frame, problems = validate_table(read_raw_csv(path), schema)
        if len(problems):
            log.warning("%d value(s) of %s do not meet the current schema %s (kept)",
                        len(problems), path, "(edited?)")
        return frame
    if task.name == "forecast":
        from utils.data.forecast_data import read_dataset as read_forecast_dataset

        return read_forecast_dataset(path, task)
    return pd.read_json(path, lines=True, dtype=False).assign(
        tags=lambda f: f["tags"].map(" ".join), split=lambda f: f["split"].fillna(""))


def write_dataset(frame: pd.DataFrame, path: Path, task: TaskConfig) -> None:
    """Write atomically so a crash never leaves a half-written dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if task.name in ("tabular", "forecast"):
        frame.to_csv(tmp, index=False)   # Int64 columns stay integers (41, not 41.0)
    else:
        out = frame.assign(tags=frame["tags"].str.split(" "),
                           split=frame["split"].replace("", None))
        out.to_json(tmp, orient="records", lines=True, force_ascii=False)
    os.replace(tmp, path)


def table_schema(paths: StatePaths, task: TaskConfig, changed: list[SourceEntry],
                 record: IngestRecord) -> TableSchema | None:
    """The frozen schema; on the first ingestion, inferred from the first files and frozen.

    Inferred from the new files that share the first readable file's header (or, for a state
    dir of the first layout, from its ingested dataset); None when no file is readable.
    """
    if paths.schema_file.is_file():
        schema = TableSchema.load(paths.schema_file)
        if task.label_column and schema.label != task.label_column:
            raise SchemaError(
                f"the frozen schema {paths.schema_file} predicts {schema.label!r}, but task.label_column="
                f"{task.label_column!r}: use another task.model_name / paths.state_dir for another table")
        return schema
    frames, sources = [], []
    if paths.finaldata_csv.is_file():
        frames, sources = [read_raw_csv(paths.finaldata_csv)], [str(paths.finaldata_csv)]
    else:
        for entry in changed:
            if entry.is_dir or record.status_of_hash(entry.sha256()) is not None:
                continue
            try:
                raw = read_raw_csv(entry.path)
            except (TabularDataError, OSError):
                continue   # quarantined with its reason in the loop
            if task.label_column not in raw.columns:
                continue   # quarantined in the loop, naming the label column
            if frames and list(raw.columns) != list(frames[0].columns):
                continue   # validated (and rejected) against the schema of the first files
            frames.append(raw)
            sources.append(str(entry.path))
    if not frames:
        return None
    first = frames[0] if len(frames[0]) >= MIN_ROWS else pd.concat(frames, ignore_index=True)
    schema = infer_schema(first, task, sources[:1] if first is frames[0] else sources, more=frames[1:])
    schema.dump(paths.schema_file)
    log.info("froze the table schema %s: %s problem, label %r, features %s, id %s, excluded %s",
             paths.schema_file, schema.problem, schema.label, schema.features, schema.id_column,
             [c.name for c in schema.columns if c.role == "excluded"])
    return schema


def log_schema(schema: TableSchema, paths: StatePaths) -> None:
    """The frozen schema file and its pandera form, as artifacts of the ingestion run."""
    import warnings

    mlflow.log_artifact(str(paths.schema_file), artifact_path="schema")
    with warnings.catch_warnings():   # our custom `finite` check is not serialisable; fine
        warnings.simplefilter("ignore")
        mlflow.log_text(schema.pandera().to_yaml(), "schema/pandera_schema.yaml")
    mlflow.set_tags({"pipeline.schema_version": str(schema.version), "pipeline.problem": schema.problem})


def dedup_key(frame: pd.DataFrame, task: TaskConfig) -> list[str]:
    return list(frame.columns) if task.name == "tabular" else ["text", "intent", "tags"]


def go(config: IngestionConfig) -> int:
    paths = StatePaths.of(config.state_dir).model(config.task.model_name)
    task = config.task
    source_dir = resolve_path(config.data.source_dir)
    if not source_dir.is_dir():
        log.error("data.source_dir %s does not exist or is not a folder: set data.source_dir "
                  "to the folder holding the raw files", source_dir)
        return 2

    if task.name not in TASKS:
        log.error("task.name=%r is not a task kind: expected one of %s (the table's own name goes in "
                  "task.model_name)", task.name, ", ".join(TASKS))
        return 2
    if config.data.bad_rows not in BAD_ROW_POLICIES:
        log.error("data.bad_rows=%r: expected one of %s", config.data.bad_rows, ", ".join(BAD_ROW_POLICIES))
        return 2

    record = IngestRecord.load(paths.ingest_record)
    scan = scan_source(source_dir, config.data.follow_symlinks)
    entries = scan.entries
    changed = record.changed_entries(entries)
    ledger = None
    if task.name == "forecast":  # oldest first, checked for gaps against the history so far
        from utils.data.forecast_data import SeriesLedger, first_date

        changed = sorted(changed, key=lambda e: (first_date(e.path, task) if not e.is_dir
                                                 else pd.Timestamp.max, e.path.name))
        ledger = SeriesLedger.of(read_dataset(dataset_path(paths, task), task), task)
    log.info("%d source entries in %s, %d new or changed, %d skipped (not regular files)",
             len(entries), source_dir, len(changed), len(scan.skipped))
    schema = None
    if task.name == "tabular":
        try:
            schema = table_schema(paths, task, changed, record)
        except SchemaError as exc:
            log.error("%s", exc)
            return 2

    accepted: list[pd.DataFrame] = []
    counts = {"ingested": 0, "duplicate": 0, "quarantined": 0, "skipped": 0, "unreadable": 0, "rows_dropped": 0}
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
        rows, reason, dropped = 0, "", 0
        if seen in {"ingested", "duplicate"}:
            status, reason = "duplicate", "same content as an already ingested file"
        elif seen == "quarantined":
            status, reason = "quarantined", "same content as an already quarantined file"
        else:
            try:
                read = read_unit(entry, task, schema, config.data.bad_rows, ledger)
                accepted.append(read.frame)
                status, rows, dropped = "ingested", len(read.frame), read.rows_dropped
                if dropped:
                    reason = f"dropped {dropped} bad row(s) (data.bad_rows=drop_rows): {read.dropped_reason}"
                    counts["rows_dropped"] += dropped
            except BadFile as exc:
                status, reason = "quarantined", str(exc)
                target = quarantine(entry, sha256, reason, paths)
                log.warning("quarantined %s -> %s: %s", entry.path.name, target, reason)
        counts[status] += 1
        record.add(RecordRow(file=str(entry.path), sha256=sha256, rows=rows, status=status,
                             reason=reason, time=now(), size=entry.size, mtime_ns=entry.mtime_ns,
                             rows_dropped=dropped))
        log.info("%-11s %s (%d rows)%s", status, entry.path.name, rows, f": {reason}" if reason else "")

    target = dataset_path(paths, task)
    existing = read_dataset(target, task, schema)
    rows_before = len(existing)
    corrections = 0
    if accepted and task.name == "forecast":  # one row per (series, date): later files win
        from utils.data.forecast_data import merge_dataset

        combined, corrections = merge_dataset(existing, accepted, task)
        write_dataset(combined, target, task)
        if corrections:
            log.info("%d late correction(s): rows for an already ingested (series, date) replaced", corrections)
    elif accepted:
        combined = pd.concat([f for f in [existing, *accepted] if len(f)], ignore_index=True)
        combined = combined.drop_duplicates(subset=dedup_key(combined, task), keep="first")
        write_dataset(combined, target, task)
        if task.name == "tabular":   # as every later reader sees it: the digest depends on the file only
            combined = read_dataset(target, task, schema)
    else:
        combined = existing
    if changed or record_changed:
        record.save()

    mlflow.log_params({"source_dir": str(source_dir), "task": task.name})
    mlflow.log_metrics({"files_seen": len(entries), "files_new": len(changed),
                        "files_ingested": counts["ingested"], "files_duplicate": counts["duplicate"],
                        "files_quarantined": counts["quarantined"], "files_skipped": counts["skipped"],
                        "files_unreadable": counts["unreadable"], "rows_total": len(combined),
                        "rows_added": len(combined) - rows_before, "rows_dropped": counts["rows_dropped"],
                        "rows_corrected": corrections})
    if paths.ingest_record.is_file():
        mlflow.log_artifact(str(paths.ingest_record))
    if schema is not None:
        log_schema(schema, paths)
    log_json_artifact({**counts, "rows_corrected": corrections}, "ingest_summary.json")

    if combined.empty:
        log.error("no usable data: every file in %s was rejected (%d quarantined, see %s and %s)",
                  source_dir, counts["quarantined"], paths.quarantine_dir, paths.ingest_record)
        return 3
    targets = {"tabular": task.label_column, "forecast": task.target_column}.get(task.name, "intent")
    dataset = mlflow.data.from_pandas(combined, source=str(target), name=target.name, targets=targets)
    mlflow.log_input(dataset, context="ingested")
    mlflow.set_tags({"pipeline.data_digest": dataset.digest, "pipeline.dataset": str(target)})
    log.info("dataset %s: %d rows (%+d), digest %s", target, len(combined),
             len(combined) - rows_before, dataset.digest)
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], IngestionConfig, go)
