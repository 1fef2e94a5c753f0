"""The signal dashboard in a real headless Chromium: charts drawn with data, the threshold slider
moves the numbers, a screenshot is kept under the test's tmp dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from dashboard_fixture import build_dashboard_data

from cryptovol.procs import ManagedProcess, free_port, http_ok

CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("signal", "timeline", "evaluation", "threshold-section", "drift", "backtest")


@pytest.fixture(scope="module")
def dashboard_data(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("dashboard-data")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        settings = build_dashboard_data(data_dir)
    finally:  # configure_tracking exports the store's URI; leave the environment as found
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return settings


@pytest.fixture
def dashboard(dashboard_data, tmp_path: Path):
    port = free_port()
    env = {"CRYPTOVOL_DATA_DIR": str(dashboard_data.data_dir),
           "MLFLOW_TRACKING_URI": dashboard_data.mlflow_tracking_uri,
           "CRYPTOVOL_PRODUCTS": ",".join(dashboard_data.products)}
    proc = ManagedProcess("dashboard",
                          [sys.executable, "-m", "cryptovol.cli", "dashboard", "--port", str(port)],
                          log_path=tmp_path / "dashboard.log", env=env,
                          ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"))
    proc.env.pop("MLFLOW_REGISTRY_URI", None)  # the registry follows the tracking URI
    with proc.start(timeout_s=60):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.slow  # building the data dir (model, drift report, backtest) takes ~30-50 s
def test_dashboard_renders_data_and_the_slider_moves_the_numbers(dashboard: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Chromium (apt-get install chromium) for browser tests")
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(dashboard + "/")
            for section in SECTIONS:
                page.wait_for_selector(f"#{section}:not([data-state='loading'])", timeout=60_000)
                state = page.get_attribute(f"#{section}", "data-state")
                message = page.text_content(f"#{section} .message")
                assert state == "ready", f"{section}: {state} ({message})"
            assert "champion v1 (logistic)" in page.text_content("#champion")

            # the live chart of each product: probability and realized-vol lines with points
            for product in ("BTC-USD", "ETH-USD"):
                plot = f"#signal-{product}"
                page.wait_for_selector(f"{plot} .scatterlayer .trace path.js-line", timeout=30_000)
                paths = page.eval_on_selector_all(f"{plot} .scatterlayer .trace path.js-line",
                                                  "els => els.map(e => (e.getAttribute('d') || '').length)")
                assert len(paths) >= 2 and all(n > 200 for n in paths[:2]), (product, paths)
            for plot in ("#pr-curve", "#calibration", "#timeline-plot"):
                page.wait_for_selector(f"{plot} .scatterlayer .trace", timeout=30_000)
            pr_points = page.evaluate("document.getElementById('pr-curve').data[0].x.length")
            assert pr_points > 20
            assert "champion_changed" in page.text_content("#timeline-events")
            assert "drift share" in page.text_content("#drift-body")
            images = page.eval_on_selector_all("#backtest-charts img",
                                               "els => els.map(e => [e.complete, e.naturalWidth])")
            page.wait_for_function("[...document.querySelectorAll('#backtest-charts img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            assert len(images) == 2

            # the slider: numbers from the held-out table change with the threshold
            def numbers() -> tuple[str, ...]:
                return tuple(page.text_content(f"#{i}") for i in ("th-value", "precision", "recall",
                                                                  "alert-rate", "alerts"))

            before = numbers()
            assert all(v and v != "–" for v in before), before
            page.focus("#threshold")
            for _ in range(15):
                page.keyboard.press("ArrowLeft")
            after = numbers()
            assert after[0] != before[0]
            assert after[3] != before[3] and float(after[3].rstrip("%")) > float(before[3].rstrip("%"))
            assert float(after[2].rstrip("%")) >= float(before[2].rstrip("%"))  # lower threshold, recall up
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 50_000
