"""Dev (and, once, test) metrics of one NLU training recipe, for choosing the default recipe.

Trains ``nlu_model.train_nlu`` with the given NluTrainConfig overrides on the default data or
on a BIO benchmark folder (``train/ dev/ test/`` or ``valid/``), then scores the kept model on
dev with both slot decoders (argmax + repair_bio, and BIO-constrained Viterbi) from the same
weights, so the decoder's effect is measured without retraining. Appends one JSON line per run
to ``--results`` and prints it. Settings are chosen on dev only; ``--test`` adds the test split.

    python benchmarks/nlu_recipe.py --data default --name baseline --set epochs=4 patience=2
    python benchmarks/nlu_recipe.py --data /tmp/snips --name ls0.1 --set label_smoothing=0.1
    python benchmarks/nlu_recipe.py --data /tmp/snips --name final --test
    python benchmarks/nlu_recipe.py --seed-means     # each recipe's dev metrics over its seeds

``--data default``: the embedded sample as the chain sees it (01_data/sourcedata/nlu, rows
deduplicated on text + intent + tags like ingestion; dev = the sources' dev split; test =
01_data/testdata/nlu/test.jsonl). Needs torch + transformers (+ seqeval for the metrics).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
for _p in (REPO_ROOT / "02_training", REPO_ROOT / "01_data"):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import nlu_model  # noqa: E402

from utils.data.nlu_data import NluExample, read_jsonl, read_nlu_path  # noqa: E402

log = logging.getLogger("nlu_recipe")
DEFAULT_SOURCE = REPO_ROOT / "01_data" / "sourcedata" / "nlu"
DEFAULT_TEST = REPO_ROOT / "01_data" / "testdata" / "nlu" / "test.jsonl"


def _dedup(examples: list[NluExample]) -> list[NluExample]:
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out = []
    for ex in examples:
        key = (ex.text, ex.intent, tuple(ex.tags))
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def load_splits(data: str, train_subset: int = 0, subset_seed: int = 16) -> dict[str, list[NluExample]]:
    """``{"train", "dev", "test"}`` of the default sample or of a BIO benchmark folder; with
    ``train_subset`` a seeded sample of that many training examples (in file order)."""
    if data == "default":
        examples = _dedup([ex for p in sorted(DEFAULT_SOURCE.iterdir()) for ex in read_nlu_path(p)])
        test = read_jsonl(DEFAULT_TEST)
    else:
        examples = read_nlu_path(data)
        test = [ex for ex in examples if ex.split == "test"]
    train = [ex for ex in examples if ex.split in (None, "", "train")]
    dev = [ex for ex in examples if ex.split == "dev"]
    if not dev:
        raise SystemExit(f"{data}: no dev split (this script chooses settings on dev only)")
    if 0 < train_subset < len(train):
        idx = list(range(len(train)))
        random.Random(subset_seed).shuffle(idx)
        train = [train[i] for i in sorted(idx[:train_subset])]
    return {"train": train, "dev": dev, "test": test}


def _parse_value(field: dataclasses.Field, text: str) -> Any:
    kind = str(field.type)
    if kind in ("bool", "<class 'bool'>"):
        return text.lower() in ("1", "true", "yes")
    return {"int": int, "float": float}.get(kind, str)(text)


def build_config(sets: list[str]) -> nlu_model.NluTrainConfig:
    fields = {f.name: f for f in dataclasses.fields(nlu_model.NluTrainConfig)}
    kwargs: dict[str, Any] = {"progress": False}
    for item in sets:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {item}: {key!r} is not a field of NluTrainConfig")
        kwargs[key] = _parse_value(fields[key], value)
    return nlu_model.NluTrainConfig(**kwargs)


def _scalars(m: dict[str, Any]) -> dict[str, float]:
    keep = ("intent_accuracy", "slot_f1", "exact_match")
    return {k: round(100 * float(m[k]), 2) for k in keep if k in m}


def score(trained: nlu_model.TrainedNlu, examples: list[NluExample], batch: int) -> dict[str, dict]:
    out = {}
    before = trained.slot_decoder
    has_crf = getattr(trained.model, "crf", None) is not None    # "crf" decodes only a CRF model
    for decoder in (d for d in nlu_model.SLOT_DECODERS if has_crf or d != nlu_model.CRF_DECODER):
        trained.slot_decoder = decoder
        out[decoder] = _scalars(nlu_model.evaluate(trained, examples, batch))
    trained.slot_decoder = before
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="default", help="'default' or a BIO benchmark folder")
    parser.add_argument("--name", default=None, help="name of this recipe in the results")
    parser.add_argument("--table", action="store_true",
                        help="no training: print the --results file as a markdown table")
    parser.add_argument("--seed-means", action="store_true",
                        help="no training: dev metrics of each recipe averaged over its seeds "
                             "(one seed moves exact match by up to 1.6 points on SNIPS dev)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="NluTrainConfig overrides, e.g. epochs=10 label_smoothing=0.1")
    parser.add_argument("--test", action="store_true", help="also score the test split (once, at the end)")
    parser.add_argument("--save-bundle", default=None, help="write the kept model here (to score test later)")
    parser.add_argument("--score-bundle", default=None,
                        help="no training: score this saved bundle on --data's dev and test splits")
    parser.add_argument("--train-subset", type=int, default=0,
                        help="train on a seeded sample of this many training examples (0: all)")
    parser.add_argument("--subset-seed", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--results", default=str(REPO_ROOT / "benchmarks" / "results" / "nlu_recipe.jsonl"))
    args = parser.parse_args(argv)
    if (args.table or args.seed_means) and not Path(args.results).is_file():
        raise SystemExit(f"{args.results}: no results file (train a recipe first, or pass --results)")
    if args.table:
        print(markdown_table(args.results))
        return 0
    if args.seed_means:
        print(seed_means_table(args.results))
        return 0
    if not args.name:
        parser.error("--name is required unless --table or --seed-means")
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    splits = load_splits(args.data, args.train_subset, args.subset_seed)
    if args.score_bundle:
        return score_saved(args, splits)
    cfg = build_config(args.set)
    t0 = time.perf_counter()
    trained = nlu_model.train_nlu(splits["train"], splits["dev"], cfg)
    train_s = time.perf_counter() - t0
    record: dict[str, Any] = {
        "name": args.name, "data": args.data, "train_subset": args.train_subset or None,
        "subset_seed": args.subset_seed if args.train_subset else None, "n_train": len(splits["train"]), "n_dev": len(splits["dev"]),
        "set": args.set, "device": str(trained.device), "threads": torch.get_num_threads(),
        "train_wall_s": round(train_s, 1), "epochs_run": len(trained.history),
        "best_epoch": trained.best_metrics.get("epoch"),
        "dev_by_epoch": [{k: round(100 * h[f"dev_{k}"], 2) for k in ("intent_accuracy", "slot_f1", "exact_match")
                          if f"dev_{k}" in h} for h in trained.history],
        "dev": score(trained, splits["dev"], cfg.eval_batch_size),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.test:
        record["n_test"] = len(splits["test"])
        record["test"] = score(trained, splits["test"], cfg.eval_batch_size)
    if args.save_bundle:
        record["bundle"] = str(nlu_model.save_bundle(trained, args.save_bundle))
    _append(args.results, record)
    return 0


def read_results(path: str) -> list[dict[str, Any]]:
    """The records of a --results file, one per line, in the order they were run."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def data_label(record: dict[str, Any]) -> str:
    """The data a run trained on, as the tables name it (with its train subset, if any)."""
    subset = record.get("train_subset")
    return Path(record["data"]).name + (f" (train subset {subset}, seed {record['subset_seed']})" if subset else "")


