"""Slow clients vs the API: does /health answer while N connections hold partial bodies?

Starts the real server (04_deployment/serve.py -> gunicorn) on a state dir with one tiny
tabular model, opens N connections that send headers and the start of a body and then stall,
and sends `--probes` /health requests (fresh connections, `--probe-timeout` s each). Once with
`api.worker_class=gthread` (2 workers x 4 threads: the baseline of issue 12) and once with the
default gevent workers, in the same run.

    python benchmarks/slow_clients.py               # 100 slow clients, about a minute
    python benchmarks/slow_clients.py --clients 500
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def tiny_state(state: Path) -> None:
    """One deployed logistic regression of the default schema."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from utils.models.model_store import ModelStore

    x = np.random.default_rng(0).normal(size=(200, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.sklearn.save_model(model, f"{tmp}/model")
        store = ModelStore(state / "models")
        store.add_version("attrition_model-v1", Path(f"{tmp}/model"),
                          {"model_name": "attrition_model", "task": "tabular"})
    store.write_score("attrition_model-v1", {"f1": 0.5}, "f1")
    store.deploy("attrition_model-v1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def run(worker_class: str, clients: int, probes: int, probe_timeout: float, state: Path) -> int:
    port = free_port()
    cmd = [sys.executable, str(REPO_ROOT / "04_deployment" / "serve.py"), f"paths.state_dir={state}",
           f"api.port={port}", "api.workers=2", "api.threads=4", f"api.worker_class={worker_class}"]
    proc = subprocess.Popen(cmd, cwd=state, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 120
        while not probe(port, 2):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{worker_class}: server did not start")
            time.sleep(0.5)
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n{\"records\": [")
            held.append(s)
        time.sleep(1.0)
        return sum(probe(port, probe_timeout) for _ in range(probes))
    finally:
        for s in held:
            s.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--probe-timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="slow-clients-") as tmp:
        state = Path(tmp) / "state"
        tiny_state(state)
        results = {wc: run(wc, args.clients, args.probes, args.probe_timeout, state)
                   for wc in ("gthread", "gevent")}
    for wc, ok in results.items():
        label = "baseline gthread (2 x 4 threads)" if wc == "gthread" else "gevent (the default)"
        print(f"{label:34s}: {args.clients} slow clients held, /health answered {ok}/{args.probes} "
              f"within {args.probe_timeout:g} s")
    return 0 if results["gevent"] == args.probes else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
