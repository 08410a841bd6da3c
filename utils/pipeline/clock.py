"""The pipeline's notion of "now": the real time, or a simulated one for rehearsals and tests.

`MLOPS_NOW` (epoch seconds, or an ISO 8601 time such as `2026-01-08T06:00:00+00:00`) fixes it
for one process and the processes it starts: the cron tick's schedules (`retrain_every`,
`monitor_every`, the last retrain and monitoring times it records) and the time of the
monitoring records read it, so a week of daily ticks can run in minutes
(tests/forecast/test_forecast_week.py). Unset (always, in production): time.time().
Standard library only: the idle tick imports it.
"""
from __future__ import annotations

import os
import time
from datetime import datetime

ENV = "MLOPS_NOW"


def now() -> float:
    """Seconds since the epoch: MLOPS_NOW when set, else the system clock."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return time.time()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{ENV}={value!r}: expected epoch seconds or an ISO 8601 time "
                         "(e.g. 2026-01-08T06:00:00+00:00); unset it to use the real clock") from None
    return parsed.timestamp()


def now_iso() -> str:
    """``now()`` as local time with its offset, the format of the state dir's records."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now()))
