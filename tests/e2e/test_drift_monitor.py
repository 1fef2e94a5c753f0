"""`cryptovol drift --every S --metrics-port P` as the demo and compose run it: reports on a cadence,
their summary as Prometheus gauges, and SIGTERM ends it cleanly (exit 0) with its closing line."""

from __future__ import annotations

import signal
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryptovol import batch, lake
from cryptovol.procs import ManagedProcess, free_port, http_ok, wait_until
from cryptovol.simulator.synthetic import generate_landing_files

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
        return response.read().decode()


def _ok_reports(url: str) -> float:
    for line in _metrics(url).splitlines():
        if line.startswith('cryptovol_drift_reports_total{result="ok"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow  # imports Evidently in the child (~6 s idle, much more on a busy machine)
def test_monitor_reports_on_a_cadence_exports_gauges_and_stops_on_sigterm(data_dir: Path, tmp_path: Path):
    generate_landing_files(data_dir, ("BTC-USD",), START, duration_s=45 * 60, seed=4)
    batch.featurize_partitions(data_dir, lake.list_landing_partitions(data_dir))
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    monitor = ManagedProcess(
        "drift-monitor",
        [sys.executable, "-m", "cryptovol.cli", "drift", "--every", "1", "--metrics-port", str(port),
         "--reference-start", START.isoformat(),
         "--reference-end", (START + timedelta(minutes=25)).isoformat(), "--current-minutes", "10"],
        log_path=tmp_path / "monitor.log", cwd=REPO, ready=lambda: http_ok(url),
    )
    monitor.start(timeout_s=120)
    try:
        wait_until(lambda: _ok_reports(url) >= 2, timeout_s=240, interval_s=0.5,
                   what="two drift reports counted on /metrics")
        text = _metrics(url)
        assert "cryptovol_drift_share " in text and "cryptovol_drift_feature_statistic{" in text
        reports = sorted((data_dir / "reports" / "drift").glob("2*.json"))
        assert len(reports) >= 2
        # Between rounds it prints its closing line; mid-report it leaves at once (files are atomic).
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(timeout_s=120) == 0, monitor.tail()
    finally:
        monitor.stop(timeout_s=20)
    assert "Traceback" not in (tmp_path / "monitor.log").read_text()
