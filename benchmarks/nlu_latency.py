"""NLU serving latency on CPU: the torch reference path vs the ONNX Runtime fast path.

Both answer through the logged MLflow pyfunc, as the API calls it: the reference is today's
call (``PyFuncModel.predict`` on a DataFrame, torch with its default threads, the fast path
turned off with MLOPS_NLU_FAST=0); the fast path is ``predict_texts`` of the same model loaded
with ONNX Runtime (one intra-op thread for single queries, every usable core for batches:
nlu_onnx.py). Also shown: ONNX Runtime on one thread for batches too (the first fast path,
slower than torch on batches), on two threads for single queries too (api.nlu_threads=2: lower
latency for one caller, but two workers then contend for the same two cores), torch on one
thread (what thread settings alone give) and, with ``--int8``, a dynamically quantised graph
(not served by default: it is not identical; its agreement, exact match and slot F1 are
printed).

Measured, interleaved over ``--rounds``: single queries (p50/p99 over ``--queries`` calls) and
batches of 64 (texts/s over the whole test set). Every test query's intent and tags are
compared between reference and fast path; any difference fails the run (exit 1).

    python benchmarks/nlu_latency.py                          # builds an untrained MiniLM bundle
    python benchmarks/nlu_latency.py --bundle <state>/models/nlu_query_model/production/model/artifacts/bundle

Without ``--bundle`` the encoder is the packaged all-MiniLM-L6-v2 with untrained heads: the
latency is the real model's, its intents are not (exact match is then meaningless).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
for _p in (REPO_ROOT / "02_training", REPO_ROOT / "01_data"):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

TEST_JSONL = REPO_ROOT / "01_data/testdata/nlu/test.jsonl"
TRAIN_DIR = REPO_ROOT / "01_data/sourcedata/nlu"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_bundle(out: Path) -> Path:
    """all-MiniLM-L6-v2 with untrained heads over the default data's labels (no training)."""
    import nlu_model
    import torch
    from transformers import AutoTokenizer

    rows = [r for p in sorted(TRAIN_DIR.glob("*.jsonl")) for r in read_jsonl(p)]
    intents = sorted({r["intent"] for r in rows})
    slots = ["O", *sorted({t for r in rows for t in r["tags"]} - {"O"})]
    encoder = nlu_model.resolve_encoder_path("minilm")
    torch.manual_seed(0)
    model = nlu_model.JointIntentSlotModel(nlu_model._encoder_from(encoder), len(intents), len(slots))
    trained = nlu_model.TrainedNlu(model=model.eval(), tokenizer=AutoTokenizer.from_pretrained(encoder),
                                   intent_labels=intents, slot_labels=slots, max_length=64)
    return nlu_model.save_bundle(trained, out)


def log_pyfunc(bundle: Path, root: Path) -> str:
    """The bundle logged as the training step logs it (nlu_logging.log_nlu_model); its local path."""
    import mlflow
    import nlu_model
    from nlu_logging import log_nlu_model

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.create_experiment("nlu_latency", artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = log_nlu_model(nlu_model.load_bundle(bundle), name="model")
    return mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(root / "model"))


def load(model_dir: str, fast: bool) -> Any:
    import mlflow

    os.environ["MLOPS_NLU_FAST"] = "1" if fast else "0"
    return mlflow.pyfunc.load_model(model_dir)


def single_latency(call: Callable[[list[str]], Any], texts: list[str], n: int) -> list[float]:
    for t in texts[:10]:
        call([t])                      # warm-up
    out = []
    for i in range(n):
        started = time.perf_counter()
        call([texts[i % len(texts)]])
        out.append((time.perf_counter() - started) * 1000.0)
    return out


