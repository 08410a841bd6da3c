"""ONNX Runtime serving of the joint NLU model: torch's answers at a fraction of its CPU time.

Why: on CPU a MiniLM query through torch eager costs ~20 ms, most of it per-operator
dispatch, not arithmetic. ONNX Runtime runs the same graph with fused attention/GELU/
LayerNorm kernels and no Python per layer.

How it stays exact: the exported graph is the model's own ``forward`` (encoder, pooling, both
heads) and returns the same two logit tensors; ``OrtJointModel`` is an ``nn.Module`` whose
forward runs that graph, so ``nlu_model.predict`` (tokenisation, batching, argmax, BIO repair,
char offsets) is reused unchanged. ``load_fast`` compares both on probe queries at load and
keeps torch when any intent or tag differs (or onnxruntime is missing).

The graph is written beside the weights (``<bundle>/model.onnx``) when the model is logged
(nlu_logging.py), or at load time into a temporary folder for bundles logged before.
Threads: ``MLOPS_NLU_THREADS`` (default 1: one per gunicorn worker; the workers are the
parallelism).
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPSET = 17
THREADS_ENV = "MLOPS_NLU_THREADS"
PROBE_TEXTS = [
    "monthly rainfall in northern Kenya 2015 to 2020 as geotiff",
    "what is NDVI ?",
    "sentinel-2 images of Kenya from last June",
    "the portal is slow thx",
    "download land surface temperature for Spain in 2019 as netcdf",
    "how do I cite this dataset",
    "x",
    "soil moisture anomaly over the Sahel between March and May 2021 please",
]


class _Logits(nn.Module):
    """The joint model as a graph with two outputs (ONNX cannot return a dict)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids, attention_mask)
        return out["intent_logits"], out["slot_logits"]


def export_onnx(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (a JointIntentSlotModel, eval mode) as ONNX with dynamic batch and length."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0
    axes = {0: "batch", 1: "length"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")     # tracer notes on HF control flow: the graph is checked at load
        torch.onnx.export(
            _Logits(model), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
            output_names=["intent_logits", "slot_logits"], opset_version=OPSET, dynamo=False,
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "intent_logits": {0: "batch"},
                          "slot_logits": axes},
        )
    model.train(was_training)
    return path


class OrtJointModel(nn.Module):
    """An ONNX Runtime session behind the JointIntentSlotModel interface (forward -> logits dict)."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None, reference: nn.Module | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get(THREADS_ENV) or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.onnx_path = Path(onnx_path)
        self._device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # next(parameters()) -> cpu
        # attributes nlu_model may read from the torch model (pooling, heads) stay available
        self.reference = [reference]     # a list: not registered as a submodule (no duplicate weights walk)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> dict[str, torch.Tensor]:
        intent, slots = self.session.run(None, {"input_ids": input_ids.numpy(),
                                                "attention_mask": attention_mask.numpy()})
        return {"intent_logits": torch.from_numpy(intent), "slot_logits": torch.from_numpy(slots)}


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return all(x["intent"] == y["intent"] and list(x["tags"]) == list(y["tags"]) for x, y in zip(a, b))


def load_fast(nlu: Any, trained: Any, bundle_dir: str | Path, probe_texts: list[str] | None = None) -> Any:
    """``trained`` with its model answered by ONNX Runtime, or ``trained`` itself when that is
    not possible or not identical on the probe queries. ``nlu`` is the nlu_model module."""
    import dataclasses

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.info("onnxruntime is not installed: the NLU model runs on torch")
        return trained
    path = Path(bundle_dir) / ONNX_FILE
    try:
        if not path.is_file():    # a bundle logged before the fast path: export it now
            path = export_onnx(trained.model, Path(tempfile.mkdtemp(prefix="nlu_onnx_")) / ONNX_FILE)
        fast = dataclasses.replace(trained, model=OrtJointModel(path, reference=trained.model))
        probes = probe_texts or PROBE_TEXTS
        if not _same(nlu.predict(fast, probes), nlu.predict(trained, probes)):
            log.warning("the ONNX graph of %s answers differently from torch on probe queries; torch answers",
                        bundle_dir)
            return trained
    except Exception as exc:   # any export/runtime problem: torch stays the answer
        log.warning("no ONNX fast path for %s (%s: %s); torch answers", bundle_dir, type(exc).__name__, exc)
        return trained
    return fast
