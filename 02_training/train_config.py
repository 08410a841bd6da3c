"""The config of step `model_training`, declared once; main.py validates it before any step runs.

`training:` is task-specific: TabularParams here, NluTrainConfig (02_training/nlu_model.py)
for task=nlu; both get range checks that name the full key (`training.C`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from utils.pipeline.step_config import (
    ConfigValueError,
    LoggingSection,
    TaskConfig,
    build_config,
    require,
)

SOLVERS = ("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga")


ESTIMATOR_NAMES = ("auto", "logistic_regression", "hist_gradient_boosting", "ridge")


@dataclass
class TabularParams:
    estimator: str = "auto"      # auto | logistic_regression | hist_gradient_boosting | ridge
    C: float = 1.0
    max_iter: int = 1000
    solver: str = "lbfgs"
    class_weight: str | None = None
    alpha: float = 1.0           # ridge
    learning_rate: float = 0.1   # hist_gradient_boosting
    boosting_rounds: int = 200   # hist_gradient_boosting
    seed: int = 42
    validation_fraction: float = 0.2

    EXPECTED: ClassVar[dict[str, str]] = {
        "C": "a positive float", "max_iter": "a positive integer", "seed": "an integer",
        "validation_fraction": "a fraction in (0, 1)"}

    def __post_init__(self) -> None:
        require(self.estimator in ESTIMATOR_NAMES, "training.estimator", f"one of {', '.join(ESTIMATOR_NAMES)}",
                self.estimator)
        require(self.alpha > 0, "training.alpha", "a positive float", self.alpha)
        require(self.learning_rate > 0, "training.learning_rate", "a positive float", self.learning_rate)
        require(self.boosting_rounds > 0, "training.boosting_rounds", "a positive integer", self.boosting_rounds)
        require(self.C > 0, "training.C", self.EXPECTED["C"], self.C)
        require(self.max_iter > 0, "training.max_iter", self.EXPECTED["max_iter"], self.max_iter)
        require(self.solver in SOLVERS, "training.solver", f"one of {', '.join(SOLVERS)}", self.solver)
        require(self.class_weight in (None, "balanced"), "training.class_weight", "null or balanced",
                self.class_weight)
        require(0 < self.validation_fraction < 1, "training.validation_fraction",
                self.EXPECTED["validation_fraction"], self.validation_fraction)


def _nlu_params_schema() -> type:
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from nlu_model import NluTrainConfig

    return NluTrainConfig


def _check_nlu(params: Any, dev_fraction: Any) -> None:
    def positive(name: str, kind: str = "a positive number") -> None:
        value = getattr(params, name)
        require(value > 0, f"training.{name}", kind, value)

    for name in ("max_length", "batch_size", "eval_batch_size"):
        positive(name, "a positive integer")
    for name in ("lr", "head_lr"):
        positive(name, "a positive float")
    for name in ("epochs", "epochs_cuda", "patience", "num_workers"):
        value = getattr(params, name)
        require(value >= 0, f"training.{name}", "a non-negative integer", value)
    for name in ("weight_decay", "grad_clip", "slot_loss_weight"):
        value = getattr(params, name)
        require(value >= 0, f"training.{name}", "a non-negative float", value)
    require(0 <= params.warmup_ratio <= 1, "training.warmup_ratio", "a fraction in [0, 1]", params.warmup_ratio)
    require(0 <= params.dropout < 1, "training.dropout", "a fraction in [0, 1)", params.dropout)
    require(params.pooling in ("mean", "cls"), "training.pooling", "mean or cls", params.pooling)
    from nlu_model import SLOT_DECODERS     # importable: _nlu_params_schema put it on the path

    require(params.slot_decoder in SLOT_DECODERS, "training.slot_decoder",
            f"{', '.join(SLOT_DECODERS[:-1])} or {SLOT_DECODERS[-1]}", params.slot_decoder)
    require(0 <= params.label_smoothing < 1, "training.label_smoothing", "a fraction in [0, 1)",
            params.label_smoothing)
    require(0 < params.layer_lr_decay <= 1, "training.layer_lr_decay", "a number in (0, 1]",
            params.layer_lr_decay)
    require(isinstance(dev_fraction, (int, float)) and not isinstance(dev_fraction, bool)
            and 0 <= dev_fraction < 1, "training.dev_fraction", "a fraction in [0, 1)", dev_fraction)


def training_params(task_name: str, training: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The typed, range-checked `training:` section of ``task_name`` and the extra keys
    (NLU: ``dev_fraction``, ``int8``); ConfigValueError names the full key."""
    if task_name == "tabular":
        return build_config(TabularParams, dict(training), prefix="training."), {}
    if task_name == "forecast":   # typed by forecast_training.py (ForecastParams)
        return dict(training), {}
    rest = dict(training)
    extra = {"dev_fraction": rest.pop("dev_fraction", 0.1), "int8": rest.pop("int8", True)}
    if not isinstance(extra["int8"], bool):
        raise ConfigValueError("training.int8", "true or false", extra["int8"])
    params = build_config(_nlu_params_schema(), rest, prefix="training.")
    _check_nlu(params, extra["dev_fraction"])
    return params, extra


@dataclass
class TrainingConfig:
    state_dir: str = "???"
    task: TaskConfig = field(default_factory=TaskConfig)
    # the task's hyperparameters (utils/conf/task/<task>.yaml `training:`), typed per task above
    training: dict[str, Any] = field(default_factory=dict)
    logging: LoggingSection = field(default_factory=LoggingSection)

    def __post_init__(self) -> None:
        if self.task.name not in ("tabular", "nlu", "forecast"):
            raise ConfigValueError("task.name", "tabular, nlu or forecast", self.task.name)
        training_params(self.task.name, self.training)   # fail at load, with the key