def batch_throughput(call: Callable[[list[str]], Any], texts: list[str], size: int = 64) -> float:
    call(texts[:size])                 # warm-up
    started = time.perf_counter()
    for s in range(0, len(texts), size):
        call(texts[s:s + size])
    return len(texts) / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def exact_match(preds: list[dict[str, Any]], gold: list[dict[str, Any]]) -> float:
    return 100.0 * sum(p["intent"] == g["intent"] and list(p["tags"]) == list(g["tags"])
                       for p, g in zip(preds, gold)) / len(gold)


def slot_f1(preds: list[dict[str, Any]], gold: list[dict[str, Any]]) -> float:
    """Span-level slot F1 (x100) as the training step reports it (nlu_model.compute_metrics)."""
    import nlu_model
    from utils.data.nlu_data import NluExample

    examples = [NluExample(g["text"], g["intent"], tuple(g["tags"])) for g in gold]
    metrics = nlu_model.compute_metrics(examples, [p["intent"] for p in preds], [p["tags"] for p in preds])
    return 100.0 * float(metrics["slot_f1"])


class TorchLogits:
    """The served ONNX Runtime model with its logits handed back as torch tensors, as the first
    fast path did: softmax and log-softmax then run in torch (the same-run baseline of the
    numpy decoding)."""

    def __init__(self, ort_model: Any) -> None:
        self.ort_model = ort_model

    def __call__(self, input_ids: Any, attention_mask: Any) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(v) for k, v in self.ort_model(input_ids, attention_mask).items()}

    def __getattr__(self, name: str) -> Any:      # eval(), train(), parameters(), training ...
        return getattr(self.ort_model, name)


