"""Where everything the pipeline writes lives, derived from one root: ``paths.state_dir``.

One dataclass instead of string concatenation scattered over steps keeps the layout in
DESIGN.md true in a single place.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

STEP_FOLDERS: dict[str, str] = {
    "data_ingestion": "01_data",
    "model_training": "02_training",
    "model_scoring": "03_scoring",
    "model_deployment": "04_deployment",
    "diagnostics": "diagnostics",
    "reporting": "06_reporting",
}


def resolve_path(path: str | Path, base: Path = REPO_ROOT) -> Path:
    """Absolute path; relative ones are taken from the repo root, never from a step folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


@dataclass(frozen=True)
class StatePaths:
    """The state-dir layout of DESIGN.md."""

    state_dir: Path

    @classmethod
    def of(cls, state_dir: str | Path) -> "StatePaths":
        return cls(resolve_path(state_dir))

    @property
    def ingested_dir(self) -> Path:
        return self.state_dir / "ingested"

    @property
    def finaldata_csv(self) -> Path:
        return self.ingested_dir / "finaldata.csv"

    @property
    def finaldata_jsonl(self) -> Path:
        return self.ingested_dir / "finaldata.jsonl"

    @property
    def ingest_record(self) -> Path:
        return self.ingested_dir / "ingestedfiles.csv"

    @property
    def schema_file(self) -> Path:
        """The frozen table schema (tabular): inferred by the first ingestion, then the contract."""
        return self.ingested_dir / "schema.yaml"

    @property
    def quarantine_dir(self) -> Path:
        return self.ingested_dir / "quarantine"

    @property
    def mlflow_db(self) -> Path:
        return self.state_dir / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "mlartifacts"

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def predictions_db(self) -> Path:
        return self.state_dir / "predictions.db"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "fullprocess.lock"

    @property
    def step_configs_dir(self) -> Path:
        """Resolved per-step config files that main.py hands to each step."""
        return self.state_dir / "logs" / "step_configs"
