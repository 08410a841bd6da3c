"""Progress of batch loops without a terminal: a log line at least every `logging.progress_every_s`.

NLU training has its own (epochs, 02_training/nlu_model.ProgressLog); this one is for the batch
prediction loops of scoring, diagnostics and evaluation, where an encoder on a loaded CPU takes
tens of seconds per batch and cron or chain.log would otherwise see nothing until the end.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """12s, 3m05s, 1h02m03s: what a person reads in an ETA."""
    rest = max(0, int(round(seconds)))
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class BatchProgress:
    """``update(done)`` after each batch: logs batch, samples/s and ETA once ``every_s`` has
    passed since the last line (0: never). Reads only the clock."""

    def __init__(self, label: str, total: int, batch_size: int, every_s: float = 30.0) -> None:
        self.label, self.total, self.batch_size, self.every_s = label, total, max(1, batch_size), every_s
        self.started = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.every_s <= 0 or now - self.last < self.every_s or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        batches = -(-self.total // self.batch_size)
        log.info("progress %s: batch %d/%d, %d/%d examples, %.1f samples/s, ETA %s", self.label,
                 -(-done // self.batch_size), batches, done, self.total, rate,
                 duration((self.total - done) / rate if rate > 0 else 0.0))
