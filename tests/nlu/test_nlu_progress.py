"""Progress of NLU training without a terminal: log lines inside the epoch (cron, chain.log)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from utils.data.nlu_data import write_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRESS = re.compile(r"progress step model_training: epoch (\d+)/2, batch (\d+)/(\d+), "
                      r"[\d.]+ samples/s, ETA epoch \S+, ETA training \S+")


def test_progress_lines_in_a_non_tty_training(tiny_encoder: str, small_train: list, tmp_path: Path) -> None:
    write_jsonl(small_train, tmp_path / "train.jsonl")
    write_jsonl(small_train[:4], tmp_path / "dev.jsonl")
    # stdout/stderr are pipes, not a TTY: no tqdm bar, so only the progress log says anything
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "02_training" / "nlu_model.py"), "--train", str(tmp_path / "train.jsonl"),
         "--dev", str(tmp_path / "dev.jsonl"), "--encoder", tiny_encoder, "--out", str(tmp_path / "b"),
         "--epochs", "2", "--batch-size", "2", "--device", "cpu", "--progress-every-s", "0.001",
         "--progress-label", "step model_training"],
        capture_output=True, text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                          "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [m for m in (PROGRESS.search(line) for line in proc.stderr.splitlines()) if m]
    assert lines, proc.stderr[-3000:]
    assert {m.group(1) for m in lines} == {"1", "2"}, "a line in every epoch"
    assert all(int(m.group(2)) <= int(m.group(3)) for m in lines)
    assert "it/s" not in proc.stderr, "no tqdm bar without a terminal"


def test_progress_off_with_zero_interval(tiny_cfg, small_train: list, caplog) -> None:
    import logging

    import nlu_model

    with caplog.at_level(logging.INFO, logger=nlu_model.log.name):
        nlu_model.train_nlu(small_train[:8], [], tiny_cfg(epochs=1, progress_every_s=0.0))
    assert "progress " not in caplog.text


def test_nlu_scoring_logs_progress_between_batches(tmp_path: Path, small_train: list, caplog) -> None:
    """The scoring step's batch loop (an encoder on a loaded CPU: tens of seconds per batch)."""
    import logging
    import time

    from utils.models.scoring_lib import score_nlu

    write_jsonl(small_train, tmp_path / "test.jsonl")

    def slow_predict(texts: list[str]) -> list[dict]:
        time.sleep(0.02)
        return [{"intent": "x", "tags": ["O"] * len(t.split())} for t in texts]

    line = re.compile(r"progress step model_scoring: batch (\d+)/5, (\d+)/20 examples, [\d.]+ samples/s, ETA \S+")
    with caplog.at_level(logging.INFO, logger="utils.pipeline.progress"):
        score_nlu(slow_predict, tmp_path / "test.jsonl", batch_size=4, progress_every_s=0.001,
                  progress_label="step model_scoring")
    found = [m for m in (line.search(r.getMessage()) for r in caplog.records) if m]
    assert [int(m.group(1)) for m in found] == [1, 2, 3, 4], caplog.text     # none after the last batch
    assert [int(m.group(2)) for m in found] == [4, 8, 12, 16]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="utils.pipeline.progress"):
        score_nlu(slow_predict, tmp_path / "test.jsonl", batch_size=4)        # off by default (API, evaluate)
    assert "progress " not in caplog.text


def test_tqdm_bar_on_a_terminal(tiny_encoder: str, small_train: list, tmp_path: Path) -> None:
    """On a terminal (a pty here) the tqdm bar shows, as before the progress log existed."""
    import os
    import pty
    import threading

    write_jsonl(small_train, tmp_path / "train.jsonl")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))   # a 0-column pty: no bar
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:          # the pty closed: the process is gone
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "02_training" / "nlu_model.py"), "--train", str(tmp_path / "train.jsonl"),
         "--encoder", tiny_encoder, "--out", str(tmp_path / "b"), "--epochs", "1", "--batch-size", "2",
         "--device", "cpu", "--progress-every-s", "0"],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, timeout=600,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "TERM": "xterm"})
    os.close(slave)
    reader.join(timeout=30)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "epoch 1" in text and "it/s" in text, text[-3000:]
