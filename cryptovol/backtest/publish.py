"""Run the backtest and publish it: charts + summary under `<data>/reports/backtest/` (what the
dashboard shows), the Markdown report if asked, and an MLflow run with the figures and artifacts.

The one core call behind `cryptovol backtest` and the Dagster asset `backtest`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptovol.atomic import write_text_atomic
from cryptovol.backtest.report import write_charts, write_report
from cryptovol.backtest.run import BacktestConfig, BacktestResult, run_backtest
from cryptovol.config import Settings
from cryptovol.models.dataset import TrainingSet

log = logging.getLogger(__name__)

EXPERIMENT = "cryptovol-backtest"


def backtest_dir(settings: Settings) -> Path:
    return settings.reports_dir / "backtest"


@dataclass
class Published:
    result: BacktestResult
    files: list[Path] = field(default_factory=list)
    run_id: str | None = None


def summary(result: BacktestResult) -> dict[str, Any]:
    """JSON-able summary: metrics per section and strategy, comparisons, verdicts."""
    return {
        "config": result.config.as_params(),
        "champion": result.champion_label,
        "info": result.info,
        "sections": [{
            "name": s.name, "title": s.title, "hours": s.hours,
            "metrics": {k: {**r.metrics, "val_sharpe": r.val_sharpe} for k, r in s.strategies.items()},
            "best_baseline": s.best_baseline, "comparison": s.comparison, "verdict": s.verdict,
        } for s in result.sections],
    }


def publish_backtest(
    training_set: TrainingSet,
    *,
    settings: Settings,
    config: BacktestConfig | None = None,
    evaluation: Any | None = None,
    train_config: Any | None = None,
    out_of_period: dict[str, TrainingSet] | None = None,
    registered_champion: Any | None = None,
    report: Path | None = None,
    command: str = "cryptovol backtest",
    mlflow_log: bool = True,
    run_tags: dict[str, str] | None = None,
) -> Published:
    result = run_backtest(training_set, train_config=train_config, evaluation=evaluation,
                          out_of_period=out_of_period, registered_champion=registered_champion,
                          config=config or BacktestConfig())
    out_dir = backtest_dir(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_charts(result, out_dir)
    latest = out_dir / "latest.json"
    write_text_atomic(latest, json.dumps(summary(result), indent=1, default=float))
    files.append(latest)
    if report is not None:
        files += write_report(result, report, command=command)
    published = Published(result=result, files=files)
    if mlflow_log:
        published.run_id = _log_mlflow(result, files, settings, run_tags)
    return published


def _log_mlflow(result: BacktestResult, files: list[Path], settings: Settings,
                tags: dict[str, str] | None) -> str:
    import mlflow

    from cryptovol.models.tracking import configure_tracking

    own = mlflow.active_run() is None
    if own:
        configure_tracking(settings, EXPERIMENT)
        run = mlflow.start_run(run_name="backtest")
    else:
        run = mlflow.active_run()
    try:
        mlflow.log_params({f"backtest.{k}": v for k, v in result.config.as_params().items()})
        mlflow.set_tags({"cryptovol.backtest.champion": result.champion_label, **(tags or {})})
        mlflow.log_metrics({f"backtest.{k}": v for k, v in result.metrics_flat().items()})
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="backtest")
        return run.info.run_id
    finally:
        if own:
            mlflow.end_run()
