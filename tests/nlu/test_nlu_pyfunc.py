"""The MLflow pyfunc: input shapes, log -> load in a clean process elsewhere, and serving."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

TEXTS = ["monthly   rainfall in northern Kenya 2015 to 2020 as geotiff", "what is NDVI ?", ""]


def test_texts_from_input_accepts_the_usual_shapes() -> None:
    from nlu_pyfunc import texts_from_input

    assert texts_from_input(["a b", "c"]) == ["a b", "c"]
    assert texts_from_input("a b") == ["a b"]
    assert texts_from_input(pd.DataFrame({"text": ["a", None]})) == ["a", ""]
    assert texts_from_input(pd.DataFrame({0: ["a"]})) == ["a"]
    assert texts_from_input(pd.Series(["a", float("nan")])) == ["a", ""]
    assert texts_from_input({"text": ["a", "b"]}) == ["a", "b"]
    with pytest.raises(ValueError, match="'text' column"):
        texts_from_input(pd.DataFrame({"a": [1], "b": [2]}))


@pytest.fixture(scope="module")
def logged_model(fitted: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The fitted tiny model logged and registered in a throwaway SQLite tracking store."""
    import mlflow
    from nlu_logging import log_nlu_model

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.create_experiment("nlu_test", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            info = log_nlu_model(fitted["trained"], name="model", registered_model_name="eo_nlu_test")
        yield {"tracking_uri": uri, "model_uri": info.model_uri, "root": root}
    finally:
        mlflow.set_tracking_uri(previous)


def _clean_env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow
def test_logged_model_loads_in_a_clean_process_elsewhere(
    logged_model: dict, fitted: dict, repo_root: Path, tmp_path: Path
) -> None:
    import nlu_model

    code = f"""
import json, sys
import mlflow, pandas as pd
repo = {str(repo_root)!r}
assert not [p for p in sys.path if p.rstrip('/') in (repo, repo + '/02_training', repo + '/utils')], sys.path
m = mlflow.pyfunc.load_model("models:/eo_nlu_test/1")
a = m.predict({TEXTS!r})
b = m.predict(pd.DataFrame({{"text": {TEXTS!r}}}), params={{"batch_size": 2}})
assert list(a.columns) == ["intent", "confidence", "tags", "slots"], a.columns
mods = sorted(k for k in sys.modules if k.startswith(("nlu", "utils")))
runtime = type(m.unwrap_python_model()._trained.model).__name__
print(json.dumps({{"records": a.to_dict(orient="records"), "df_records": b.to_dict(orient="records"),
                  "modules": mods, "runtime": runtime}}))
"""
    (tmp_path / "utils").mkdir()  # a decoy: the model must not depend on the repo's utils package
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=_clean_env(logged_model["tracking_uri"]),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] == ["nlu_data", "nlu_model", "nlu_onnx"]
    assert result["runtime"] == "OrtJointModel"      # the fast path, checked identical at load
    expected = nlu_model.predict(fitted["trained"], TEXTS)
    assert len(result["records"]) == len(result["df_records"]) == len(expected) == len(TEXTS)
    for got, exp in zip(result["records"] + result["df_records"], expected + expected):
        assert (got["intent"], got["tags"], got["slots"]) == (exp["intent"], exp["tags"], exp["slots"])
        assert got["confidence"] == pytest.approx(exp["confidence"], abs=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve(logged_model: dict, tmp_path: Path) -> None:
    port = _free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow_cli), "models", "serve", "-m", logged_model["model_uri"], "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=_clean_env(logged_model["tracking_uri"]),
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "wb"),
    )
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
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": TEXTS[:2]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        preds = json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"]
        assert len(preds) == 2
        text = TEXTS[0]
        for slot in preds[0]["slots"]:
            assert text[slot["start"]:slot["end"]] == slot["text"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
