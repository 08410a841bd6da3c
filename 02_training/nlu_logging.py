"""MLflow glue for the NLU model: log it as a self-contained pyfunc, log epoch metrics.

Kept apart from nlu_model.py so that training and benchmarks never need mlflow.

    from nlu_logging import log_nlu_model, mlflow_epoch_logger
    with mlflow.start_run():
        trained = train_nlu(train, dev, cfg, on_epoch_end=mlflow_epoch_logger())
        info = log_nlu_model(trained, name="model", registered_model_name="eo_query_nlu")
    mlflow.pyfunc.load_model(info.model_uri).predict(["rainfall in Kenya as geotiff"])
"""
from __future__ import annotations

import importlib.metadata
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import (
    Array,
    ColSpec,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    Schema,
)

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PYFUNC_FILE = HERE / "nlu_pyfunc.py"
# What the logged model imports at load time (copied into its code/ folder, put on sys.path).
CODE_PATHS = [HERE / "nlu_model.py", HERE / "nlu_onnx.py", HERE / "nlu_int8.py", REPO_ROOT / "utils" / "data" / "nlu_data.py",
              REPO_ROOT / "utils" / "models" / "bio_decode.py"]
EXAMPLE_TEXTS = [
    "monthly rainfall in northern Kenya 2015 to 2020 as geotiff",
    "what is NDVI ?",
]


def _nlu_model() -> Any:
    try:
        import nlu_model
    except ImportError:
        sys.path.insert(0, str(HERE))
        import nlu_model
    return nlu_model


def nlu_signature() -> ModelSignature:
    """Input: a ``text`` string column; output: intent, confidence, tags, slots."""
    slot = Object([Property("text", "string"), Property("type", "string"),
                   Property("start", "long"), Property("end", "long")])
    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string", "intent"), ColSpec("double", "confidence"),
                        ColSpec(Array("string"), "tags"), ColSpec(Array(slot), "slots")]),
        params=ParamSchema([ParamSpec("batch_size", "long", 64)]),
    )


def _pin(package: str) -> str:
    version = importlib.metadata.version(package).split("+")[0]  # torch 2.x+cpu -> 2.x
    return f"{package}=={version}"


def nlu_pip_requirements(crf: bool = False) -> list[str]:
    """Explicit pins: no slow requirement inference, and no local '+cpu' tag in the torch pin.
    onnxruntime (the fast path, nlu_onnx.py) when installed; without it the model runs on torch.
    pytorch-crf for a model with a CRF slot layer (``crf``): its weights load into that layer."""
    packages = ["mlflow", "torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy"]
    if crf:
        packages.append("pytorch-crf")
    try:
        importlib.metadata.version("onnxruntime")
        packages.append("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        pass
    return [_pin(p) for p in packages]


def _export_onnx(trained: Any, bundle: Path) -> None:
    """The ONNX graph beside the weights, so serving needs no export (nlu_onnx.py); best effort."""
    import logging

    try:
        from nlu_onnx import ONNX_FILE, export_onnx
    except ImportError:
        sys.path.insert(0, str(HERE))
        from nlu_onnx import ONNX_FILE, export_onnx
    try:
        export_onnx(trained.model, bundle / ONNX_FILE)
    except Exception as exc:   # e.g. onnx not installed: the pyfunc exports at load, or runs on torch
        logging.getLogger(__name__).warning("no ONNX graph in the logged NLU model (%s: %s)", type(exc).__name__, exc)


def log_nlu_model(
    trained: Any, name: str = "model", registered_model_name: str | None = None,
    input_texts: Sequence[str] = EXAMPLE_TEXTS, int8_dev: Sequence[Any] | None = None, **log_kwargs: Any,
) -> mlflow.models.model.ModelInfo:
    """Log ``trained`` (a TrainedNlu) to the active run as a pyfunc that loads anywhere.

    The bundle (weights, tokenizer, encoder config, labels, the ONNX graph) is the ``bundle``
    artifact; nlu_model.py and nlu_data.py go as ``code_paths``. With ``int8_dev`` (the dev
    examples), an int8 graph is built and kept when it passes its check on them (nlu_int8.py; the
    numbers are logged as ``int8_*`` metrics). Extra ``log_kwargs`` go to
    ``mlflow.pyfunc.log_model`` (e.g. ``metadata``).
    """
    with tempfile.TemporaryDirectory(prefix="nlu_bundle_") as tmp:
        bundle = _nlu_model().save_bundle(trained, Path(tmp) / "bundle")
        _export_onnx(trained, bundle)
        if int8_dev is not None:
            _int8(trained, bundle, int8_dev)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_FILE),
            artifacts={"bundle": str(bundle)},
            code_paths=[str(p) for p in CODE_PATHS],
            signature=nlu_signature(),
            input_example=pd.DataFrame({"text": list(input_texts)}),
            pip_requirements=nlu_pip_requirements(crf=getattr(trained.model, "crf", None) is not None),
            registered_model_name=registered_model_name,
            **log_kwargs,
        )


def _int8(trained: Any, bundle: Path, dev: Sequence[Any]) -> None:
    """The checked int8 graph beside the fp32 one (nlu_int8.py); its check's numbers as metrics."""
    import nlu_int8

    report = nlu_int8.build_checked(_nlu_model(), trained, bundle, dev)
    if mlflow.active_run() is not None:
        mlflow.log_metrics({f"int8_{k}": float(report[k]) for k in
                            ("dev_exact_match_fp32", "dev_exact_match_int8", "exact_match_drop", "served")
                            if k in report})


def mlflow_epoch_logger(prefix: str = "") -> Any:
    """``on_epoch_end`` callback for ``train_nlu`` that logs every scalar metric per epoch."""

    def _log(epoch: int, metrics: dict[str, Any]) -> None:
        mlflow.log_metrics(
            {f"{prefix}{k}": float(v) for k, v in metrics.items()
             if k != "epoch" and isinstance(v, (int, float))},
            step=epoch,
        )

    return _log
