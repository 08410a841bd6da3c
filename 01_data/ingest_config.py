"""The config of step `data_ingestion`, declared once (main.py validates it before any step runs)."""
from __future__ import annotations

from dataclasses import dataclass, field

from utils.data.hashing import DEFAULT_READ_TIMEOUT_S
from utils.pipeline.step_config import TaskConfig, require


@dataclass
class DataSection:
    source_dir: str = "???"
    bad_rows: str = "quarantine_file"   # tabular, a file with bad rows: quarantine_file | drop_rows
    follow_symlinks: bool = False     # read links in source_dir (only links to regular files)
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S  # a file not read within this is retried next run

    def __post_init__(self) -> None:
        require(self.bad_rows in ("quarantine_file", "drop_rows"), "data.bad_rows",
                "quarantine_file or drop_rows", self.bad_rows)
        require(self.read_timeout_s > 0, "data.read_timeout_s", "a positive number of seconds",
                self.read_timeout_s)


@dataclass
class IngestionConfig:
    state_dir: str = "???"
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataSection = field(default_factory=DataSection)
