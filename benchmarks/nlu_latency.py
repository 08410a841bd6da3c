"""NLU serving latency on CPU: the torch reference path vs the ONNX Runtime fast paths.

All answer through the logged MLflow pyfunc, as the API calls it: the reference is today's call
(``PyFuncModel.predict`` on a DataFrame, torch with its default threads, the fast path turned
off with MLOPS_NLU_FAST=0); the served path is ``predict_texts`` of the same model loaded with
ONNX Runtime (one intra-op thread for single queries; a batch call's length batches side by
side on every usable core: nlu_onnx.py): its int8 graph when that passed its dev check at
logging (nlu_int8.py; the dev split of ``--dev``), else the fp32 graph. Also shown: the fp32
graph (identical to torch), the fp32 graph with every call of 64 run as one padded batch
(before nlu_model.length_chunks), the served graph with a call's length batches run one after
another on a multi-threaded session (before they ran side by side on one-thread runs), ONNX
Runtime on one thread for batches too, on two threads for single queries too
(api.nlu_threads=2: lower latency for one caller, but two workers then contend for the same two
cores), and torch on one thread (what thread settings alone give).

Measured, interleaved over ``--rounds``: single queries (p50/p99 over ``--queries`` calls) and
batches of 64 (texts/s over the whole test set). Every test query's intent and tags are
compared between torch and the fp32 graph (batch 64 and single): any difference fails the run
(exit 1). The int8 graph is not identical by design: its agreement with torch, its exact match
and slot F1 are printed, and the run fails when its exact match is 0.3 points or more below
torch's (issue #16's rule), or when the same query is answered differently alone than in a batch
too often to report (never expected of fp32).

    python benchmarks/nlu_latency.py                          # builds an untrained MiniLM bundle
    python benchmarks/nlu_latency.py --bundle <state>/models/nlu_query_model/production/model/artifacts/bundle

Without ``--bundle`` the encoder is the packaged all-MiniLM-L6-v2 with untrained heads: the
latency is the real model's, its intents are not (exact match is then meaningless, and the int8
check on the dev split decides on untrained answers).
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
MAX_INT8_DROP = 0.3     # points of test exact match the served int8 graph may lose (issue #16)


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


def dev_examples(source: Path) -> list[Any]:
    """The dev split of an NLU source (a folder of .jsonl files and BIO folders, or one file),
    read as ingestion reads it."""
    from utils.data.nlu_data import is_bio_folder, is_bio_split, read_nlu_path

    if source.is_file() or is_bio_folder(source) or is_bio_split(source):
        paths = [source]
    else:
        paths = sorted(p for p in source.iterdir() if p.is_dir() or p.suffix.lower() in (".jsonl", ".json"))
    return [e for p in paths for e in read_nlu_path(p) if e.split == "dev"]


def log_pyfunc(bundle: Path, root: Path, dev: list[Any]) -> str:
    """The bundle logged as the training step logs it (nlu_logging.log_nlu_model, the int8 graph
    checked on ``dev``); its local path."""
    import mlflow
    import nlu_model
    from nlu_logging import log_nlu_model

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.create_experiment("nlu_latency", artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = log_nlu_model(nlu_model.load_bundle(bundle), name="model", int8_dev=dev)
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


def threads_label(model: Any) -> str:
    return f"{model.threads} thread single, batches {model.batch_threads} side by side"


def agreement(preds: list[dict[str, Any]], other: list[dict[str, Any]]) -> int:
    return sum((a["intent"], a["tags"]) == (b["intent"], b["tags"]) for a, b in zip(preds, other))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="a trained NLU bundle folder (default: build an untrained one)")
    parser.add_argument("--dev", type=Path, default=TRAIN_DIR,
                        help="NLU source whose dev split checks the int8 graph (default: the default data)")
    parser.add_argument("--queries", type=int, default=300, help="single-query calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import dataclasses

    import nlu_int8
    import nlu_model
    import nlu_onnx
    import pandas as pd
    import torch

    gold = read_jsonl(TEST_JSONL)
    texts = [g["text"] for g in gold]
    work = Path(tempfile.mkdtemp(prefix="nlu-latency-"))
    bundle = args.bundle or build_bundle(work / "bundle")
    model_dir = log_pyfunc(bundle, work, dev_examples(args.dev))
    logged = Path(model_dir) / "artifacts" / "bundle"
    int8_report = nlu_int8.read_report(logged) or {}
    default_threads = torch.get_num_threads()
    reference = load(model_dir, fast=False)
    fast = load(model_dir, fast=True)
    served = fast.unwrap_python_model()._trained
    if not isinstance(served.model, nlu_onnx.OrtJointModel):
        print("the fast path did not load (see the warning above)", file=sys.stderr)
        return 1
    served_int8 = served.model.onnx_path.name == nlu_int8.INT8_FILE
    weights = served.model.reference[0]    # a CRF model's transitions are read from it

    def ort(graph: str, **kw: Any) -> Any:
        return dataclasses.replace(served, model=nlu_onnx.OrtJointModel(logged / graph, reference=weights, **kw))

    fp32 = ort(nlu_onnx.ONNX_FILE, threads=served.model.threads, batch_threads=served.model.batch_threads)
    one_batch = ort(nlu_onnx.ONNX_FILE, threads=served.model.threads, batch_threads=served.model.batch_threads)
    one_batch.model.run_cost_tokens = 0
    torch_model = reference.unwrap_python_model()
    runtime = "int8" if served_int8 else "fp32"
    paths: dict[str, Callable[[list[str]], Any]] = {
        f"reference: pyfunc, torch ({default_threads} threads)":
            lambda t: reference.predict(pd.DataFrame({"text": t})),
        f"served: predict_texts, ONNX Runtime {runtime} ({threads_label(served.model)})":
            fast.unwrap_python_model().predict_texts,
    }
    if served_int8:
        paths["ONNX Runtime fp32 (identical to torch)"] = lambda t: nlu_model.predict(fp32, t)
    paths["ONNX Runtime fp32, one padded batch per call (before)"] = lambda t: nlu_model.predict(one_batch, t)
    in_turn = ort(served.model.onnx_path.name, threads=served.model.threads, batch_threads=served.model.batch_threads)
    in_turn.model.parallel_session = None      # a call's batches one after another, on all threads each
    paths[f"ONNX Runtime {runtime}, batches in turn on {in_turn.model.batch_threads} threads (before)"] = \
        lambda t: nlu_model.predict(in_turn, t)
    one_session = ort(nlu_onnx.ONNX_FILE, threads=1, batch_threads=1)
    paths["ONNX Runtime fp32, 1 thread for batches too"] = lambda t: nlu_model.predict(one_session, t)
    two_single = ort(served.model.onnx_path.name, threads=2, batch_threads=served.model.batch_threads)
    paths[f"ONNX Runtime {runtime}, 2 threads for single queries too"] = lambda t: nlu_model.predict(two_single, t)

    def torch_one_thread(t: list[str]) -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return torch_model.predict_texts(t)
        finally:
            torch.set_num_threads(before)

    paths["torch, 1 thread (thread setting only)"] = torch_one_thread

    # fp32: identical answers on the whole test set (batch 64 and single queries)
    ref_preds = torch_model.predict_texts(texts)
    fp32_preds = [p for s in range(0, len(texts), 64) for p in nlu_model.predict(fp32, texts[s:s + 64])]
    fp32_single = [nlu_model.predict(fp32, [t])[0] for t in texts]
    mismatches = sum(not ((a["intent"], a["tags"]) == (b["intent"], b["tags"]) == (c["intent"], c["tags"]))
                     for a, b, c in zip(ref_preds, fp32_preds, fp32_single))
    # served: as the API answers (batches of 64 and single queries)
    served_preds = [p for s in range(0, len(texts), 64) for p in nlu_model.predict(served, texts[s:s + 64])]
    served_single = [nlu_model.predict(served, [t])[0] for t in texts]

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
    print(f"{'path':84} {'p50 ms':>7} {'p99 ms':>7} {'x p50':>6} {'batch64 texts/s':>16} {'x batch':>8}")
    for name, r in rows.items():
        print(f"{name:84} {r['p50']:7.2f} {r['p99']:7.2f} {base['p50'] / r['p50']:6.1f} {r['batch']:16.0f} "
              f"{r['batch'] / base['batch']:8.1f}")
    result = {"rows": rows, "fp32_mismatches": mismatches, "trained_bundle": bool(args.bundle),
              "served_runtime": runtime, "int8_check": {k: v for k, v in int8_report.items() if k != "probe_answers"},
              "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
              "exact_match_reference": exact_match(ref_preds, gold), "exact_match_fp32": exact_match(fp32_preds, gold),
              "exact_match_served": exact_match(served_preds, gold),
              "exact_match_served_single": exact_match(served_single, gold),
              "slot_f1_reference": slot_f1(ref_preds, gold), "slot_f1_served": slot_f1(served_preds, gold),
              "served_agreement": agreement(served_preds, ref_preds),
              "served_single_agreement": agreement(served_single, ref_preds),
              "served_single_vs_batch": agreement(served_single, served_preds)}
    note = "" if args.bundle else " (untrained heads: meaningless)"
    print(f"\nfp32 graph vs torch, {len(texts)} test queries (batch 64 and single): {mismatches} different")
    print(f"int8 check at logging (dev split of {args.dev}): " + (
        f"dev exact match {int8_report.get('dev_exact_match_int8')} vs fp32 {int8_report.get('dev_exact_match_fp32')}, "
        f"{'served' if int8_report.get('served') else 'not served: ' + str(int8_report.get('reason'))}"
        if int8_report else "no report"))
    print(f"served ({runtime}): {result['served_agreement']}/{len(texts)} test answers as torch in batches of 64, "
          f"{result['served_single_agreement']}/{len(texts)} alone; {result['served_single_vs_batch']}/{len(texts)} "
          f"the same alone as in a batch")
    drop = result["exact_match_reference"] - min(result["exact_match_served"], result["exact_match_served_single"])
    print(f"exact match on the test set: torch {result['exact_match_reference']:.2f}, fp32 graph "
          f"{result['exact_match_fp32']:.2f}, served {result['exact_match_served']:.2f} in batches / "
          f"{result['exact_match_served_single']:.2f} alone ({drop:+.2f} points below torch at worst; the rule: "
          f"< {MAX_INT8_DROP}); slot F1 torch {result['slot_f1_reference']:.2f}, served "
          f"{result['slot_f1_served']:.2f}{note}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = mismatches == 0 and (not args.bundle or drop < MAX_INT8_DROP)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
