"""The API's numpy fast path gives scikit-learn's answers (api/fast_tabular.py).

Every row of the tabular test set, and the API's answers for all of them, against
``predict_proba`` of the pipeline itself: labels equal, probabilities within 1e-12. Pipelines
the replay does not know get no fast path, and one that disagrees at load is not used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.api.conftest import FEATURES, TEST_CSV, add_version
from tests.conftest import EMBEDDED_TABULAR, EMBEDDED_TABULAR_DIR
from utils.models.model_store import ModelStore

TOLERANCE = 1e-12


def _training() -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.concat([pd.read_csv(EMBEDDED_TABULAR_DIR / name) for name in EMBEDDED_TABULAR])
    return frame[FEATURES].astype(float), frame["exited"].astype(int)


def _test_matrix() -> np.ndarray:
    return pd.read_csv(TEST_CSV)[FEATURES].to_numpy(dtype=np.float64)


def _default_pipeline(**lr: Any) -> Any:
    """What 02_training/train.py builds for an all-numeric table: impute, scale, classify."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                     ("model", LogisticRegression(max_iter=1000, **lr))])


def _assert_same(fast: Any, estimator: Any, rows: np.ndarray) -> None:
    reference = estimator.predict_proba(pd.DataFrame(rows, columns=FEATURES))
    mine = fast.predict_proba(rows)
    assert mine.shape == reference.shape
    assert np.array_equal(mine.argmax(1), reference.argmax(1))
    assert np.abs(mine - reference).max() <= TOLERANCE


def test_default_pipeline_equal_on_every_test_row() -> None:
    from api.fast_tabular import export

    x, y = _training()
    model = _default_pipeline().fit(x, y)
    fast = export(model)
    assert fast is not None and fast.binary
    rows = _test_matrix()
    assert len(rows) == 400
    _assert_same(fast, model, rows)


def test_missing_values_are_imputed_like_sklearn() -> None:
    from api.fast_tabular import export

    x, y = _training()
    x = x.copy()
    x.iloc[::7, 1] = np.nan                # the imputer learns a median from the rest
    model = _default_pipeline().fit(x, y)
    rows = _test_matrix()
    rows[::3, 0] = np.nan
    rows[1::5, 2] = np.nan
    _assert_same(export(model), model, rows)


def test_three_classes_softmax_and_plain_scaler() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from api.fast_tabular import export

    x, _ = _training()
    y = pd.qcut(x["lastyear_activity"] + x["number_of_employees"], 3, labels=["low", "mid", "high"])
    for model in (Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=0.3, max_iter=2000))]),
                  LogisticRegression(max_iter=2000)):
        model.fit(x, y)
        fast = export(model)
        assert fast is not None and not fast.binary
        _assert_same(fast, model, _test_matrix())


@pytest.mark.parametrize("kind", ["boosting", "minmax", "indicator", "columns"])
def test_unknown_pipelines_have_no_fast_path(kind: str) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    from api.fast_tabular import export

    model = {
        "boosting": HistGradientBoostingClassifier(max_iter=5),
        "minmax": Pipeline([("scale", MinMaxScaler()), ("model", LogisticRegression())]),
        "indicator": Pipeline([("impute", SimpleImputer(add_indicator=True)), ("model", LogisticRegression())]),
        "columns": Pipeline([("prepare", ColumnTransformer([("num", StandardScaler(), FEATURES)])),
                             ("model", LogisticRegression())]),
    }[kind]
    x, y = _training()
    model.fit(x, y)
    assert export(model) is None


def _store_with(tmp_path: Path, model: Any) -> ModelStore:
    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature

    x, _ = _training()
    target = tmp_path / "saved"
    mlflow.sklearn.save_model(model, str(target), signature=infer_signature(x, model.predict(x)),
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
                              skops_trusted_types=["numpy.dtype"])     # as 02_training/train.py saves it
    store = ModelStore(tmp_path / "models" / "attrition_model")
    add_version(store, "attrition_model-v1", target)
    store.deploy("attrition_model-v1", reason="test")
    return store


def test_served_model_answers_like_sklearn_on_every_test_row(tmp_path: Path) -> None:
    from api.model_service import load_served_model

    x, y = _training()
    model = _default_pipeline().fit(x, y)
    store = _store_with(tmp_path, model)
    served = load_served_model(store, "attrition_model-v1", use_cache=False)
    assert served.fast is not None
    slow = load_served_model(store, "attrition_model-v1", use_cache=False, fast_path=False)
    assert slow.fast is None
    rows = _test_matrix()
    fast_answers, slow_answers = served.predict_matrix(rows), slow.predict_matrix(rows)
    assert [a["label"] for a in fast_answers] == [a["label"] for a in slow_answers]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(fast_answers, slow_answers)) <= TOLERANCE
    reference = model.predict(pd.DataFrame(rows, columns=FEATURES))
    assert [a["label"] for a in fast_answers] == reference.tolist()


def test_a_replay_that_disagrees_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import api.fast_tabular as fast_tabular
    from api.model_service import load_served_model

    x, y = _training()
    store = _store_with(tmp_path, _default_pipeline().fit(x, y))
    real_export = fast_tabular.export

    def wrong(estimator: Any) -> Any:
        fast = real_export(estimator)
        return fast.__class__(steps=fast.steps, coef_t=fast.coef_t * 1.001, intercept=fast.intercept,
                              binary=fast.binary, n_features=fast.n_features)

    monkeypatch.setattr(fast_tabular, "export", wrong)
    served = load_served_model(store, "attrition_model-v1", use_cache=False)
    assert served.fast is None          # scikit-learn answers
    assert served.predict_matrix(_test_matrix()[:3])


def test_api_answers_every_test_row_as_sklearn(make_app: Any, tmp_path: Path) -> None:
    x, y = _training()
    model = _default_pipeline().fit(x, y)
    _store_with(tmp_path, model)
    client = make_app(tmp_path).test_client()
    records = pd.read_csv(TEST_CSV)[FEATURES].to_dict("records")
    answer = client.post("/models/attrition_model/prediction", json={"records": records})
    assert answer.status_code == 200, answer.get_json()
    predictions = answer.get_json()["predictions"]
    proba = model.predict_proba(pd.DataFrame(records, columns=FEATURES))
    assert [p["label"] for p in predictions] == model.classes_[proba.argmax(1)].tolist()
    assert np.abs(np.array([p["probability"] for p in predictions]) - proba.max(1)).max() <= TOLERANCE