def markdown_table(path: str) -> str:
    """One row per (run, split, decoder): intent accuracy, slot F1, exact match, wall time."""
    rows = ["| data | recipe | settings | split | decoder | intent acc | slot F1 | exact match | epochs (best) | train wall s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in read_results(path):
        data = data_label(r)
        epochs = f"{r['epochs_run']} ({r['best_epoch']})" if "epochs_run" in r else "-"
        for split in ("dev", "test"):
            for decoder, m in r.get(split, {}).items():
                rows.append(f"| {data} | {r['name']} | {' '.join(r.get('set', [])) or '-'} | {split} | {decoder} | "
                            f"{m['intent_accuracy']:.2f} | {m['slot_f1']:.2f} | {m['exact_match']:.2f} | "
                            f"{epochs} | {r.get('train_wall_s', '-')} |")
    return "\n".join(rows)


# what a run's settings may differ in and still be the same recipe
_NOT_RECIPE = {"seed", "progress", "progress_every_s", "progress_label"}


def recipe_key(sets: list[str]) -> tuple[tuple[str, str], ...]:
    """The settings of a run that differ from NluTrainConfig's defaults, seed and progress
    left out; the last of repeated keys wins, as in build_config. Keys that are no longer
    fields (settings tried and removed) stay as written, so such runs stay apart."""
    fields = {f.name: f for f in dataclasses.fields(nlu_model.NluTrainConfig)}
    default = nlu_model.NluTrainConfig()
    chosen: dict[str, str] = {}
    for item in sets:
        key, _, value = item.partition("=")
        if key in _NOT_RECIPE:
            continue
        if key in fields:
            parsed = _parse_value(fields[key], value)
            if parsed == getattr(default, key):
                chosen.pop(key, None)
                continue
            value = str(parsed)
        chosen[key] = value
    return tuple(sorted(chosen.items()))


def _seed_of(sets: list[str]) -> int:
    seeds = [item.partition("=")[2] for item in sets if item.startswith("seed=")]
    return int(seeds[-1]) if seeds else nlu_model.NluTrainConfig().seed


def seed_means_table(path: str, decoder: str = "viterbi") -> str:
    """Dev metrics (``decoder``) of every trained recipe averaged over its seeds, with the
    exact-match range: recipes are compared on their means, not on one lucky seed."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in read_results(path):
        if "epochs_run" not in r or decoder not in r.get("dev", {}):
            continue      # a --score-bundle record: the run it scored is already counted
        groups.setdefault((data_label(r), recipe_key(r.get("set", []))), []).append(r)
    rows = ["| data | settings (besides defaults and seed) | seeds | intent acc | slot F1 | exact match | "
            "exact match min-max |", "|---|---|---|---|---|---|---|"]
    for (data, key), runs in groups.items():
        dev = [r["dev"][decoder] for r in runs]
        mean = {k: sum(m[k] for m in dev) / len(dev) for k in ("intent_accuracy", "slot_f1", "exact_match")}
        ems = [m["exact_match"] for m in dev]
        rows.append(f"| {data} | {' '.join(f'{k}={v}' for k, v in key) or '-'} | "
                    f"{', '.join(str(_seed_of(r.get('set', []))) for r in runs)} | {mean['intent_accuracy']:.2f} | "
                    f"{mean['slot_f1']:.2f} | {mean['exact_match']:.2f} | {min(ems):.2f}-{max(ems):.2f} |")
    return "\n".join(rows)


def _append(path: str, record: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record))


def score_saved(args: argparse.Namespace, splits: dict[str, list[NluExample]]) -> int:
    """Dev and test metrics of a bundle written by an earlier --save-bundle run."""
    trained = nlu_model.load_bundle(args.score_bundle)
    record = {"name": args.name, "data": args.data, "bundle": args.score_bundle,
              "n_dev": len(splits["dev"]), "n_test": len(splits["test"]),
              "dev": score(trained, splits["dev"], 256), "test": score(trained, splits["test"], 256),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _append(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
