"""Registry-served API replicas against one `mlflow server`: switch-over and poll load.

One run, loopback only, a real `mlflow server` with proxied artifacts, on a SQLite file
(plain `mlflow server`, the default), on a throwaway PostgreSQL cluster of the Debian
binaries (``--postgres``: tests/fixtures/postgres.py, the server started by the project's
``python -m utils.pipeline.tracking_server``), both back to back in one run
(``--backends sqlite postgres``, which also prints PostgreSQL / SQLite ratios), or on a
store of your own (``--backend-uri``). Every backend gets the same number of server workers.

1. **Switch-over**: ``--replicas`` API replicas (04_deployment/serve.py under gunicorn,
   `api.model_source=registry`, each with its own state dir) serve a model whose
   ``champion`` alias is flipped ``--flips`` times between two versions (what a deploy or a
   rollback does to the registry). Clients post to every replica without pause. Per flip:
   seconds from the alias move until every replica answers with the new version, and the
   failed requests. Baseline: `api.registry_poll_s` (a replica checks once per period).
2. **Poll load**: N = ``--pollers`` (default 1, 4, 16) local poller processes each make the
   replicas' poll call (one `registered-models/search`) every ``--poll-s`` seconds for
   ``--duration-s``. Reported: the call's p50/p95 latency and the server's CPU time per
   call (for PostgreSQL also the database's own CPU per call), as ratios to N=1 measured in
   the same run, and with two backends the p50 ratio PostgreSQL / SQLite at each N.

    python benchmarks/registry_replicas.py                      # ~6-10 min on a busy 2-core machine
    python benchmarks/registry_replicas.py --pollers 1 4 16 64 --poll-s 1 --skip-switch
    python benchmarks/registry_replicas.py --backends sqlite postgres --skip-switch   # poll load, both stores
    python benchmarks/registry_replicas.py --postgres          # = --backends postgres
    PGPASSWORD=... python benchmarks/registry_replicas.py --backend-uri postgresql+psycopg://u@127.0.0.1:5433/mlflow
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.api.registry_server import RegistryServer, register_version, set_champion  # noqa: E402
from tests.fixtures.mlflow_server import MlflowServer  # noqa: E402
from tests.fixtures.postgres import PostgresCluster, postgres_bin_dir  # noqa: E402

PYTHON = sys.executable
MODEL = "bench_model"

POLLER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from utils.models.registry_mirror import RegistryClient
client = RegistryClient(sys.argv[2], timeout_s=10)
poll_s, until = float(sys.argv[3]), float(sys.argv[4])
client.champions()                      # connection up before the measured window
lat, errors = [], 0                     # (wall time of the call, seconds)
while time.time() < until:
    t = time.perf_counter()
    try:
        client.champions()
        lat.append((time.time(), time.perf_counter() - t))
    except Exception:
        errors += 1
    time.sleep(max(0.0, poll_s - (time.perf_counter() - t)))
print(json.dumps({"lat": lat, "errors": errors}))
"""


