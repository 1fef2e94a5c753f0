"""`backtest`: does the champion's signal pay? Downstream of `model_evaluation`.

Reads the training matrix and folds `training_dataset` stored (`<data>/training/training_set.pkl`)
and the learned kind `model_evaluation` chose (`model_evaluation.json`), and calls the one core
function `cryptovol.backtest.publish.publish_backtest`: buy-and-hold vs the overlay driven by each
baseline and by the chosen model on the purged test folds, charts and summary under
`<data>/reports/backtest/` (the dashboard shows them), one MLflow run with the charts.
"""

import json
import pickle

import dagster as dg
from pydantic import Field

from assets.metadata import numbers, path_value
from assets.training import training_dir
from orchestration.resources import LakeResource, MlflowResource


class BacktestAssetConfig(dg.Config):
    fee_bps: float = Field(default=5.0, description="Fee per unit of exposure traded, in bps.")
    slippage_bps: float = Field(default=1.0, description="Slippage beyond half the recorded spread, bps.")
    cut_to: float = Field(default=0.0, description="Exposure while the overlay's alert is on.")
    n_boot: int = Field(default=500, description="Block-bootstrap resamples for the champion-vs-baseline CI.")
    seed: int = Field(default=0, description="Seed for the bootstrap and the models.")


@dg.asset(
    deps=["model_evaluation"],
    group_name="evaluation",
    kinds={"mlflow", "matplotlib"},
    description=(
        "Backtest of a risk overlay on a long position: buy-and-hold vs exposure cut on the spike "
        "signal of each baseline and of the chosen model, executed on the next tick with fees and "
        "half the recorded spread, on the purged walk-forward test folds; Sharpe, Sortino, drawdown, "
        "turnover, cost, block-bootstrap CI vs the best baseline. Charts in <data>/reports/backtest/."
    ),
)
def backtest(
    context: dg.AssetExecutionContext, config: BacktestAssetConfig, lake: LakeResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from cryptovol.backtest.engine import CostModel
    from cryptovol.backtest.publish import publish_backtest
    from cryptovol.backtest.run import BacktestConfig
    from cryptovol.models.training import TrainConfig

    settings = mlflow.settings_for(lake.settings())
    stored = pickle.loads((training_dir(settings) / "training_set.pkl").read_bytes())
    training_set = stored["training_set"]
    choice_path = training_dir(settings) / "model_evaluation.json"
    chosen = json.loads(choice_path.read_text()).get("chosen_kind") if choice_path.exists() else None
    train_config = TrainConfig(
        label=training_set.label_config,
        walk_forward=stored["walk_forward"],
        regression_view=False,
        latency_repeats=1,
        seed=config.seed,
        **({"learned_kinds": (chosen,)} if chosen else {}),
    )
    mlflow.activate(settings)
    published = publish_backtest(
        training_set,
        settings=settings,
        train_config=train_config,
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
            "champion": published.result.champion_label,
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
