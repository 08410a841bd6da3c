"""How long a model reload stops a gevent worker's other requests (issue 16, the serving tail).

Under gunicorn's gevent workers every request of a worker runs on one event loop. When a new
version goes into production, the request that notices loads it. Baseline: the load on the
loop, as the API did before (`load_served_model` called in the greenlet). Now: `ModelHolder`
runs a reload in gevent's thread pool (`utils/monitoring/off_loop.py`). A ticker greenlet
(1 ms sleeps) stands in for the worker's other requests; the table shows how often it ran
during the load and its longest pause. What still pauses the loop is Python code holding the
GIL, mostly the full garbage collection of `freeze_heap` (shown alone, for scale).

    python benchmarks/reload_pause.py                        # the benchmark's tabular model
    python benchmarks/reload_pause.py --store STATE/models/nlu_query_model --repeats 3

Each `--store` is a model store folder (`models/<name>`) with a production link; without one
a scaled logistic regression is trained on the embedded data into a temporary store.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import gevent  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "04_deployment")]

from api import model_service  # noqa: E402
from utils.models.model_store import ModelStore  # noqa: E402


def loop_pauses(work: Callable[[], Any]) -> dict[str, float]:
    """Run ``work`` in this greenlet while a ticker greenlet sleeps 1 ms at a time."""
    ticks: list[float] = []

    def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            gevent.sleep(0.001)

    greenlet = gevent.spawn(ticker)
    gevent.sleep(0.01)
    start = time.perf_counter()
    work()
    end = time.perf_counter()
    greenlet.kill()
    marks = [start, *(t for t in ticks if start < t < end), end]
    return {"load_ms": (end - start) * 1000, "loop_runs": len(marks) - 2,
            "longest_pause_ms": max(b - a for a, b in zip(marks, marks[1:])) * 1000}


def measure(store: ModelStore, repeats: int) -> list[dict[str, Any]]:
    version = Path(os.readlink(store.production_link)).name
    holder = model_service.ModelHolder(store)
    if holder.current() is None:                     # the first load (imports) stays on the loop
        raise SystemExit(f"{store.root}: cannot load production: {holder.last_error}")
    rows: list[dict[str, Any]] = []
    for _ in range(repeats):                         # interleaved, so neighbours' load hits both
        rows.append({"mode": "on the loop (before)", **loop_pauses(
            lambda: model_service.load_served_model(store, version, use_cache=False))})
        rows.append({"mode": "ModelHolder.reload (now)", **loop_pauses(lambda: holder.reload(force=True))})
        freeze = loop_pauses(model_service.freeze_heap)
        rows.append({"mode": "freeze_heap alone", **freeze})
    return [{"model": version, "mode": mode, **{k: statistics.median(r[k] for r in rows if r["mode"] == mode)
                                                for k in ("load_ms", "loop_runs", "longest_pause_ms")}}
            for mode in dict.fromkeys(r["mode"] for r in rows)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, action="append", default=[],
                        help="a model store folder (models/<name>); default: the benchmark's tabular model")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = None
    stores = [ModelStore(p) for p in args.store]
    if not stores:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from api_throughput import build_model

        tmp = Path(tempfile.mkdtemp(prefix="bench-reload-"))
        build_model(tmp)
        stores = [ModelStore(tmp / "models" / "attrition_model")]
    try:
        results = [row for store in stores for row in measure(store, args.repeats)]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nA reload under gevent, medians of {args.repeats}: how long the worker's loop stood still\n")
    print(f"{'model':26} {'mode':26} {'load ms':>8} {'loop ran':>8} {'longest pause ms':>16} {'x before':>8}")
    before = {r["model"]: r["longest_pause_ms"] for r in results if r["mode"].endswith("(before)")}
    for r in results:
        print(f"{r['model']:26} {r['mode']:26} {r['load_ms']:8.0f} {r['loop_runs']:8.0f} "
              f"{r['longest_pause_ms']:16.0f} {r['longest_pause_ms'] / before[r['model']]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
