"""The config of step `model_scoring`, declared once (main.py validates it before any step runs)."""
from __future__ import annotations

from dataclasses import dataclass, field

from utils.pipeline.step_config import LoggingSection, TaskConfig, require


@dataclass
class ScoringData:
    test_path: str = "???"


@dataclass
class ScoringSection:
    batch_size: int = 256
    backtest_windows: int = 3      # forecast: rolling origins, one task.horizon apart
    refit: bool = True             # forecast: refit the recipe at every origin

    def __post_init__(self) -> None:
        require(self.batch_size > 0, "scoring.batch_size", "a positive integer", self.batch_size)
        require(self.backtest_windows > 0, "scoring.backtest_windows", "a positive integer", self.backtest_windows)


@dataclass
class ScoringConfig:
    state_dir: str = "???"
    task: TaskConfig = field(default_factory=TaskConfig)
    data: ScoringData = field(default_factory=ScoringData)
    scoring: ScoringSection = field(default_factory=ScoringSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    model_version: str | None = None   # store version to score; None = newest of task.model_name
