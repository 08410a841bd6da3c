"""MLOPS_NOW: the simulated clock of the tick and of monitoring records."""
from __future__ import annotations

import time

import pytest

from utils.pipeline import clock


def test_unset_is_the_system_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_NOW", raising=False)
    before = time.time()
    assert before <= clock.now() <= time.time()


def test_epoch_seconds_and_iso_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_NOW", "1790000000")
    assert clock.now() == 1_790_000_000.0
    monkeypatch.setenv("MLOPS_NOW", "2026-09-21T14:13:20+00:00")
    assert clock.now() == 1_790_000_000.0
    assert clock.now_iso().startswith(time.strftime("%Y-%m-%dT%H:%M", time.localtime(1_790_000_000)))


def test_a_bad_value_names_the_variable_and_the_remedy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_NOW", "next tuesday")
    with pytest.raises(ValueError, match="MLOPS_NOW='next tuesday': expected epoch seconds or an ISO 8601"):
        clock.now()


def test_the_tick_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import fullprocess

    monkeypatch.setenv("MLOPS_NOW", "1790000000")
    assert fullprocess.clock() == 1_790_000_000.0
