"""Every estimator of each problem through the schema's Pipeline (gaps, categories, labels of
their own type), the per-class report, and a datetime column inferred and kept out of the features."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_step_module
from tests.tabular.helpers import mixed_frame, regression_frame, task, write_csv
from utils.data.table_schema import TableSchema, feature_frame, infer_schema, label_values
from utils.data.tabular_data import read_raw_csv, read_table
from utils.models.scoring_lib import multiclass_report, tabular_report

train = load_step_module("02_training/train.py")


def frozen(frame: pd.DataFrame, tmp_path: Path, **kw) -> tuple[TableSchema, pd.DataFrame]:
    path = write_csv(frame, tmp_path / "table.csv")
    schema = infer_schema(read_raw_csv(path), task(**kw))
    return schema, read_table(path, schema).frame


@pytest.mark.parametrize("frame, kw, estimator, model_class", [
    (mixed_frame(200), {}, "auto", "LogisticRegression"),
    (mixed_frame(200), {}, "hist_gradient_boosting", "HistGradientBoostingClassifier"),
    (mixed_frame(200, classes=("low", "mid", "high")), {}, "logistic_regression", "LogisticRegression"),
    (mixed_frame(200, classes=("low", "mid", "high")), {}, "hist_gradient_boosting", "HistGradientBoostingClassifier"),
    (regression_frame(200), {"label": "price"}, "auto", "Ridge"),
    (regression_frame(200), {"label": "price"}, "hist_gradient_boosting", "HistGradientBoostingRegressor"),
], ids=["binary-auto", "binary-hgb", "multi-logistic", "multi-hgb", "regression-auto", "regression-hgb"])
def test_each_estimator_fits_its_problem(tmp_path, frame, kw, estimator, model_class):
    schema, typed = frozen(frame, tmp_path, **kw)
    model = train.build_pipeline(schema, train.make_estimator(
        train.TabularParams(estimator=estimator, boosting_rounds=20), schema.problem))
    x, y = feature_frame(typed, schema), label_values(typed, schema)
    model.fit(x, y)
    assert type(model.named_steps["model"]).__name__ == model_class
    report = tabular_report(model, typed, schema)
    if schema.problem == "regression":
        assert set(report["metrics"]) == {"rmse", "mae", "r2", "mape"} and report["metrics"]["r2"] > 0.5
    else:
        assert set(model.predict(x)) <= set(schema.classes)      # labels of their own type (strings)
        assert report["metrics"]["accuracy"] > 0.5


def test_multiclass_report_has_a_row_per_class():
    y_true = ["a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "b", "b", "b", "c", "a"]
    report = multiclass_report(y_true, y_pred, ["a", "b", "c"])
    assert set(report["per_class"]) == {"a", "b", "c"}
    assert report["per_class"]["b"]["recall"] == 1.0 and report["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["c"]["support"] == 2
    assert report["metrics"]["f1_macro"] == pytest.approx(np.mean([v["f1-score"] for v in report["per_class"].values()]))


def test_a_datetime_column_is_inferred_and_excluded_with_the_reason(tmp_path):
    frame = mixed_frame().assign(signed_up=pd.date_range("2024-01-01", periods=120).strftime("%Y-%m-%d"))
    schema, _ = frozen(frame, tmp_path)
    column = schema.column("signed_up")
    assert (column.kind, column.role) == ("datetime", "excluded") and "datetime" in column.reason
    assert "signed_up" not in schema.features


def test_a_fractional_integer_label_is_an_error_not_a_rounding(tmp_path):
    """Issue 11: a label of 0.5 was silently stored as 0."""
    from utils.data.tabular_data import TabularDataError

    schema, _ = frozen(mixed_frame().assign(label=np.arange(120) % 2), tmp_path, label_values=[0, 1])
    bad = mixed_frame(seed=3).assign(label=np.arange(120) % 2).astype({"label": object})
    bad.loc[2, "label"] = 0.5
    with pytest.raises(TabularDataError, match=r"column 'label': finite whole number .*'0.5'"):
        read_table(write_csv(bad, tmp_path / "later.csv"), schema, "quarantine_file")
