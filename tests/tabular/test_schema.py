"""Schema inference, the frozen file, and validation of later files against it (each violation)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.tabular.helpers import mixed_frame, regression_frame, task, write_csv
from utils.data.table_schema import SchemaError, TableSchema, feature_frame, infer_schema, label_values
from utils.data.tabular_data import TabularDataError, read_raw_csv, read_table


def schema_of(frame: pd.DataFrame, tmp_path: Path, **kw) -> TableSchema:
    return infer_schema(read_raw_csv(write_csv(frame, tmp_path / "first.csv")), task(**kw))


def test_infers_kinds_roles_and_a_binary_string_label(tmp_path):
    schema = schema_of(mixed_frame(), tmp_path)
    kinds = {c.name: (c.kind, c.role, c.nullable) for c in schema.columns}
    assert kinds == {"customer": ("categorical", "id", False), "age": ("integer", "feature", False),
                     "size": ("numeric", "feature", True), "colour": ("categorical", "feature", True),
                     "member": ("boolean", "feature", False), "label": ("categorical", "label", False)}
    assert schema.problem == "binary" and schema.classes == ["no", "yes"] and schema.positive_label == "yes"
    assert schema.column("colour").categories == ["blue", "green", "red"]
    assert schema.id_column == "customer" and schema.features == ["age", "size", "colour", "member"]


def test_three_classes_is_multiclass_and_a_float_target_is_regression(tmp_path):
    assert schema_of(mixed_frame(classes=("a", "b", "c")), tmp_path).problem == "multiclass"
    reg = schema_of(regression_frame(), tmp_path, label_column="price")
    assert reg.problem == "regression" and reg.classes == [] and reg.features == ["x", "city"]
    forced = schema_of(mixed_frame().assign(label=np.arange(120) % 3), tmp_path, problem="regression")
    assert forced.problem == "regression"


def test_overrides_and_id_column_null(tmp_path):
    schema = schema_of(mixed_frame(), tmp_path, id_column=None,
                       features={"age": {"min": 18, "max": 90}, "size": {"exclude": True},
                                 "customer": {"exclude": True}})
    assert schema.id_column is None
    assert (schema.column("age").min, schema.column("age").max) == (18.0, 90.0)
    assert schema.column("size").role == "excluded"


def test_schema_file_round_trip(tmp_path):
    schema = schema_of(mixed_frame(), tmp_path)
    schema.dump(tmp_path / "schema.yaml")
    assert TableSchema.load(tmp_path / "schema.yaml").to_dict() == schema.to_dict()
    assert "kind: categorical" in (tmp_path / "schema.yaml").read_text()


@pytest.mark.parametrize("change, kw, message", [
    (lambda f: f.drop(columns="label"), {}, "label column 'label'"),
    (lambda f: f.assign(label="yes"), {}, "one class"),
    (lambda f: f.assign(size=np.nan), {}, "column 'size' is empty"),
    (lambda f: f[["customer", "label"]], {}, "no usable feature"),
    (lambda f: f.head(5), {}, "at least 10 rows"),
    (lambda f: f, {"label_column": None}, "task.label_column is not set"),
    (lambda f: f, {"features": {"nope": {"min": 0}}}, "'nope'"),
    (lambda f: f, {"problem": "regression"}, "not numeric"),
])
def test_bad_tables_get_one_line_errors(tmp_path, change, kw, message):
    with pytest.raises(SchemaError) as err:
        schema_of(change(mixed_frame()), tmp_path, **kw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_configured_label_values_keep_the_label_type(tmp_path):
    schema = schema_of(mixed_frame(), tmp_path, label_values=["no", "yes"])
    assert schema.classes == ["no", "yes"]
    ints = schema_of(mixed_frame().assign(label=np.arange(120) % 2), tmp_path, label_values=[0, 1])
    assert ints.classes == [0, 1] and ints.label_column.kind == "integer"


@pytest.fixture
def frozen(tmp_path) -> TableSchema:
    return schema_of(mixed_frame(), tmp_path, features={"age": {"min": 0, "max": 120}})


def later(tmp_path: Path, frame: pd.DataFrame, name: str = "later.csv") -> Path:
    return write_csv(frame, tmp_path / name)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(extra=1), "new column(s) ['extra']"),
    (lambda f: f.drop(columns="size"), "missing column(s) ['size']"),
    (lambda f: f.rename(columns={"size": "width"}), "'size' of the frozen schema is missing and 'width' is new"),
    (lambda f: f.assign(age=["x%d" % i for i in range(len(f))]), "type change: column 'age'"),
])
def test_file_level_violations_quarantine_whatever_the_policy(tmp_path, frozen, change, message):
    for policy in ("quarantine_file", "drop_rows"):
        with pytest.raises(TabularDataError) as err:
            read_table(later(tmp_path, change(mixed_frame(seed=3))), frozen, policy)
        assert message in str(err.value)


def _with(frame: pd.DataFrame, column: str, value) -> pd.DataFrame:
    frame = frame.astype({column: object})
    frame.loc[2, column] = value
    return frame


@pytest.mark.parametrize("column, value, check", [
    ("size", "inf", "finite"), ("size", "1e400", "finite"), ("size", "-Infinity", "finite"),
    ("age", "41.5", "whole number"), ("age", "inf", "whole number"), ("age", "200", "less_than_or_equal_to"),
    ("label", "maybe", "isin"), ("member", "perhaps", "boolean"), ("age", None, "not_nullable"),
])
def test_row_violations_follow_the_bad_rows_policy(tmp_path, frozen, column, value, check):
    path = later(tmp_path, _with(mixed_frame(seed=3), column, value))
    with pytest.raises(TabularDataError) as err:
        read_table(path, frozen, "quarantine_file")
    assert f"column {column!r}" in str(err.value) and check in str(err.value)
    assert "rows 4 of the file" in str(err.value)  # data row index 2 = line 4 (after the header)
    kept = read_table(path, frozen, "drop_rows")
    assert kept.rows_dropped == 1 and len(kept.frame) == 119 and check in kept.dropped_reason


def test_types_are_kept_and_unseen_categories_are_counted_not_rejected(tmp_path, frozen):
    frame = _with(mixed_frame(seed=4), "colour", "purple")
    read = read_table(later(tmp_path, frame), frozen)
    assert str(read.frame["age"].dtype) == "Int64" and read.frame["label"].tolist()[:3] == frame["label"].tolist()[:3]
    assert read.unseen == {"colour": 1}
    x = feature_frame(read.frame, frozen)
    assert x["age"].dtype == float and x["colour"].dtype == object and x["member"].isin(["true", "false"]).all()
    assert label_values(read.frame, frozen).dtype == object
