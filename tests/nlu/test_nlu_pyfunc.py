"""The MLflow pyfunc: input shapes, log -> load in a clean process elsewhere, and serving."""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures.pyfunc_models import mlflow_models_serve, run_isolated, throwaway_registry

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

    with throwaway_registry(tmp_path_factory.mktemp("mlflow"), "nlu_test") as (uri, exp):
        with mlflow.start_run(experiment_id=exp):
            info = log_nlu_model(fitted["trained"], name="model", registered_model_name="eo_nlu_test")
        yield {"tracking_uri": uri, "model_uri": info.model_uri}


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
    result = run_isolated(code, tmp_path, logged_model["tracking_uri"])
    assert result["modules"] == ["nlu_data", "nlu_int8", "nlu_model", "nlu_onnx"]
    assert result["runtime"] == "OrtJointModel"      # the fast path, checked identical at load
    expected = nlu_model.predict(fitted["trained"], TEXTS)
    assert len(result["records"]) == len(result["df_records"]) == len(expected) == len(TEXTS)
    for got, exp in zip(result["records"] + result["df_records"], expected + expected):
        assert (got["intent"], got["tags"], got["slots"]) == (exp["intent"], exp["tags"], exp["slots"])
        assert got["confidence"] == pytest.approx(exp["confidence"], abs=1e-5)


@pytest.mark.slow
def test_mlflow_models_serve(logged_model: dict, tmp_path: Path) -> None:
    with mlflow_models_serve(logged_model["model_uri"], logged_model["tracking_uri"], tmp_path) as url:
        req = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"inputs": TEXTS[:2]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        preds = json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"]
        assert len(preds) == 2
        text = TEXTS[0]
        for slot in preds[0]["slots"]:
            assert text[slot["start"]:slot["end"]] == slot["text"]
