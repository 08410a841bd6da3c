"""An int8 graph of the NLU model: about twice the fp32 graph's CPU throughput for batches,
served only when it keeps the dev split's exact match.

How: ONNX Runtime's dynamic quantisation of every weight MatMul (per-channel int8 weights; each
call scales its activations to uint8 on the fly). Static quantisation (activation scales fixed
by calibration on training texts) was tried first, because it keeps each row's answer
independent of the rest of its batch; on the default data it lost 1-3 of 142 dev queries in
every variant tried, where the dynamic graph lost none. The cost of dynamic scales: a query can
be answered differently alone than inside a batch (measured on the default test set: 4 of 500).
``api.nlu_int8: false`` serves the fp32 graph, whose answers never depend on the batch.

The gate (issue #16's rule): on the dev split, the int8 graph's exact match must be less than
``MAX_EXACT_MATCH_DROP`` points below the fp32 graph's. A graph that fails is not kept;
``int8.json`` in the bundle records the check either way. At load, the graph must reproduce the
probe answers it gave at log time (int8 kernels differ between CPUs, e.g. with and without
VNNI), else the fp32 graph answers. ``MLOPS_NLU_INT8=0`` (``api.nlu_int8: false``) serves fp32.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
REPORT_FILE = "int8.json"
INT8_ENV = "MLOPS_NLU_INT8"          # "0": serve the fp32 graph even when an int8 one passed
MAX_EXACT_MATCH_DROP = 0.3           # points of dev exact match the int8 graph may lose


def enabled() -> bool:
    return os.environ.get(INT8_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def quantize(fp32_graph: Path, out: Path) -> Path:
    """Write the dynamically quantised form of ``fp32_graph`` to ``out``: per-channel int8
    weights of every MatMul with a constant weight (attention's activation products stay fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    # the quantiser logs ~40 INFO lines per graph on root, and a warning meant for CNNs
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(str(fp32_graph), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    return out


def _exact_match(preds: list[dict[str, Any]], examples: Sequence[Any]) -> float:
    return 100.0 * sum(p["intent"] == e.intent and list(p["tags"]) == list(e.tags)
                       for p, e in zip(preds, examples)) / len(examples)


def _answers(preds: list[dict[str, Any]]) -> list[list[Any]]:
    return [[p["intent"], list(p["tags"])] for p in preds]


def build_checked(nlu: Any, trained: Any, bundle: Path, dev: Sequence[Any]) -> dict[str, Any]:
    """Quantise the bundle's fp32 graph and keep ``<bundle>/model.int8.onnx`` only when it passes
    the dev check; write ``int8.json`` (the check's numbers, ``served`` and why) and return it."""
    import nlu_onnx

    report: dict[str, Any] = {"served": False, "max_exact_match_drop": MAX_EXACT_MATCH_DROP,
                              "dev_examples": len(dev)}
    graph, out = bundle / nlu_onnx.ONNX_FILE, bundle / INT8_FILE
    started = time.perf_counter()
    try:
        if not graph.is_file():
            report["reason"] = "no fp32 ONNX graph in the bundle"
        elif not dev:
            report["reason"] = "no dev examples to check it on"
        else:
            quantize(graph, out)
            fp32 = dataclasses.replace(trained, model=nlu_onnx.OrtJointModel(graph, reference=trained.model))
            int8 = dataclasses.replace(trained, model=nlu_onnx.OrtJointModel(out, reference=trained.model))
            texts = [e.text for e in dev]
            em_fp32, em_int8 = _exact_match(nlu.predict(fp32, texts), dev), _exact_match(nlu.predict(int8, texts), dev)
            drop = em_fp32 - em_int8
            report.update(dev_exact_match_fp32=round(em_fp32, 4), dev_exact_match_int8=round(em_int8, 4),
                          exact_match_drop=round(drop, 4), served=drop < MAX_EXACT_MATCH_DROP)
            if report["served"]:
                probes = list(nlu_onnx.PROBE_TEXTS)
                report["probe_answers"] = {"batch": _answers(nlu.predict(int8, probes)),
                                           "single": _answers(nlu.predict(int8, probes, batch_size=1))}
            else:
                report["reason"] = (f"dev exact match {em_int8:.2f} is {drop:.2f} points below fp32's "
                                    f"{em_fp32:.2f} (less than {MAX_EXACT_MATCH_DROP} required)")
    except Exception as exc:   # quantisation is an optimisation: the fp32 graph still serves
        report.update(served=False, reason=f"{type(exc).__name__}: {exc}")
    if not report["served"]:
        out.unlink(missing_ok=True)
    report["seconds"] = round(time.perf_counter() - started, 2)
    (bundle / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if report["served"]:
        log.info("int8 NLU graph kept: dev exact match %.2f vs fp32 %.2f (%.1f s)",
                 report["dev_exact_match_int8"], report["dev_exact_match_fp32"], report["seconds"])
    else:
        log.info("no int8 NLU graph: %s; the fp32 graph serves", report["reason"])
    return report


def read_report(bundle: str | Path) -> dict[str, Any] | None:
    """``int8.json`` of a bundle, or None (none, or unreadable: then int8 is simply not served)."""
    try:
        report = json.loads((Path(bundle) / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def load_int8(nlu: Any, fast: Any, bundle: str | Path) -> Any:
    """``fast`` (the fp32 graph's model) answered by the int8 graph when the bundle has one that
    passed its check and reproduces its recorded probe answers here; else ``fast`` itself."""
    import nlu_onnx

    if not enabled() or not isinstance(fast.model, nlu_onnx.OrtJointModel):
        return fast
    report, path = read_report(bundle), Path(bundle) / INT8_FILE
    if not (report and report.get("served") and path.is_file()):
        return fast
    try:
        model = nlu_onnx.OrtJointModel(path, threads=fast.model.threads, batch_threads=fast.model.batch_threads,
                                       reference=fast.model.reference[0])
        int8 = dataclasses.replace(fast, model=model)
        probes = list(nlu_onnx.PROBE_TEXTS)
        expected = report.get("probe_answers") or {}
        # one batch and one query at a time: both must give the answers recorded at log time
        if not (_answers(nlu.predict(int8, probes)) == expected.get("batch")
                and _answers(nlu.predict(int8, probes, batch_size=1)) == expected.get("single")):
            log.warning("the int8 graph of %s answers its probe queries differently here than when it was "
                        "logged (another CPU?); the fp32 graph answers", bundle)
            return fast
    except Exception as exc:
        log.warning("no int8 graph for %s (%s: %s); the fp32 graph answers", bundle, type(exc).__name__, exc)
        return fast
    log.info("the int8 graph of %s answers (dev exact match %s vs fp32 %s when logged; api.nlu_int8=false: fp32)",
             bundle, report.get("dev_exact_match_int8"), report.get("dev_exact_match_fp32"))
    return int8
