"""The reporting step (06_reporting/reporting.py) and utils/monitoring/report_lib.py, both tasks."""
from __future__ import annotations

import dataclasses
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.diagnostics.builders import (NLU_TASK, TABULAR_TASK, built_and_reported, load_steps,
                                        reporting_config, run_in_pipeline, tracking_at, write_drift)
from tests.fixtures.browser import requires_chromium, screenshot
from utils.monitoring import report_lib as rl
from utils.pipeline.paths import StatePaths

SECTIONS = ("summary", "metrics", "plots", "diagnostics", "drift")


@pytest.fixture(scope="module")
def tabular(tmp_path_factory, empty_tracking_db):
    return built_and_reported(tmp_path_factory.mktemp("report") / "tabular", "tabular", empty_tracking_db)


@pytest.fixture(scope="module")
def nlu(tmp_path_factory, empty_tracking_db):
    return built_and_reported(tmp_path_factory.mktemp("report") / "nlu", "nlu", empty_tracking_db)


def png(path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def assert_drawn(pixels: np.ndarray) -> None:
    """Not a blank canvas: plenty of non-white pixels and many colours."""
    non_white = (pixels < 245).any(axis=2).mean()
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert non_white > 0.03 and colours > 50, (non_white, colours)


# ---------------------------------------------------------------------------------- pieces
def test_confusion_counts_rows_true_columns_predicted():
    labels, matrix = rl.confusion_counts([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], [0, 1])
    assert labels == [0, 1] and matrix == [[1, 1], [1, 2]]
    labels, matrix = rl.confusion_counts(["b", "a", "a"], ["a", "a", "c"])
    assert labels == ["a", "b", "c"] and matrix == [[1, 0, 1], [1, 0, 0], [0, 0, 0]]


def test_metric_history_from_the_store(tabular):
    points = rl.metric_history(tabular["store"], "attrition_model")
    assert [(p["version"], p["score"], p["deployed"], p["production"]) for p in points] == [
        ("attrition_model-v1", 0.60, True, False),
        ("attrition_model-v2", 0.55, False, False),
        ("attrition_model-v3", 0.70, True, True)]
    assert all(p["created"] and p["metric"] == "f1" for p in points)
    assert rl.metric_history(tabular["store"], "no_such_model") == []


def test_per_slot_scores_are_seqeval_per_type(nlu):
    per_slot = rl.per_slot_scores(nlu["diagnostics"]["predictions"]["rows"])
    assert set(per_slot) == {"dataset", "location", "theme"}
    # dataset: 2 of 3 gold spans found, no false positives; theme: 1 of 2; location: all 3
    assert per_slot["dataset"]["f1-score"] == pytest.approx(0.8)
    assert per_slot["location"]["f1-score"] == pytest.approx(1.0)
    assert per_slot["theme"]["f1-score"] == pytest.approx(2 / 3)
    assert per_slot["dataset"]["support"] == 3


def test_fmt_number_for_people():
    assert [rl.fmt_number(v) for v in (None, True, 3, 0.123456789, float("nan"), "x")] == [
        "—", "yes", "3", "0.1235", "—", "x"]


# ----------------------------------------------------------------------------- step outputs
def test_tabular_outputs_exist_with_expected_sizes(tabular):
    assert tabular["report_exit"] == 0
    reports = tabular["paths"].reports_dir
    for name, size in (("confusionmatrix.png", rl.CONFUSION_SIZE_PX), ("metric_history.png", rl.HISTORY_SIZE_PX)):
        pixels = png(reports / name)
        assert (pixels.shape[1], pixels.shape[0]) == size
        assert_drawn(pixels)
    assert not (reports / "slot_f1.png").exists(), "slot F1 is an NLU plot"
    # the timeline: the fixture's store has deployments (no drift check yet)
    assert sorted(tabular["artifacts"]["reporting"]) == [
        "reports/confusionmatrix.png", "reports/drift_timeline.png", "reports/metric_history.png",
        "reports/report.html"]


def test_tabular_html_has_every_section_and_is_self_contained(tabular):
    html = (tabular["paths"].reports_dir / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert html.count('src="data:image/png;base64,') == 3   # + the deployments timeline
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external resources"
    assert "<script" not in html
    d = tabular["diagnostics"]
    assert "attrition_model-v3" in html and "<b>f1</b>" in html
    assert f"{d['predictions']['n_examples']} examples" in html
    for col in ("lastmonth_activity", "lastyear_activity", "number_of_employees"):
        assert f"<td>{col}</td>" in html
    assert rl.fmt_number(d["summary_stats"]["summary"]["lastyear_activity"]["mean"]) in html
    assert rl.fmt_number(d["timing"]["latency"]["p99_ms"]) in html
    assert "<td>model_deployment</td>" in html
    assert "No drift check yet" in html


def test_nlu_outputs_slot_f1_and_intent_confusion(nlu):
    assert nlu["report_exit"] == 0
    reports = nlu["paths"].reports_dir
    for name, size in (("confusionmatrix.png", rl.CONFUSION_SIZE_PX), ("slot_f1.png", rl.SLOT_F1_SIZE_PX),
                       ("metric_history.png", rl.HISTORY_SIZE_PX)):
        pixels = png(reports / name)
        assert (pixels.shape[1], pixels.shape[0]) == size
        assert_drawn(pixels)
    html = (reports / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert html.count('src="data:image/png;base64,') == 4   # + the deployments timeline
    assert "intent accuracy 0.8333" in html
    assert "<td>subscribe_alert</td>" in html and "<td>location</td>" in html
    assert "vocabulary 17 distinct" in html


@pytest.fixture
def tabular_copy(tabular, tmp_path, empty_tracking_db):
    root = tmp_path / "state"
    shutil.copytree(tabular["paths"].state_dir, root, symlinks=True)
    with tracking_at(root, empty_tracking_db) as experiment_id:
        yield root, experiment_id


def test_drift_results_are_shown_when_present(tabular_copy):
    root, experiment_id = tabular_copy
    _, reporting = load_steps()
    doc = write_drift(StatePaths.of(root).model("attrition_model"), drift=True)
    assert "ks:lastmonth_activity" in doc["distribution"]["signals"]
    code, _ = run_in_pipeline(reporting.go, reporting_config(root, TABULAR_TASK), "reporting", experiment_id)
    assert code == 0
    html = (root / "reports" / "attrition_model" / "report.html").read_text()
    drift = html[html.index('<section id="drift">'):]
    assert "drift detected" in drift and "2026-01-02T03:04:05+0000" in drift
    assert "lastmonth_activity: KS" in drift, "the verdict names the signal that caused it"
    assert "Benjamini-Hochberg" in drift and "<td>number_of_employees</td>" in drift
    assert "No drift check yet" not in html


def test_drift_plots_per_feature_decoded_and_captioned(tabular_copy):
    root, experiment_id = tabular_copy
    _, reporting = load_steps()
    write_drift(StatePaths.of(root).model("attrition_model"), drift=True)
    code, _ = run_in_pipeline(reporting.go, reporting_config(root, TABULAR_TASK), "reporting", experiment_id)
    assert code == 0
    reports = root / "reports" / "attrition_model"
    features = ("lastmonth_activity", "lastyear_activity", "number_of_employees", "exited")
    for feature in features:
        pixels = png(reports / f"drift_{feature}.png")
        assert (pixels.shape[1], pixels.shape[0]) == rl.DRIFT_SIZE_PX
        assert_drawn(pixels)
    assert_drawn(png(reports / "drift_timeline.png"))
    html = (reports / "report.html").read_text()
    block = html[html.index('id="drift-plots"'):]
    figures = re.findall(r'<figure><img src="data:image/png;base64,([^"]+)"[^>]*><figcaption>([^<]+)</figcaption>',
                         block)
    assert len(figures) >= len(features)
    import base64
    import io

    from PIL import Image

    for feature, (data, caption) in zip(features, figures):
        assert caption.startswith(f"{feature}:"), caption   # the caption names the feature
        assert "PSI" in caption
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:   # the embedded copy decodes
            assert img.size == rl.DRIFT_SIZE_PX
    assert "corrected p" not in figures[0][1] or "p-value after correction" in figures[0][1]


def test_drift_view_verdict_names_signals():
    from tests.diagnostics.builders import drift_doc
    from utils.monitoring.drift_view import drift_verdict, feature_rows

    v = drift_verdict(drift_doc(True))
    assert v["verdict"] == "drift" and any(r.startswith("new data: lastmonth_activity: KS") for r in v["reasons"])
    assert any(r.startswith("performance (f1)") for r in v["checked"])
    quiet = drift_verdict(drift_doc(False))
    assert quiet["verdict"] == "no drift" and not quiet["reasons"]
    rows = {r["feature"]: r for r in feature_rows(drift_doc(True)["distribution"])}
    assert rows["lastmonth_activity"]["drift"] and rows["exited"]["test"] == "chi²"
    assert drift_verdict(None) is None
    assert drift_verdict({"error": "bad json"})["verdict"] == "unreadable"
    assert drift_verdict({"drift": None, "signals": {"performance": None, "distribution": None}})["verdict"] == "undecided"


def test_fmt_quantity_units_and_thousands():
    assert rl.fmt_number(24110.5) == "24,110" and rl.fmt_number(123456) == "123,456"
    assert rl.fmt_quantity(24110.5, "memory.total_mb") == "24,110 MB"
    assert rl.fmt_label("memory.total_mb") == "memory total"
    assert rl.fmt_quantity(12.5, "disk.percent") == "12.5 %"
    assert rl.fmt_number(3.2e-9) == "3.20e-09"


@pytest.fixture
def nlu_copy(nlu, tmp_path, empty_tracking_db):
    root = tmp_path / "state"
    shutil.copytree(nlu["paths"].state_dir, root, symlinks=True)
    with tracking_at(root, empty_tracking_db) as experiment_id:
        yield root, experiment_id


def test_nlu_training_curves_from_the_mlflow_metric_history(nlu_copy):
    import json

    import mlflow

    root, experiment_id = nlu_copy
    with mlflow.start_run(experiment_id=experiment_id, run_name="model_training") as run:
        for epoch, (loss, em, acc) in enumerate([(2.1, 0.2, 0.5), (1.2, 0.5, 0.8), (0.7, 0.7, 0.9)], 1):
            mlflow.log_metrics({"train_loss": loss, "dev_exact_match": em, "dev_intent_accuracy": acc,
                                "train_time_s": 3.0, "lr": 1e-4}, step=epoch)
        mlflow.log_metric("val_exact_match", 0.7)      # one step: not a curve
    store = rl.ModelStore(root / "models" / "query_model")
    production = store.production_version()
    meta_file = store.version_dir(production) / "metadata.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "run_id": run.info.run_id}))

    assert rl.training_curves(mlflow.MlflowClient(), run.info.run_id) == {
        "dev_exact_match": [(1, 0.2), (2, 0.5), (3, 0.7)], "dev_intent_accuracy": [(1, 0.5), (2, 0.8), (3, 0.9)],
        "train_loss": [(1, 2.1), (2, 1.2), (3, 0.7)]}
    _, reporting = load_steps()
    code, _ = run_in_pipeline(reporting.go, reporting_config(root, NLU_TASK), "reporting", experiment_id)
    assert code == 0
    pixels = png(root / "reports" / "query_model" / "training_curves.png")
    assert (pixels.shape[1], pixels.shape[0]) == rl.CURVES_SIZE_PX
    assert_drawn(pixels)
    html = (root / "reports" / "query_model" / "report.html").read_text()
    curves = html[html.index('id="training-curves"'):html.index("<h3>Model versions</h3>")]
    assert 'src="data:image/png;base64,' in curves and "train_loss" in curves


def test_no_training_curves_says_why(tabular):
    html = (tabular["paths"].reports_dir / "report.html").read_text()
    assert "No training curves: " in html


def test_reporting_without_diagnostics_fails_clearly(tabular_copy, caplog):
    root, experiment_id = tabular_copy
    _, reporting = load_steps()
    (root / "reports" / "attrition_model" / "diagnostics.json").unlink()
    code, _ = run_in_pipeline(reporting.go, reporting_config(root, TABULAR_TASK), "reporting", experiment_id)
    assert code == 2 and "run the diagnostics step" in caplog.text


def test_reporting_refuses_diagnostics_of_the_other_task(tabular_copy, caplog):
    root, experiment_id = tabular_copy
    _, reporting = load_steps()
    same_name = dataclasses.replace(NLU_TASK, model_name="attrition_model")   # a model re-created as NLU
    code, _ = run_in_pipeline(reporting.go, reporting_config(root, same_name), "reporting", experiment_id)
    assert code == 2 and "not 'nlu'" in caplog.text


# ------------------------------------------------------------------------- headless browser
@requires_chromium
@pytest.mark.parametrize("task", ["tabular", "nlu"])
def test_report_renders_in_headless_chromium_with_plots(task, request, tmp_path):
    state = request.getfixturevalue(task)
    report = state["paths"].reports_dir / "report.html"
    shot = png(screenshot(report.as_uri(), tmp_path / "shot.png", (1200, 2000)))
    assert shot.shape[:2] == (2000, 1200)
    assert_drawn(shot)
    r, g, b = (shot[..., i].astype(int) for i in range(3))
    # the embedded plots are on screen: seaborn's blue heatmap cells / bars (page text and
    # table colours are grey-blue at most, b - r < 60)
    plot_blue = ((b - r) > 80) & (b > 90)
    assert plot_blue.sum() > 20_000, f"only {plot_blue.sum()} plot-blue pixels: plots not rendered?"
    rows = np.nonzero(plot_blue.any(axis=1))[0]
    assert rows.min() > 300, "plots come after the run summary and metrics"
    if task == "tabular":   # metric history sits next to the confusion matrix: its orange star
        star = (r > 200) & (g > 110) & (g < 160) & (b < 110)
        assert star.sum() > 30


@requires_chromium
def test_report_drift_section_renders_in_headless_chromium(tabular_copy, tmp_path):
    root, experiment_id = tabular_copy
    _, reporting = load_steps()
    write_drift(StatePaths.of(root).model("attrition_model"), drift=True)
    code, _ = run_in_pipeline(reporting.go, reporting_config(root, TABULAR_TASK), "reporting", experiment_id)
    assert code == 0
    html = root / "reports" / "attrition_model" / "report.html"
    # the drift section alone, in the report's own CSS: a page of just that section
    text = html.read_text()
    head, body = text[:text.index("<body>") + 6], text[text.index('<section id="drift">'):]
    (tmp_path / "drift.html").write_text(head + body)
    shot = png(screenshot((tmp_path / "drift.html").as_uri(), tmp_path / "drift.png", (1200, 1800)))
    assert shot.shape[:2] == (1800, 1200)
    assert_drawn(shot)
    r, g, b = (shot[..., i].astype(int) for i in range(3))
    badge_red = (abs(r - 0xC6) < 25) & (abs(g - 0x28) < 25) & (abs(b - 0x28) < 25)
    assert badge_red.sum() > 300, "no red drift badge / DRIFT boxes on screen"
    new_orange = (abs(r - 0xDD) < 25) & (abs(g - 0x84) < 25) & (abs(b - 0x52) < 25)
    assert new_orange.sum() > 2000, "the new rows' distributions (orange) are not drawn"
    reference_blue = ((b - r) > 40) & (b > 120) & (r < 180)
    assert reference_blue.sum() > 2000, "the reference distributions (blue) are not drawn"


def test_an_unreadable_version_is_shown_not_fatal(tabular_copy):
    """A broken scores.json of an old version: the report renders and names it."""
    root, experiment_id = tabular_copy
    (root / "models" / "attrition_model" / "versions" / "attrition_model-v2" / "scores.json").write_text("{broken")
    _, reporting = load_steps()
    code, _ = run_in_pipeline(reporting.go, reporting_config(root, TABULAR_TASK), "reporting", experiment_id)
    assert code == 0
    html = (root / "reports" / "attrition_model" / "report.html").read_text()
    assert "attrition_model-v2" in html and "unreadable" in html


def test_nlu_drift_plots_show_intent_slot_type_and_length_shares(tmp_path):
    """NLU drift as pictures: intent and slot-type shares as bars, utterance length as a histogram."""
    from utils.monitoring.drift import nlu_drift

    ref_texts = [f"show flights to city{i % 7} tomorrow" for i in range(200)]
    new_texts = [f"book a table for {i % 5} at place{i % 3}" for i in range(150)]
    ref_intents = ["flight"] * 160 + ["restaurant"] * 40
    new_intents = ["flight"] * 30 + ["restaurant"] * 120                   # a clear intent shift
    ref_tags = [["O", "O", "O", "B-city", "B-date"]] * 200
    new_tags = [["O", "O", "O", "O", "B-count", "O", "B-place"]] * 150
    report = nlu_drift(ref_texts, new_texts, ref_intents, new_intents, ref_tags, new_tags)
    plots = {p["feature"]: p for p in rl.drift_plots({"distribution": report.to_dict()}, tmp_path)}
    assert set(plots) == {"utterance_length", "intent", "slot_type"}
    assert plots["intent"]["drift"] and plots["intent"]["caption"].startswith("intent: category shares")
    assert plots["slot_type"]["caption"].startswith("slot_type: category shares")
    assert plots["utterance_length"]["caption"].startswith("utterance_length: histogram")
    assert "p-value after correction" in plots["intent"]["caption"] and "PSI" in plots["intent"]["caption"]
    for plot in plots.values():
        pixels = png(plot["file"])
        assert (pixels.shape[1], pixels.shape[0]) == rl.DRIFT_SIZE_PX
        assert_drawn(pixels)


def test_drift_timeline_has_each_check_retrain_and_deployment(tmp_path):
    ticks = [{"started": "2026-11-01T03:00:00+0000", "drift": {"signals": {"distribution": False}}},
             {"started": "2026-11-02T03:00:00+0000", "drift": {"signals": {"distribution": True}},
              "decision": "retrain", "status": "ok"},
             {"started": "2026-11-03T03:00:00+0000", "decision": "noop"},
             {"started": "2026-11-04T03:00:00+0000", "drift": {"signals": {"distribution": None}}}]
    deployments = [{"time": "2026-11-02T03:20:00+0000", "event": "deploy", "version": "m-v2"},
                   {"time": "2026-11-02T04:00:00+0000", "event": "paused"}]
    events = rl.drift_events(ticks, deployments)
    assert [(e["kind"], e.get("verdict") or e.get("version") or e.get("ok")) for e in events] == [
        ("check", "no drift"), ("check", "drift"), ("retrain", True), ("deploy", "m-v2"), ("check", "undecided")]
    pixels = png(rl.drift_timeline_png(events, tmp_path / "timeline.png", "m: drift checks"))
    assert (pixels.shape[1], pixels.shape[0]) == rl.TIMELINE_SIZE_PX
    red = (abs(pixels[..., 0].astype(int) - 0xC6) < 20) & (pixels[..., 1] < 70) & (pixels[..., 2] < 70)
    assert red.sum() > 50, "the drift verdict's red dot is missing"
