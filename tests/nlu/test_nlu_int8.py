"""The int8 graph of the NLU model (02_training/nlu_int8.py): built and checked at logging,
kept only when it passes the dev check, served only when it reproduces its logged probe answers.

The tiny random BERT of conftest.py is really quantised here; the gate's threshold is moved to
force each branch, since a tiny model's dev exact match says nothing about int8 on MiniLM. The
real model's numbers: ``python benchmarks/nlu_latency.py --bundle DIR`` (fails when the served
int8 graph loses 0.3 points of test exact match or more).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")


@pytest.fixture()
def bundle(fitted: dict, tmp_path: Path) -> Path:
    import nlu_model
    import nlu_onnx

    out = nlu_model.save_bundle(fitted["trained"], tmp_path / "bundle")
    nlu_onnx.export_onnx(fitted["trained"].model, out / nlu_onnx.ONNX_FILE)
    return out


@pytest.fixture()
def dev(generated: list[Any]) -> list[Any]:
    return generated[20:80]


def _build(bundle: Path, dev: list[Any], fitted: dict) -> dict[str, Any]:
    import nlu_int8
    import nlu_model

    return nlu_int8.build_checked(nlu_model, fitted["trained"], bundle, dev)


def test_a_graph_within_the_rule_is_kept_with_its_report(bundle: Path, dev: list, fitted: dict,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import nlu_int8

    monkeypatch.setattr(nlu_int8, "MAX_EXACT_MATCH_DROP", 101.0)     # any int8 graph passes
    report = _build(bundle, dev, fitted)
    assert report["served"] is True and (bundle / nlu_int8.INT8_FILE).is_file()
    on_disk = json.loads((bundle / nlu_int8.REPORT_FILE).read_text())
    assert on_disk == report and on_disk["dev_examples"] == len(dev)
    assert report["exact_match_drop"] == pytest.approx(report["dev_exact_match_fp32"] - report["dev_exact_match_int8"],
                                                       abs=1e-3)
    assert len(report["probe_answers"]["batch"]) == len(report["probe_answers"]["single"]) > 0
    # really quantised: integer MatMuls with int8 weights
    import onnx

    graph = onnx.load(str(bundle / nlu_int8.INT8_FILE)).graph
    assert {n.op_type for n in graph.node} & {"MatMulInteger", "DynamicQuantizeMatMul"}
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)


def test_a_graph_that_loses_exact_match_is_not_kept(bundle: Path, dev: list, fitted: dict,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import nlu_int8

    monkeypatch.setattr(nlu_int8, "MAX_EXACT_MATCH_DROP", -101.0)    # no graph can pass
    report = _build(bundle, dev, fitted)
    assert report["served"] is False and "points below fp32" in report["reason"]
    assert not (bundle / nlu_int8.INT8_FILE).exists()
    assert json.loads((bundle / nlu_int8.REPORT_FILE).read_text())["served"] is False


def test_without_dev_examples_or_a_graph_nothing_is_built(bundle: Path, fitted: dict) -> None:
    import nlu_int8

    assert _build(bundle, [], fitted)["reason"] == "no dev examples to check it on"
    (bundle / "model.onnx").unlink()
    assert _build(bundle, [object()], fitted)["reason"] == "no fp32 ONNX graph in the bundle"
    assert not (bundle / nlu_int8.INT8_FILE).exists()


def _served(bundle: Path, fitted: dict) -> Any:
    import nlu_int8
    import nlu_model
    import nlu_onnx

    trained = nlu_model.load_bundle(bundle)
    return nlu_int8.load_int8(nlu_model, nlu_onnx.load_fast(nlu_model, trained, bundle), bundle)


def test_load_serves_the_kept_graph_unless_turned_off(bundle: Path, dev: list, fitted: dict,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import nlu_int8
    import nlu_model
    import nlu_onnx

    monkeypatch.setattr(nlu_int8, "MAX_EXACT_MATCH_DROP", 101.0)
    report = _build(bundle, dev, fitted)
    served = _served(bundle, fitted)
    assert served.model.onnx_path.name == nlu_int8.INT8_FILE
    probes = nlu_model.predict(served, list(nlu_onnx.PROBE_TEXTS))
    assert [[p["intent"], p["tags"]] for p in probes] == report["probe_answers"]["batch"]
    monkeypatch.setenv(nlu_int8.INT8_ENV, "0")
    assert _served(bundle, fitted).model.onnx_path.name == "model.onnx"


def test_a_graph_that_does_not_reproduce_its_probes_is_not_served(bundle: Path, dev: list, fitted: dict,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """As on a CPU whose int8 kernels round differently from the one it was logged on."""
    import nlu_int8

    monkeypatch.setattr(nlu_int8, "MAX_EXACT_MATCH_DROP", 101.0)
    report = _build(bundle, dev, fitted)
    report["probe_answers"]["single"][0][0] = "not_an_intent"
    (bundle / nlu_int8.REPORT_FILE).write_text(json.dumps(report))
    with caplog.at_level(logging.WARNING, logger="nlu_int8"):
        served = _served(bundle, fitted)
    assert served.model.onnx_path.name == "model.onnx"
    assert "differently here than when it was logged" in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "list", "no_graph", "not_served"])
def test_a_broken_int8_state_serves_fp32(bundle: Path, dev: list, fitted: dict, monkeypatch: pytest.MonkeyPatch,
                                         damage: str) -> None:
    import nlu_int8

    monkeypatch.setattr(nlu_int8, "MAX_EXACT_MATCH_DROP", 101.0)
    report = _build(bundle, dev, fitted)
    path = bundle / nlu_int8.REPORT_FILE
    if damage == "garbage":
        path.write_bytes(b"\x00{not json")
    elif damage == "list":
        path.write_text("[1, 2]")
    elif damage == "no_graph":
        (bundle / nlu_int8.INT8_FILE).unlink()
    else:
        path.write_text(json.dumps({**report, "served": False}))
    assert _served(bundle, fitted).model.onnx_path.name == "model.onnx"


def test_the_logged_pyfunc_carries_and_serves_the_int8_graph(fitted: dict, dev: list, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """As the training step logs it (int8_dev = the dev split); without int8_dev no graph."""
    import mlflow
    import nlu_int8
    from nlu_logging import log_nlu_model

    monkeypatch.setattr(nlu_int8, "MAX_EXACT_MATCH_DROP", 101.0)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        exp = mlflow.create_experiment("int8", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp) as run:
            info = log_nlu_model(fitted["trained"], name="model", int8_dev=dev)
            plain = log_nlu_model(fitted["trained"], name="plain")
        metrics = mlflow.get_run(run.info.run_id).data.metrics
        local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model")))
        plain_local = Path(mlflow.artifacts.download_artifacts(plain.model_uri, dst_path=str(tmp_path / "plain")))
        model = mlflow.pyfunc.load_model(str(local))
    finally:
        mlflow.set_tracking_uri(None)
    assert metrics["int8_served"] == 1.0 and "int8_dev_exact_match_int8" in metrics
    assert (local / "code" / "nlu_int8.py").is_file()
    assert (local / "artifacts" / "bundle" / nlu_int8.INT8_FILE).is_file()
    assert model.unwrap_python_model()._trained.model.onnx_path.name == nlu_int8.INT8_FILE
    assert list(model.predict(["what is NDVI ?"]).columns)[:2] == ["intent", "confidence"]
    assert not (plain_local / "artifacts" / "bundle" / nlu_int8.REPORT_FILE).exists()


def test_training_int8_must_be_a_boolean() -> None:
    from train_config import ConfigValueError, training_params

    assert training_params("nlu", {"int8": False})[1]["int8"] is False
    assert training_params("nlu", {})[1]["int8"] is True
    with pytest.raises(ConfigValueError, match="training.int8"):
        training_params("nlu", {"int8": "yes"})
