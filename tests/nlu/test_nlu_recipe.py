"""The recipe settings (GPU-only epochs, new config keys) and the recipe benchmark script."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def test_epochs_cuda_applies_on_cuda_only() -> None:
    import nlu_model

    cfg = nlu_model.NluTrainConfig(epochs=4, epochs_cuda=20)
    assert nlu_model.max_epochs(cfg, torch.device("cpu")) == 4
    assert nlu_model.max_epochs(cfg, torch.device("cuda", 0)) == 20
    same = nlu_model.NluTrainConfig(epochs=4)
    assert nlu_model.max_epochs(same, torch.device("cuda", 0)) == 4


@pytest.mark.parametrize("key, value, message", [
    ("slot_decoder", "beam", "training.slot_decoder: expected viterbi, argmax or crf"),
    ("label_smoothing", 1.0, "training.label_smoothing: expected a fraction in [0, 1)"),
    ("layer_lr_decay", 0.0, "training.layer_lr_decay: expected a number in (0, 1]"),
    ("epochs_cuda", -1, "training.epochs_cuda: expected a non-negative integer"),
])
def test_new_keys_are_range_checked(key: str, value: object, message: str) -> None:
    import train_config

    from utils.pipeline.step_config import ConfigValueError

    with pytest.raises(ConfigValueError) as info:
        train_config.training_params("nlu", {key: value})
    assert message in str(info.value)


def test_task_config_keys_are_all_fields() -> None:
    """utils/conf/task/nlu.yaml sets only NluTrainConfig fields (plus dev_fraction)."""
    import dataclasses

    import nlu_model
    import yaml

    conf = yaml.safe_load((REPO / "utils" / "conf" / "task" / "nlu.yaml").read_text())
    fields = {f.name for f in dataclasses.fields(nlu_model.NluTrainConfig)}
    assert set(conf["training"]) - {"dev_fraction", "int8"} <= fields
    assert conf["training"]["slot_decoder"] == "viterbi"


def test_recipe_script_scores_both_decoders(tmp_path: Path, tiny_encoder: str, generated) -> None:
    from utils.data.nlu_data import write_bio_folder

    bench = tmp_path / "bench"
    write_bio_folder({"train": generated[:40], "dev": generated[40:50], "test": generated[50:60]}, bench)
    results = tmp_path / "results.jsonl"
    cmd = [sys.executable, str(REPO / "benchmarks" / "nlu_recipe.py"), "--data", str(bench),
           "--name", "smoke", "--threads", "1", "--results", str(results),
           "--save-bundle", str(tmp_path / "bundle"), "--train-subset", "30",
           "--set", f"encoder={tiny_encoder}", "epochs=2", "batch_size=8", "device=cpu"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    record = json.loads(results.read_text().splitlines()[-1])
    assert record["n_train"] == 30 and record["n_dev"] == 10 and record["epochs_run"] == 2
    assert set(record["dev"]) == {"viterbi", "argmax"} and "test" not in record
    for metrics in record["dev"].values():
        assert 0 <= metrics["exact_match"] <= 100
    subprocess.run([*cmd[:2], "--data", str(bench), "--name", "smoke-test", "--results", str(results),
                    "--score-bundle", str(tmp_path / "bundle")], check=True, capture_output=True, timeout=300)
    scored = json.loads(results.read_text().splitlines()[-1])
    assert scored["n_test"] == 10 and set(scored["test"]) == {"viterbi", "argmax"}


def _run(sets: list[str], em: float, f1: float = 95.0, data: str = "/tmp/snips") -> dict:
    dev = {"intent_accuracy": 98.0, "slot_f1": f1, "exact_match": em}
    return {"name": "x", "data": data, "set": sets, "epochs_run": 6, "best_epoch": 6,
            "dev": {"viterbi": dev, "argmax": {**dev, "exact_match": 0.0}}}


def test_seed_means_group_runs_of_one_recipe_whatever_their_seed_and_spelling(tmp_path: Path) -> None:
    from tests.conftest import load_step_module

    recipe = load_step_module("benchmarks/nlu_recipe.py")
    results = tmp_path / "results.jsonl"
    records = [
        _run(["lr=2e-4", "lr=3e-4", "layer_lr_decay=0.85", "progress_every_s=300"], 91.0, 96.0),
        _run(["layer_lr_decay=0.85", "lr=0.0003", "seed=43", "slot_decoder=viterbi"], 89.0, 95.0),
        _run(["layer_lr_decay=0.85", "lr=3e-4", "dropout=0.2"], 80.0),          # another recipe
        _run(["layer_lr_decay=0.85", "lr=3e-4"], 70.0, data="default"),        # another data set
        {"name": "scored", "data": "/tmp/snips", "dev": {"viterbi": {"exact_match": 1.0}}},  # --score-bundle
    ]
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert recipe.recipe_key(["lr=2e-4", "lr=3e-4", "seed=7", "slot_decoder=viterbi"]) == (("lr", "0.0003"),)
    assert recipe.recipe_key(["slot_context=sentence"]) == (("slot_context", "sentence"),)  # a removed setting
    rows = recipe.seed_means_table(str(results)).splitlines()[2:]
    assert len(rows) == 3
    first = [c.strip() for c in rows[0].strip("|").split("|")]
    assert first == ["snips", "layer_lr_decay=0.85 lr=0.0003", "42, 43", "98.00", "95.50", "90.00", "89.00-91.00"]
    assert "dropout=0.2" in rows[1] and rows[2].startswith("| default |")


def test_tables_of_a_missing_results_file_end_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.jsonl"
    for flag in ("--table", "--seed-means"):
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "nlu_recipe.py"), flag,
                               "--results", str(missing)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert done.stderr.strip() == f"{missing}: no results file (train a recipe first, or pass --results)"
