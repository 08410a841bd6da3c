"""One tick, every model: per-model decisions, paused models, failures isolated, schedules.

The chain itself is replaced by a recorder (fullprocess.run_main): these tests are about what
the tick decides for each model; tests/fullprocess/test_tick_chain.py runs the real chain.
The clock is fullprocess.clock, moved by the tests (a week of daily ticks in a second).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

import fullprocess
from fullprocess import ChainRun
from tests.api.conftest import TEST_CSV, add_version, train_tabular_model
from tests.fullprocess.helpers import TABULAR_SOURCE, mark_ingested
from utils.models.catalog import read_monitoring, set_paused, write_manifest
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.tick.tick_state import read_ticks

DAY = 86400.0


@pytest.fixture
def chains(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every main.py the tick would run, as (model, steps); each 'succeeds' at once."""
    calls: list[tuple[str, str]] = []

    def fake_run_main(overrides, steps, timeout_s, paths, state, tick):
        name = next(o.split("=", 1)[1] for o in reversed(list(overrides)) if o.startswith("task.model_name="))
        calls.append((name, ",".join(steps)))
        return ChainRun(",".join(steps), exit_code=0)

    monkeypatch.setattr(fullprocess, "run_main", fake_run_main)
    return calls


def add_model(state: Path, name: str, source: Path, *extra: str) -> None:
    """A model as main.py leaves it: manifest, an ingested source, a deployed version."""
    from utils.pipeline.config import load_config
    from omegaconf import OmegaConf

    source.mkdir(parents=True, exist_ok=True)
    for csv in sorted(TABULAR_SOURCE.glob("*.csv"))[:1]:
        shutil.copy(csv, source / csv.name)
    overrides = [f"data.source_dir={source}", f"data.test_path={TEST_CSV}", *extra]
    paths = StatePaths.of(state)
    task = OmegaConf.to_container(load_config([*overrides, f"task.model_name={name}"]).task, resolve=True)
    write_manifest(paths, name, {"task": "tabular", "overrides": overrides, "task_config": task})
    store = ModelStore(paths.model(name).models_dir)
    model_dir = state.parent / f"sk-{name}"
    if not model_dir.exists():
        train_tabular_model(model_dir)
    version = f"{name}-v1"
    store.add_version(version, model_dir, {"model_name": name, "task": "tabular", "task_config": task})
    store.write_score(version, {"f1": 0.5}, "f1")
    store.deploy(version)
    mark_ingested(state, source, name)


def tick(state: Path, *args: str) -> int:
    return fullprocess.main([f"paths.state_dir={state}", *args])


def lines_of(state: Path, since: int = 0) -> list[dict]:
    return read_ticks(state, limit=1000)[since:]


def test_new_data_for_one_model_ingests_only_that_one(tmp_path, chains):
    state = tmp_path / "state"
    add_model(state, "churn_eu", tmp_path / "eu")
    add_model(state, "churn_us", tmp_path / "us")
    assert tick(state) == 0 and chains == []                      # nothing new anywhere
    assert {t["model"]: t["status"] for t in lines_of(state)} == {"churn_eu": "noop", "churn_us": "noop"}
    shutil.copy(TABULAR_SOURCE / "dataset2.csv", tmp_path / "us" / "new.csv")
    assert tick(state) == 0
    assert chains == [("churn_us", "data_ingestion")]
    last = {t["model"]: t for t in lines_of(state)[-2:]}
    assert last["churn_us"]["new_files"] == ["new.csv"] and last["churn_eu"]["decision"] == "noop"


def test_paused_model_is_skipped_and_says_so(tmp_path, chains):
    state = tmp_path / "state"
    add_model(state, "churn_eu", tmp_path / "eu")
    add_model(state, "churn_us", tmp_path / "us")
    set_paused(StatePaths.of(state), "churn_eu", True, "label audit")
    for name in ("eu", "us"):
        shutil.copy(TABULAR_SOURCE / "dataset2.csv", tmp_path / name / "new.csv")
    assert tick(state) == 0
    assert chains == [("churn_us", "data_ingestion")]
    paused = next(t for t in lines_of(state) if t["model"] == "churn_eu")
    assert paused["status"] == "paused" and "label audit" in paused["reason"]
    assert "churn_eu: skipped: automatic retraining paused" in (state / "logs" / "fullprocess.log").read_text()


