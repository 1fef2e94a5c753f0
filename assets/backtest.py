"""`backtest`: does the champion's signal pay? Downstream of `model_evaluation`.

Receives `model_evaluation`'s value (every kind evaluated on the same purged walk-forward folds, and
the candidate choice) through the training IO manager, so the graph shows the real data flow and no
model is re-fitted, and calls the one core function `cryptovol.backtest.publish.publish_backtest`:
buy-and-hold vs the overlay driven by each baseline and by the chosen model on the test folds,
charts and summary under `<data>/reports/backtest/` (the dashboard shows them), one MLflow run.
"""

import dagster as dg
from pydantic import Field

from assets.metadata import numbers, path_value
from assets.training import EvaluatedCandidates
from orchestration.resources import LakeResource, MlflowResource


class BacktestAssetConfig(dg.Config):
    fee_bps: float = Field(default=5.0, description="Fee per unit of exposure traded, in bps.")
    slippage_bps: float = Field(default=1.0, description="Slippage beyond half the recorded spread, bps.")
    cut_to: float = Field(default=0.0, description="Exposure while the overlay's alert is on.")
    n_boot: int = Field(default=500, description="Block-bootstrap resamples for the champion-vs-baseline CI.")
    seed: int = Field(default=0, description="Seed for the bootstrap and the models.")


@dg.asset(
    group_name="evaluation",
    kinds={"mlflow", "matplotlib"},
    description=(
        "Backtest of a risk overlay on a long position: buy-and-hold vs exposure cut on the spike "
        "signal of each baseline and of the chosen model, executed on the next tick with fees and "
        "half the recorded spread, on the purged walk-forward test folds; Sharpe, Sortino, drawdown, "
        "turnover, cost, block-bootstrap CI vs the best baseline. Charts: reports/backtest/ in the data dir."
    ),
)
def backtest(
    context: dg.AssetExecutionContext,
    config: BacktestAssetConfig,
    lake: LakeResource,
    mlflow: MlflowResource,
    model_evaluation: EvaluatedCandidates,
) -> dg.MaterializeResult:
    from cryptovol.backtest.engine import CostModel
    from cryptovol.backtest.publish import publish_backtest
    from cryptovol.backtest.run import BacktestConfig

    settings = mlflow.settings_for(lake.settings())
    evaluation = model_evaluation.evaluation
    mlflow.activate(settings)
    published = publish_backtest(
        evaluation.training_set,
        settings=settings,
        evaluation=evaluation,
        config=BacktestConfig(costs=CostModel(fee_bps=config.fee_bps, slippage_bps=config.slippage_bps),
                              cut_to=config.cut_to, n_boot=config.n_boot, seed=config.seed),
        run_tags=mlflow.dagster_tags(context),
    )
    section = published.result.sections[0]
    table = {name: {k: round(v, 4) for k, v in run.metrics.items()
                    if k in ("sharpe", "sharpe_gross", "max_drawdown", "turnover", "cost_paid")}
             for name, run in section.strategies.items()}
    return dg.MaterializeResult(
        metadata={
            "learned_model": published.result.champion_label,
            "hours": dg.MetadataValue.float(section.hours),
            "verdict": dg.MetadataValue.md("\n".join(f"- {v}" for v in section.verdict.values())),
            "strategies": dg.MetadataValue.json(table),
            **numbers({f"{name.replace(':', '_')}_sharpe": run.metrics["sharpe"]
                       for name, run in section.strategies.items()}),
            "mlflow_run_id": published.run_id or "",
            "charts": dg.MetadataValue.json([str(p) for p in published.files if p.suffix == ".png"]),
            "path": path_value(published.files[-1] if published.files else settings.reports_dir),
        }
    )
