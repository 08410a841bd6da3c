"""Bring your own table: three tables of other shapes through the whole chain, beside a plain
scikit-learn baseline measured in the same run on the same files.

For each table (tests/fixtures/tabular_tables.py: binary with string labels, multiclass with
categoricals and missing values, regression) this runs the one command a user types,

    python main.py task=tabular task.model_name=<name> data.source_dir=<dir> \\
        data.test_path=<test.csv> task.label_column=<label> paths.state_dir=<tmp>/<name>

reads the production model's test metrics (scores.json), and fits the baseline a person would
write by hand: pandas' own CSV types, the known id column dropped, mean imputation, one-hot
for text columns, LogisticRegression() or Ridge() with default settings, the same metric code.

    python benchmarks/byo_tables.py                  # about 3 minutes on 2 cores
    python benchmarks/byo_tables.py --json out.json --keep /tmp/byo-state

Everything is written to a temporary folder (or --keep); nothing in the repo changes.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from utils.pipeline.paths import StatePaths  # noqa: E402

from tests.fixtures.tabular_tables import Table, write_tables  # noqa: E402

ID_COLUMNS = {"cancer": ["patient_id"]}


def pipeline_command(table: Table, state_dir: Path) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "main.py"), "task=tabular", f"task.model_name={table.name}",
            f"data.source_dir={table.source_dir}", f"data.test_path={table.test_path}",
            f"task.label_column={table.label}", f"paths.state_dir={state_dir}",
            "diagnostics.pypi_url=null"]


def run_pipeline(table: Table, state_dir: Path) -> dict[str, Any]:
    cmd = pipeline_command(table, state_dir)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=1800,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{table.name}: main.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    production = (StatePaths.of(state_dir).model(table.name).models_dir / "production").resolve()
    scores = json.loads((production / "scores.json").read_text())
    return {"command": shlex.join(["python", "main.py", *cmd[2:-1]]), "seconds": round(seconds, 1),
            "version": production.name, "primary_metric": scores["primary_metric"],
            "direction": scores["direction"], "metrics": scores["metrics"]}


def run_baseline(table: Table) -> dict[str, Any]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from utils.models.scoring_lib import classification_report, multiclass_report, regression_report

    train = pd.concat([pd.read_csv(p) for p in sorted(table.source_dir.glob("*.csv"))], ignore_index=True)
    test = pd.read_csv(table.test_path)
    drop = [table.label, *ID_COLUMNS.get(table.name, [])]
    x_train, x_test = train.drop(columns=drop), test.drop(columns=drop)
    text = [c for c in x_train.columns if x_train[c].dtype == object or str(x_train[c].dtype).startswith("str")]
    numbers = [c for c in x_train.columns if c not in text]
    prepare = ColumnTransformer([
        ("numbers", SimpleImputer(), numbers),
        ("text", make_pipeline(SimpleImputer(strategy="most_frequent"),
                               OneHotEncoder(handle_unknown="ignore")), text)])
    estimator = Ridge() if table.problem == "regression" else LogisticRegression()
    model = make_pipeline(prepare, estimator)
    started = time.perf_counter()
    model.fit(x_train, train[table.label])
    y_pred = model.predict(x_test)
    if table.problem == "regression":
        report = regression_report(test[table.label], y_pred)
    elif table.problem == "multiclass":
        report = multiclass_report(test[table.label], y_pred, sorted(train[table.label].unique()))
    else:
        labels = sorted(train[table.label].unique())
        proba = model.predict_proba(x_test)[:, list(model.classes_).index(labels[-1])]
        report = classification_report(test[table.label], y_pred, proba, labels)
    return {"model": f"{type(estimator).__name__}() on mean-imputed numbers + one-hot text",
            "seconds": round(time.perf_counter() - started, 2), "metrics": report["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="state dirs and tables here (default: a temp dir, removed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="byo-") as tmp:
        root = args.keep or Path(tmp)
        tables = write_tables(root / "tables")
        results = {}
        for name, table in tables.items():
            pipeline = run_pipeline(table, root / "state" / name)
            baseline = run_baseline(table)
            results[name] = {"problem": table.problem, "label": table.label, "pipeline": pipeline,
                             "baseline": baseline}
            primary = pipeline["primary_metric"]
            ours, base = pipeline["metrics"][primary], baseline["metrics"][primary]
            print(f"\n{name} ({table.problem}, label {table.label}): {pipeline['command']}")
            print(f"  {'metric':<16}{'pipeline':>10}{'baseline':>10}{'ratio':>8}")
            for metric, value in pipeline["metrics"].items():
                other = baseline["metrics"].get(metric)
                ratio = f"{value / other:8.3f}" if other else "       -"
                mark = " <- gate" if metric == primary else ""
                print(f"  {metric:<16}{value:10.4f}{other if other is not None else float('nan'):10.4f}{ratio}{mark}")
            print(f"  gate: {primary}, {pipeline['direction']} is better; pipeline {ours:.4f} vs baseline "
                  f"{base:.4f}; chain {pipeline['seconds']} s")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
