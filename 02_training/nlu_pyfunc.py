"""MLflow "models from code" definition of the NLU query model (logged by nlu_logging.py).

MLflow copies this file into the logged model and executes it at load time, so it only holds
the thin pyfunc wrapper; the model code (nlu_model.py, nlu_data.py) travels as ``code_paths``
and the weights as the ``bundle`` artifact. Loading therefore needs neither the repo nor its
sys.path, and ``mlflow models serve`` can serve it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd


FAST_ENV = "MLOPS_NLU_FAST"     # "0": answer with torch (the reference path), not ONNX Runtime


def _import_nlu_model() -> Any:
    """``nlu_model`` from the model's code/ folder (on sys.path at load), else from the repo."""
    try:
        import nlu_model
    except ImportError:  # logging from the repo before code_paths are in place
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import nlu_model
    return nlu_model


def _fast(nlu: Any, trained: Any, bundle: str) -> Any:
    """The ONNX Runtime path (checked identical to torch at load), unless turned off or absent;
    its int8 graph when the bundle has one that passed its dev check (nlu_int8.py)."""
    if os.environ.get(FAST_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return trained
    try:
        import nlu_onnx
    except ImportError:   # a model logged before nlu_onnx.py travelled with it
        return trained
    fast = nlu_onnx.load_fast(nlu, trained, bundle)
    try:
        import nlu_int8
    except ImportError:   # logged before int8 graphs
        return fast
    return nlu_int8.load_int8(nlu, fast, bundle)


def _as_text(value: Any) -> str:
    """Missing values (None, NaN, pd.NA) become an empty query instead of the string 'nan'."""
    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return ""
    return str(value)


def texts_from_input(model_input: Any) -> list[str]:
    """Accept a list of strings, one string, a Series, or a DataFrame with a ``text`` column."""
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        if "text" in model_input.columns:
            col = model_input["text"]
        elif model_input.shape[1] == 1:
            col = model_input.iloc[:, 0]
        else:
            raise ValueError(f"expected a 'text' column, got columns {list(model_input.columns)}")
        return [_as_text(v) for v in col.tolist()]
    if isinstance(model_input, dict) and "text" in model_input:
        return texts_from_input(list(model_input["text"]) if not isinstance(model_input["text"], str)
                                else model_input["text"])
    if isinstance(model_input, (list, tuple, pd.Series)) or hasattr(model_input, "tolist"):
        values = model_input.tolist() if hasattr(model_input, "tolist") else list(model_input)
        return [_as_text(v) for v in values]
    raise TypeError(f"unsupported input type {type(model_input).__name__}; send texts")


class NluQueryModel(mlflow.pyfunc.PythonModel):
    """Texts in; intent, confidence, BIO tags and slots (with char offsets) out."""

    def load_context(self, context: Any) -> None:
        self._nlu = _import_nlu_model()
        bundle = context.artifacts["bundle"]
        self._trained = _fast(self._nlu, self._nlu.load_bundle(bundle, device="cpu"), bundle)

    def predict_texts(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
        """The same answers as ``predict``, as plain dicts, without the DataFrame round trip
        (the API calls this: its texts are already checked)."""
        return self._nlu.predict(self._trained, texts, batch_size=batch_size)

    # model_input is deliberately unannotated: MLflow would turn a type hint into an
    # enforced schema, and this model accepts several shapes (list, Series, DataFrame).
    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:  # noqa: ANN001
        texts = texts_from_input(model_input)
        batch_size = int((params or {}).get("batch_size", 64))
        preds = self.predict_texts(texts, batch_size=batch_size)
        return pd.DataFrame(
            {
                "intent": [p["intent"] for p in preds],
                "confidence": [float(p["confidence"]) for p in preds],
                "tags": [list(p["tags"]) for p in preds],
                "slots": [[dict(s) for s in p["slots"]] for p in preds],
            },
            columns=["intent", "confidence", "tags", "slots"],
        )


mlflow.models.set_model(NluQueryModel())
