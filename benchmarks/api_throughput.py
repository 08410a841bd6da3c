"""Throughput and latency of POST /prediction: our API vs `mlflow models serve`, same model.

One run, same machine, loopback only: a scaled logistic regression (StandardScaler +
LogisticRegression, trained on the embedded tabular data) is written into a temporary model
store and deployed; our API (04_deployment/serve.py: gunicorn, validation, Prometheus metrics
and the prediction log all on) and `mlflow models serve --env-manager local` serve that same
model folder. Each server gets the same load: a single record and a batch of 100 records per
request, `--concurrency` concurrent keep-alive clients, at most `--requests` requests or
`--duration-s` seconds per scenario. The load tool is `hey` (Debian package `hey`) when
installed, otherwise a Python thread client (slower: it competes with the servers for CPU).

    python benchmarks/api_throughput.py                        # defaults: 8 clients, 20k requests / 10 s
    python benchmarks/api_throughput.py --mlflow-workers 1 2 --with-bare --json out.json
    python benchmarks/api_throughput.py --two-models           # also our API with a second model loaded
    python benchmarks/api_throughput.py --with-empty --with-bare  # the ceiling: a handler with no model
    python benchmarks/api_throughput.py --with-empty --rate 400   # p99 at 400 req/s offered, not at saturation
    python benchmarks/api_throughput.py --rate 400 --hold-log-lock 2 --mlflow-workers  # predictions.db locked 2 s
    python benchmarks/api_throughput.py --rate 400 --redeploy-every 2 --mlflow-workers # a new model every 2 s

Prints one table: requests/s, p50 and p99 latency (ms), errors, the ratio to mlflow, and the
servers' CPU time per request (all their processes): on a shared machine the wall-clock numbers
move with the neighbours' load, the CPU cost per request much less.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from utils.models.model_store import ModelStore, parse_version_id, version_id  # noqa: E402

PYTHON = sys.executable
BIN = Path(PYTHON).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_model(state: Path) -> tuple[Path, list[dict[str, float]]]:
    """Train the scaled LR on the embedded data, deploy it as attrition_model-v1; return its folder."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    features = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]
    frame = pd.concat([pd.read_csv(p) for p in sorted((REPO_ROOT / "01_data/sourcedata/tabular").glob("*.csv"))])
    x, y = frame[features].astype(float), frame["exited"].astype(int)
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))]).fit(x, y)
    tmp = state / "saved"
    import sklearn

    mlflow.sklearn.save_model(model, str(tmp), signature=infer_signature(x, model.predict(x)),
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}"])  # no import scan
    store = deploy_saved(state / "models", "attrition_model", 1, tmp, "benchmark")
    records = [dict(zip(features, map(float, row))) for row in x.head(100).itertuples(index=False)]
    return store.model_dir(version_id("attrition_model", 1)), records


def deploy_saved(models: Path, name: str, number: int, saved: Path, reason: str) -> ModelStore:
    """Version ``number`` of model ``name`` from the saved MLflow model folder, in production."""
    store = ModelStore(models / name)
    version = version_id(name, number)
    store.add_version(version, saved, {"model_name": name, "registry_version": number, "task": "tabular"})
    store.write_score(version, {"f1": 0.5}, "f1")
    store.deploy(version, reason=reason)
    return store


def add_second_model(state: Path, second: Path) -> None:
    """A state dir serving the benchmark model and a second, independent model beside it."""
    shutil.copytree(state / "models" / "attrition_model", second / "models" / "attrition_model", symlinks=True)
    deploy_saved(second / "models", "second_model", 1, state / "saved", "benchmark")


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready ({url})")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


