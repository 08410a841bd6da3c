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
    assert set(conf["training"]) - {"dev_fraction"} <= fields
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
