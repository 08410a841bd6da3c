"""The chain's wall time on the default SQLite store vs on the team tracking server.

Baseline: `python main.py` (default tabular chain, embedded data) with `main.tracking_uri=null`
(SQLite in the state dir, artifacts on the local disk). Against it, in the same run: the same
chain with `main.tracking_uri=http://127.0.0.1:<port>`, a real `mlflow server` (started by the
project's `python -m utils.pipeline.tracking_server`) on a throwaway PostgreSQL cluster of the
Debian binaries, artifacts proxied to the server's folder. Runs alternate (SQLite, server,
SQLite, ...) so load on a shared machine hits both alike; each run gets a fresh state dir.
Prints each time, the medians and the ratio server / SQLite.

    python benchmarks/tracking_backends.py --repeats 2
    python benchmarks/tracking_backends.py --steps data_ingestion,model_training,model_scoring,model_deployment
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.conftest import copy_embedded_tabular  # noqa: E402
from tests.fixtures.mlflow_server import MlflowServer  # noqa: E402
from tests.fixtures.postgres import PostgresCluster  # noqa: E402


def run_chain(base: Path, source: Path, steps: str, tracking_uri: str | None) -> float:
    state = Path(tempfile.mkdtemp(prefix="state-", dir=base))
    cmd = [sys.executable, str(REPO_ROOT / "main.py"), f"paths.state_dir={state}", f"data.source_dir={source}",
           "diagnostics.pypi_url=null", "main.reuse_runs=false", f"main.steps='{steps}'"]
    if tracking_uri:
        cmd.append(f"main.tracking_uri={tracking_uri}")
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "MLFLOW_TRACKING_URI")}
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=base, capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"chain failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="chains per backend (default 1)")
    parser.add_argument("--steps", default="all", help="main.steps of each chain (default all)")
    parser.add_argument("--workers", type=int, default=2, help="tracking server workers")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    os.chmod(base, 0o755)   # the cluster runs as the postgres user when we are root
    source = copy_embedded_tabular(base / "source")
    cluster = PostgresCluster.start(base / "pg")
    server = None
    try:
        db = cluster.create_database("mlflow_bench", role="mlflow_bench")
        server = MlflowServer(db.uri, base / "server-artifacts", base / "server.log", workers=args.workers,
                              env={"PGPASSWORD": db.password})
        t0 = time.monotonic()
        server.start(timeout_s=600)
        print(f"tracking server up in {time.monotonic() - t0:.1f} s ({server.url}, {args.workers} workers, "
              f"PostgreSQL {cluster.bin_dir.parent.name})", flush=True)
        times: dict[str, list[float]] = {"sqlite": [], "server": []}
        for i in range(args.repeats):
            for name, uri in (("sqlite", None), ("server", server.url)):
                seconds = run_chain(base, source, args.steps, uri)
                times[name].append(seconds)
                print(f"  run {i + 1} {name:6s}: {seconds:6.1f} s", flush=True)
        sqlite, remote = statistics.median(times["sqlite"]), statistics.median(times["server"])
        print(f"chain ({args.steps}), median of {args.repeats}: SQLite {sqlite:.1f} s, "
              f"PostgreSQL server {remote:.1f} s, ratio server/SQLite {remote / sqlite:.2f}x")
    finally:
        if server is not None:
            server.stop()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