def threads_label(model: Any) -> str:
    return f"{model.threads} thread single, {model.batch_threads} batch"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="a trained NLU bundle folder (default: build an untrained one)")
    parser.add_argument("--queries", type=int, default=300, help="single-query calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--int8", action="store_true", help="also a dynamically quantised (int8) graph")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import nlu_model
    import nlu_onnx
    import torch

    gold = read_jsonl(TEST_JSONL)
    texts = [g["text"] for g in gold]
    work = Path(tempfile.mkdtemp(prefix="nlu-latency-"))
    bundle = args.bundle or build_bundle(work / "bundle")
    model_dir = log_pyfunc(bundle, work)
    default_threads = torch.get_num_threads()
    reference = load(model_dir, fast=False)
    fast = load(model_dir, fast=True)
    fast_model = fast.unwrap_python_model()
    if not isinstance(fast_model._trained.model, nlu_onnx.OrtJointModel):
        print("the fast path did not load (see the warning above)", file=sys.stderr)
        return 1
    import pandas as pd

    paths: dict[str, Callable[[list[str]], Any]] = {
        f"reference: pyfunc, torch ({default_threads} threads)":
            lambda t: reference.predict(pd.DataFrame({"text": t})),
        f"fast: predict_texts, ONNX Runtime ({threads_label(fast_model._trained.model)})": fast_model.predict_texts,
    }
    import dataclasses

    graph = Path(model_dir) / "artifacts" / "bundle" / nlu_onnx.ONNX_FILE
    weights = fast_model._trained.model.reference[0]    # a CRF model's transitions are read from it
    one_session = dataclasses.replace(fast_model._trained, model=nlu_onnx.OrtJointModel(
        graph, threads=1, batch_threads=1, reference=weights))
    paths["ONNX Runtime, 1 thread for batches too"] = lambda t: nlu_model.predict(one_session, t)
    two_single = dataclasses.replace(fast_model._trained, model=nlu_onnx.OrtJointModel(
        graph, threads=2, batch_threads=fast_model._trained.model.batch_threads, reference=weights))
    paths["ONNX Runtime, 2 threads for single queries too"] = lambda t: nlu_model.predict(two_single, t)
    via_torch = dataclasses.replace(fast_model._trained, model=TorchLogits(fast_model._trained.model))
    paths["ONNX Runtime, logits decoded in torch (before)"] = lambda t: nlu_model.predict(via_torch, t)
    torch_model = reference.unwrap_python_model()
    one_thread = "torch, 1 thread (thread setting only)"

    def torch_one_thread(t: list[str]) -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return torch_model.predict_texts(t)
        finally:
            torch.set_num_threads(before)

    paths[one_thread] = torch_one_thread
    int8 = None
    if args.int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantised = work / "model.int8.onnx"
        quantize_dynamic(str(graph), str(quantised), weight_type=QuantType.QInt8)
        int8 = dataclasses.replace(fast_model._trained, model=nlu_onnx.OrtJointModel(quantised, reference=weights))
        paths["ONNX Runtime int8 (not served)"] = lambda t: nlu_model.predict(int8, t)

    # identical answers on the whole test set (batch 64 and single queries)
    ref_preds = torch_model.predict_texts(texts)
    fast_preds = fast_model.predict_texts(texts)
    fast_single = [fast_model.predict_texts([t])[0] for t in texts]
    mismatches = sum(not ((a["intent"], a["tags"]) == (b["intent"], b["tags"]) == (c["intent"], c["tags"]))
                     for a, b, c in zip(ref_preds, fast_preds, fast_single))

    measured: dict[str, dict[str, list[float]]] = {name: {"p50": [], "p99": [], "batch": []} for name in paths}
    for _ in range(args.rounds):
        for name, call in paths.items():
            lat = single_latency(call, texts, args.queries)
            measured[name]["p50"].append(pct(lat, 0.5))
            measured[name]["p99"].append(pct(lat, 0.99))
            measured[name]["batch"].append(batch_throughput(call, texts))
    rows = {name: {k: statistics.median(v) for k, v in m.items()} for name, m in measured.items()}
    base = rows[next(iter(rows))]
    print(f"\nNLU on CPU ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}), bundle "
          f"{'given' if args.bundle else 'untrained MiniLM (built)'}, {len(texts)} test queries; medians of "
          f"{args.rounds} interleaved rounds ({args.queries} single queries, the test set in batches of 64)\n")
    print(f"{'path':58} {'p50 ms':>7} {'p99 ms':>7} {'x p50':>6} {'batch64 texts/s':>16} {'x batch':>8}")
    for name, r in rows.items():
        print(f"{name:58} {r['p50']:7.2f} {r['p99']:7.2f} {base['p50'] / r['p50']:6.1f} {r['batch']:16.0f} "
              f"{r['batch'] / base['batch']:8.1f}")
    print(f"\nintents + tags, fast vs reference, {len(texts)} test queries (batch 64 and single): "
          f"{mismatches} different")
    result = {"rows": rows, "mismatches": mismatches, "trained_bundle": bool(args.bundle),
              "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
              "exact_match_reference": exact_match(ref_preds, gold), "exact_match_fast": exact_match(fast_preds, gold),
              "slot_f1_reference": slot_f1(ref_preds, gold), "slot_f1_fast": slot_f1(fast_preds, gold)}
    print(f"exact match on the test set: reference {result['exact_match_reference']:.2f}, fast "
          f"{result['exact_match_fast']:.2f}; slot F1 reference {result['slot_f1_reference']:.2f}, fast "
          f"{result['slot_f1_fast']:.2f}" + ("" if args.bundle else " (untrained heads: meaningless)"))
    if int8 is not None:
        q = nlu_model.predict(int8, texts)
        agree = 100.0 * sum((a["intent"], a["tags"]) == (b["intent"], b["tags"]) for a, b in zip(q, ref_preds)) / len(q)
        result.update(int8_agreement=agree, exact_match_int8=exact_match(q, gold), slot_f1_int8=slot_f1(q, gold))
        drop = result["exact_match_reference"] - result["exact_match_int8"]
        print(f"int8: {agree:.1f} % of test queries answered as the reference; exact match "
              f"{result['exact_match_int8']:.2f} ({drop:+.2f} points below fp32; the rule to serve it: < 0.3), "
              f"slot F1 {result['slot_f1_int8']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
