"""What the `diagnostics` step measures, as small functions the API can call too.

Everything is computed from what exists (ingested data, the production model, MLflow runs,
the installed packages, the machine): a function that cannot measure something says so
(``None`` / ``"unknown"`` with a reason) instead of inventing a number.

Heavy imports (pandas, mlflow, torch) happen inside the functions that need them, so that
importing this module stays cheap for the API's light routes.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import math
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from utils.pipeline.paths import REPO_ROOT, StatePaths

log = logging.getLogger(__name__)

QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
NLU_FIELDS: tuple[str, ...] = ("text", "intent", "tags")
UNKNOWN = "unknown"


def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """count, mean, median, std (sample), min, max and QUANTILES of a list of numbers."""
    import numpy as np

    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"count": 0, "mean": None, "median": None, "std": None, "min": None, "max": None,
                "quantiles": {f"{q:g}": None for q in QUANTILES}}
    return {
        "count": int(arr.size),
        "mean": _number(arr.mean()),
        "median": _number(np.median(arr)),
        "std": _number(arr.std(ddof=1)) if arr.size > 1 else None,
        "min": _number(arr.min()),
        "max": _number(arr.max()),
        "quantiles": {f"{q:g}": _number(np.quantile(arr, q)) for q in QUANTILES},
    }


# ---------------------------------------------------------------------------------- tabular
def tabular_summary(frame: Any) -> dict[str, dict[str, Any]]:
    """Per numeric column: distribution() of its non-missing values."""
    import pandas as pd

    numeric = frame.select_dtypes(include="number")
    return {str(col): distribution(pd.to_numeric(numeric[col], errors="coerce").dropna().tolist())
            for col in numeric.columns}


def tabular_missing(frame: Any) -> dict[str, float]:
    """Percentage of missing values per column (blank strings count as missing)."""
    import pandas as pd

    out = {}
    for col in frame.columns:
        series = frame[col]
        missing = series.isna()
        if not pd.api.types.is_numeric_dtype(series):
            missing = missing | series.astype("string").str.strip().eq("").fillna(False).astype(bool)
        out[str(col)] = round(float(missing.mean() * 100.0), 4) if len(series) else 0.0
    return out


def read_tabular_frame(path: Path, id_column: str | None) -> Any:
    """The ingested CSV as pandas reads it (ids as strings), without schema validation."""
    import pandas as pd

    return pd.read_csv(path, dtype={id_column: str} if id_column else None)


# -------------------------------------------------------------------------------------- nlu
def read_jsonl_records(path: Path) -> list[Any]:
    """Raw JSON values of a JSONL file (no validation: missing fields are what we count)."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
    return records


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple)):
        return len(value) == 0
    return False


def nlu_missing(records: Sequence[Any]) -> dict[str, float]:
    """Percentage of examples whose text / intent / tag sequence is absent or empty."""
    n = len(records)
    out = {}
    for name in NLU_FIELDS:
        empty = sum(1 for r in records if not isinstance(r, dict) or _is_empty(r.get(name)))
        out[name] = round(100.0 * empty / n, 4) if n else 0.0
    return out


def slot_types(tags: Sequence[str]) -> list[str]:
    """Slot type of every span in a BIO sequence (lenient, like seqeval's default mode)."""
    from utils.data.nlu_data import spans_from_tags

    return [typ for typ, _, _ in spans_from_tags([""] * len(tags), list(tags))]


def nlu_summary(records: Sequence[Any]) -> dict[str, Any]:
    """Examples per intent and per slot type, utterance length (tokens), vocabulary size.

    Vocabulary: distinct lower-cased whitespace tokens. Records lacking a field are skipped
    for the statistics of that field (nlu_missing() counts them).
    """
    dicts = [r for r in records if isinstance(r, dict)]
    intents = Counter(str(r["intent"]) for r in dicts if not _is_empty(r.get("intent")))
    slots: Counter[str] = Counter()
    lengths: list[int] = []
    vocab: set[str] = set()
    splits: Counter[str] = Counter()
    for r in dicts:
        text = r.get("text")
        if isinstance(text, str) and text.strip():
            tokens = text.split()
            lengths.append(len(tokens))
            vocab.update(t.lower() for t in tokens)
        tags = r.get("tags")
        if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
            slots.update(slot_types(tags))
        if isinstance(r.get("split"), str):
            splits[r["split"]] += 1
    length_hist = Counter(lengths)
    return {
        "n_examples": len(records),
        "intents": dict(intents.most_common()),
        "slot_types": dict(slots.most_common()),
        "utterance_length": {**distribution(lengths),
                             "histogram": {str(k): length_hist[k] for k in sorted(length_hist)}},
        "vocabulary_size": len(vocab),
        "splits": dict(sorted(splits.items())),
    }


