"""ONNX Runtime serving of the joint NLU model: torch's answers at a fraction of its CPU time.

Why: on CPU a MiniLM query through torch eager costs ~20 ms, most of it per-operator
dispatch, not arithmetic. ONNX Runtime runs the same graph with fused attention/GELU/
LayerNorm kernels and no Python per layer.

How it stays exact: the exported graph is the model's own ``forward`` (encoder, pooling, both
heads) and returns the same two logit tensors; ``OrtJointModel`` is an ``nn.Module`` whose
forward runs that graph, so ``nlu_model.predict`` (tokenisation, batching, argmax, BIO repair,
char offsets) is reused unchanged (a CRF model's learned transitions stay outside the graph: decoding adds
them, read from the torch model). ``load_fast`` compares both on probe queries at load and
keeps torch when any intent or tag differs (or onnxruntime is missing).

The graph is written beside the weights (``<bundle>/model.onnx``) when the model is logged
(nlu_logging.py), or at load time into a temporary folder for bundles logged before.

Threads: one intra-op thread is the fastest for a single query (a MiniLM query is too small to
split, and the gunicorn workers are the parallelism). A call of ``BATCH_ROWS`` texts or more is
cut by length into several batches (nlu_model.length_chunks); those run side by side, up to
``MLOPS_NLU_BATCH_THREADS`` at a time (default: every core this process may use), each on one
intra-op thread of the same session (ONNX Runtime's ``run`` is thread-safe and releases the GIL).
Measured on 2 cores, calls of 64: 1.2-1.3x the throughput of one two-thread session running the
batches in turn, since a short batch is too small to split across threads but not too small to
run beside another. A call that is a single batch runs on a session with that many intra-op
threads instead. Small calls run on ``MLOPS_NLU_THREADS`` threads (default 1). The API sets
both from ``api.nlu_threads`` / ``api.nlu_batch_threads``.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPSET = 17
THREADS_ENV = "MLOPS_NLU_THREADS"              # intra-op threads for small calls (default 1)
BATCH_THREADS_ENV = "MLOPS_NLU_BATCH_THREADS"  # cores for calls of BATCH_ROWS texts or more (default: all)
BATCH_ROWS = 8     # from this many rows a call uses BATCH_THREADS (below: threads cost more than they give)
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


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):      # not Linux
        return max(1, os.cpu_count() or 1)


def _env_threads(name: str, default: int) -> int:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r}: intra-op threads must be a whole number >= 1")
    return value


def thread_counts(threads: int | None = None, batch_threads: int | None = None) -> tuple[int, int]:
    """``(small-call threads, batch threads)``: the arguments, else the environment, else 1 and
    every usable core."""
    return (threads or _env_threads(THREADS_ENV, 1),
            batch_threads or _env_threads(BATCH_THREADS_ENV, usable_cores()))


def _session(onnx_path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 1:   # idle workers block instead of spinning: tokenising and decoding get the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class OrtJointModel(nn.Module):
    """ONNX Runtime sessions behind the JointIntentSlotModel interface (forward -> logits dict),
    plus ``run_batches`` for the batches of one call (see the module docstring)."""

    # a call's fixed cost in tokens of compute: nlu_model.length_chunks cuts a batch by length
    # when that computes fewer padding tokens (measured: benchmarks/nlu_latency.py)
    run_cost_tokens = 32

    def __init__(self, onnx_path: str | Path, threads: int | None = None, reference: nn.Module | None = None,
                 batch_threads: int | None = None) -> None:
        super().__init__()
        self.onnx_path = Path(onnx_path)
        self.threads, self.batch_threads = thread_counts(threads, batch_threads)
        sessions: dict[int, Any] = {}     # one session per intra-op thread count, shared by the roles

        def session(n: int) -> Any:
            if n not in sessions:
                sessions[n] = _session(self.onnx_path, n)
            return sessions[n]

        self.session = session(self.threads)               # small calls
        self.batch_session = session(self.batch_threads)   # a large call that is one batch
        # a large call's batches, side by side; unused (not built) when batches run in turn
        self.parallel_session = session(1) if self.batch_threads > 1 else None
        self._pool: Any = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        self._device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # next(parameters()) -> cpu
        # attributes nlu_model may read from the torch model (pooling, heads) stay available
        self.reference = [reference]     # a list: not registered as a submodule (no duplicate weights walk)
        # a served model's weights are fixed: copy a CRF's transitions out of torch once, not per query
        self._crf_scores = reference.crf_scores() if hasattr(reference, "crf_scores") else None

    def crf_scores(self) -> Any:
        """The reference model's CRF transitions (not part of the graph: decoding adds them)."""
        return self._crf_scores

    def forward(self, input_ids: Any, attention_mask: Any, **_: Any) -> dict[str, Any]:
        """Logits as numpy arrays: the caller's softmax and decoding then stay in numpy. A torch
        op on these tiny tensors wakes torch's intra-op thread pool, which cost up to ~15 ms per
        single query on a busy 2-core machine, more than the graph itself. One batch is a call
        of its own rows (the session routing lives in ``run_batches``)."""
        return self.run_batches([(input_ids, attention_mask)], call_rows=input_ids.shape[0])[0]

    def run_batches(self, batches: Sequence[tuple[Any, Any]], call_rows: int) -> list[dict[str, Any]]:
        """Logits of each ``(input_ids, attention_mask)`` batch of one call of ``call_rows`` texts,
        in order. Several batches of a large call run side by side on one-thread runs, the
        costliest first so that the last to finish is a short one; answers do not depend on the
        order (each run is independent)."""
        if call_rows < BATCH_ROWS:
            return [_run(self.session, ids, mask) for ids, mask in batches]
        if len(batches) == 1 or self.parallel_session is None:
            return [_run(self.batch_session, ids, mask) for ids, mask in batches]
        pool = self._executor()
        costliest_first = sorted(range(len(batches)), key=lambda i: -batches[i][0].shape[0] * batches[i][0].shape[1])
        futures = {i: pool.submit(_run, self.parallel_session, *batches[i]) for i in costliest_first}
        return [futures[i].result() for i in range(len(batches))]

    def _executor(self) -> Any:
        """The thread pool of this process (built on first use: threads do not survive a fork)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = _native_thread_pool(self.batch_threads)
                self._pool_pid = os.getpid()
            return self._pool


def _native_thread_pool(workers: int) -> Any:
    """A ``concurrent.futures`` executor on OS threads. Under gevent's monkey patching (the API's
    default workers) the standard pool's threads would be greenlets on one OS thread, running the
    batches in turn: gevent's own pool runs them on native threads, and waiting for them lets the
    worker serve its other requests meanwhile."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        from gevent.threadpool import ThreadPoolExecutor as GeventThreadPool

        return GeventThreadPool(workers)
    return ThreadPoolExecutor(workers, thread_name_prefix="nlu-onnx")


def _run(session: Any, input_ids: Any, attention_mask: Any) -> dict[str, Any]:
    intent, slots = session.run(None, {"input_ids": _numpy(input_ids), "attention_mask": _numpy(attention_mask)})
    return {"intent_logits": intent, "slot_logits": slots}


def _numpy(x: Any) -> Any:
    return x.numpy() if isinstance(x, torch.Tensor) else x


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
        expected = nlu.predict(trained, probes)
        # one batch (the batch session when there are BATCH_ROWS probes) and one query at a time
        if not (_same(nlu.predict(fast, probes), expected) and _same(nlu.predict(fast, probes, batch_size=1), expected)):
            log.warning("the ONNX graph of %s answers differently from torch on probe queries; torch answers",
                        bundle_dir)
            return trained
    except Exception as exc:   # any export/runtime problem: torch stays the answer
        log.warning("no ONNX fast path for %s (%s: %s); torch answers", bundle_dir, type(exc).__name__, exc)
        return trained
    return fast
