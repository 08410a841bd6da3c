"""The training CLI under torchrun with 2 CPU processes (gloo) produces a working bundle."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nlu_model
import pytest

from utils.data.nlu_data import write_jsonl


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_encoder: str, generated: list, repo_root: Path, tmp_path: Path) -> None:
    write_jsonl(generated[:160], tmp_path / "train.jsonl")
    write_jsonl(generated[160:200], tmp_path / "dev.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(repo_root / "02_training" / "nlu_model.py"),
        "--train", "train.jsonl", "--dev", "dev.jsonl", "--encoder", tiny_encoder, "--out", "bundle",
        "--epochs", "2", "--batch-size", "8", "--lr", "5e-3", "--head-lr", "5e-3",
        "--device", "cpu", "--no-progress",
    ]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    log = out.stderr + out.stdout
    # 160 examples / batch 8 = 20 batches, 10 per rank: proof that the data was sharded
    assert "10 steps/epoch x 2 epochs, device cpu, world 2" in log
    assert log.count("[rank 0] INFO epoch") == 2 and "[rank 1] INFO" not in log  # rank 0 reports
    trained = nlu_model.load_bundle(tmp_path / "bundle")
    assert [h["epoch"] for h in trained.history] == [1, 2]
    assert trained.history[1]["train_loss"] < trained.history[0]["train_loss"]
    pred = nlu_model.predict(trained, [generated[0].text])[0]
    assert len(pred["tags"]) == len(generated[0].tokens)