# ------------------------------------------------------------------------ summary (both)
def dataset_path(paths: StatePaths, task_name: str) -> Path:
    return paths.dataset(task_name)


def summary_stats(paths: StatePaths, task: Any) -> dict[str, Any]:
    """Summary statistics and missing-value percentages of the ingested dataset.

    ``task`` is the task config (TaskConfig or the `task` DictConfig): name, id_column.
    Raises FileNotFoundError naming the file when nothing has been ingested yet.
    """
    path = dataset_path(paths, task.name)
    if not path.is_file():
        raise FileNotFoundError(f"no ingested dataset at {path}: run the data_ingestion step first")
    if task.name in ("tabular", "forecast"):
        frame = read_tabular_frame(path, getattr(task, "id_column", None) or getattr(task, "series_column", None))
        return {"dataset": str(path), "n_rows": int(len(frame)), "columns": [str(c) for c in frame.columns],
                "summary": tabular_summary(frame), "missing_pct": tabular_missing(frame)}
    records = read_jsonl_records(path)
    return {"dataset": str(path), "n_rows": len(records), "columns": list(NLU_FIELDS),
            "summary": nlu_summary(records), "missing_pct": nlu_missing(records)}


# ------------------------------------------------------------------------------ predictions
def load_pyfunc(model_dir: Path) -> Any:
    import mlflow

    return mlflow.pyfunc.load_model(str(model_dir))


def _model_schema(model_dir: Path, task: Any) -> Any:
    """The schema the model was trained with (its version's metadata.json), else the task's."""
    import json

    from utils.data.table_schema import model_schema

    meta_file = Path(model_dir).parent / "metadata.json"
    metadata = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    schema = model_schema(metadata, task)
    if schema is None:
        raise ValueError(f"no table schema for {model_dir}: retrain it (model_training) after data_ingestion")
    return schema


def tabular_predictions(model_dir: Path, test_path: Path, task: Any) -> dict[str, Any]:
    """Production model predictions on the test CSV: label, and for classifiers the
    probability of the predicted label (what the API answers as "probability")."""
    import mlflow

    from utils.data.table_schema import feature_frame, label_values
    from utils.data.tabular_data import read_table

    schema = _model_schema(model_dir, task)
    test = read_table(Path(test_path), schema).frame
    features = feature_frame(test, schema)
    try:
        model = mlflow.sklearn.load_model(str(model_dir))
        predicted = model.predict(features)
        proba = (model.predict_proba(features).max(axis=1)
                 if schema.is_classification and hasattr(model, "predict_proba") else None)
    except Exception:  # not an sklearn flavor: the generic pyfunc still predicts labels
        predicted = load_pyfunc(model_dir).predict(features)
        proba = None
    truth = label_values(test, schema)
    ids = test[schema.id_column] if schema.id_column else None
    rows = []
    for i in range(len(test)):
        rows.append({"id": str(ids.iloc[i]) if ids is not None else str(i),
                     "label": _plain_value(truth[i]), "predicted": _plain_value(predicted[i]),
                     "probability": _number(proba[i]) if proba is not None else None})
    out: dict[str, Any] = {"test_path": str(test_path), "n_examples": len(rows), "problem": schema.problem,
                           "rows": rows}
    if schema.is_classification:
        counts = Counter(r["predicted"] for r in rows)
        out["predicted_counts"] = {str(k): counts[k] for k in sorted(counts, key=str)}
        out["accuracy"] = sum(r["label"] == r["predicted"] for r in rows) / len(rows) if rows else None
    else:
        out["mae"] = float(sum(abs(r["label"] - r["predicted"]) for r in rows) / len(rows)) if rows else None
    return out