def test_one_models_failure_does_not_stop_the_others(tmp_path, chains):
    state = tmp_path / "state"
    add_model(state, "churn_eu", tmp_path / "eu")
    add_model(state, "churn_us", tmp_path / "us")
    shutil.rmtree(tmp_path / "eu")                       # its source folder is gone
    shutil.copy(TABULAR_SOURCE / "dataset2.csv", tmp_path / "us" / "new.csv")
    assert tick(state) == 1
    by_model = {t["model"]: t for t in lines_of(state)}
    assert by_model["churn_eu"]["status"] == "failed" and "does not exist" in by_model["churn_eu"]["error"]
    assert by_model["churn_us"]["status"] == "ok" and chains == [("churn_us", "data_ingestion")]


def test_model_flag_limits_the_tick_and_unknown_models_fail_clearly(tmp_path, chains, capsys):
    state = tmp_path / "state"
    add_model(state, "churn_eu", tmp_path / "eu")
    add_model(state, "churn_us", tmp_path / "us")
    assert tick(state, "--model", "churn_us") == 0
    assert [t["model"] for t in lines_of(state)] == ["churn_us"]
    assert tick(state, "--model", "nope") == 1
    assert "no such model; models: churn_eu, churn_us" in lines_of(state)[-1]["error"]


def test_a_week_of_daily_ticks_retrains_once_and_monitors_daily(tmp_path, chains, monkeypatch):
    state = tmp_path / "state"
    add_model(state, "weekly", tmp_path / "src", "schedule.retrain_every=7d", "schedule.monitor_every=1d")
    t0 = time.time()
    versions = StatePaths.of(state).model("weekly").models_dir / "versions"
    for child in versions.iterdir():
        os.utime(child, (t0, t0))                        # trained at t0
    for day in range(1, 9):                              # ticks at t0 + 1d ... t0 + 8d (+1 h)
        monkeypatch.setattr(fullprocess, "clock", lambda d=day: t0 + d * DAY + 3600)
        assert tick(state) == 0, lines_of(state)[-1]
    assert chains == [("weekly", "model_training,model_scoring,model_deployment,diagnostics,reporting")]
    retrain = next(t for t in lines_of(state) if t["decision"] == "retrain")
    assert "schedule.retrain_every=7d elapsed" in retrain["reason"]
    history = read_monitoring(StatePaths.of(state), "weekly")
    assert len(history) == 8 and {h["source"] for h in history} == {"monitor"}
    assert all(isinstance(h["score"], float) for h in history)
    # a month without ticks catches up once, not four times
    monkeypatch.setattr(fullprocess, "clock", lambda: t0 + 40 * DAY)
    assert tick(state) == 0
    assert len(chains) == 2 and len(read_monitoring(StatePaths.of(state), "weekly")) == 9
    monkeypatch.setattr(fullprocess, "clock", lambda: t0 + 40 * DAY + 60)
    assert tick(state) == 0
    assert len(chains) == 2 and len(read_monitoring(StatePaths.of(state), "weekly")) == 9


def test_dry_run_names_each_model_and_the_lock_holder(tmp_path, chains, capsys):
    from filelock import FileLock

    state = tmp_path / "state"
    add_model(state, "churn_eu", tmp_path / "eu")
    add_model(state, "weekly", tmp_path / "src", "schedule.retrain_every=7d")
    set_paused(StatePaths.of(state), "churn_eu", True)
    shutil.copy(TABULAR_SOURCE / "dataset2.csv", tmp_path / "src" / "new.csv")
    with FileLock(str(state / "fullprocess.lock")):
        assert tick(state, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "lock: held by" in out
    assert "model churn_eu" in out and "paused since" in out
    assert "model weekly" in out and "ingest with" in out and "task.model_name=weekly" in out
    assert chains == [] and not (state / "logs" / "ticks.jsonl").exists()
