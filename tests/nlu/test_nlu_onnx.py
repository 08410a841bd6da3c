"""The ONNX Runtime fast path of the NLU model (02_training/nlu_onnx.py) answers as torch does.

Every query of the default NLU test set and of the generated set, through the tiny random
BERT fitted by conftest.py: intents, tags and slots identical, confidences within 1e-5. The
same check against a real trained MiniLM: ``python benchmarks/nlu_latency.py --bundle DIR``
(it counts mismatches over the whole test set and fails on any).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

TEST_JSONL = Path(__file__).resolve().parents[2] / "01_data" / "testdata" / "nlu" / "test.jsonl"


def _test_texts(generated: list[Any]) -> list[str]:
    texts = [json.loads(line)["text"] for line in TEST_JSONL.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts + [ex.text for ex in generated] + ["", "   ", "x", "What IS   ndvi ?"]


@pytest.fixture(scope="module")
def bundle(fitted: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import nlu_model
    import nlu_onnx

    out = nlu_model.save_bundle(fitted["trained"], tmp_path_factory.mktemp("onnx_bundle") / "bundle")
    nlu_onnx.export_onnx(fitted["trained"].model, out / nlu_onnx.ONNX_FILE)
    return out


def test_same_intents_tags_and_slots_on_every_test_query(bundle: Path, fitted: dict, generated: list,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Single queries run on the one-thread session; a call of 64 runs its length batches side
    by side, two at a time, on one-thread runs of that session."""
    import nlu_model
    import nlu_onnx

    monkeypatch.setenv(nlu_onnx.THREADS_ENV, "1")
    monkeypatch.setenv(nlu_onnx.BATCH_THREADS_ENV, "2")
    trained = nlu_model.load_bundle(bundle)
    fast = nlu_onnx.load_fast(nlu_model, trained, bundle)
    assert isinstance(fast.model, nlu_onnx.OrtJointModel)
    assert fast.model.batch_session is not fast.model.session
    assert fast.model.parallel_session is fast.model.session
    texts = _test_texts(generated)
    assert len(texts) > 1000
    for batch_size in (1, 64):
        reference = nlu_model.predict(trained, texts, batch_size=batch_size)
        mine = nlu_model.predict(fast, texts, batch_size=batch_size)
        for text, ref, got in zip(texts, reference, mine):
            assert (got["intent"], got["tags"], got["slots"]) == (ref["intent"], ref["tags"], ref["slots"]), text
            assert got["confidence"] == pytest.approx(ref["confidence"], abs=1e-5)


def _intra_op(session: Any) -> int:
    return session.get_session_options().intra_op_num_threads


class _SessionSpy:
    """Records which session role ran each batch, and on which thread."""

    def __init__(self, real: Any, name: str, calls: list[tuple[str, str]]) -> None:
        self.real, self.name, self.calls = real, name, calls

    def run(self, *args: Any) -> Any:
        import threading

        self.calls.append((self.name, threading.current_thread().name))
        return self.real.run(*args)


def test_small_calls_and_batches_run_on_their_own_thread_counts(bundle: Path) -> None:
    import nlu_onnx
    import torch

    calls: list[tuple[str, str]] = []
    model = nlu_onnx.OrtJointModel(bundle / nlu_onnx.ONNX_FILE, threads=1, batch_threads=2)
    assert (_intra_op(model.session), _intra_op(model.batch_session)) == (1, 2)
    assert model.parallel_session is model.session
    for name in ("session", "batch_session"):
        setattr(model, name, _SessionSpy(getattr(model, name), name, calls))
    model.parallel_session = _SessionSpy(model.parallel_session, "parallel_session", calls)
    for rows in (1, nlu_onnx.BATCH_ROWS - 1, nlu_onnx.BATCH_ROWS, 64):
        ids = torch.full((rows, 6), 5, dtype=torch.long)
        out = model(ids, torch.ones_like(ids))
        assert out["slot_logits"].shape[:2] == (rows, 6)
    assert [name for name, _ in calls] == ["session", "session", "batch_session", "batch_session"]

    def batches(*shapes: tuple[int, int]) -> list:
        return [(torch.full(shape, 5, dtype=torch.long), torch.ones(shape, dtype=torch.long)) for shape in shapes]

    calls.clear()
    model.run_batches(batches((3, 4), (2, 6)), call_rows=nlu_onnx.BATCH_ROWS - 1)    # a small call
    model.run_batches(batches((64, 9)), call_rows=64)                                 # one batch
    assert [name for name, _ in calls] == ["session", "session", "batch_session"]
    calls.clear()
    model.run_batches(batches((30, 5), (20, 9), (14, 12)), call_rows=64)
    assert [name for name, _ in calls] == ["parallel_session"] * 3
    assert all(thread.startswith("nlu-onnx") for _, thread in calls)


