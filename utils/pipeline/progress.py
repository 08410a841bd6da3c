"""Progress of batch loops without a terminal: a log line at least every `logging.progress_every_s`.

NLU training has its own (epochs, 02_training/nlu_model.ProgressLog); this one is for the batch
prediction loops of scoring, diagnostics and evaluation, where an encoder on a loaded CPU takes
tens of seconds per batch, and for the forecast's LightGBM fits (rounds: a 10,000-series fit takes
minutes), where cron or chain.log would otherwise see nothing until the end.
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


class CountProgress:
    """``update(done)`` after each unit of work (a batch, a boosting round): logs done/total, the
    rate and the ETA once ``every_s`` has passed since the last line (0: never). Reads only the clock."""

    def __init__(self, label: str, total: int, unit: str, every_s: float = 30.0) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.started = self.last = time.perf_counter()

    def due(self, done: int) -> float | None:
        """The rate (units/s) when a line is due now, else None."""
        now = time.perf_counter()
        if self.every_s <= 0 or now - self.last < self.every_s or done >= self.total:
            return None
        self.last = now
        return done / max(now - self.started, 1e-9)

    def eta(self, done: int, rate: float) -> str:
        return duration((self.total - done) / rate if rate > 0 else 0.0)

    def update(self, done: int) -> None:
        rate = self.due(done)
        if rate is not None:
            log.info("progress %s: %d/%d %s, %.2f %s/s, ETA %s", self.label, done, self.total, self.unit,
                     rate, self.unit, self.eta(done, rate))


class BatchProgress(CountProgress):
    """Batches of examples: the line also names the batch and counts samples per second."""

    def __init__(self, label: str, total: int, batch_size: int, every_s: float = 30.0) -> None:
        super().__init__(label, total, "examples", every_s)
        self.batch_size = max(1, batch_size)

    def update(self, done: int) -> None:
        rate = self.due(done)
        if rate is None:
            return
        batches = -(-self.total // self.batch_size)
        log.info("progress %s: batch %d/%d, %d/%d examples, %.1f samples/s, ETA %s", self.label,
                 -(-done // self.batch_size), batches, done, self.total, rate, self.eta(done, rate))
