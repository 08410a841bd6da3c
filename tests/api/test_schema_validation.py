"""POST /prediction for a model with a frozen schema: categories, nulls, booleans, own label type."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.tabular.helpers import mixed_frame, write_csv
from utils.models.model_store import ModelStore


def train_schema_model(tmp: Path) -> tuple[Path, dict]:
    """The training step's pipeline on a mixed table, saved the way the store holds it."""
    import mlflow.sklearn

    from tests.conftest import load_step_module
    from tests.tabular.helpers import task
    from utils.data.table_schema import feature_frame, infer_schema, label_values, with_training_categories
    from utils.data.tabular_data import read_raw_csv, validate_table

    train = load_step_module("02_training/train.py")
    raw = read_raw_csv(write_csv(mixed_frame(200, classes=("low", "mid", "high")), tmp / "train.csv"))
    schema = infer_schema(raw, task())
    frame, _ = validate_table(raw, schema)
    model = train.build_pipeline(schema, train.make_estimator(train.TabularParams(), schema.problem))
    model.fit(feature_frame(frame, schema), label_values(frame, schema))
    # pip_requirements given: inferring them runs a subprocess (~6 s) and the API never reads them
    mlflow.sklearn.save_model(model, str(tmp / "model"), skops_trusted_types=train.SKOPS_TRUSTED_TYPES,
                              pip_requirements=["scikit-learn"])
    return tmp / "model", {"schema": with_training_categories(schema, frame).to_dict(), "problem": schema.problem}


@pytest.fixture
def schema_client(tmp_path, make_app):
    model_dir, extra = train_schema_model(tmp_path)
    state = tmp_path / "state"
    store = ModelStore(state / "models")
    store.add_version("shop-v1", model_dir, {"model_name": "shop", "registry_version": 1, "task": "tabular", **extra})
    store.write_score("shop-v1", {"f1_macro": 0.5}, "f1_macro")
    store.deploy("shop-v1", reason="test")
    return make_app(state, "task.model_name=shop", "task.label_column=label").test_client()


GOOD = {"customer": "c1", "age": 40, "size": 9.5, "colour": "red", "member": True}


def test_records_with_categories_and_nulls_get_labels_of_their_own_type(schema_client):
    records = [GOOD, {**GOOD, "size": None, "colour": None, "member": False, "label": "mid"}]
    r = schema_client.post("/prediction", json={"records": records})
    assert r.status_code == 200, r.get_data(as_text=True)
    predictions = r.get_json()["predictions"]
    assert [p["id"] for p in predictions] == ["c1", "c1"]
    assert all(p["label"] in {"low", "mid", "high"} and 0 < p["probability"] <= 1 for p in predictions)


def test_csv_body_with_categories(schema_client):
    body = "customer,age,size,colour,member\nc1,40,,blue,true\nc2,70,12.5,green,false\n"
    r = schema_client.post("/prediction", data=body, content_type="text/csv")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert len(r.get_json()["predictions"]) == 2


@pytest.mark.parametrize("record, field, message", [
    ({**GOOD, "colour": "violet"}, "colour", "unknown category 'violet'"),
    ({**GOOD, "colour": 3}, "colour", "must be a string"),
    ({**GOOD, "age": None}, "age", "must be a number, got null"),
    ({**GOOD, "age": 40.5}, "age", "whole number"),
    ({**GOOD, "member": "maybe"}, "member", "true or false"),
    ({**GOOD, "member": None}, "member", "must not be null"),
    ({k: v for k, v in GOOD.items() if k != "colour"}, "colour", "missing"),
])
def test_bad_fields_are_400_naming_row_and_field(schema_client, record, field, message):
    r = schema_client.post("/prediction", json={"records": [GOOD, record]})
    assert r.status_code == 400, r.get_data(as_text=True)
    errors = r.get_json()["error"]["errors"]
    assert any(e["row"] == 1 and e["field"] == field and message in e["message"] for e in errors), errors