def group_cpu_s(pgid: int) -> float:
    """utime + stime of every process in the server's process group (seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(f[11]) + int(f[12]) for _, f in _proc_stats() if int(f[2]) == pgid) / tick


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the /proc/<pid>/stat fields after "(comm)": state ppid pgrp ...) of every process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue


def postmaster_cpu_s(cluster: PostgresCluster) -> float:
    """CPU of a PostgreSQL cluster: the postmaster, its live backends, and its reaped ones
    (the postmaster's cutime + cstime). Seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    master = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    total = 0
    for pid, fields in _proc_stats():
        if pid == master:
            total += sum(int(f) for f in fields[11:15])
        elif int(fields[1]) == master:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def poll_load(server: MlflowServer, counts: list[int], poll_s: float, duration_s: float,
              db_cpu_s: Callable[[], float] | None = None) -> list[dict]:
    rows = []
    for n in counts:
        until = time.time() + 15 + duration_s       # time for n processes to start
        procs = [subprocess.Popen([PYTHON, "-c", POLLER, str(REPO_ROOT), server.url, str(poll_s), str(until)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(n)]
        time.sleep(max(0.0, until - duration_s - time.time()))
        cpu0, db0 = group_cpu_s(server.proc.pid), db_cpu_s() if db_cpu_s else 0.0
        outs = [json.loads(p.communicate(timeout=duration_s + 120)[0]) for p in procs]
        cpu = group_cpu_s(server.proc.pid) - cpu0
        db = (db_cpu_s() - db0) if db_cpu_s else float("nan")
        start = until - duration_s          # only the window the server's CPU was measured over
        lat = sorted(x for o in outs for t, x in o["lat"] if t >= start)
        calls = len(lat)
        rows.append({"pollers": n, "calls": calls, "errors": sum(o["errors"] for o in outs),
                     "calls_per_s": calls / duration_s,
                     "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
                     "p95_ms": 1000 * lat[int(0.95 * (calls - 1))] if lat else float("nan"),
                     "server_cpu_ms_per_call": 1000 * cpu / calls if calls else float("nan"),
                     "db_cpu_ms_per_call": 1000 * db / calls if calls else float("nan")})
    return rows


def switch_over(server: MlflowServer, root: Path, replicas: int, flips: int, registry_poll_s: float) -> dict:
    import requests

    from tests.api.conftest import FEATURES, RECORD, LiveServer, train_tabular_model

    row = {k: RECORD[k] for k in FEATURES}     # a model without a task config: no id column
    numbers = [register_version(server.url, MODEL, train_tabular_model(root / f"m{c}", C=c), s)
               for c, s in ((1.0, 0.6), (1e-4, 0.5))]
    set_champion(server.url, MODEL, numbers[0])
    lives = []
    for i in range(replicas):
        state = root / f"replica_{i}"
        state.mkdir()
        lives.append(LiveServer(state, "api.model_source=registry", f"main.tracking_uri={server.url}",
                                f"api.registry_poll_s={registry_poll_s}", "api.prediction_log=false",
                                workers=2))
    stop = threading.Event()
    seen: dict[str, list[tuple[float, int, str | None]]] = {live.url: [] for live in lives}

    def client(url: str) -> None:
        s = requests.Session()
        while not stop.is_set():
            try:
                r = s.post(f"{url}/models/{MODEL}/prediction", json={"records": [row]}, timeout=30)
                seen[url].append((time.time(), r.status_code, r.json().get("model_version")))
            except (requests.RequestException, ValueError) as exc:
                seen[url].append((time.time(), -1, repr(exc)[:100]))
            time.sleep(0.005)

    times = []
    try:
        for live in lives:
            live.wait_ready()
        threads = [threading.Thread(target=client, args=(u,), daemon=True) for u in seen]
        for t in threads:
            t.start()
        time.sleep(2)
        for flip in range(flips):
            target = numbers[(flip + 1) % 2]
            version = f"{MODEL}-v{target}"
            moved = time.time()
            set_champion(server.url, MODEL, target)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if all(recs and recs[-1][0] > moved and recs[-1][2] == version for recs in seen.values()):
                    break
                time.sleep(0.02)
            firsts = []
            for recs in seen.values():
                after = [r for r in recs if r[0] >= moved]
                last_old = max((i for i, r in enumerate(after) if r[2] != version), default=-1)
                firsts.append(after[last_old + 1][0] if last_old + 1 < len(after) else float("nan"))
            times.append(max(firsts) - moved)
            time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        for live in lives:
            live.stop()
    total = sum(len(v) for v in seen.values())
    failed = sum(1 for v in seen.values() for r in v if r[1] != 200)
    return {"replicas": replicas, "flips": flips, "registry_poll_s": registry_poll_s, "switch_s": times,
            "requests": total, "failed": failed}


@contextlib.contextmanager
def backend(kind: str, root: Path, backend_uri: str | None, workers: int) -> Iterator[tuple[MlflowServer, dict]]:
    """A started server on ``kind`` ("sqlite", "postgres" or "custom") and what describes it."""
    root.mkdir(parents=True)
    if kind != "postgres":
        server = RegistryServer(root / "tracking", backend_uri=backend_uri, workers=workers)
        t0 = time.monotonic()
        server.start(timeout_s=600)
        try:
            yield server, {"backend": kind, "start_s": time.monotonic() - t0}
        finally:
            server.stop()
        return
    cluster = PostgresCluster.start(root / "pg")
    try:
        db = cluster.create_database("mlflow_bench", role="mlflow_bench")
        server = MlflowServer(db.uri, root / "artifacts", root / "server.log", workers=workers,
                              env={"PGPASSWORD": db.password, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        t0 = time.monotonic()
        server.start(timeout_s=600)
        try:
            yield server, {"backend": kind, "start_s": time.monotonic() - t0,
                           "postgres": cluster.bin_dir.parent.name, "db_cpu_s": lambda: postmaster_cpu_s(cluster)}
        finally:
            server.stop()
    finally:
        cluster.stop()


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_backend(server: MlflowServer, info: dict, root: Path, args: argparse.Namespace) -> dict:
    """Switch-over (unless skipped), then the poll load, on one started server; prints its tables."""
    result: dict = {k: v for k, v in info.items() if not callable(v)}
    result["load_before"] = load_avg()
    print(f"\n== {info['backend']}: mlflow server up in {info['start_s']:.1f} s ({server.url}, "
          f"{args.workers} worker(s){', PostgreSQL ' + info['postgres'] if 'postgres' in info else ''}); "
          f"load average {result['load_before']}", flush=True)
    if not args.skip_switch:
        result["switch"] = sw = switch_over(server, root, args.replicas, args.flips, args.registry_poll_s)
        st = sw["switch_s"]
        print(f"switch-over, {sw['replicas']} replicas, api.registry_poll_s={sw['registry_poll_s']} "
              f"(baseline): mean {statistics.mean(st):.2f} s ({statistics.mean(st) / sw['registry_poll_s']:.2f}x "
              f"the poll period), max {max(st):.2f} s over {sw['flips']} alias moves; "
              f"{sw['failed']} of {sw['requests']} requests failed")
        print("  per alias move (the first one downloads the new version, later ones reuse the mirror): "
              + ", ".join(f"{x:.2f} s" for x in st))
    else:
        from tests.api.conftest import train_tabular_model

        set_champion(server.url, MODEL, register_version(server.url, MODEL, train_tabular_model(root / "m"), 0.6))
    result["poll"] = rows = poll_load(server, args.pollers, args.poll_s, args.duration_s, info.get("db_cpu_s"))
    result["load_after"] = load_avg()
    base = rows[0]
    print(f"poll call (registered-models/search) under N pollers, each every {args.poll_s} s; "
          f"baseline N={base['pollers']}; load average after {result['load_after']}")
    print(f"{'N':>4} {'calls/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'x p50':>6} {'srv CPU ms/call':>16} "
          f"{'x CPU':>6} {'db CPU ms/call':>15} {'errors':>6}")
    for r in rows:
        print(f"{r['pollers']:>4} {r['calls_per_s']:>8.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
              f"{r['p50_ms'] / base['p50_ms']:>6.2f} {r['server_cpu_ms_per_call']:>16.2f} "
              f"{r['server_cpu_ms_per_call'] / base['server_cpu_ms_per_call']:>6.2f} "
              f"{r['db_cpu_ms_per_call']:>15.2f} {r['errors']:>6}", flush=True)
    return result


def compare(results: list[dict]) -> None:
    """The p50 (and p95) of each backend at each N, as ratios to the first backend of the run."""
    first = results[0]
    print(f"\npoll call p50 / p95 by backend, ratio to {first['backend']} (same run)")
    print(f"{'N':>4} " + " ".join(f"{r['backend'] + ' p50':>14} {'p95':>7} {'x p50':>6}" for r in results))
    for i, row in enumerate(first["poll"]):
        cells = []
        for r in results:
            other = r["poll"][i]
            cells.append(f"{other['p50_ms']:>14.1f} {other['p95_ms']:>7.1f} {other['p50_ms'] / row['p50_ms']:>6.2f}")
        print(f"{row['pollers']:>4} " + " ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "postgres"], default=["sqlite"],
                        help="stores to run back to back, the first is the baseline (default: sqlite)")
    parser.add_argument("--postgres", action="store_true", help="= --backends postgres (a throwaway cluster)")
    parser.add_argument("--backend-uri", default=None,
                        help="a store of your own instead (password: PGPASSWORD); replaces --backends")
    parser.add_argument("--workers", type=int, default=1, help="mlflow server workers, every backend")
    parser.add_argument("--pollers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--poll-s", type=float, default=1.0, help="poll period of each benchmark poller")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--flips", type=int, default=4)
    parser.add_argument("--registry-poll-s", type=float, default=1.0, help="api.registry_poll_s of the replicas")
    parser.add_argument("--skip-switch", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    kinds = ["custom"] if args.backend_uri else ["postgres"] if args.postgres else list(dict.fromkeys(args.backends))
    if "postgres" in kinds and postgres_bin_dir() is None:
        print("error: PostgreSQL binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)",
              file=sys.stderr)
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = []
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        os.chmod(tmp, 0o755)     # as root the cluster runs as the postgres user: it must reach its folder
        for kind in kinds:
            root = Path(tmp) / kind
            with backend(kind, root, args.backend_uri, args.workers) as (server, info):
                results.append(run_backend(server, info, root, args))
    if len(results) > 1:
        compare(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