def test_batches_run_side_by_side_answer_as_each_run_alone(bundle: Path) -> None:
    """Order kept, values equal to running each batch on its own; the pool is rebuilt after a fork."""
    import nlu_onnx
    import torch

    model = nlu_onnx.OrtJointModel(bundle / nlu_onnx.ONNX_FILE, threads=1, batch_threads=3)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for rows, length in ((1, 3), (40, 5), (7, 17), (16, 8), (2, 30)):
        ids = torch.randint(5, 60, (rows, length), generator=gen)
        mask = torch.ones_like(ids)
        mask[0, length - 1:] = 0                 # a padded row too
        batches.append((ids, mask))
    got = model.run_batches(batches, call_rows=66)
    assert len(got) == len(batches)
    for (ids, mask), out in zip(batches, got):
        alone = nlu_onnx._run(model.session, ids, mask)
        assert out["slot_logits"].shape[:2] == tuple(ids.shape)
        np.testing.assert_allclose(out["slot_logits"], alone["slot_logits"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(out["intent_logits"], alone["intent_logits"], rtol=0, atol=1e-5)
    pool = model._executor()
    assert model._executor() is pool
    model._pool_pid = -1                         # as seen by a forked child: its parent's threads are gone
    assert model._executor() is not pool


def test_thread_counts_come_from_the_environment_or_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import nlu_onnx

    monkeypatch.delenv(nlu_onnx.THREADS_ENV, raising=False)
    monkeypatch.delenv(nlu_onnx.BATCH_THREADS_ENV, raising=False)
    assert nlu_onnx.thread_counts() == (1, nlu_onnx.usable_cores())
    monkeypatch.setenv(nlu_onnx.THREADS_ENV, "2")
    monkeypatch.setenv(nlu_onnx.BATCH_THREADS_ENV, " 3 ")
    assert nlu_onnx.thread_counts() == (2, 3)
    assert nlu_onnx.thread_counts(1, 4) == (1, 4)            # arguments win
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(nlu_onnx.BATCH_THREADS_ENV, bad)
        with pytest.raises(ValueError, match=nlu_onnx.BATCH_THREADS_ENV):
            nlu_onnx.thread_counts()


GEVENT_PROBE = """
from gevent import monkey
monkey.patch_all()
import sys, torch
os_thread = monkey.get_original("_thread", "get_ident")     # not a greenlet's id
sys.path.insert(0, sys.argv[2])
import nlu_onnx
model = nlu_onnx.OrtJointModel(sys.argv[1], threads=1, batch_threads=2)
real, seen = model.parallel_session, []
class Spy:
    def run(self, *args):
        seen.append(os_thread())
        return real.run(*args)
model.parallel_session = Spy()
shapes = ((30, 5), (20, 9), (14, 12))
batches = [(torch.full(s, 7, dtype=torch.long), torch.ones(s, dtype=torch.long)) for s in shapes]
out = model.run_batches(batches, call_rows=64)
assert [o["slot_logits"].shape[:2] for o in out] == list(shapes)
print(len(seen), os_thread() not in seen)
"""


def test_under_gevent_batches_still_run_on_native_threads(bundle: Path) -> None:
    """The API's default gevent workers patch threading: the batches must not become greenlets
    on the worker's one OS thread (they would run in turn)."""
    pytest.importorskip("gevent")
    import subprocess

    training = str(Path(__file__).resolve().parents[2] / "02_training")
    done = subprocess.run([sys.executable, "-c", GEVENT_PROBE, str(bundle / "model.onnx"), training],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["3", "True"]


def test_one_session_when_both_counts_agree(bundle: Path) -> None:
    import nlu_onnx

    model = nlu_onnx.OrtJointModel(bundle / nlu_onnx.ONNX_FILE, threads=2, batch_threads=2)
    assert model.batch_session is model.session and _intra_op(model.session) == 2
    assert _intra_op(model.parallel_session) == 1
    single = nlu_onnx.OrtJointModel(bundle / nlu_onnx.ONNX_FILE, threads=1, batch_threads=1)
    assert single.batch_session is single.session and single.parallel_session is None   # batches in turn


def test_a_graph_that_answers_differently_is_not_used(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nlu_model
    import nlu_onnx

    real_run = nlu_onnx._run

    def shifted(session: Any, input_ids: Any, attention_mask: Any) -> dict:
        out = real_run(session, input_ids, attention_mask)
        out["intent_logits"] = np.flip(out["intent_logits"], -1)      # a wrong graph
        return out

    monkeypatch.setattr(nlu_onnx, "_run", shifted)      # every session role runs through it
    trained = nlu_model.load_bundle(bundle)
    assert nlu_onnx.load_fast(nlu_model, trained, bundle) is trained     # torch answers


def test_without_onnxruntime_torch_answers(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nlu_model
    import nlu_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)    # import fails
    trained = nlu_model.load_bundle(bundle)
    assert nlu_onnx.load_fast(nlu_model, trained, bundle) is trained


def test_a_bundle_without_a_graph_is_exported_at_load(fitted: dict, tmp_path: Path) -> None:
    import nlu_model
    import nlu_onnx

    out = nlu_model.save_bundle(fitted["trained"], tmp_path / "old_bundle")
    assert not (out / nlu_onnx.ONNX_FILE).exists()
    trained = nlu_model.load_bundle(out)
    fast = nlu_onnx.load_fast(nlu_model, trained, out)
    assert isinstance(fast.model, nlu_onnx.OrtJointModel)
    assert nlu_model.predict(fast, ["what is NDVI ?"])[0]["intent"] == nlu_model.predict(trained, ["what is NDVI ?"])[0]["intent"]


def test_pyfunc_serves_the_fast_path_and_can_turn_it_off(fitted: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Logged like the training step logs it: the graph travels in the bundle, the pyfunc uses it."""
    import mlflow
    import nlu_model
    import nlu_onnx
    from nlu_logging import log_nlu_model

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        exp = mlflow.create_experiment("onnx", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            info = log_nlu_model(fitted["trained"], name="model")
        local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model")))
        assert (local / "artifacts" / "bundle" / nlu_onnx.ONNX_FILE).is_file()
        assert (local / "code" / "nlu_onnx.py").is_file()
        assert any(r.startswith("onnxruntime==") for r in (local / "requirements.txt").read_text().split())
        fast = mlflow.pyfunc.load_model(str(local))
        assert isinstance(fast.unwrap_python_model()._trained.model, nlu_onnx.OrtJointModel)
        monkeypatch.setenv("MLOPS_NLU_FAST", "0")
        slow = mlflow.pyfunc.load_model(str(local))
        assert isinstance(slow.unwrap_python_model()._trained.model, nlu_model.JointIntentSlotModel)
    finally:
        mlflow.set_tracking_uri(None)
    texts = ["monthly rainfall in northern Kenya 2015 to 2020 as geotiff", "what is NDVI ?", "hello there"]
    a, b = fast.predict(texts), slow.predict(texts)
    assert a["intent"].tolist() == b["intent"].tolist() and a["tags"].tolist() == b["tags"].tolist()
    direct = fast.unwrap_python_model().predict_texts(texts)
    assert [d["intent"] for d in direct] == a["intent"].tolist()
    assert [d["slots"] for d in direct] == [list(s) for s in a["slots"]]


def test_length_chunks_cut_by_length_only_where_it_saves_tokens() -> None:
    """Every row once, in length order, at most batch_size rows a batch; fewer padded tokens
    than fixed batches whenever a call's fixed cost is small; fixed batches at cost 0."""
    import random

    import nlu_model

    rng = random.Random(3)
    for _ in range(200):
        lengths = [rng.randint(3, 40) for _ in range(rng.randint(1, 150))]
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        size = rng.choice([1, 4, 64])
        fixed = nlu_model.length_chunks(order, lengths, size)
        assert fixed == [order[s:s + size] for s in range(0, len(order), size)]
        for cost in (1, 32, 10_000):
            chunks = nlu_model.length_chunks(order, lengths, size, cost)
            assert [i for c in chunks for i in c] == order and all(0 < len(c) <= size for c in chunks)

            def total(cs: list) -> int:
                return sum(len(c) * max(lengths[i] for i in c) + cost for c in cs)

            assert total(chunks) <= total(fixed)
            if cost == 10_000:      # a call costs more than any padding: as few batches as fixed ones
                assert len(chunks) == len(fixed)
    lengths = [5] * 32 + [30] * 32
    order = list(range(64))
    assert [len(c) for c in nlu_model.length_chunks(order, lengths, 64, 32)] == [32, 32]
    assert nlu_model.length_chunks([], [], 64, 32) == []
