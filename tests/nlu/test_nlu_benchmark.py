"""The throughput benchmark runs end to end on CPU with a tiny random encoder."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_benchmark_smoke_on_cpu(repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script extends sys.path
    spec = importlib.util.spec_from_file_location("nlu_bench", repo_root / "benchmarks" / "nlu_train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "result.json"
    assert bench.main(["--encoder", "random-tiny", "--n-train", "256", "--n-dev", "64", "--epochs", "1",
                       "--json-out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["ours"]["samples_per_s"] > 0 and result["ours"]["dev"]["n_examples"] == 64
    # the Trainer needs `accelerate`; without it the run is reported as skipped, not crashed
    assert "speedup" in result or "accelerate" in result.get("trainer_error", "")
    assert "samples/s" in capsys.readouterr().out
