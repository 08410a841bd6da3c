"""Step `model_training`: ingested dataset -> a new registered model version in the store.

task=tabular: a scikit-learn Pipeline built from the frozen table schema (numeric: impute +
scale; categorical: impute + one-hot, unknown categories ignored, in a ColumnTransformer),
estimator by `training.estimator` and the schema's problem (binary, multiclass, regression),
fixed seed, validation metrics on a (stratified) hold-out. task=nlu: joint intent + slot fine-tune of a
small pretrained encoder (02_training/nlu_model.py). task=forecast: global LightGBM over all
series (mlforecast, Tweedie) next to a seasonal-naive baseline (02_training/forecast_training.py).
Every way the model is logged as an MLflow model with signature and input example, registered
as a new version of `task.model_name`, and copied into `models/<model>/versions/<name>-v<N>/`
(never over an old one).
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: the shared utils/ package

from utils.data.hashing import sha256_file
from utils.models.model_store import ModelStore, version_id
from utils.models.registry_gate import REGISTRY_METADATA_ARTIFACT
from utils.pipeline.paths import StatePaths
from utils.pipeline.step_runner import run_step
from utils.pipeline.tracking import flatten

from train_config import TabularParams, TrainingConfig, training_params  # 02_training/  # noqa: E402,F401

log = logging.getLogger("model_training")


ESTIMATORS = {"classification": ("logistic_regression", "hist_gradient_boosting"),
              "regression": ("ridge", "hist_gradient_boosting")}


SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


class TrainingDataError(ValueError):
    """The ingested table cannot train the configured model; the message says what to do."""


def make_estimator(params: TabularParams, problem: str) -> Any:
    """`training.estimator` for the schema's problem."""
    kind = "regression" if problem == "regression" else "classification"
    name = ESTIMATORS[kind][0] if params.estimator == "auto" else params.estimator
    if name not in ESTIMATORS[kind]:
        raise TrainingDataError(f"training.estimator={name!r} does not fit a {problem} problem: expected "
                                f"auto or one of {', '.join(ESTIMATORS[kind])}")
    if name == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=params.C, max_iter=params.max_iter, solver=params.solver,
                                  class_weight=params.class_weight, random_state=params.seed)
    if name == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=params.alpha)
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if kind == "regression":
        return HistGradientBoostingRegressor(learning_rate=params.learning_rate,
                                             max_iter=params.boosting_rounds, random_state=params.seed)
    return HistGradientBoostingClassifier(learning_rate=params.learning_rate, max_iter=params.boosting_rounds,
                                          class_weight=params.class_weight, random_state=params.seed)


def build_pipeline(schema: Any, estimator: Any) -> Any:
    """Numeric: median impute + scale; categorical/boolean: most-frequent impute + one-hot.

    An all-numeric table gets a plain Pipeline (it also takes a float matrix: the API's fast
    path); a table with categories gets a ColumnTransformer that selects columns by name.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = schema.features_of("numeric", "integer")
    categorical = schema.features_of("categorical", "boolean")
    numeric_steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    if not categorical:
        return Pipeline([*numeric_steps, ("model", estimator)])
    transformers = [("categorical", Pipeline([
        ("impute", SimpleImputer(strategy="most_frequent")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]), categorical)]
    if numeric:
        transformers.insert(0, ("numeric", Pipeline(numeric_steps), numeric))
    return Pipeline([("prepare", ColumnTransformer(transformers)), ("model", estimator)])


def log_training_input(frame: pd.DataFrame, data_path: Path, targets: str | None) -> None:
    """The dataset this run trained on, in the run's Datasets panel (digest, schema, source)."""
    dataset = mlflow.data.from_pandas(frame, source=str(data_path), name=data_path.name, targets=targets)
    mlflow.log_input(dataset, context="training")


CURVE_ROWS = 20_000   # rows scored per boosting iteration for the curves (a bound on their cost)


