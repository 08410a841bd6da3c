"""Step `model_training`: ingested dataset -> a new registered model version in the store.

task=tabular: scikit-learn Pipeline (StandardScaler + LogisticRegression), fixed seed,
validation metrics on a stratified hold-out. task=nlu: joint intent + slot fine-tune of a
small pretrained encoder (02_training/nlu_model.py). Either way the model is logged as an
MLflow model with signature and input example, registered as a new version of
`task.model_name`, and copied into `models/versions/<name>-v<N>/` (never over an old one).
"""
from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.data.hashing import sha256_file
from utils.models.model_store import ModelStore, version_id
from utils.pipeline.paths import StatePaths
from utils.models.scoring_lib import classification_report
from utils.pipeline.step_config import TaskConfig
from utils.pipeline.step_runner import run_step
from utils.pipeline.tracking import flatten

from train_config import TabularParams, TrainingConfig, training_params  # 02_training/  # noqa: E402,F401

log = logging.getLogger("model_training")


def train_tabular(config: TrainingConfig, data_path: Path) -> tuple[Any, dict[str, float]]:
    """Fit the Pipeline, log and register it; return (model info, validation metrics)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    task = config.task
    params: TabularParams = training_params("tabular", config.training)[0]
    frame = pd.read_csv(data_path, dtype={task.id_column: str})
    features = frame[task.feature_columns].astype(float)
    labels = frame[task.label_column].astype(int)
    stratify = labels if labels.value_counts().min() >= 2 else None
    x_train, x_val, y_train, y_val = train_test_split(
        features, labels, test_size=params.validation_fraction, random_state=params.seed,
        stratify=stratify)
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("model", LogisticRegression(C=params.C, max_iter=params.max_iter, solver=params.solver,
                                     class_weight=params.class_weight, random_state=params.seed)),
    ])
    pipeline.fit(x_train, y_train)
    metrics = classification_report(y_val, pipeline.predict(x_val), pipeline.predict_proba(x_val)[:, 1],
                                    list(task.label_values))["metrics"]
    mlflow.log_params({**flatten("training", vars(params)), "rows_train": len(x_train),
                       "rows_validation": len(x_val)})
    mlflow.log_metrics({f"val_{k}": v for k, v in metrics.items()})

    signature = infer_signature(x_train, pipeline.predict(x_train))
    import sklearn

    # explicit requirements: mlflow's inference would import-scan the process (slow, and it
    # picks up torch when it is installed)
    requirements = [f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}",
                    f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]
    info = mlflow.sklearn.log_model(pipeline, name="model", signature=signature,
                                    input_example=x_train.head(3), pip_requirements=requirements,
                                    registered_model_name=task.model_name)
    return info, metrics


def split_nlu(examples: list, dev_fraction: float, seed: int) -> tuple[list, list]:
    """Train/dev from the splits the sources carry; test examples are never trained on."""
    import random

    train = [e for e in examples if e.split in (None, "", "train")]
    dev = [e for e in examples if e.split == "dev"]
    if not dev and dev_fraction > 0:
        shuffled = train[:]
        random.Random(seed).shuffle(shuffled)
        n_dev = max(1, int(len(shuffled) * dev_fraction))
        dev, train = shuffled[:n_dev], shuffled[n_dev:]
    return train, dev


def train_nlu_task(config: TrainingConfig, data_path: Path) -> tuple[Any, dict[str, float]]:
    """Fine-tune the joint intent + slot model (nlu_model.py), log and register it as a pyfunc."""
    from nlu_logging import log_nlu_model, mlflow_epoch_logger  # 02_training/
    from nlu_model import train_nlu

    from utils.data.nlu_data import read_jsonl

    params, extra = training_params("nlu", config.training)
    dev_fraction = float(extra["dev_fraction"])
    params.encoder = config.task.encoder or params.encoder
    train, dev = split_nlu(read_jsonl(data_path), dev_fraction, params.seed)
    log.info("NLU training on %d examples, dev %d, encoder %s", len(train), len(dev), params.encoder)
    mlflow.log_params({**flatten("training", vars(params)), "training.dev_fraction": dev_fraction,
                       "rows_train": len(train), "rows_validation": len(dev)})
    trained = train_nlu(train, dev, params, on_epoch_end=mlflow_epoch_logger())
    metrics = {k: float(v) for k, v in trained.best_metrics.items() if isinstance(v, (int, float))}
    mlflow.log_metrics({f"val_{k.removeprefix('dev_')}": v for k, v in metrics.items()})
    info = log_nlu_model(trained, name="model", registered_model_name=config.task.model_name)
    return info, metrics


def go(config: TrainingConfig) -> int:
    paths = StatePaths.of(config.state_dir)
    task = config.task
    data_path = paths.finaldata_csv if task.name == "tabular" else paths.finaldata_jsonl
    if not data_path.is_file():
        log.error("no ingested dataset at %s: run the data_ingestion step first", data_path)
        return 2
    data_sha = sha256_file(data_path)
    mlflow.set_tags({"pipeline.task": task.name, "pipeline.data_sha256": data_sha})

    if task.name == "tabular":
        info, metrics = train_tabular(config, data_path)
    elif task.name == "nlu":
        info, metrics = train_nlu_task(config, data_path)
    else:
        log.error("unknown task.name %r: expected tabular or nlu", task.name)
        return 2

    version = version_id(task.model_name, info.registered_model_version)
    run = mlflow.active_run()
    store = ModelStore(paths.models_dir)
    # the store holds exactly the registered artifact, downloaded back from the tracking server
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=tmp))
        store.add_version(version, model_dir, {
            "model_name": task.model_name, "registry_version": int(info.registered_model_version),
            "run_id": run.info.run_id if run else None, "task": task.name,
            "data_sha256": data_sha, "validation_metrics": metrics, "model_uri": info.model_uri})
    mlflow.set_tag("pipeline.model_version", version)
    mlflow.MlflowClient().set_model_version_tag(task.model_name, str(info.registered_model_version),
                                                "store_version", version)
    log.info("registered %s version %s -> %s (validation %s)", task.model_name,
             info.registered_model_version, store.version_dir(version),
             ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], TrainingConfig, go)
