"""Scoring a model on labelled test data: shared by the `model_scoring` step and the API.

One implementation, so `GET /scoring` and `latestscore.txt` can never disagree about what
"F1 on the test data" means. A model is given either as a store model folder or as an
already loaded model (the API scores the model it serves, without loading it again).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

NLU_SCALAR_METRICS: tuple[str, ...] = ("intent_accuracy", "slot_precision", "slot_recall", "slot_f1",
                                       "exact_match")


PRIMARY_METRICS: dict[str, str] = {"binary": "f1", "multiclass": "f1_macro", "regression": "rmse"}
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae", "mape", "mse", "wmape", "tweedie_deviance", "mase"})


def primary_metric_for(configured: str | None, problem: str | None) -> str:
    """`task.primary_metric`, or the problem's own one when it says `auto`."""
    if configured and configured != "auto":
        return configured
    return PRIMARY_METRICS.get(problem or "binary", "f1")


def metric_direction(metric: str) -> str:
    """`higher` or `lower` is better: the deployment gate and the drift rule follow it."""
    return "lower" if metric in LOWER_IS_BETTER else "higher"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def classification_report(y_true: Any, y_pred: Any, y_score: Any | None,
                          labels: Sequence[Any], pos_label: Any = None) -> dict[str, Any]:
    """Binary: F1, precision, recall, accuracy (+ ROC AUC when both classes occur) and the
    confusion matrix; ``y_score`` is the probability of ``pos_label`` (default: the last label)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    labels = list(labels)
    pos_label = labels[-1] if pos_label is None and labels else (1 if pos_label is None else pos_label)
    metrics: dict[str, Any] = {
        "f1": f1_score(y_true, y_pred, pos_label=pos_label, zero_division=0),
        "precision": precision_score(y_true, y_pred, pos_label=pos_label, zero_division=0),
        "recall": recall_score(y_true, y_pred, pos_label=pos_label, zero_division=0),
        "accuracy": accuracy_score(y_true, y_pred),
    }
    if y_score is not None and len(set(y_true)) > 1:
        metrics["roc_auc"] = roc_auc_score([v == pos_label for v in y_true], y_score)
    return {"metrics": {k: float(v) for k, v in metrics.items()},
            "problem": "binary", "positive_label": _plain(pos_label),
            "n_examples": int(len(y_true)),
            "labels": [_plain(v) for v in labels],
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def multiclass_report(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, macro and weighted F1 (+ macro precision/recall), per-class report, confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score
    from sklearn.metrics import classification_report as sk_report

    labels = list(labels)
    metrics = {
        "accuracy": accuracy_score(y_true, y_pred),
        "f1_macro": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "f1_weighted": f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0),
        "precision_macro": precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "recall_macro": recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
    }
    per_class = sk_report(y_true, y_pred, labels=labels, target_names=[str(v) for v in labels],
                          output_dict=True, zero_division=0)
    per_class = {k: v for k, v in per_class.items() if k in {str(v) for v in labels}}
    return {"metrics": {k: float(v) for k, v in metrics.items()}, "problem": "multiclass",
            "n_examples": int(len(y_true)), "labels": [_plain(v) for v in labels],
            "per_class": per_class,
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def regression_report(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """RMSE, MAE, R², MAPE (MAPE over the rows whose true value is not 0)."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    nonzero = y_true != 0
    mape = float(np.mean(np.abs((y_true[nonzero] - y_pred[nonzero]) / y_true[nonzero]))) if nonzero.any() else float("nan")
    metrics = {"rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
               "mae": float(mean_absolute_error(y_true, y_pred)),
               "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
               "mape": mape}
    return {"metrics": metrics, "problem": "regression", "n_examples": int(len(y_true))}


def tabular_report(model: Any, frame: Any, schema: Any) -> dict[str, Any]:
    """Metrics of a fitted tabular model on a typed, validated frame, by the schema's problem."""
    from utils.data.table_schema import feature_frame, label_values

    features = feature_frame(frame, schema)
    y_true = label_values(frame, schema)
    y_pred = model.predict(features)
    if schema.problem == "regression":
        return regression_report(y_true, y_pred)
    labels = schema.classes
    if schema.problem == "multiclass":
        return multiclass_report(y_true, y_pred, labels)
    y_score = None
    if hasattr(model, "predict_proba"):
        classes = [_plain(c) for c in model.classes_]
        pos = schema.positive_label if schema.positive_label is not None else labels[-1]
        if pos in classes:
            y_score = model.predict_proba(features)[:, classes.index(pos)]
    return classification_report(y_true, y_pred, y_score, labels, schema.positive_label)


