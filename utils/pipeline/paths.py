"""Where everything the pipeline writes lives, derived from one root: ``paths.state_dir``.

One dataclass instead of string concatenation scattered over steps keeps the layout in
DESIGN.md true in a single place.
"""
from __future__ import annotations

import re
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


MODEL_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


RESERVED_NAMES = frozenset({"versions", "production"})   # the first layout's entries in models/


class ModelNameError(ValueError):
    """A model name that is not a safe identifier (it becomes a folder and a URL path)."""


def check_model_name(name: object) -> str:
    """``name`` if it is a safe identifier (letter, then letters, digits, _; at most 64)."""
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name) or name in RESERVED_NAMES:
        raise ModelNameError(
            f"task.model_name={name!r} is not a safe model name: use a letter followed by letters, "
            "digits or '_' (at most 64), e.g. task.model_name=churn_eu")
    return name


@dataclass(frozen=True)
class StatePaths:
    """The state-dir layout of DESIGN.md: shared files, and one namespace per model.

    ``StatePaths.of(dir)`` names the shared files (tracking DB, logs, prediction log, lock);
    ``.model(name)`` the same object scoped to one model, whose per-model properties
    (ingested data, model store, reports) live under ``<kind>/<model>/``. A per-model
    property of an unscoped object raises, so no code can write outside a namespace.
    """

    state_dir: Path
    model_name: str | None = None

    @classmethod
    def of(cls, state_dir: str | Path) -> "StatePaths":
        return cls(resolve_path(state_dir))

    def model(self, name: str) -> "StatePaths":
        return StatePaths(self.state_dir, check_model_name(name))

    def _scoped(self, kind: str) -> Path:
        if self.model_name is None:
            raise ModelNameError(f"{kind}/ is per model: use StatePaths.model(<model name>)")
        return self.state_dir / kind / self.model_name

    # ---- per model --------------------------------------------------------------------------
    @property
    def ingested_dir(self) -> Path:
        return self._scoped("ingested")

    @property
    def finaldata_csv(self) -> Path:
        return self.ingested_dir / "finaldata.csv"

    @property
    def finaldata_jsonl(self) -> Path:
        return self.ingested_dir / "finaldata.jsonl"

    def dataset(self, task_name: str) -> Path:
        """The model's ingested dataset: JSONL for NLU, CSV for the table-shaped tasks."""
        return self.finaldata_jsonl if task_name == "nlu" else self.finaldata_csv

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
    def models_dir(self) -> Path:
        """This model's store: versions/, production, deployments.jsonl, model.json, control.json."""
        return self._scoped("models")

    @property
    def reports_dir(self) -> Path:
        return self._scoped("reports")

    @property
    def tick_state_file(self) -> Path:
        """What the cron tick remembers about this model (drift reference, pending retrain)."""
        return self.models_dir / "tick_state.json"

    # ---- shared -----------------------------------------------------------------------------
    @property
    def models_root(self) -> Path:
        """models/: one folder per model."""
        return self.state_dir / "models"

    @property
    def deleted_dir(self) -> Path:
        """Records of deleted models (history, manifest), under models/.deleted/."""
        return self.models_root / ".deleted"

    @property
    def mlflow_db(self) -> Path:
        return self.state_dir / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "mlartifacts"

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
