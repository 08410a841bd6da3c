"""The forecasting pyfunc: input shapes, log -> load in a clean process elsewhere, mlflow models serve."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures.pyfunc_models import mlflow_models_serve, run_isolated, throwaway_registry


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

    with throwaway_registry(tmp_path_factory.mktemp("mlflow"), "forecast_test") as (uri, exp):
        with mlflow.start_run(experiment_id=exp):
            info = log_forecast_model(fitted_small, registered_model_name="sales_test")
        yield {"tracking_uri": uri, "model_uri": info.model_uri}


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
    result = run_isolated(code, tmp_path, logged_model["tracking_uri"])
    assert result["modules"] == ["forecast_model"]
    expected = fitted_small.predict(ids)
    got = pd.DataFrame(result["a"])
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert result["b"] == 6
    assert "unknown series id(s): nope" in result["err"]


@pytest.mark.slow
def test_mlflow_models_serve(logged_model, fitted_small, tmp_path: Path) -> None:
    ids = fitted_small.series_ids[:2]
    with mlflow_models_serve(logged_model["model_uri"], logged_model["tracking_uri"], tmp_path) as url:

        def post(body: dict) -> tuple[int, dict]:
            req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        status, body = post({"dataframe_records": [{"series_id": i} for i in ids], "params": {"horizon": 5}})
        assert status == 200, body
        preds = body["predictions"]
        assert len(preds) == 10 and {p["series_id"] for p in preds} == set(ids)
        assert all(p["forecast"] >= 0 for p in preds)
        status, body = post({"dataframe_records": [{"series_id": "nope"}]})
        assert 400 <= status < 500 or "unknown series" in json.dumps(body)
