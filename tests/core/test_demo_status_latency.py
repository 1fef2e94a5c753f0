"""The demo status line's end-to-end p95 comes from the scorer's own histogram, scraped over HTTP:
only the predictions since the last sample count, and a restarted scorer does not confuse it."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server

from cryptovol.demo.status import StatusBoard, histogram_quantile
from cryptovol.procs import free_port
from cryptovol.serving.metrics import ServingMetrics


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.95, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.95, [(0.5, 1.0), (float("inf"), 10.0)]) == pytest.approx(0.5)


@pytest.fixture
def scorer_metrics(tmp_path):
    registry = CollectorRegistry()
    metrics = ServingMetrics(component="scorer", registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield metrics, f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    thread.join(5)


def test_status_line_shows_the_p95_of_new_predictions(tmp_path, scorer_metrics):
    metrics, url = scorer_metrics
    board = StatusBoard(tmp_path, scorer_metrics_url=url)
    assert board.sample()["e2e_p95_ms"] == {} and "e2e p95" not in board.line()

    fast = (np.arange(1, 101) * 1e6).astype(int).tolist()  # 1..100 ms
    metrics.observe_end_to_end([x + 40_000_000 for x in fast], fast)
    first = board.sample()["e2e_p95_ms"]
    assert 50 <= first["received"] <= 100 and first["event"] > first["received"]
    assert "e2e p95 recv->pred" in board.line() and "event->pred" in board.line()

    slow = [int(2.0e9)] * 100  # a slow stretch: only the new observations count
    metrics.observe_end_to_end(slow, slow)
    assert board.sample()["e2e_p95_ms"]["received"] >= 1000
    # nothing new: the last figure stays
    assert board.sample()["e2e_p95_ms"]["received"] >= 1000

    # beyond the histogram's top bucket (the demo's event clock lags the wall clock) the line
    # says so instead of printing the bucket's bound as if it were measured
    lagging = [int(3600e9)] * 100
    metrics.observe_end_to_end(lagging, fast)
    assert board.sample()["e2e_p95_ms"]["event"] == float("inf")
    assert "event->pred beyond the top bucket" in board.line()
