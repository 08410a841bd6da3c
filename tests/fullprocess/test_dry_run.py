"""`--dry-run` says what the real tick then does (issue 12: it promised a drift check and a rerun
the tick never made, and a no-op tick recorded `production_before: null` beside a deployed model)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.backbone.test_model_store import fake_model
from tests.conftest import PYTHON, copy_embedded_tabular
from tests.fullprocess.helpers import FULLPROCESS, mark_ingested, run_tick, summary_of
from utils.models.model_store import ModelStore
from utils.pipeline.paths import StatePaths
from utils.tick.tick_lock import write_holder


def dry_run(state: Path, source: Path, *overrides: str, code: int = 0) -> str:
    proc = subprocess.run([PYTHON, str(FULLPROCESS), "--dry-run", f"paths.state_dir={state}",
                           f"data.source_dir={source}", *overrides], capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def ingested(tmp_path: Path) -> tuple[Path, Path]:
    """Every source file in the ingest record and a dataset, but no drift reference yet (what
    main.py leaves before the first tick)."""
    source, state = tmp_path / "source", tmp_path / "state"
    copy_embedded_tabular(source)
    mark_ingested(state, source)
    shutil.copy(source / "dataset1.csv", StatePaths.of(state).model("attrition_model").finaldata_csv)
    return state, source


def deploy_fake(state: Path) -> str:
    store = ModelStore(StatePaths.of(state).model("attrition_model").models_dir)
    store.add_version("attrition_model-v1", fake_model(state.parent, "v1"), {"model_name": "attrition_model"})
    store.deploy("attrition_model-v1")
    return "attrition_model-v1"


def test_first_tick_on_a_built_dataset_is_promised_as_a_noop(ingested):
    state, source = ingested
    out = dry_run(state, source)
    assert "a tick would adopt the dataset as the reference (no drift check)" in out
    assert "a tick would: nothing (exit 0)" in out
    assert "check drift" not in out and "retrain" not in out.split("pending retrain")[1]
    proc = run_tick(state, source)
    assert proc.returncode == 0 and summary_of(proc)["decision"] == "noop"


def test_a_noop_tick_names_the_production_model(ingested):
    state, source = ingested
    version = deploy_fake(state)
    for _ in range(2):                     # the adopting tick and a plain no-op one
        summary = summary_of(run_tick(state, source))
        assert summary["decision"] == "noop"
        assert summary["production_before"] == summary["production_after"] == version
        assert summary["deployed"] is False


def test_dry_run_names_an_api_retrain_job_holding_the_lock(ingested):
    from filelock import FileLock

    state, source = ingested
    lock = StatePaths.of(state).lock_file
    with FileLock(str(lock)):
        write_holder(lock, "python -m api.jobrunner ... api.jobrunner job j1: python main.py main.steps=all")
        out = dry_run(state, source)
        summary = summary_of(run_tick(state, source))
    assert "lock: held by an API retrain job (pid " in out
    assert "a tick now would do nothing and exit 0 (decision: locked)" in out
    assert summary["decision"] == "locked" and "an API retrain job (pid " in summary["reason"]


def test_first_data_without_a_model_says_no_check_and_a_first_training(tmp_path):
    source = copy_embedded_tabular(tmp_path / "source")
    out = dry_run(tmp_path / "state", source)
    assert "a tick would: ingest with" in out
    assert "then no drift check (no drift reference yet: first data)" in out
    assert "and retrain if there are new rows (no production model yet)" in out


def test_a_bad_step_config_fails_the_tick_before_it_ingests(tmp_path):
    """training.C=abc: the tick ingested, then its retrain failed (exit 2) and was retried forever."""
    source = copy_embedded_tabular(tmp_path / "source")
    state = tmp_path / "state"
    out = dry_run(state, source, "training.C=abc", code=1)
    assert "a tick would FAIL: bad config" in out and "training.C: expected a positive float, got 'abc'" in out
    proc = run_tick(state, source, "training.C=abc")
    summary = summary_of(proc)
    assert proc.returncode == 1 and summary["status"] == "failed"
    assert "training.C: expected a positive float, got 'abc'" in summary["error"]
    assert not StatePaths.of(state).model("attrition_model").finaldata_csv.exists()   # nothing ingested
    assert not (StatePaths.of(state).model("attrition_model").models_dir / "tick_state.json").exists() or \
        '"pending": null' in (StatePaths.of(state).model("attrition_model").models_dir / "tick_state.json").read_text()
