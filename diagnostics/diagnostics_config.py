"""The config of step `diagnostics`, declared once (main.py validates it before any step runs)."""
from __future__ import annotations

from dataclasses import dataclass, field

from utils.pipeline.step_config import LoggingSection, TaskConfig, require


@dataclass
class DiagnosticsData:
    test_path: str = "???"


@dataclass
class DiagnosticsSection:
    latency_calls: int = 200                     # single predictions timed for p50/p95/p99
    pypi_url: str | None = "https://pypi.org/pypi"  # PyPI JSON API; null = do not look up
    pypi_timeout_s: float = 2.0                  # per request; past it the latest version is "unknown"
    batch_size: int = 256                        # NLU prediction batch

    def __post_init__(self) -> None:
        require(self.latency_calls >= 0, "diagnostics.latency_calls", "a non-negative integer",
                self.latency_calls)
        require(self.pypi_timeout_s > 0, "diagnostics.pypi_timeout_s", "a positive number of seconds",
                self.pypi_timeout_s)
        require(self.batch_size > 0, "diagnostics.batch_size", "a positive integer", self.batch_size)


@dataclass
class DiagnosticsConfig:
    state_dir: str = "???"
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DiagnosticsData = field(default_factory=DiagnosticsData)
    diagnostics: DiagnosticsSection = field(default_factory=DiagnosticsSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
