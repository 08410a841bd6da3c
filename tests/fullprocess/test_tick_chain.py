"""Ticks that run the real steps: ingestion, drift, retrain, deployment, concurrency, crashes."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from tests.conftest import run_main
from tests.conftest import copy_embedded_tabular
from tests.fullprocess.helpers import (TABULAR_SOURCE, generate, run_tick, summary_of, tick_cmd, ticks,
                                       tree_digest, write_csv)
from utils.data.ingest_record import IngestRecord
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.tick.tick_lock import group_alive, read_holder
from utils.tick.tick_state import TickState
from utils.pipeline.tracking import default_tracking_uri

FAST_CHAIN = ("fullprocess.chain_to=model_deployment",)   # diagnostics and reporting are tested elsewhere


def parent_runs(state: Path, step: str) -> list:
    """MLflow parent runs of main.py whose steps include ``step``."""
    mlflow.set_tracking_uri(default_tracking_uri(StatePaths.of(state)))
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string="tags.`pipeline.kind` = 'parent'")
    return [r for r in runs if step in r.data.tags.get("pipeline.steps", "").split(",")]


def production(state: Path) -> str | None:
    return ModelStore(StatePaths.of(state).model("attrition_model").models_dir).production_version()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Source files ingested and a model deployed by main.py (no tick yet)."""
    base = tmp_path_factory.mktemp("trained")
    source, state = base / "src", base / "state"
    copy_embedded_tabular(source)
    state.mkdir()
    run_main(f"data.source_dir={source}",
             "main.steps='data_ingestion,model_training,model_scoring,model_deployment'", state_dir=state)
    return state, source


