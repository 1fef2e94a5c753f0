"""`cryptovol backtest --real-data` on the recorded data: the report, its charts, the MLflow run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cryptovol.cli import main


@pytest.mark.slow  # ~20 s idle, ~1 min on a loaded 2-core box (5 folds x 5 models, 2 sections)
def test_backtest_cli_on_real_data_writes_the_report(shared_data: Path, data_dir: Path, mlflow_store: str,
                                                     tmp_path: Path, capsys) -> None:
    import mlflow

    report = tmp_path / "docs" / "BACKTEST.md"
    code = main(["backtest", "--real-data", str(shared_data), "--report", str(report), "--n-boot", "200",
                 "--no-champion"])
    out = capsys.readouterr().out
    assert code == 0, out
    text = report.read_text()
    for heading in ("## Verdict", "## Out-of-sample walk-forward test folds (pooled)",
                    "## Later regime: 2026-04 recordings (never trained on)",
                    "### Champion vs the best baseline"):
        assert heading in text
    assert "| buy_and_hold |" in text
    assert "| **overlay:champion** |" in text and "| **voltarget:champion** |" in text
    # every verdict names its interval; a straddling interval is said plainly
    verdicts = [line for line in text.splitlines() if line.startswith("- **")]
    assert len(verdicts) == 4
    for line in verdicts:
        low, high = map(float, re.search(r"95% CI ([-+0-9.]+), ([-+0-9.]+)\]", line).groups())
        assert ("cannot separate" in line) == (low <= 0 <= high)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 4
    for rel in images:
        assert (report.parent / rel).stat().st_size > 5_000
    run_id = re.search(r"MLflow run (\w+)", out).group(1)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "backtest")}
    assert "backtest/BACKTEST.md" in artifacts and "backtest/backtest_equity_out_of_period.png" in artifacts


def test_backtest_cli_without_data_says_what_to_do(data_dir: Path, capsys) -> None:
    assert main(["backtest", "--no-mlflow"]) == 1
    assert "--real-data" in capsys.readouterr().err
