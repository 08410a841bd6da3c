"""Issue 11's user command on a table the pipeline has never seen, and the attrition defaults
kept away from it (tabular.yaml's id column, label values, ranges and model name)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_step_module, run_main
from tests.fixtures.tabular_tables import write_tables
from utils.data.table_schema import TableSchema
from utils.models.model_store import ModelStore
from utils.pipeline.config import load_config
from utils.pipeline.paths import StatePaths
from utils.tick.light_config import load_light_config

ATTRITION = {"corporation", "exited", "lastmonth_activity", "lastyear_activity", "number_of_employees"}


@pytest.mark.parametrize("load", [load_config, load_light_config], ids=["api+tools", "tick"])
def test_attrition_specifics_do_not_reach_another_label(load):
    task = load(["task.label_column=species"]).task
    assert (task.model_name, task.id_column, list(task.label_values), dict(task.features)) == \
        ("tabular_model", "auto", [], {})
    mine = load(["task.label_column=species", "task.model_name=penguins", "task.id_column=null",
                 "task.label_values=[adelie,gentoo]", "+task.features.bill.min=0"]).task
    assert (mine.model_name, mine.id_column, list(mine.label_values)) == ("penguins", None, ["adelie", "gentoo"])
    assert {k: dict(v) for k, v in mine.features.items()} == {"bill": {"min": 0}}
    embedded = load([]).task                       # the default chain keeps its own schema
    assert embedded.id_column == "corporation" and list(embedded.label_values) == [0, 1]
    assert set(embedded.features) == ATTRITION - {"corporation", "exited"}


def test_the_report_shows_the_frozen_schema(tmp_path):
    from tests.tabular.helpers import mixed_frame, task, write_csv
    from utils.data.table_schema import infer_schema
    from utils.data.tabular_data import read_raw_csv

    schema = infer_schema(read_raw_csv(write_csv(mixed_frame(), tmp_path / "a.csv")), task())
    rows = dict(load_step_module("06_reporting/reporting.py").schema_rows({"schema": schema.to_dict()}))
    assert rows["problem"] == f"binary (schema version {schema.version})"
    assert "colour (categorical, nullable)" in rows["schema: feature"] and "age (integer" in rows["schema: feature"]
    assert rows["schema: id"].startswith("customer (categorical") and rows["schema: label"].startswith("label (")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_user_command_on_a_multiclass_table_with_categoricals_and_gaps(tmp_path):
    table = write_tables(tmp_path / "tables")["wine"]
    state = tmp_path / "state"
    run_main("task=tabular", "task.model_name=wine", f"data.source_dir={table.source_dir}",
             f"data.test_path={table.test_path}", f"task.label_column={table.label}", state_dir=state,
             timeout=1100)
    paths = StatePaths.of(state).model("wine")
    schema = TableSchema.load(paths.schema_file)
    assert schema.problem == "multiclass" and schema.label == "cultivar"
    assert {c.kind for c in schema.columns if c.name in ("region", "cask")} == {"categorical"}
    assert not ATTRITION & set(schema.names)
    step_config = json.loads(next(StatePaths.of(state).step_configs_dir.glob("data_ingestion-*.json")).read_text())
    assert step_config["task"]["id_column"] == "auto" and step_config["task"]["features"] == {}
    store = ModelStore(paths.models_dir)
    assert store.production_version() == "wine-v1"
    scores = store.read_scores("wine-v1")
    assert scores["primary_metric"] == "f1_macro" and scores["metrics"]["f1_macro"] > 0.6
    html = (paths.reports_dir / "report.html").read_text()
    assert "schema: feature" in html and "cask (categorical" in html     # the frozen schema, shown
