"""The forecasting pyfunc: input shapes, log -> load in a clean process elsewhere, mlflow models serve."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest


def test_ids_and_covariates_from_the_usual_shapes() -> None:
    from forecast_pyfunc import ids_and_covariates

    assert ids_and_covariates(["a", "b"], "series_id", "date") == (["a", "b"], None)
    assert ids_and_covariates("a", "series_id", "date") == (["a"], None)
    assert ids_and_covariates({"series_id": ["a", "a", "b"]}, "series_id", "date") == (["a", "b"], None)
    assert ids_and_covariates([{"series_id": "a"}], "series_id", "date") == (["a"], None)
    assert ids_and_covariates(pd.DataFrame({0: ["x"]}), "series_id", "date") == (["x"], None)
    ids, cov = ids_and_covariates(pd.DataFrame({"series_id": ["a"], "date": ["2025-01-01"], "promo": [1]}),
                                  "series_id", "date")
    assert ids == ["a"] and cov is not None and len(cov) == 1
    with pytest.raises(ValueError, match="'series_id' column"):
        ids_and_covariates(pd.DataFrame({"a": [1], "b": [2]}), "series_id", "date")


@pytest.fixture(scope="module")
def logged_model(fitted_small, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The fitted small model logged and registered in a throwaway SQLite tracking store."""
    import mlflow
    from forecast_training import log_forecast_model

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.create_experiment("forecast_test", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            info = log_forecast_model(fitted_small, registered_model_name="sales_test")
        yield {"tracking_uri": uri, "model_uri": info.model_uri, "root": root}
    finally:
        mlflow.set_tracking_uri(previous)


def _clean_env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_logged_model_round_trip_in_a_clean_process(logged_model, fitted_small, repo_root, tmp_path) -> None:
    ids = fitted_small.series_ids[:2]
    code = f"""
import json, sys
import mlflow, pandas as pd
repo = {str(repo_root)!r}
assert not [p for p in sys.path if p.rstrip('/') in (repo, repo + '/02_training', repo + '/utils')], sys.path
m = mlflow.pyfunc.load_model("models:/sales_test/1")
a = m.predict(pd.DataFrame({{"series_id": {ids!r}}}))
b = m.predict(pd.DataFrame({{"series_id": {ids!r}}}), params={{"horizon": 3}})
try:
    m.predict(pd.DataFrame({{"series_id": ["nope"]}}))
    err = None
except Exception as exc:
    err = str(exc)
mods = sorted(k for k in sys.modules if k == "utils" or k.startswith(("forecast", "utils.")))
print(json.dumps({{"a": a.to_dict(orient="records"), "b": len(b), "err": err, "modules": mods}}))
"""
    (tmp_path / "utils").mkdir()  # a decoy: the model must not depend on the repo's utils package
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=_clean_env(logged_model["tracking_uri"]),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] == ["forecast_model"]
    expected = fitted_small.predict(ids)
    got = pd.DataFrame(result["a"])
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert result["b"] == 6
    assert "unknown series id(s): nope" in result["err"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve(logged_model, fitted_small, tmp_path: Path) -> None:
    port = _free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow_cli), "models", "serve", "-m", logged_model["model_uri"], "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=_clean_env(logged_model["tracking_uri"]),
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "wb"),
    )
    ids = fitted_small.series_ids[:2]

    def post(body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.5)
        status, body = post({"dataframe_records": [{"series_id": i} for i in ids], "params": {"horizon": 5}})
        assert status == 200, body
        preds = body["predictions"]
        assert len(preds) == 10 and {p["series_id"] for p in preds} == set(ids)
        assert all(p["forecast"] >= 0 for p in preds)
        status, body = post({"dataframe_records": [{"series_id": "nope"}]})
        assert 400 <= status < 500 or "unknown series" in json.dumps(body)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
