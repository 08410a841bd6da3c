"""The dashboard in a real browser: headless Chromium renders it and the metric plot is visible.

The app is served by werkzeug on a free 127.0.0.1 port; Chromium takes a screenshot and the
test looks for the plot's primary-metric line colour in it (a broken image, a blocked data:
URL or a plot outside the page would leave none). Skipped when Chromium is not installed
(.ci/run installs it).
"""
from __future__ import annotations

import json
import threading

import pytest

from tests.api.conftest import RECORD, free_port
from tests.fixtures.browser import count_colour, requires_chromium, screenshot

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


@requires_chromium
def test_dashboard_plot_visible_in_headless_chromium(make_app, state, tmp_path, model_dirs):
    """Two models on one chart: each model's line in its colour, deployments starred."""
    from werkzeug.serving import make_server

    from api.dashboard import MODEL_COLORS, PRIMARY_COLOR
    from tests.api.conftest import add_version
    from utils.models.model_store import ModelStore

    store = ModelStore(state / "models" / "attrition_model")
    store.deploy("attrition_model-v2")          # two scored versions, one deployment more
    nlu = ModelStore(state / "models" / "nlu_query_model")
    add_version(nlu, "nlu_query_model-v1", model_dirs["nlu"], task="nlu", score=0.7, metric="exact_match")
    add_version(nlu, "nlu_query_model-v2", model_dirs["nlu"], task="nlu", score=0.9, metric="exact_match")
    nlu.deploy("nlu_query_model-v2")
    for st, version, day in ((store, "attrition_model-v1", 10), (store, "attrition_model-v2", 24),
                             (nlu, "nlu_query_model-v1", 12), (nlu, "nlu_query_model-v2", 26)):
        scores_file = st.version_dir(version) / "scores.json"          # spread over two weeks
        scores = json.loads(scores_file.read_text())
        scores_file.write_text(json.dumps({**scores, "scored": f"2026-11-{day}T10:00:00+0000"}))

    from tests.diagnostics.builders import drift_doc

    (state / "reports" / "attrition_model").mkdir(parents=True, exist_ok=True)
    (state / "reports" / "attrition_model" / "drift.json").write_text(json.dumps(drift_doc(True)))
    app = make_app(state)
    client = app.test_client()
    for n in (1, 5, 20):
        client.post("/models/attrition_model/prediction", json={"records": [RECORD] * n})
    app.extensions["mlops"].prediction_log.flush()

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        shot = screenshot(f"http://127.0.0.1:{port}/dashboard", tmp_path / "dashboard.png", (1400, 1400))
    finally:
        server.shutdown()
    primary = tuple(int(PRIMARY_COLOR[i:i + 2], 16) for i in (1, 3, 5))
    assert count_colour(shot, primary, tolerance=20) > 500, "the first model's line is not on the page"
    second = tuple(int(MODEL_COLORS[1][i:i + 2], 16) for i in (1, 3, 5))
    assert count_colour(shot, second, tolerance=20) > 300, "the second model's line is not on the page"
    assert count_colour(shot, (0x2b, 0x2d, 0x42), tolerance=4) > 5_000, "the page header did not render"
    assert count_colour(shot, (0xff, 0xd7, 0x00), tolerance=40) > 50, "no deployed-version markers"
    # the drift card: red verdict and the signals behind it (dark red list)
    assert count_colour(shot, (0xc6, 0x28, 0x28), tolerance=30) > 40, "no drift verdict on the page"
    assert count_colour(shot, (0x8a, 0x1c, 0x1c), tolerance=30) > 100, "no drift reasons on the page"
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1400, 1400)