def log_boosting_curves(pipeline: Any, x_train: pd.DataFrame, y_train: Any, x_val: pd.DataFrame,
                        y_val: Any) -> None:
    """Per-iteration train and validation loss of a boosted estimator as MLflow metrics with
    step = iteration (`train_loss`, `val_loss`): the run's Model metrics and the report plot the
    learning curve. Log loss for a classifier, mean squared error for a regressor. Estimators
    fitted in one go (logistic regression, ridge) have no iterations and log nothing."""
    estimator = pipeline[-1]
    if not hasattr(estimator, "staged_predict") or len(x_val) == 0:
        return
    from mlflow.entities import Metric
    from sklearn.metrics import log_loss, mean_squared_error

    prepare = pipeline[:-1]
    classifier = hasattr(estimator, "staged_predict_proba")
    now = int(time.time() * 1000)
    metrics = []
    for key, x, y in (("train_loss", x_train.iloc[:CURVE_ROWS], np.asarray(y_train)[:CURVE_ROWS]),
                      ("val_loss", x_val.iloc[:CURVE_ROWS], np.asarray(y_val)[:CURVE_ROWS])):
        features = prepare.transform(x)
        staged = estimator.staged_predict_proba(features) if classifier else estimator.staged_predict(features)
        for step, predicted in enumerate(staged, 1):
            value = (log_loss(y, predicted, labels=estimator.classes_) if classifier
                     else mean_squared_error(y, predicted))
            metrics.append(Metric(key, float(value), now, step))
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for start in range(0, len(metrics), 1000):   # the tracking store's batch limit
        client.log_batch(run_id, metrics=metrics[start:start + 1000])


def train_tabular(config: TrainingConfig, data_path: Path) -> tuple[Any, dict[str, float], dict[str, Any]]:
    """Fit the Pipeline, log and register it; return (model info, validation metrics, metadata)."""
    from sklearn.model_selection import train_test_split

    from utils.data.table_schema import feature_frame, label_values, state_schema, with_training_categories
    from utils.data.tabular_data import read_ingested
    from utils.models.scoring_lib import metric_direction, primary_metric_for, tabular_report

    task = config.task
    params: TabularParams = training_params("tabular", config.training)[0]
    paths = StatePaths.of(config.state_dir).model(config.task.model_name)
    schema = state_schema(paths.schema_file, task)
    if schema is None:
        raise TrainingDataError(f"no frozen table schema at {paths.schema_file}: run data_ingestion first")
    frame = read_ingested(data_path, schema)
    log_training_input(frame, data_path, schema.label)
    labels = label_values(frame, schema)
    if schema.is_classification:
        present = pd.Series(labels).value_counts()
        if len(present) < 2:
            raise TrainingDataError(f"label column {schema.label!r} has one class in the ingested data "
                                    f"({present.index[0]!r}): a classifier needs at least two")
        stratify = labels if present.min() >= 2 else None
    else:
        stratify = None
    train, val = train_test_split(frame, test_size=params.validation_fraction, random_state=params.seed,
                                  stratify=stratify)
    pipeline = build_pipeline(schema, make_estimator(params, schema.problem))
    x_train = feature_frame(train, schema)
    pipeline.fit(x_train, label_values(train, schema))
    metrics = tabular_report(pipeline, val, schema)["metrics"]
    primary = primary_metric_for(task.primary_metric, schema.problem)
    mlflow.log_params({**flatten("training", vars(params)), "rows_train": len(train),
                       "rows_validation": len(val), "problem": schema.problem,
                       "estimator": type(pipeline[-1]).__name__})
    mlflow.log_metrics({f"val_{k}": v for k, v in metrics.items() if v == v})
    log_boosting_curves(pipeline, x_train, label_values(train, schema), feature_frame(val, schema),
                        label_values(val, schema))
    model_schema = with_training_categories(schema, train)
    import yaml

    mlflow.log_text(yaml.safe_dump(model_schema.to_dict(), sort_keys=False), "schema/schema.yaml")
    extra = {"schema": model_schema.to_dict(), "problem": schema.problem, "primary_metric": primary,
             "direction": metric_direction(primary)}

    signature = infer_signature(x_train, pipeline.predict(x_train))
    import sklearn

    # explicit requirements: mlflow's inference would import-scan the process (slow, and it
    # picks up torch when it is installed)
    requirements = [f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}",
                    f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]
    info = mlflow.sklearn.log_model(pipeline, name="model", signature=signature,
                                    input_example=x_train.head(3), pip_requirements=requirements,
                                    registered_model_name=task.model_name,
                                    # our own pipeline's types: OneHotEncoder's output dtype, and the
                                    # trees of histogram gradient boosting
                                    skops_trusted_types=SKOPS_TRUSTED_TYPES)
    return info, metrics, extra


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
    params.progress_every_s = float(config.logging.progress_every_s)
    params.progress_label = "step model_training"
    examples = read_jsonl(data_path)
    log_training_input(pd.DataFrame({"text": [e.text for e in examples], "intent": [e.intent for e in examples],
                                     "tags": [" ".join(e.tags) for e in examples]}), data_path, "intent")
    train, dev = split_nlu(examples, dev_fraction, params.seed)
    log.info("NLU training on %d examples, dev %d, encoder %s", len(train), len(dev), params.encoder)
    mlflow.log_params({**flatten("training", vars(params)), "training.dev_fraction": dev_fraction,
                       "rows_train": len(train), "rows_validation": len(dev)})
    trained = train_nlu(train, dev, params, on_epoch_end=mlflow_epoch_logger())
    metrics = {k: float(v) for k, v in trained.best_metrics.items() if isinstance(v, (int, float))}
    mlflow.log_metrics({f"val_{k.removeprefix('dev_')}": v for k, v in metrics.items()})
    info = log_nlu_model(trained, name="model", registered_model_name=config.task.model_name,
                         int8_dev=dev if extra["int8"] else None)
    return info, metrics