def score_tabular(model: Any, test_path: Path, task: Any, schema: Any = None) -> dict[str, Any]:
    """Metrics of a tabular model on the test CSV (validated with the frozen schema).

    ``model``: a store model folder (loaded with the sklearn flavor) or a fitted estimator.
    ``task``: TaskConfig or the `task` DictConfig; ``schema``: the model's TableSchema (None:
    spelled out by the task config). Raises ValueError (TabularDataError) naming what is
    wrong with the test file. Unseen categories are allowed (the model ignores them) and counted.
    """
    from utils.data.table_schema import schema_from_task
    from utils.data.tabular_data import TabularDataError, read_table

    if isinstance(model, (str, Path)):
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(str(model))
    schema = schema or schema_from_task(task)
    if schema is None:
        raise TabularDataError("no table schema for this model: run data_ingestion and model_training first")
    test = read_table(Path(test_path), schema)
    report = tabular_report(model, test.frame, schema)
    if test.unseen:
        report["unseen_categories"] = test.unseen
    return report


def score_nlu(predict: Callable[[list[str]], list[dict[str, Any]]] | Path | str, test_path: Path,
              batch_size: int = 256, progress_every_s: float = 0.0,
              progress_label: str = "scoring") -> dict[str, Any]:
    """Intent accuracy, slot P/R/F1 (seqeval), exact match on NLU test data (JSONL or BIO folder).

    ``predict``: texts -> rows {intent, tags, ...} (the pyfunc contract), or a model folder.
    A BIO folder with a ``test`` split is scored on that split only.
    """
    from utils.data.nlu_data import read_nlu_path
    from utils.models.nlu_metrics import nlu_metrics

    if isinstance(predict, (str, Path)):
        predict = nlu_predict_function(Path(predict))
    examples = read_nlu_path(Path(test_path))
    if any(ex.split == "test" for ex in examples):
        examples = [ex for ex in examples if ex.split == "test"]
    if not examples:
        raise ValueError(f"{test_path}: no test examples")
    from utils.pipeline.progress import BatchProgress

    progress = BatchProgress(progress_label, len(examples), batch_size, progress_every_s)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(examples), batch_size):
        rows.extend(predict([ex.text for ex in examples[start:start + batch_size]]))
        progress.update(len(rows))
    from sklearn.metrics import confusion_matrix

    intents = [str(r["intent"]) for r in rows]
    report = nlu_metrics(examples, intents, [list(r["tags"]) for r in rows])
    gold = [ex.intent for ex in examples]
    labels = sorted(set(gold) | set(intents))
    return {"metrics": {k: float(report[k]) for k in NLU_SCALAR_METRICS},
            "n_examples": report["n_examples"], "per_intent": report["per_intent"],
            "per_slot": report["per_slot"], "labels": labels,
            "confusion_matrix": confusion_matrix(gold, intents, labels=labels).tolist()}


def nlu_predict_function(model_dir: Path) -> Callable[[list[str]], list[dict[str, Any]]]:
    """texts -> list of {intent, confidence, tags, slots} from an NLU pyfunc model folder."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_dir))
    return lambda texts: pyfunc_rows(model, texts)


def pyfunc_rows(model: Any, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Call an NLU pyfunc with a ``text`` column; its DataFrame/list output as a list of dicts."""
    import pandas as pd

    out = model.predict(pd.DataFrame({"text": list(texts)}))
    if isinstance(out, pd.DataFrame):
        out = out.to_dict(orient="records")
    rows = [dict(r) for r in out]
    if len(rows) != len(texts):
        raise ValueError(f"NLU model returned {len(rows)} rows for {len(texts)} texts")
    return rows


def score_model_dir(model_dir: Path, task: Any, test_path: Path, batch_size: int = 256) -> dict[str, Any]:
    """Score a store model folder by its task (the model_scoring step, evaluation, monitoring)."""
    if task.name == "tabular":
        return score_tabular(model_dir, test_path, task)
    if task.name == "nlu":
        return score_nlu(model_dir, test_path, batch_size)
    raise ValueError(f"unknown task {task.name!r}: expected tabular or nlu")
