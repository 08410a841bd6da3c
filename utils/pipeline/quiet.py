"""Silence output that is known to be harmless, so what remains in a log means something.

* MLflow's "Downloading artifacts" tqdm bars (every model download; hundreds of carriage
  returns in chain.log) — ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``;
* MLflow UserWarnings that say nothing about our data: the dataset source that "can be
  interpreted in multiple ways" (mlflow.log_input of a local file), the integer-column
  schema hint (our features are read as floats before prediction) and "Add type hints to
  the `predict` method" (the NLU pyfunc is logged with an explicit signature);
* mlflow.projects' "Created directory ... for downloading remote URIs" INFO line per step;
* mlflow.store.db.utils' traceback of an SQLite error it then raises as an MlflowException
  (a full disk, a locked or read-only DB): the raised error reaches failures.run_entry, which
  prints the one line (or keeps the traceback for anything it does not know).

Turn all of it back on with ``PIPELINE_SHOW_WARNINGS=1`` in the environment (or set
``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true`` for the bars alone). Called by main.py and by
every step (utils/pipeline/step_runner.py); the environment variables reach the step
processes that main.py starts.
"""
from __future__ import annotations

import logging
import os
import warnings

SHOW_ENV = "PIPELINE_SHOW_WARNINGS"
HARMLESS_WARNINGS = (
    r"The specified dataset source can be interpreted in multiple ways",
    r"Hint: Inferred schema contains integer column",
    r".*Add type hints to the `predict` method",   # our pyfuncs declare their signature explicitly
)
QUIET_LOGGERS = ("mlflow.projects.utils",)
RERAISED_DB_ERROR = "SQLAlchemy database error"   # mlflow/store/db/utils.py: logged, then raised


class _DropReraisedDatabaseErrors(logging.Filter):
    """Drop mlflow's log of a database error it raises right after (the raise is reported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(RERAISED_DB_ERROR)


def silence_known_noise() -> bool:
    """Apply the filters above unless PIPELINE_SHOW_WARNINGS is set; True when applied."""
    if os.environ.get(SHOW_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return False
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    db_log = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _DropReraisedDatabaseErrors) for f in db_log.filters):
        db_log.addFilter(_DropReraisedDatabaseErrors())
    return True
