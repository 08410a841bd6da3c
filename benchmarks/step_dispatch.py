"""Per-step dispatch overhead of `mlflow.run` (local env manager) vs the same step script run directly.

Both sides run the real data_ingestion step (a no-op rerun: its inputs are already ingested,
so the step's own work is small and the difference is the dispatch): `mlflow.run(01_data, ...)`
against `python 01_data/ingest.py --config ...` in a subprocess with a fresh MLflow run.
Prints per-call medians, the overhead per step and the ratio, all measured in this run.

    python benchmarks/step_dispatch.py --repeats 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from utils.pipeline.config import load_config  # noqa: E402
from utils.pipeline.paths import StatePaths, resolve_path  # noqa: E402
from utils.pipeline.step_config import write_step_config  # noqa: E402
from utils.pipeline.tracking import default_tracking_uri, ensure_experiment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import mlflow
    from omegaconf import OmegaConf

    state = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    paths = StatePaths.of(state)
    cfg = load_config([f"paths.state_dir={state}"])
    config = {"state_dir": str(state), "task": OmegaConf.to_container(cfg.task, resolve=True),
              "data": {"source_dir": str(resolve_path(cfg.data.source_dir))}}
    config_file = write_step_config(state / "ingest.json", config)
    uri = default_tracking_uri(paths)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    mlflow.set_tracking_uri(uri)
    experiment_id = ensure_experiment("bench", paths)
    step_dir = REPO_ROOT / "01_data"

    def via_mlflow_run() -> None:
        mlflow.run(str(step_dir), "main", parameters={"config": str(config_file)}, env_manager="local",
                   experiment_id=experiment_id, synchronous=True)

    def direct() -> None:
        run = mlflow.MlflowClient().create_run(experiment_id)
        subprocess.run([sys.executable, str(step_dir / "ingest.py"), "--config", str(config_file)],
                       check=True, capture_output=True, env={**os.environ, "MLFLOW_RUN_ID": run.info.run_id})

    direct()  # first ingestion does the real work; every timed call below is a no-op rerun
    timings: dict[str, list[float]] = {"direct": [], "mlflow.run": []}
    for _ in range(args.repeats):
        for name, fn in (("direct", direct), ("mlflow.run", via_mlflow_run)):
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)
    d, m = statistics.median(timings["direct"]), statistics.median(timings["mlflow.run"])
    print(f"step data_ingestion (no-op rerun), {args.repeats} calls each, medians:")
    print(f"  direct script (baseline): {d:6.2f} s")
    print(f"  mlflow.run, local env:    {m:6.2f} s")
    print(f"  dispatch overhead:        {m - d:6.2f} s per step (goal < 1.5 s)")
    print(f"  ratio mlflow.run/direct:  {m / d:6.2f}x")


if __name__ == "__main__":
    main()
