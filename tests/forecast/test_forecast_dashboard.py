"""The dashboard's forecasting section: four metrics over time, actual vs forecast of picked series."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from tests.fixtures.browser import count_colour, requires_chromium, screenshot
from tests.fixtures.processes import free_port
from tests.forecast.test_forecast_api import forecast_client  # noqa: F401  (the fixture)

DAY = 86400.0
T0 = 1_790_000_000.0        # 2026-09-21: the simulated days of the monitoring records


@pytest.fixture(scope="module")
def monitored(forecast_client):  # noqa: F811
    """Five daily monitoring records at simulated times (MLOPS_NOW), one new ingested day each."""
    import generate_forecast_data as gen

    from utils.models.management import evaluate
    from utils.pipeline.paths import StatePaths

    client, ids = forecast_client
    paths = StatePaths.of(client.application.extensions["state_dir"])
    dataset = paths.model("sales_forecast").dataset("forecast")
    dataset.parent.mkdir(parents=True, exist_ok=True)
    later = gen.generate(gen.Hierarchy(stores=2, items=6, start="2025-01-01", seed=3), 125)
    dates = sorted(later["date"].unique())
    with pytest.MonkeyPatch.context() as mp:
        for day in range(1, 6):
            later[later["date"] <= dates[119 + day]].to_csv(dataset, index=False)
            mp.setenv("MLOPS_NOW", f"{T0 + day * DAY:.0f}")
            evaluate(paths, "sales_forecast", source="monitor")
    return client, ids


def images(html: str) -> dict[str, str]:
    return dict(re.findall(r'<img class="plot" id="([^"]+)"[^>]*src="data:image/png;base64,([^"]+)"', html, re.S))


def test_metrics_over_time_and_default_series(monitored) -> None:
    client, ids = monitored
    html = client.get("/dashboard").get_data(as_text=True)
    shown = images(html)
    assert {"forecast-metrics-sales_forecast", "forecast-series-sales_forecast"} <= set(shown)
    assert "5 daily monitoring record(s)" in html and "Tweedie deviance" in html and "seasonal-naive" in html
    value = re.search(r'name="series_sales_forecast" value="([^"]*)"', html).group(1)
    picked = [v.strip() for v in value.split(",")]
    assert len(picked) == 3 and set(picked) <= set(ids) and "default: 3 series" in html
    assert "(2025-04-30, dotted)" in html          # the model's last training day: its forecast origin


def test_picked_series_and_unknown_ones(monitored) -> None:
    client, ids = monitored
    html = client.get(f"/dashboard?series_sales_forecast={ids[0]},{ids[5]}, NOPE_1").get_data(as_text=True)
    assert "unknown series: NOPE_1" in html
    assert f'alt="history, forecast and actuals of {ids[0]}, {ids[5]}"' in html
    html = client.get("/dashboard?series_sales_forecast=NOPE_1").get_data(as_text=True)
    assert "none of these series is known to the model" in html and "forecast-series-sales_forecast" not in \
        "".join(images(html))
    hostile = client.get("/dashboard?series_sales_forecast=<script>x</script>").get_data(as_text=True)
    assert "<script>" not in hostile and "&lt;script&gt;" in hostile


@requires_chromium
def test_forecast_section_visible_in_headless_chromium(monitored, tmp_path: Path) -> None:
    """The metric panels (the model's colour) and the series panels (seasonal-naive's orange) render."""
    from werkzeug.serving import make_server

    client, ids = monitored
    app = client.application
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        shot = screenshot(f"http://127.0.0.1:{port}/dashboard?series_sales_forecast={ids[0]},{ids[6]}",
                          tmp_path / "forecast_dashboard.png", (1400, 2000))
    finally:
        server.shutdown()
    assert count_colour(shot, (0x1F, 0x77, 0xB4), tolerance=20) > 1500, "the model's metric lines are not visible"
    assert count_colour(shot, (0xFF, 0x7F, 0x0E), tolerance=25) > 150, "the series panels are not visible"
