"""The config of step `model_deployment`, declared once (main.py validates it before any step runs)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from utils.pipeline.step_config import TaskConfig, require


@dataclass
class DeploymentSection:
    tolerance: float = 0.0
    force: bool = False

    EXPECTED: ClassVar[dict[str, str]] = {"tolerance": "a score difference in [0, 1]"}

    def __post_init__(self) -> None:
        require(0 <= self.tolerance <= 1, "deployment.tolerance", self.EXPECTED["tolerance"],
                self.tolerance)


@dataclass
class DeploymentConfig:
    state_dir: str = "???"
    task: TaskConfig = field(default_factory=TaskConfig)
    deployment: DeploymentSection = field(default_factory=DeploymentSection)
    model_version: str | None = None   # candidate; None = newest of task.model_name
