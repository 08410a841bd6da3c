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


def classification_report(y_true: Any, y_pred: Any, y_score: Any | None,
                          labels: Sequence[Any]) -> dict[str, Any]:
    """F1, precision, recall, accuracy (+ ROC AUC when both classes occur) and the confusion matrix."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    metrics: dict[str, Any] = {
        "f1": f1_score(y_true, y_pred, zero_division=0),
        "precision": precision_score(y_true, y_pred, zero_division=0),
        "recall": recall_score(y_true, y_pred, zero_division=0),
        "accuracy": accuracy_score(y_true, y_pred),
    }
    if y_score is not None and len(set(y_true)) > 1:
        metrics["roc_auc"] = roc_auc_score(y_true, y_score)
    return {"metrics": {k: float(v) for k, v in metrics.items()},
            "n_examples": int(len(y_true)),
            "labels": [int(v) for v in labels],
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist()}


def score_tabular(model: Any, test_path: Path, task: Any) -> dict[str, Any]:
    """Metrics of a tabular classifier on the test CSV (validated with the task schema).

    ``model``: a store model folder (loaded with the sklearn flavor) or a fitted estimator.
    ``task``: TaskConfig or the `task` DictConfig (features, label column, label values).
    Raises ValueError (TabularDataError) naming what is wrong with the test file.
    """
    from utils.data.tabular_data import read_tabular_csv

    if isinstance(model, (str, Path)):
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(str(model))
    test = read_tabular_csv(Path(test_path), task)
    features = test[list(task.features)].astype(float)
    y_true = test[task.label_column].astype(int).to_numpy()
    y_pred = model.predict(features)
    y_score = model.predict_proba(features)[:, 1] if hasattr(model, "predict_proba") else None
    return classification_report(y_true, y_pred, y_score, list(task.label_values))


def score_nlu(predict: Callable[[list[str]], list[dict[str, Any]]] | Path | str, test_path: Path,
              batch_size: int = 256) -> dict[str, Any]:
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
    rows: list[dict[str, Any]] = []
    for start in range(0, len(examples), batch_size):
        rows.extend(predict([ex.text for ex in examples[start:start + batch_size]]))
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
