"""Training throughput of our NLU loop vs ``transformers.Trainer`` on the same model and data.

Both train the same JointIntentSlotModel (same encoder weights, same pre-tokenised generated
queries, same AdamW param groups and linear schedule); we compare training samples/s and the
dev metrics each reaches. Needs only torch + transformers (+ tokenizers): no mlflow, hydra or
seqeval, so it runs on a bare GPU box. Prints a table and one JSON line.

    python benchmarks/nlu_train_throughput.py                         # GPU: 60k queries, random MiniLM
    python benchmarks/nlu_train_throughput.py --encoder minilm --compile
    python benchmarks/nlu_train_throughput.py --encoder random-tiny --n-train 512 --epochs 1  # CPU smoke
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script, not a package: the repo's `utils` first
    sys.path.insert(0, str(REPO_ROOT))
for _p in (REPO_ROOT / "02_training", REPO_ROOT / "01_data"):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import generate_nlu_data  # noqa: E402
import nlu_model  # noqa: E402
import torch  # noqa: E402

log = logging.getLogger("nlu_bench")

# all-MiniLM-L6-v2's architecture (config.json of sentence-transformers/all-MiniLM-L6-v2)
MINILM_CONFIG = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                 "intermediate_size": 1536, "vocab_size": 30522, "max_position_embeddings": 512}
TINY_CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 128, "max_position_embeddings": 128}


def build_encoder(name: str, corpus: list[str], workdir: Path) -> str:
    """A local encoder folder: random-minilm / random-tiny are built here, else resolved."""
    if name in ("random-minilm", "random-tiny"):
        config = MINILM_CONFIG if name == "random-minilm" else TINY_CONFIG
        return nlu_model.make_random_encoder(workdir / name, corpus, vocab_size=8000, **config)
    return nlu_model.resolve_encoder_path(name)


def _warmup(encoder: str, device: torch.device, bf16: bool) -> None:
    """CUDA context, cuBLAS handles and kernels ready before either timed run."""
    if device.type != "cuda":
        return
    model = nlu_model.JointIntentSlotModel(nlu_model._encoder_from(encoder), 4, 4).to(device)
    ids = torch.randint(5, 100, (64, 32), device=device)
    mask = torch.ones_like(ids)
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = model(ids, mask, torch.zeros(64, dtype=torch.long, device=device),
                        torch.zeros_like(ids))
        out["loss"].backward()
    torch.cuda.synchronize()
    del model


def run_ours(train: list, dev: list, cfg: nlu_model.NluTrainConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    trained = nlu_model.train_nlu(train, dev, cfg)
    wall = time.perf_counter() - t0
    epoch_times = [h["train_time_s"] for h in trained.history]
    return {
        **_throughput(len(train), epoch_times), "wall_s": wall,
        "epochs": len(trained.history), "batch_size": cfg.batch_size,
        "dev": _scalar_metrics(nlu_model.evaluate(trained, dev, cfg.eval_batch_size)),
    }


def _throughput(n_train: int, epoch_times: list[float]) -> dict[str, Any]:
    """Samples/s over all epochs, and from epoch 2 on (steady state: no compile, warm caches)."""
    out = {"samples_per_s": n_train * len(epoch_times) / sum(epoch_times),
           "train_time_s": sum(epoch_times), "epoch_times_s": epoch_times}
    if len(epoch_times) > 1:
        out["steady_samples_per_s"] = n_train * (len(epoch_times) - 1) / sum(epoch_times[1:])
    return out


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


class _Collator:
    """Dynamic padding for the Trainer (same padding rule as our loop)."""

    def __init__(self, pad_id: int, pad_multiple: int) -> None:
        self.pad_id, self.pad_multiple = pad_id, pad_multiple

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        data = nlu_model.EncodedBatchable(
            input_ids=[r["input_ids"] for r in rows], word_starts=[[] for _ in rows],
            slot_labels=[r["slot_labels"] for r in rows],
            intent_ids=torch.tensor([r["intent_labels"] for r in rows]),
        )
        return nlu_model.collate(data, list(range(len(rows))), self.pad_id, self.pad_multiple)


def _epoch_timer(device: torch.device) -> Any:
    """A TrainerCallback timing each epoch (synchronised, so GPU work is counted)."""
    from transformers import TrainerCallback

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.epoch_times: list[float] = []
            self._t0 = 0.0

        def _sync(self) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._sync()
            self._t0 = time.perf_counter()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._sync()
            self.epoch_times.append(time.perf_counter() - self._t0)

    return EpochTimer()


def run_trainer(train: list, dev: list, cfg: nlu_model.NluTrainConfig, batch_size: int,
                group_by_length: bool, workdir: Path) -> dict[str, Any]:
    """transformers.Trainer on the same model class, data, optimiser groups and schedule."""
    import dataclasses

    from transformers import AutoTokenizer, Trainer, TrainingArguments, get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    device = nlu_model._pick_device(cfg.device)
    encoder = nlu_model.resolve_encoder_path(cfg.encoder)
    tok = AutoTokenizer.from_pretrained(encoder)
    intents, slots = nlu_model.build_label_maps(train)
    model = nlu_model.JointIntentSlotModel(nlu_model._encoder_from(encoder), len(intents), len(slots),
                                           cfg.dropout, cfg.pooling, cfg.slot_loss_weight)
    data = nlu_model.encode(tok, [e.tokens for e in train], cfg.max_length, [e.tags for e in train],
                            {t: i for i, t in enumerate(slots)}, [e.intent for e in train],
                            {t: i for i, t in enumerate(intents)})
    rows = [{"input_ids": data.input_ids[i], "slot_labels": data.slot_labels[i],
             "intent_labels": int(data.intent_ids[i])} for i in range(len(train))]
    steps = math.ceil(len(rows) / batch_size) * cfg.epochs
    model.to(device)
    opt = torch.optim.AdamW(nlu_model._param_groups(model, cfg), lr=cfg.lr, fused=device.type == "cuda")
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps), steps)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    kwargs: dict[str, Any] = dict(
        output_dir=str(workdir / "trainer"), per_device_train_batch_size=batch_size,
        num_train_epochs=cfg.epochs, max_grad_norm=cfg.grad_clip, seed=cfg.seed,
        bf16=cfg.bf16 and device.type == "cuda", torch_compile=cfg.compile, report_to="none",
        save_strategy="no", eval_strategy="no", logging_strategy="no", remove_unused_columns=False,
        label_names=["intent_labels", "slot_labels"], dataloader_num_workers=cfg.num_workers,
        disable_tqdm=not cfg.progress, use_cpu=device.type != "cuda",
    )
    if group_by_length:
        if "train_sampling_strategy" in fields:
            kwargs["train_sampling_strategy"] = "group_by_length"
        else:
            kwargs["group_by_length"] = True
    kwargs = {k: v for k, v in kwargs.items() if k in fields}
    timer = _epoch_timer(device)
    trainer = Trainer(
        model=model, args=TrainingArguments(**kwargs), train_dataset=rows,
        data_collator=_Collator(tok.pad_token_id or 0, cfg.pad_to_multiple_of if device.type == "cuda" else 1),
        optimizers=(opt, sched), callbacks=[timer],
    )
    t0 = time.perf_counter()
    result = trainer.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    trained = nlu_model.TrainedNlu(model, tok, intents, slots, cfg.max_length)
    return {
        **_throughput(len(rows), timer.epoch_times or [wall]), "wall_s": wall,
        "trainer_reported_samples_per_s": result.metrics.get("train_samples_per_second"),
        "epochs": cfg.epochs, "batch_size": batch_size,
        "dev": _scalar_metrics(nlu_model.evaluate(trained, dev, cfg.eval_batch_size)),
    }


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="random-minilm",
                   help="random-minilm (MiniLM-L6 shape, random weights), random-tiny, minilm, or a local folder")
    p.add_argument("--n-train", type=int, default=60000, help="generated training queries")
    p.add_argument("--n-dev", type=int, default=2000, help="generated dev queries")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024 if cuda else 64, help="our batch size")
    p.add_argument("--trainer-batch-size", type=int, default=64, help="the Trainer's batch size")
    p.add_argument("--lr", type=float, default=None,
                   help="our encoder lr (default 1e-4 scaled by sqrt(batch/64)); head lr is 10x")
    p.add_argument("--trainer-lr", type=float, default=1e-4, help="the Trainer's encoder lr (head 10x)")
    p.add_argument("--compile", action="store_true", help="torch.compile in both runs")
    p.add_argument("--no-bf16", action="store_true", help="disable bf16 autocast (CUDA)")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--trainer-group-by-length", action="store_true",
                   help="let the Trainer group batches by length too")
    p.add_argument("--skip-trainer", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("--json-out", type=Path, default=None, help="also write the result JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    t0 = time.perf_counter()
    pool = generate_nlu_data.generate_examples(args.n_train + args.n_dev, seed=args.seed)
    train, dev = pool[: args.n_train], pool[args.n_train:]
    log.info("generated %d + %d queries in %.1fs", len(train), len(dev), time.perf_counter() - t0)
    lr = args.lr if args.lr is not None else 1e-4 * math.sqrt(args.batch_size / 64)
    with tempfile.TemporaryDirectory(prefix="nlu_bench_") as tmp:
        workdir = Path(tmp)
        encoder = build_encoder(args.encoder, [e.text for e in train[:20000]], workdir)
        base = dict(encoder=encoder, epochs=args.epochs, patience=0, seed=args.seed,
                    bf16=not args.no_bf16, compile=args.compile, num_workers=args.num_workers,
                    progress=args.progress, eval_batch_size=512)
        device = nlu_model._pick_device("auto")
        _warmup(encoder, device, not args.no_bf16)
        ours_cfg = nlu_model.NluTrainConfig(**base, batch_size=args.batch_size, lr=lr, head_lr=10 * lr)
        result: dict[str, Any] = {
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "torch": torch.__version__, "encoder": args.encoder, "n_train": len(train),
            "n_dev": len(dev), "compile": args.compile, "bf16": cuda and not args.no_bf16,
            "ours": run_ours(train, dev, ours_cfg),
        }
        if not args.skip_trainer:
            tr_cfg = nlu_model.NluTrainConfig(**base, lr=args.trainer_lr, head_lr=10 * args.trainer_lr)
            try:
                result["trainer"] = run_trainer(train, dev, tr_cfg, args.trainer_batch_size,
                                                args.trainer_group_by_length, workdir)
                ours, theirs = result["ours"], result["trainer"]
                result["speedup"] = ours["samples_per_s"] / theirs["samples_per_s"]
                if "steady_samples_per_s" in ours and "steady_samples_per_s" in theirs:
                    result["steady_speedup"] = ours["steady_samples_per_s"] / theirs["steady_samples_per_s"]
            except ImportError as err:  # Trainer needs `accelerate`, which a bare box may lack
                log.error("Trainer run skipped: %s", err)
                result["trainer_error"] = str(err)
    _print_table(result)
    print(json.dumps(result, default=float))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    return 0


def _print_table(result: dict[str, Any]) -> None:
    keys = ("intent_accuracy", "slot_f1", "exact_match")
    print(f"\n{result['device']}  torch {result['torch']}  encoder {result['encoder']}  "
          f"train {result['n_train']}  dev {result['n_dev']}  bf16 {result['bf16']}  compile {result['compile']}")
    header = f"{'run':8} {'batch':>6} {'samples/s':>10} {'train s':>8} {'wall s':>8} "
    print(header + " ".join(f"{k:>15}" for k in keys))
    for name in ("ours", "trainer"):
        if name in result:
            r = result[name]
            print(f"{name:8} {r['batch_size']:>6} {r['samples_per_s']:>10.1f} {r['train_time_s']:>8.1f} "
                  f"{r['wall_s']:>8.1f} " + " ".join(f"{r['dev'].get(k, float('nan')):>15.4f}" for k in keys))
    if "speedup" in result:
        print(f"speedup (ours / Trainer samples/s): {result['speedup']:.2f}x")
    if "steady_speedup" in result:
        print(f"steady-state speedup (epochs 2+): {result['steady_speedup']:.2f}x "
              f"({result['ours']['steady_samples_per_s']:.1f} vs "
              f"{result['trainer']['steady_samples_per_s']:.1f} samples/s)")


if __name__ == "__main__":
    sys.exit(main())