def _plain_value(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return float(value) if isinstance(value, float) else value


def nlu_predictions(model_dir: Path, test_path: Path, batch_size: int = 256,
                    progress_every_s: float = 0.0) -> dict[str, Any]:
    """Production model predictions (intent, confidence, tags, slots) on the NLU test data."""
    from utils.data.nlu_data import read_nlu_path
    from utils.models.scoring_lib import pyfunc_rows
    from utils.pipeline.progress import BatchProgress

    examples = read_nlu_path(test_path)
    model = load_pyfunc(model_dir)
    progress = BatchProgress("step diagnostics", len(examples), batch_size, progress_every_s)
    predicted: list[dict[str, Any]] = []
    for start in range(0, len(examples), batch_size):
        predicted.extend(pyfunc_rows(model, [ex.text for ex in examples[start:start + batch_size]]))
        progress.update(len(predicted))
    rows = []
    for ex, pred in zip(examples, predicted):
        rows.append({"text": ex.text, "intent": ex.intent, "predicted_intent": str(pred.get("intent")),
                     "confidence": _number(pred.get("confidence")), "tags": list(ex.tags),
                     "predicted_tags": [str(t) for t in pred.get("tags", [])],
                     "slots": list(pred.get("slots", []))})
    counts = Counter(r["predicted_intent"] for r in rows)
    return {"test_path": str(test_path), "n_examples": len(rows),
            "predicted_counts": dict(counts.most_common()),
            "accuracy": sum(r["intent"] == r["predicted_intent"] for r in rows) / len(rows) if rows else None,
            "rows": rows}


# ----------------------------------------------------------------------------------- timing
def latency_stats(call: Callable[[int], Any], n_calls: int, warmup: int = 3) -> dict[str, Any]:
    """Wall time of ``call(i)`` for i in range(n_calls), after ``warmup`` untimed calls (ms)."""
    import numpy as np

    if n_calls < 1:
        raise ValueError(f"latency needs at least 1 call, got n_calls={n_calls}")
    for i in range(warmup):
        call(i)
    times = []
    for i in range(n_calls):
        t0 = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t0) * 1000.0)
    arr = np.asarray(times)
    return {"n_calls": n_calls, "warmup_calls": warmup,
            "p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)), "mean_ms": float(arr.mean()), "max_ms": float(arr.max())}


def single_prediction_call(model: Any, task: Any, test_path: Path,
                           model_dir: Path | None = None) -> Callable[[int], Any]:
    """A function predicting ONE example (the i-th test example, cycling) with the pyfunc."""
    import pandas as pd

    if task.name == "tabular":
        from utils.data.table_schema import feature_frame, schema_from_task
        from utils.data.tabular_data import read_table

        schema = _model_schema(Path(model_dir), task) if model_dir else schema_from_task(task)
        features = feature_frame(read_table(Path(test_path), schema).frame, schema)
        singles = [features.iloc[[i]] for i in range(len(features))]
    else:
        from utils.data.nlu_data import read_nlu_path

        singles = [pd.DataFrame({"text": [ex.text]}) for ex in read_nlu_path(test_path)]
    if not singles:
        raise ValueError(f"{test_path}: no test examples to time")
    return lambda i: model.predict(singles[i % len(singles)])


def _duration_s(run: Any) -> float | None:
    info = run.info
    if info.start_time and info.end_time:
        return (info.end_time - info.start_time) / 1000.0
    return None


def _iso(ms: int | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ms / 1000.0)) if ms else None


def _parent_steps(parent: Any) -> list[str]:
    return [s for s in parent.data.tags.get("pipeline.steps", "").split(",") if s]


