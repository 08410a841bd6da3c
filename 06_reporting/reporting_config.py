"""The config of step `reporting`, declared once (main.py validates it before any step runs)."""
from __future__ import annotations

from dataclasses import dataclass, field

from utils.pipeline.step_config import TaskConfig, require


@dataclass
class ReportingSection:
    sample_rows: int = 15                   # predictions shown in the report's table
    api_url: str = "http://127.0.0.1:8000"  # used by apicalls.py, not by this step

    def __post_init__(self) -> None:
        require(self.sample_rows >= 0, "reporting.sample_rows", "a non-negative integer", self.sample_rows)


@dataclass
class ReportingConfig:
    state_dir: str = "???"
    task: TaskConfig = field(default_factory=TaskConfig)
    reporting: ReportingSection = field(default_factory=ReportingSection)
