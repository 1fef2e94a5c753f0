"""The Dagster asset `backtest` materializes in-process on the value `model_evaluation` hands it
through the training IO manager, writes the charts the dashboard shows and logs them to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
from backtest_synth import synthetic_training_set

from assets.backtest import backtest
from assets.training import EvaluatedCandidates
from cryptovol.models.lifecycle import judge_candidates
from cryptovol.models.training import TrainConfig, evaluate_walk_forward, select
from cryptovol.models.walkforward import WalkForwardConfig
from orchestration.resources import TRAINING_IO_MANAGER, default_resources


@dg.asset(name="model_evaluation", group_name="training", io_manager_key=TRAINING_IO_MANAGER)
def upstream_model_evaluation() -> EvaluatedCandidates:
    """What the real `model_evaluation` asset hands downstream, built by the same core calls on a
    small synthetic training set (logistic as the only learned kind keeps the test short)."""
    evaluation = select(evaluate_walk_forward(
        synthetic_training_set(seconds=3000, seed=9),
        TrainConfig(walk_forward=WalkForwardConfig(n_folds=3), learned_kinds=("logistic",),
                    regression_view=False, latency_repeats=1)))
    return EvaluatedCandidates(evaluation=evaluation, choice=judge_candidates(evaluation), logged={})


def test_backtest_asset_materializes(data_dir: Path, mlflow_store: str) -> None:
    import mlflow

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [upstream_model_evaluation, backtest], resources=default_resources(), instance=instance,
            run_config={"ops": {"backtest": {"config": {"n_boot": 50}}}},
        )
    assert result.success
    [materialization] = result.asset_materializations_for_node("backtest")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["learned_model"].startswith("logistic")
    assert meta["hours"] > 0.3
    assert "buy_and_hold" in meta["strategies"] and "overlay:champion" in meta["strategies"]
    charts = [Path(p) for p in meta["charts"]]
    assert {p.name for p in charts} == {"backtest_equity_test_folds.png", "backtest_drawdown_test_folds.png"}
    assert all(p.stat().st_size > 5_000 for p in charts)
    summary = json.loads((data_dir / "reports" / "backtest" / "latest.json").read_text())
    assert summary["sections"][0]["verdict"]

    run = mlflow.get_run(meta["mlflow_run_id"])
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert any(k.endswith("buy_and_hold.sharpe") for k in run.data.metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "backtest")}
    assert "backtest/backtest_equity_test_folds.png" in artifacts