def go(config: TrainingConfig) -> int:
    paths = StatePaths.of(config.state_dir).model(config.task.model_name)
    task = config.task
    data_path = paths.dataset(task.name)
    if not data_path.is_file():
        log.error("no ingested dataset at %s: run the data_ingestion step first", data_path)
        return 2
    data_sha = sha256_file(data_path)
    mlflow.set_tags({"pipeline.task": task.name, "pipeline.data_sha256": data_sha})

    extra: dict[str, Any] = {}
    if task.name == "tabular":
        try:
            info, metrics, extra = train_tabular(config, data_path)
        except (TrainingDataError, ValueError) as exc:
            from utils.data.table_schema import SchemaError

            if not isinstance(exc, (TrainingDataError, SchemaError)):
                raise
            log.error("%s", exc)
            return 2
    elif task.name == "nlu":
        info, metrics = train_nlu_task(config, data_path)
    elif task.name == "forecast":
        from forecast_training import train_forecast  # 02_training/

        try:
            info, metrics = train_forecast(task, config.training, data_path,
                                           float(config.logging.progress_every_s))
        except ValueError as exc:  # too little history for the horizon, etc.
            log.error("cannot train on %s: %s", data_path, exc)
            return 2
    else:
        log.error("unknown task.name %r: expected tabular, nlu or forecast", task.name)
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
            "data_sha256": data_sha, "validation_metrics": metrics, "model_uri": info.model_uri,
            "task_config": asdict(task), **extra})
    mlflow.set_tag("pipeline.model_version", version)
    # the store's metadata beside the run, for API replicas that serve from the registry
    mlflow.log_dict(store.read_metadata(version), REGISTRY_METADATA_ARTIFACT)
    mlflow.MlflowClient().set_model_version_tag(task.model_name, str(info.registered_model_version),
                                                "store_version", version)
    log.info("registered %s version %s -> %s (validation %s)", task.model_name,
             info.registered_model_version, store.version_dir(version),
             ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    run_step(__doc__.splitlines()[0], TrainingConfig, go)
