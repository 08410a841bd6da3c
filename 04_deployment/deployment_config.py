"""The config of step `model_deployment`, declared once (main.py validates it before any step runs)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from utils.pipeline.step_config import TaskConfig, require


@dataclass
class DeploymentSection:
    tolerance: float = 0.0
    force: bool = False
    # where the gate reads the champion: the local store, the registry (alias + version tags,
    # under the registry's champion lock), or auto: the registry when the tracking URI is a server
    champion_source: str = "auto"
    lock_wait_s: float = 120.0     # how long a gate waits for another host's deploy (registry source)

    EXPECTED: ClassVar[dict[str, str]] = {"tolerance": "a score difference in [0, 1]",
                                          "champion_source": "auto, store or registry",
                                          "lock_wait_s": "seconds > 0"}

    def __post_init__(self) -> None:
        require(0 <= self.tolerance <= 1, "deployment.tolerance", self.EXPECTED["tolerance"],
                self.tolerance)
        require(self.champion_source in ("auto", "store", "registry"), "deployment.champion_source",
                self.EXPECTED["champion_source"], self.champion_source)
        require(self.lock_wait_s > 0, "deployment.lock_wait_s", self.EXPECTED["lock_wait_s"], self.lock_wait_s)


@dataclass
class DeploymentConfig:
    state_dir: str = "???"
    task: TaskConfig = field(default_factory=TaskConfig)
    deployment: DeploymentSection = field(default_factory=DeploymentSection)
    model_version: str | None = None   # candidate; None = newest of task.model_name