def clone(trained: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the trained state and its source dir (record paths rewritten)."""
    state0, source0 = trained
    state, source = tmp_path / "state", tmp_path / "src"
    shutil.copytree(source0, source)                  # copy2: sizes and mtimes kept
    shutil.copytree(state0, state, symlinks=True)
    paths = StatePaths.of(state).model("attrition_model")
    record = IngestRecord.load(paths.ingest_record)
    for row in record.rows:
        row.file = row.file.replace(str(source0), str(source))
    record.save()
    return state, source


def test_new_file_is_ingested_once_and_the_next_tick_is_a_noop(tmp_path: Path) -> None:
    source, state = tmp_path / "src", tmp_path / "state"
    write_csv(generate(60, seed=1, id_prefix="a"), source / "part1.csv")
    first = run_tick(state, source, "drift.policy=never")
    assert first.returncode == 0, first.stderr
    summary = summary_of(first)
    assert summary["new_files"] == ["part1.csv"] and summary["decision"] == "no-retrain"
    record = IngestRecord.load(StatePaths.of(state).model("attrition_model").ingest_record)
    assert [(Path(r.file).name, r.status) for r in record.rows] == [("part1.csv", "ingested")]
    second = run_tick(state, source, "drift.policy=never")
    assert second.returncode == 0 and summary_of(second)["status"] == "noop"
    assert len(parent_runs(state, "data_ingestion")) == 1
    assert len(IngestRecord.load(StatePaths.of(state).model("attrition_model").ingest_record).rows) == 1


def test_chain_timeout_kills_the_process_group(tmp_path: Path, webhook_server) -> None:
    """A pending retrain whose chain outlives fullprocess.timeout_s: killed, reported, retried later."""
    url, received = webhook_server
    source, state = tmp_path / "src", tmp_path / "state"
    source.mkdir()
    paths = StatePaths.of(state).model("attrition_model")
    TickState(pending={"reason": "drift (performance)", "since": "earlier", "attempts": 1}).save(paths)
    started = time.monotonic()
    proc = run_tick(state, source, "fullprocess.timeout_s=2", f"notify.webhook.url={url}/hook")
    assert proc.returncode == 1
    assert time.monotonic() - started < 60
    summary = summary_of(proc)
    assert summary["status"] == "failed" and summary["chain"]["timed_out"] is True
    assert "killed after 2 s" in summary["error"]
    state_after = TickState.load(paths)
    assert state_after.chain is None and state_after.pending["attempts"] == 2
    assert state_after.pending["failed_at"] > 0
    assert received and received[0][1]["events"] == ["failure"]
    later = run_tick(state, source)                 # within fullprocess.retry_after_s: no new attempt
    assert later.returncode == 0 and summary_of(later)["status"] == "noop"
    assert "retried in" in (state / "logs" / "fullprocess.log").read_text()
    log = (state / "logs" / "fullprocess.log").read_text()
    assert "killing its process group" in log
    group = int(log.split("killing its process group ")[1].split()[0])
    assert not group_alive(group)


@pytest.mark.slow
def test_labels_the_model_gets_wrong_drift_retrain_and_deploy(trained, tmp_path: Path) -> None:
    state, source = clone(trained, tmp_path)
    assert production(state) == "attrition_model-v1"
    write_csv(generate(300, seed=7, id_prefix="x").assign(exited=lambda f: 1 - f["exited"]), source / "flipped.csv")
    proc = run_tick(state, source, *FAST_CHAIN, "deployment.tolerance=1.0")   # the gate permits
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = summary_of(proc)
    assert summary["decision"] == "retrain" and summary["drift"]["signals"]["performance"] is True
    assert summary["production_before"] == "attrition_model-v1"
    assert summary["production_after"] == summary["trained_version"] == "attrition_model-v2"
    assert summary["deployed"] is True and production(state) == "attrition_model-v2"
    drift = json.loads((state / "reports" / "attrition_model" / "drift.json").read_text())
    assert drift["n_new"] == 300 and drift["performance"]["new_score"] < drift["performance"]["recorded_score"]
    assert len(parent_runs(state, "model_training")) == 2          # main.py's + the tick's
    again = run_tick(state, source, *FAST_CHAIN)
    assert summary_of(again)["status"] == "noop"


@pytest.mark.slow
def test_data_like_the_training_data_no_drift_no_retrain(trained, tmp_path: Path) -> None:
    state, source = clone(trained, tmp_path)
    write_csv(generate(300, seed=8, id_prefix="y"), source / "more.csv")
    proc = run_tick(state, source, *FAST_CHAIN, "drift.performance.relative_tolerance=0.2")
    assert proc.returncode == 0, proc.stderr
    summary = summary_of(proc)
    assert summary["decision"] == "no-retrain", summary
    assert summary["drift"]["signals"] == {"performance": False, "distribution": False}
    assert production(state) == "attrition_model-v1" and summary["chain"] is None
    assert len(parent_runs(state, "model_training")) == 1


@pytest.mark.slow
def test_twenty_ticks_at_once_run_exactly_one_chain(tmp_path: Path) -> None:
    source, state = tmp_path / "src", tmp_path / "state"
    write_csv(generate(80, seed=9, id_prefix="t"), source / "tiny.csv")   # a tiny dataset: a cheap chain
    procs = [subprocess.Popen(tick_cmd(state, source, *FAST_CHAIN), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(20)]
    results = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [r[1][-2000:] for r in results if r[1]]
    history = ticks(state)
    assert len(history) == 20
    assert [t["decision"] for t in history].count("retrain") == 1
    assert {t["status"] for t in history} <= {"ok", "locked", "noop"}
    assert len(parent_runs(state, "model_training")) == 1
    assert len(parent_runs(state, "data_ingestion")) == 1
    assert production(state) == "attrition_model-v1"


@pytest.mark.slow
def test_a_tick_killed_mid_chain_is_recovered_by_the_next(trained, tmp_path: Path) -> None:
    state, source = clone(trained, tmp_path)
    paths = StatePaths.of(state).model("attrition_model")
    write_csv(generate(300, seed=10, id_prefix="k"), source / "new.csv")
    source_before = tree_digest(source)
    tick = subprocess.Popen(tick_cmd(state, source, *FAST_CHAIN, "drift.policy=always"), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    chain = None
    while time.monotonic() < deadline and tick.poll() is None:
        chain = TickState.load(paths).chain
        if chain and "model_training" in chain["steps"]:
            break
        time.sleep(0.2)
    assert chain and "model_training" in chain["steps"], "the chain never started"
    time.sleep(4)                                     # mid-chain
    tick.send_signal(signal.SIGKILL)
    tick.wait()
    assert read_holder(state / "fullprocess.lock").pid == tick.pid   # left behind by the dead tick
    assert production(state) == "attrition_model-v1"

    proc = run_tick(state, source, *FAST_CHAIN, "drift.policy=always")
    assert proc.returncode == 0, proc.stderr
    summary = summary_of(proc)
    assert summary["broke_lock"]["pid"] == tick.pid
    assert summary["decision"] == "retrain" and summary["reason"].startswith("retrying")
    assert not group_alive(chain["pgid"])             # the orphaned chain was stopped
    assert "left running by dead tick" in (state / "logs" / "fullprocess.log").read_text()
    store = ModelStore(paths.models_dir)
    current = store.production_version()
    assert current is not None and store.has_version(current)
    assert (store.model_dir(current) / "MLmodel").is_file()
    assert not any(p.name.startswith(".staging") for p in store.versions_dir.iterdir())
    assert TickState.load(paths).pending is None
    assert tree_digest(source) == source_before       # the raw files are never touched
    assert read_holder(state / "fullprocess.lock") is None
