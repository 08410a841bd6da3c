"""Call the running API's endpoints and keep their answers in `reports/<model>/apireturns.txt`.

    python 06_reporting/apicalls.py                              # URL from reporting.api_url
    python 06_reporting/apicalls.py --url http://127.0.0.1:8000 --api-key-env API_KEY task=nlu
    python 06_reporting/apicalls.py --state-dir /srv/mlops paths.state_dir=/srv/mlops

A record of what the deployed service answers (not a pipeline step): POST /prediction with the
first test examples, then GET /scoring, /summarystats and /diagnostics. apireturns.txt holds one
JSON document per endpoint, one per line: endpoint, method, HTTP status, time taken, answer.
Trailing arguments are Hydra overrides, as for main.py (they pick the task, data and state dir).
Exit codes: 0 every call answered 2xx; 1 some endpoint answered an error; 2 bad arguments or
test data; 3 the API is not reachable (nothing written).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.pipeline.paths import StatePaths, resolve_path  # noqa: E402

log = logging.getLogger("apicalls")

EXIT_OK, EXIT_ENDPOINT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
GET_ENDPOINTS = ("/scoring", "/summarystats", "/diagnostics")
API_KEY_HEADER = "X-API-Key"


class ApiUnreachable(RuntimeError):
    """No HTTP answer at all (connection refused, timeout, DNS)."""


def prediction_payload(task: Any, test_path: Path, n: int) -> dict[str, Any]:
    """The first ``n`` test examples without their labels: {"records": [...]} or {"texts": [...]}."""
    if task.name == "tabular":
        import pandas as pd

        id_column = task.id_column if task.id_column not in (None, "auto") else None
        frame = pd.read_csv(test_path, dtype={id_column: str} if id_column else None, nrows=n)
        if task.label_column not in frame.columns:
            raise ValueError(f"{test_path}: missing column(s) {[task.label_column]}")
        # every column but the label: the API ignores the id's echo, excluded columns are accepted
        columns = [c for c in frame.columns if c != task.label_column]
        return {"records": json.loads(frame[columns].to_json(orient="records"))}
    from utils.data.nlu_data import read_nlu_path

    return {"texts": [ex.text for ex in read_nlu_path(test_path)[:n]]}


def call(session: Any, method: str, url: str, endpoint: str, timeout: float,
         payload: dict[str, Any] | None = None, model: str | None = None) -> dict[str, Any]:
    """One request -> the record written to apireturns.txt; ApiUnreachable when no answer."""
    import requests

    started = time.perf_counter()
    try:
        resp = session.request(method, url.rstrip("/") + endpoint, json=payload, timeout=timeout,
                               params={"model": model} if model else None)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ApiUnreachable(f"{method} {url.rstrip('/')}{endpoint}: {exc.__class__.__name__}: {exc}") from exc
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    return {"endpoint": endpoint, "method": method, "url": resp.url, "status": resp.status_code,
            "ok": resp.ok, "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "response": body}


def call_all(url: str, payload: dict[str, Any], api_key: str | None, timeout: float,
             model: str | None = None) -> list[dict[str, Any]]:
    """Every endpoint once, for ``model`` (``?model=``: the API serves several)."""
    import requests

    with requests.Session() as session:
        if api_key:
            session.headers[API_KEY_HEADER] = api_key
            session.headers["Authorization"] = f"Bearer {api_key}"
        records = [call(session, "POST", url, "/prediction", timeout, payload, model=model)]
        records += [call(session, "GET", url, endpoint, timeout, model=model) for endpoint in GET_ENDPOINTS]
    return records


def write_returns(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--url", default=None, help="API base URL (default: reporting.api_url of config.yaml)")
    parser.add_argument("--api-key-env", default="API_KEY",
                        help="environment variable holding the API key (default: API_KEY; unset = no key)")
    parser.add_argument("--state-dir", default=None,
                        help="where reports/<model>/apireturns.txt goes (default: paths.state_dir of config.yaml)")
    parser.add_argument("--examples", type=int, default=5, help="test examples sent to /prediction")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. task=nlu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from utils.pipeline.config import load_config

    try:
        cfg = load_config(args.overrides)
    except Exception as exc:  # hydra's errors name the bad override
        print(f"error: bad overrides {args.overrides}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    url = args.url or cfg.reporting.api_url
    paths = StatePaths.of(args.state_dir or cfg.paths.state_dir).model(cfg.task.model_name)
    test_path = resolve_path(cfg.data.test_path)
    try:
        payload = prediction_payload(cfg.task, test_path, args.examples)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read test examples from {test_path}: {exc} (set data.test_path=...)",
              file=sys.stderr)
        return EXIT_USAGE
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    try:
        records = call_all(url, payload, api_key, args.timeout, cfg.task.model_name)
    except ApiUnreachable as exc:
        print(f"error: the API is not reachable at {url} ({exc}).\n"
              "Start it with `./run_pipeline.sh serve` or pass --url <base URL of the running API>.",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    out = paths.reports_dir / "apireturns.txt"
    write_returns(out, records)
    for r in records:
        print(f"{r['method']:4} {r['endpoint']:14} -> {r['status']} ({r['elapsed_ms']:.0f} ms)")
    failed = [r for r in records if not r["ok"]]
    print(f"wrote {out}" + (f"; {len(failed)} endpoint(s) answered an error" if failed else ""))
    if failed and not api_key and any(r["status"] in (401, 403) for r in failed):
        print(f"hint: set the API key in ${args.api_key_env} (--api-key-env names the variable)", file=sys.stderr)
    return EXIT_ENDPOINT_ERROR if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
