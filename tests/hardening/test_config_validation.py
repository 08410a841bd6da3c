"""Config errors fail at once, before any step runs: exit 2, one line naming the full key."""
from __future__ import annotations

import pytest

from tests.conftest import load_step_module, run_main
from utils.pipeline.config import load_config
from utils.pipeline.paths import StatePaths

main = load_step_module("main.py")


def check(*overrides: str, steps: str = "all") -> None:
    cfg = load_config([*overrides, f"main.steps='{steps}'"])
    chosen = main.select_steps(cfg.main.steps)
    main.validate_step_configs(chosen, cfg, StatePaths.of(cfg.paths.state_dir))


def test_bad_type_fails_before_any_step_with_the_full_key(state_dir):
    proc = run_main("training.C=abc", state_dir=state_dir, check=False, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "training.C: expected a positive float, got 'abc'" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (state_dir / "ingested").exists() and not (state_dir / "mlflow.db").exists()


@pytest.mark.parametrize("override, message", [
    ("training.C=-1", "training.C: expected a positive float, got -1.0"),
    ("training.C=0", "training.C: expected a positive float, got 0.0"),
    ("training.max_iter=1.5", "training.max_iter: expected a positive integer, got 1.5"),
    ("training.validation_fraction=1.5", "training.validation_fraction: expected a fraction in (0, 1), got 1.5"),
    ("training.solver=magic", "training.solver: expected one of lbfgs"),
    ("+training.unknown=1", "training.unknown: expected a key the step knows"),
    ("deployment.tolerance=-0.1", "deployment.tolerance: expected a score difference in [0, 1], got -0.1"),
    ("deployment.tolerance=abc", "deployment.tolerance: expected a score difference in [0, 1], got 'abc'"),
    ("deployment.force=maybe", "deployment.force: expected true or false, got 'maybe'"),
    ("deployment.champion_source=cloud", "deployment.champion_source: expected auto, store or registry, got 'cloud'"),
    ("deployment.lock_wait_s=0", "deployment.lock_wait_s: expected seconds > 0, got 0.0"),
    ("scoring.batch_size=0", "scoring.batch_size: expected a positive integer, got 0"),
    ("diagnostics.latency_calls=-3", "diagnostics.latency_calls: expected a non-negative integer, got -3"),
    ("reporting.sample_rows=x", "reporting.sample_rows: expected an integer, got 'x'"),
    ("data.read_timeout_s=0", "data.read_timeout_s: expected a positive number of seconds, got 0.0"),
])
def test_out_of_range_and_wrong_types_name_the_key(override, message):
    with pytest.raises(main.ConfigError) as info:
        check(override)
    assert message in str(info.value)


def test_only_the_chosen_steps_are_checked():
    check("deployment.tolerance=5", steps="data_ingestion")   # deployment not chosen: fine
    with pytest.raises(main.ConfigError, match="deployment.tolerance"):
        check("deployment.tolerance=5", steps="model_deployment")


def test_nlu_training_ranges():
    with pytest.raises(main.ConfigError, match=r"training.epochs: expected a non-negative integer, got -1"):
        check("task=nlu", "training.epochs=-1", steps="model_training")
    with pytest.raises(main.ConfigError, match=r"training.dev_fraction: expected a fraction in \[0, 1\)"):
        check("task=nlu", "training.dev_fraction=2", steps="model_training")


def test_defaults_are_valid_for_both_tasks():
    check()
    check("task=nlu")