def wait_ready_post(url: str, body: Path, timeout_s: float, proc: subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready ({url})")
        try:
            if requests.post(url, data=body.read_bytes(), headers={"Content-Type": "application/json"},
                             timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---- load generation ---------------------------------------------------------------------
def run_hey(url: str, body: Path, requests_n: int, duration_s: float, concurrency: int,
            rate: float = 0.0) -> dict[str, Any]:
    """``rate`` > 0: offer that many requests/s in all (hey -q per client), for at most ``duration_s``."""
    paced = []
    if rate > 0:
        requests_n = max(concurrency, min(requests_n, int(rate * duration_s)))
        paced = ["-q", f"{rate / concurrency:g}"]
    cmd = ["hey", "-n", str(requests_n), "-c", str(concurrency), *paced, "-m", "POST", "-T", "application/json",
           "-D", str(body), "-t", "20", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s * 3 + 60).stdout

    def grab(pattern: str) -> float | None:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None

    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    errors = sum(n for c, n in codes.items() if c != 200)
    if "Error distribution:" in out:
        tail = out.split("Error distribution:", 1)[1]
        errors += sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s", tail, flags=re.M))
    return {"rps": grab(r"Requests/sec:\s+([\d.]+)"), "p50_ms": (grab(r"50%+ in ([\d.]+) secs") or 0) * 1000,
            "p99_ms": (grab(r"99%+ in ([\d.]+) secs") or 0) * 1000, "requests": sum(codes.values()),
            "max_ms": (grab(r"Slowest:\s+([\d.]+) secs") or 0) * 1000,
            "errors": errors, "tool": "hey"}


def run_python(url: str, body: Path, requests_n: int, duration_s: float, concurrency: int) -> dict[str, Any]:
    from urllib.parse import urlparse

    target = urlparse(url)
    payload = body.read_bytes()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    remaining = [requests_n]
    deadline = time.monotonic() + duration_s

    def client() -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=20)
        mine: list[float] = []
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", target.path, payload, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=20)
            mine.append(time.perf_counter() - t0)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    lat = sorted(latencies)
    return {"rps": len(lat) / elapsed, "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, "requests": len(lat),
            "max_ms": lat[-1] * 1000 if lat else 0.0, "errors": errors[0], "tool": "python"}


def server_cpu_s(proc: subprocess.Popen) -> float:
    """CPU seconds (user + system) used so far by a server and all its processes."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(proc.pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def load(url: str, body: Path, args: argparse.Namespace, proc: subprocess.Popen,
         follows_store: bool = False) -> dict[str, Any]:
    """Warm up, then measure; also the server's CPU time per request (robust to other load)."""
    runner = run_hey if shutil.which("hey") and not args.python_client else run_python
    runner(url, body, min(200, args.requests), 10, args.concurrency)     # warm-up, not measured
    cpu0 = server_cpu_s(proc)
    paced = {"rate": args.rate} if args.rate else {}
    holder = None
    if args.hold_log_lock:
        holder = threading.Thread(target=hold_write_lock, args=(args.state / "predictions.db", args.duration_s / 3,
                                                                args.hold_log_lock))
        holder.start()
    deployer = None
    if args.redeploy_every and follows_store:
        deployer = threading.Thread(target=keep_deploying, args=(args.state, args.duration_s, args.redeploy_every))
        deployer.start()
    result = runner(url, body, args.requests, args.duration_s, args.concurrency, **paced)
    for thread in (holder, deployer):
        if thread is not None:
            thread.join()
    result["server_cpu_ms_per_request"] = (server_cpu_s(proc) - cpu0) * 1000 / max(1, result["requests"])
    return result


def hold_write_lock(db: Path, after_s: float, hold_s: float) -> None:
    """What an operator's `sqlite3 predictions.db` in a transaction, or a long prune, does to
    the API's prediction-log writers: another process holds the write lock for ``hold_s``."""
    import sqlite3

    time.sleep(after_s)
    conn = sqlite3.connect(str(db), timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(hold_s)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def keep_deploying(state: Path, duration_s: float, every_s: float) -> None:
    """What a cron tick that retrains often does to the API: a new version of the served
    model goes into production every ``every_s`` (each a load no worker has cached)."""
    store = ModelStore(state / "models" / "attrition_model")
    deadline = time.monotonic() + duration_s
    while time.monotonic() + every_s < deadline:
        time.sleep(every_s)
        number = max(parse_version_id(v)[1] for v in store.list_versions()) + 1
        deploy_saved(state / "models", "attrition_model", number, state / "saved", "benchmark --redeploy-every")


# ---- servers -----------------------------------------------------------------------------
def start_ours(state: Path, port: int, args: argparse.Namespace, repo: Path = REPO_ROOT,
               log_name: str = "ours.log") -> subprocess.Popen:
    """serve.py of ``repo`` (this checkout, or --baseline-repo: the same server before a change)."""
    cmd = [PYTHON, str(repo / "04_deployment/serve.py"), f"paths.state_dir={state}",
           f"api.port={port}", f"api.workers={args.workers}", f"api.threads={args.threads}",
           f"api.worker_class={args.worker_class}", *args.override]
    env = {**os.environ, "API_KEY": "benchmark-key-not-secret-0123456789"}
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(cmd, cwd=str(state), env=env, start_new_session=True,
                            stdout=open(state / log_name, "w"), stderr=subprocess.STDOUT)


def start_mlflow(state: Path, model_dir: Path, port: int, workers: int) -> subprocess.Popen:
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(cmd, cwd=str(state), env=env, start_new_session=True,
                            stdout=open(state / f"mlflow-{workers}.log", "w"), stderr=subprocess.STDOUT)


BARE_APP = """
import os, mlflow.sklearn, pandas as pd
from flask import Flask, request, jsonify
model = mlflow.sklearn.load_model(os.environ["MODEL_DIR"])
columns = list(model.feature_names_in_)
app = Flask(__name__)

@app.post("/prediction")
def prediction():
    frame = pd.DataFrame.from_records(request.get_json()["records"], columns=columns)
    proba = model.predict_proba(frame)
    return jsonify({"predictions": [{"label": int(p.argmax()), "probability": float(p.max())} for p in proba]})
"""


EMPTY_APP = """
from flask import Flask, request, jsonify
app = Flask(__name__)

@app.post("/prediction")
def prediction():
    records = request.get_json()["records"]
    return jsonify({"predictions": [{"label": 0, "probability": 0.5} for _ in records]})
"""


def gunicorn_concurrency(args: argparse.Namespace) -> list[str]:
    """The worker settings serve.py gives gunicorn for ours (api.worker_class, its default
    api.worker_connections, or api.threads), so the bare handler runs under the same ones."""
    if args.worker_class == "gevent":
        return ["--worker-class", "gevent", "--worker-connections", "1000"]
    return ["--worker-class", "gthread", "--threads", str(args.threads)]


def start_bare(state: Path, model_dir: Path, port: int, args: argparse.Namespace,
               app: str = "bare_app", source: str = BARE_APP) -> subprocess.Popen:
    """A bare Flask handler calling the same model, no checks, no logs (or, with ``EMPTY_APP``,
    no model at all: the issue's ceiling), under the same gunicorn settings as ours (workers,
    worker class, connections or threads)."""
    (state / f"{app}.py").write_text(source)
    cmd = [PYTHON, "-m", "gunicorn", "-w", str(args.workers), *gunicorn_concurrency(args),
           "-b", f"127.0.0.1:{port}", "--chdir", str(state), f"{app}:app"]
    return subprocess.Popen(cmd, cwd=str(state), env={**os.environ, "MODEL_DIR": str(model_dir)},
                            start_new_session=True, stdout=open(state / f"{app}.log", "w"), stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5000, help="per measurement (upper bound)")
    parser.add_argument("--duration-s", type=float, default=10.0,
                        help="per measurement (python client: hard bound; hey: a timeout of 3x)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements per server and payload, interleaved; the table shows medians")
    parser.add_argument("--workers", type=int, default=2, help="our gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread)")
    parser.add_argument("--worker-class", choices=("gevent", "gthread"), default="gevent",
                        help="gunicorn worker class of ours and of the bare handler (api.worker_class)")
    parser.add_argument("--baseline-repo", type=Path,
                        help="also serve with this checkout's serve.py (e.g. the main branch): before/after in one run")
    parser.add_argument("--mlflow-workers", type=int, nargs="*", default=[1],
                        help="mlflow models serve --workers values to compare (empty: skip mlflow)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for our server, e.g. api.prediction_log=false (repeatable)")
    parser.add_argument("--with-bare", action="store_true",
                        help="also measure a bare Flask handler (gunicorn sync, --workers) calling the same model")
    parser.add_argument("--with-empty", action="store_true",
                        help="also measure an empty Flask handler (parses the body, no model): the ceiling")
    parser.add_argument("--two-models", action="store_true",
                        help="also our API on a state dir with a second model loaded (same route, same model)")
    parser.add_argument("--python-client", action="store_true", help="use the Python client even if hey exists")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offer this many requests/s in all instead of as many as the server takes "
                             "(hey -q): the latency at a given load, not at saturation (needs hey)")
    parser.add_argument("--hold-log-lock", type=float, default=0.0, metavar="S",
                        help="during each measurement another process holds predictions.db's write lock "
                             "for S seconds (from a third of --duration-s): do the workers stall with it?")
    parser.add_argument("--redeploy-every", type=float, default=0.0, metavar="S",
                        help="deploy a new version of the model every S seconds while our servers are "
                             "measured (each worker loads it while answering; see the max ms column)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.rate and (args.python_client or not shutil.which("hey")):
        parser.error("--rate needs hey (Debian package hey) and no --python-client")

    state = Path(tempfile.mkdtemp(prefix="bench-api-"))
    args.state = state
    servers: list[tuple[str, str, str, subprocess.Popen]] = []    # (label, kind, url, process)
    try:
        model_dir, records = build_model(state)
        bodies = {}
        for name, recs in (("single", records[:1]), ("batch100", records[:100])):
            for kind, key in (("ours", "records"), ("mlflow", "dataframe_records")):
                path = state / f"{kind}-{name}.json"
                path.write_text(json.dumps({key: recs}))
                bodies[(kind, name)] = path

        # all servers up at once (idle ones cost nothing), so measurements can interleave
        port = free_port()
        settings = f"{args.workers}x {args.worker_class}"
        servers.append((f"ours ({settings})" + "".join(f" {o}" for o in args.override), "ours",
                        f"http://127.0.0.1:{port}", start_ours(state, port, args)))
        if args.baseline_repo:
            port = free_port()
            servers.append((f"ours @ {args.baseline_repo.name} ({settings})", "ours", f"http://127.0.0.1:{port}",
                            start_ours(state, port, args, args.baseline_repo.resolve(), "baseline.log")))
        for workers in args.mlflow_workers:
            port = free_port()
            servers.append((f"mlflow models serve (--workers {workers})", "mlflow", f"http://127.0.0.1:{port}",
                            start_mlflow(state, model_dir, port, workers)))
        if args.two_models:
            second = state / "two-models"
            add_second_model(state, second)
            port = free_port()
            servers.append((f"ours, 2 models loaded ({settings})", "ours",
                            f"http://127.0.0.1:{port}", start_ours(second, port, args)))
        if args.with_bare:
            port = free_port()
            servers.append((f"bare Flask handler ({settings})", "bare", f"http://127.0.0.1:{port}",
                            start_bare(state, model_dir, port, args)))
        if args.with_empty:
            port = free_port()
            servers.append((f"empty Flask handler ({settings})", "bare", f"http://127.0.0.1:{port}",
                            start_bare(state, model_dir, port, args, "empty_app", EMPTY_APP)))
        for label, kind, url, proc in servers:
            ready = {"ours": "/health", "mlflow": "/ping"}
            if kind in ready:
                wait_ready(f"{url}{ready[kind]}", 300, proc)
            else:
                wait_ready_post(f"{url}/prediction", bodies[("ours", "single")], 300, proc)

        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for name in ("single", "batch100"):
                for label, kind, url, proc in servers:
                    path = {"mlflow": "/invocations", "ours": "/models/attrition_model/prediction"}.get(
                        kind, "/prediction")
                    body = bodies[("mlflow" if kind == "mlflow" else "ours", name)]
                    runs.setdefault((label, name), []).append(load(f"{url}{path}", body, args, proc,
                                                                   follows_store=kind == "ours"))
    finally:
        for *_, proc in servers:
            stop(proc)
    try:
        from utils.monitoring.prediction_log import count_predictions

        logged = count_predictions(state / "predictions.db")
    finally:
        shutil.rmtree(state, ignore_errors=True)

    results = []
    for (label, name), measured in runs.items():
        med = {k: statistics.median(m[k] for m in measured)
               for k in ("rps", "p50_ms", "p99_ms", "max_ms", "server_cpu_ms_per_request")}
        results.append({"server": label, "payload": name, **med,
                        "rps_range": [min(m["rps"] for m in measured), max(m["rps"] for m in measured)],
                        "requests": sum(m["requests"] for m in measured),
                        "errors": sum(m["errors"] for m in measured), "tool": measured[0]["tool"],
                        "rounds": measured})
    base = {r["payload"]: r["rps"] for r in results if r["server"].startswith("mlflow") and "--workers 1)" in r["server"]}
    offered = f", {args.rate:g} requests/s offered" if args.rate else ""
    if args.redeploy_every:
        offered += f", a new version deployed every {args.redeploy_every:g} s while ours are measured"
    print(f"\nPOST /prediction: {args.concurrency} concurrent clients{offered}, {os.cpu_count()} CPUs, load tool "
          f"{results[0]['tool']}, medians of {args.rounds} interleaved rounds of <= {args.requests} requests; "
          f"{logged} predictions in our log afterwards\n")
    bare = {r["payload"]: r["rps"] for r in results if r["server"].startswith("bare")}
    empty = {r["payload"]: r["rps"] for r in results if r["server"].startswith("empty")}
    print(f"{'server':44} {'payload':9} {'req/s':>7} {'(min-max)':>13} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'errors':>6} {'x mlflow':>8} {'x bare':>6} {'x empty':>7} {'CPU ms/req':>10}")
    for r in sorted(results, key=lambda r: (r["payload"] != "single", r["server"])):
        ratio = r["rps"] / base[r["payload"]] if base.get(r["payload"]) else float("nan")
        spread = f"{r['rps_range'][0]:.0f}-{r['rps_range'][1]:.0f}"
        to_bare = r["rps"] / bare[r["payload"]] if bare.get(r["payload"]) else float("nan")
        to_empty = r["rps"] / empty[r["payload"]] if empty.get(r["payload"]) else float("nan")
        print(f"{r['server']:44} {r['payload']:9} {r['rps']:7.0f} {spread:>13} {r['p50_ms']:7.2f} "
              f"{r['p99_ms']:7.2f} {r['max_ms']:7.0f} {r['errors']:6d} {ratio:8.2f} {to_bare:6.2f} {to_empty:7.2f} "
              f"{r['server_cpu_ms_per_request']:10.2f}")
    if args.json:
        args.json.write_text(json.dumps({"concurrency": args.concurrency, "rate": args.rate, "cpus": os.cpu_count(),
                                         "rounds": args.rounds, "prediction_log_rows": logged,
                                         "results": results}, indent=2))
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
