"""Fixtures of the NLU tests: generated data, a tiny random BERT, a model fitted on 20 queries.

Nothing is downloaded: the encoder is a randomly initialised 2-layer BERT (hidden 32) with a
WordPiece vocabulary trained here on generated queries. Paths derive from this file, so the
tests do not depend on the working directory.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_DIR = REPO_ROOT / "02_training"
DATA_DIR = REPO_ROOT / "01_data"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
for _p in (TRAINING_DIR, DATA_DIR):  # appended: step folders must not shadow anything
    if str(_p) not in sys.path:
        sys.path.append(str(_p))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_BERT = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "max_position_embeddings": 128,
}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> Iterator[None]:
    """Tiny models are ~20x faster on one thread than on two contended ones."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def generated() -> list[Any]:
    """600 generated queries (fixed seed)."""
    import generate_nlu_data

    return generate_nlu_data.generate_examples(600, seed=5)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory, generated: list[Any]) -> str:
    """HF folder of a random tiny BERT + locally trained WordPiece tokenizer."""
    import nlu_model

    out = tmp_path_factory.mktemp("tiny_encoder")
    return nlu_model.make_random_encoder(out, [ex.text for ex in generated], vocab_size=1500, **TINY_BERT)


@pytest.fixture(scope="session")
def tiny_cfg(tiny_encoder: str) -> Callable[..., Any]:
    """Factory of fast training configs for the tiny encoder (overrides as kwargs)."""
    import nlu_model

    def make(**overrides: Any) -> Any:
        base = dict(encoder=tiny_encoder, batch_size=4, lr=1e-2, head_lr=1e-2, warmup_ratio=0.05,
                    epochs=25, patience=0, dropout=0.0, progress=False, device="cpu")
        return nlu_model.NluTrainConfig(**{**base, **overrides})

    return make


@pytest.fixture(scope="session")
def small_train(generated: list[Any]) -> list[Any]:
    """20 queries covering several intents and slot types."""
    return generated[:20]


@pytest.fixture(scope="session")
def fitted(small_train: list[Any], tiny_cfg: Callable[..., Any]) -> dict[str, Any]:
    """The tiny model fitted on ``small_train`` (dev = train), with the epoch callback record."""
    import nlu_model

    calls: list[tuple[int, dict]] = []
    trained = nlu_model.train_nlu(small_train, small_train, tiny_cfg(),
                                  on_epoch_end=lambda e, m: calls.append((e, m)))
    return {"trained": trained, "calls": calls}