def find_pipeline_run(client: Any, current_run_id: str | None, experiment_id: str | None) -> Any | None:
    """The pipeline (parent) run to report on.

    The parent of ``current_run_id`` when it ran steps before the current one; otherwise (a
    step started on its own) the latest FINISHED parent run of the experiment.
    """
    if current_run_id:
        current = client.get_run(current_run_id)
        experiment_id = experiment_id or current.info.experiment_id
        parent_id = current.data.tags.get("mlflow.parentRunId")
        if parent_id:
            parent = client.get_run(parent_id)
            earlier = [s for s in _parent_steps(parent) if f"pipeline.run.{s}" in parent.data.tags]
            if earlier:
                return parent
    if not experiment_id:
        return None
    runs = client.search_runs(
        [experiment_id], filter_string="tags.`pipeline.kind` = 'parent' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def step_timing(client: Any, current_run_id: str | None = None,
                experiment_id: str | None = None, pipeline_run_id: str | None = None) -> dict[str, Any]:
    """Duration of each step of the last pipeline run, from its MLflow runs.

    Per step: ``duration_s`` (the step's own run, end - start), ``wall_s`` (as the pipeline
    measured it: process start included) and ``reused`` (a cached run from an earlier
    pipeline). Steps not finished yet (the current one) have ``duration_s`` None.
    ``total_wall_s``: the pipeline run's own end - start once it has ended, else the sum of
    the finished steps' wall times. ``pipeline_run_id`` names the run (main.py, at the end).
    """
    parent = (client.get_run(pipeline_run_id) if pipeline_run_id
              else find_pipeline_run(client, current_run_id, experiment_id))
    if parent is None:
        return {"pipeline_run_id": None, "steps": [], "reason": "no pipeline run in MLflow yet"}
    current = client.get_run(current_run_id) if current_run_id else None
    steps = []
    for name in _parent_steps(parent):
        run_id = parent.data.tags.get(f"pipeline.run.{name}")
        if run_id is None:  # the step running now, or one after it
            is_current = (current is not None and current.info.run_name == name
                          and current.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
            steps.append({"step": name, "run_id": current_run_id if is_current else None,
                          "status": "RUNNING" if is_current else "PENDING", "duration_s": None,
                          "wall_s": None, "reused": False})
            continue
        run = client.get_run(run_id)
        steps.append({"step": name, "run_id": run_id, "status": run.info.status,
                      "duration_s": _duration_s(run),
                      "wall_s": _number(parent.data.metrics.get(f"duration_s.{name}")),
                      "reused": run.data.tags.get("mlflow.parentRunId") != parent.info.run_id})
    done = [s["wall_s"] for s in steps if s["wall_s"] is not None]
    ended = _duration_s(parent) if parent.info.status != "RUNNING" else None
    return {"pipeline_run_id": parent.info.run_id, "pipeline_status": parent.info.status,
            "pipeline_run_name": parent.info.run_name,
            "started": _iso(parent.info.start_time), "ended": _iso(parent.info.end_time),
            "task": parent.data.tags.get("pipeline.task"), "steps": steps,
            "steps_wall_s": sum(done) if done else None,
            "total_wall_s": ended if ended is not None else (sum(done) if done else None)}


# ----------------------------------------------------------------------------- dependencies
def project_pins(pyproject: Path = REPO_ROOT / "pyproject.toml") -> dict[str, str]:
    """name -> requirement string of every project dependency (extras included)."""
    import tomllib

    from packaging.requirements import Requirement

    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return {Requirement(r).name: r for r in reqs}


def latest_version(name: str, index_url: str, timeout_s: float) -> str:
    """Newest release on a PyPI-JSON-API index, or "unknown" on any failure or timeout."""
    import requests

    try:
        resp = requests.get(f"{index_url.rstrip('/')}/{name}/json", timeout=(timeout_s, timeout_s))
        resp.raise_for_status()
        return str(resp.json()["info"]["version"])
    except Exception as exc:  # offline, slow, unknown package, bad JSON: all mean "we do not know"
        log.debug("latest version of %s unknown: %s", name, exc)
        return UNKNOWN


def latest_versions(names: Iterable[str], index_url: str | None, timeout_s: float,
                    workers: int = 8) -> dict[str, str]:
    """latest_version() of many packages in parallel, bounded by one overall deadline.

    Daemon worker threads (multiprocessing.pool.ThreadPool): a request stuck past the
    deadline (e.g. a DNS lookup, which the requests timeout does not cover) is abandoned
    and never delays the caller or the interpreter's exit.
    """
    names = list(names)
    if not index_url or not names:
        return {n: UNKNOWN for n in names}
    from multiprocessing.pool import ThreadPool

    deadline = time.monotonic() + 2 * timeout_s + 1.0
    pool = ThreadPool(min(workers, len(names)))
    try:
        pending = {n: pool.apply_async(latest_version, (n, index_url, timeout_s)) for n in names}
        out = {}
        for name, result in pending.items():
            try:
                out[name] = result.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                out[name] = UNKNOWN
        return out
    finally:
        pool.terminate()


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def dependency_report(pyproject: Path = REPO_ROOT / "pyproject.toml", index_url: str | None = None,
                      timeout_s: float = 2.0) -> dict[str, Any]:
    """Installed vs pinned version of every dependency, plus the latest on the index.

    status: ``ok`` (installed satisfies the pin), ``mismatch``, ``not installed``.
    ``latest`` is "unknown" when the index does not answer within the timeout (offline).
    """
    from packaging.requirements import Requirement

    pins = project_pins(pyproject)
    latest = latest_versions(pins, index_url, timeout_s)
    packages = []
    for name, req_text in sorted(pins.items(), key=lambda kv: kv[0].lower()):
        req = Requirement(req_text)
        installed = installed_version(name)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if installed is None:
            status = "not installed"
        else:
            status = "ok" if req.specifier.contains(installed, prereleases=True) else "mismatch"
        newest = latest[name]
        pinned = exact[0] if len(exact) == 1 else str(req.specifier) or None
        packages.append({"name": name, "pinned": pinned, "installed": installed, "status": status,
                         "latest": newest,
                         "update_available": (None if newest == UNKNOWN or not exact
                                              else _newer(newest, exact[0]))})
    return {"index_url": index_url, "timeout_s": timeout_s, "packages": packages,
            "n_mismatch": sum(p["status"] != "ok" for p in packages)}


def _newer(candidate: str, current: str) -> bool | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(candidate) > Version(current)
    except InvalidVersion:
        return None


# ----------------------------------------------------------------------------------- system
def gpu_info() -> dict[str, Any]:
    """GPU name and memory via torch.cuda when torch is installed and a device is visible."""
    if importlib.util.find_spec("torch") is None:
        return {"available": False, "reason": "torch not installed", "devices": []}
    import torch

    if not torch.cuda.is_available():
        return {"available": False, "reason": "no CUDA device visible to torch", "devices": []}
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        devices.append({"index": i, "name": props.name, "memory_total_mb": total / 2**20,
                        "memory_free_mb": free / 2**20,
                        "memory_allocated_mb": torch.cuda.memory_allocated(i) / 2**20})
    return {"available": True, "reason": None, "devices": devices}


def system_info(state_dir: Path, include_gpu: bool = True) -> dict[str, Any]:
    """CPU, memory and the disk holding the state dir (psutil), plus GPUs when present."""
    import os

    import psutil

    mem = psutil.virtual_memory()
    probe = Path(state_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    disk = psutil.disk_usage(str(probe))
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": {"logical": psutil.cpu_count(logical=True), "physical": psutil.cpu_count(logical=False),
                "percent": psutil.cpu_percent(interval=0.2), "load_avg": load},
        "memory": {"total_mb": mem.total / 2**20, "available_mb": mem.available / 2**20,
                   "percent": mem.percent},
        "disk": {"path": str(state_dir), "total_gb": disk.total / 2**30, "used_gb": disk.used / 2**30,
                 "free_gb": disk.free / 2**30, "percent": disk.percent},
        "gpu": gpu_info() if include_gpu else {"available": None, "reason": "not checked", "devices": []},
    }


# ------------------------------------------------------------------------------------ files
def read_diagnostics(paths: StatePaths) -> dict[str, Any] | None:
    """reports/diagnostics.json as written by the diagnostics step, or None before its first run."""
    path = paths.reports_dir / "diagnostics.json"
    return json.loads(path.read_text()) if path.is_file() else None
