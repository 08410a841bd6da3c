"""The shared `main()` of every step: parse --config, load it typed, run inside the MLflow run.

Under `mlflow.run` the run already exists (MLFLOW_RUN_ID); `mlflow.start_run()` resumes it.
A step returns an exit code; non-zero marks the run FAILED so the pipeline stops there.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable, TypeVar

from utils.pipeline.quiet import silence_known_noise
from utils.pipeline.step_config import (
    StepConfigError,
    configure_logging,
    load_step_config,
    step_argument_parser,
)

T = TypeVar("T")


def run_step(description: str, schema: type[T], go: Callable[[T], int]) -> None:
    """Parse the CLI, load the config as ``schema``, call ``go`` in the run, exit with its code."""
    configure_logging()
    silence_known_noise()
    log = logging.getLogger("step")
    args = step_argument_parser(description).parse_args()
    try:
        config = load_step_config(args.config, schema)
    except StepConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)

    from utils.pipeline.failures import note_context, run_entry

    note_context(state_dir=getattr(config, "state_dir", None),
                 tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))

    def in_run() -> int:
        import mlflow

        from utils.pipeline.stale_runs import owner_tags

        with mlflow.start_run():
            mlflow.set_tags(owner_tags())
            code = go(config)
            if code:
                mlflow.end_run(status="FAILED")
        return code

    sys.exit(run_entry(in_run))   # an operational failure: one line, exit 1
