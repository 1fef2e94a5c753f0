"""`cryptovol drift` as a user runs it: on the feature lake, with an explicit reference window."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryptovol import batch, lake
from cryptovol.simulator.synthetic import generate_landing_files

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _drift(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cryptovol.cli", "drift", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow  # two CLI runs: each imports Evidently (~6 s idle, much more on a busy machine)
def test_cli_writes_the_report_and_flags_a_regime_change(data_dir: Path) -> None:
    # 40 calm minutes, then x4 volatility for 15 minutes, as landing files -> batch features.
    generate_landing_files(data_dir, ("BTC-USD",), START, duration_s=55 * 60, seed=4,
                           regime_change_at_s=40 * 60)
    batch.featurize_partitions(data_dir, lake.list_landing_partitions(data_dir))

    reference = ["--reference-start", START.isoformat(),
                 "--reference-end", (START + timedelta(minutes=30)).isoformat()]
    drifted = _drift(*reference, "--current-minutes", "10", "--fail-on-drift")
    assert drifted.returncode == 3, drifted.stdout + drifted.stderr
    assert "dataset drift: YES" in drifted.stdout
    latest = json.loads((data_dir / "reports" / "drift" / "latest.json").read_text())
    assert latest["dataset_drift"] is True
    assert latest["reference_source"] == "explicit"
    assert Path(latest["html_path"]).is_file()
    assert latest["current_window"]["end"].startswith("2026-01-05T10:5")

    # A look back at the calm minutes 30-40 against the same reference: no drift, exit 0.
    calm = _drift(*reference, "--current-minutes", "10", "--products", "BTC-USD",
                  "--current-end", (START + timedelta(minutes=40)).isoformat(), "--fail-on-drift")
    assert calm.returncode == 0, calm.stdout + calm.stderr
    assert "dataset drift: no" in calm.stdout
    latest = json.loads((data_dir / "reports" / "drift" / "latest.json").read_text())
    end = datetime.fromisoformat(latest["current_window"]["end"][:26])
    assert START + timedelta(minutes=39) <= end.replace(tzinfo=UTC) <= START + timedelta(minutes=40)
    reports = sorted((data_dir / "reports" / "drift").glob("2*.json"))
    assert len(reports) == 2


def test_cli_without_champion_or_reference_explains_what_to_do(data_dir: Path) -> None:
    generate_landing_files(data_dir, ("BTC-USD",), START, duration_s=20 * 60, seed=4)
    batch.featurize_partitions(data_dir, lake.list_landing_partitions(data_dir))
    result = _drift("--current-minutes", "5")
    assert result.returncode == 1
    assert "no reference window" in result.stdout and "--reference-start" in result.stdout


def test_cli_on_an_empty_lake_is_a_clear_error(data_dir: Path) -> None:
    result = _drift("--reference-start", "2026-01-05T10:00:00Z", "--reference-end", "2026-01-05T10:30:00Z")
    assert result.returncode == 1
    assert "no feature rows" in result.stdout
