"""Training lineage: labels -> training_dataset -> {baseline, logistic, xgboost}_model ->
model_evaluation -> champion_model.

Every step is one call into the core model lifecycle (`cryptovol.models.lifecycle`, the same
steps `cryptovol train` runs in one go), and each value travels to the next asset through the
lake IO manager (`orchestration.io_managers`, pickles under `<data>/assets/`):

- `labels`: the feature rows of the window and their forward labels (`LabelledFeatures`).
- `training_dataset`: the 1 s training matrix (`training_set_from_features`, shared with the CLI)
  and the purged walk-forward config.
- `*_model`: walk-forward evaluation of the asset's kinds, one MLflow child run (params, metrics,
  plots, the input dataset) under the Dagster run's MLflow run, with the candidate model logged.
- `model_evaluation`: every kind side by side; the learned challenger (validation only) against
  the best baseline through the promotion gate (`cryptovol.models.gate`) on the pooled test folds.
- `champion_model`: registers the learned challenger and the best baseline, gates the candidate
  against the champion (first time: it becomes champion) and moves the aliases.
"""

from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from assets.metadata import numbers, preview, time_value
from cryptovol.alerts import CHAMPION_CHANGED
from cryptovol.models.fitting import DEFAULT_PARAMS
from cryptovol.models.gate import GateConfig
from orchestration.resources import (
    TRAINING_IO_MANAGER,
    AlertsResource,
    LakeResource,
    MlflowResource,
    MlflowTrackingResource,
)

SUMMARY_COLUMNS = ("pr_auc_mean", "pr_auc_std", "pr_auc_pooled", "pr_auc_recent", "roc_auc_mean",
                   "brier_pooled", "base_rate_mean")
_GATE = GateConfig()
_XGB = DEFAULT_PARAMS["xgboost"]


# --- labels -----------------------------------------------------------------------------------------


class LabelsConfig(dg.Config):
    kind: str = Field(default="relative", description="'relative' (fwd vol / trailing vol) or 'absolute'.")
    horizon_s: int = Field(default=60, description="Label horizon H: realized vol over (t, t + H].")
    trailing_s: int = Field(
        default=300, description="Trailing rv window the ratio is relative to (30/60/300)."
    )
    quantile: float = Field(
        default=0.9, description="Spike = label value above this quantile of the TRAINING rows (per fold)."
    )
    start_date: str | None = Field(
        default=None, description="First UTC day (YYYY-MM-DD) of features to label; overrides lookback_days."
    )
    end_date: str | None = Field(
        default=None, description="Last UTC day of features to label (default: the newest day in the lake)."
    )
    lookback_days: int = Field(
        default=7, description="Without start_date: label this many days up to end_date (0 = everything)."
    )
    feature_table_version: int | None = Field(
        default=None, description="Read the feature Delta table as of this version (time travel: the "
        "`feature_table_version` a past run recorded re-reads exactly its rows); default the newest."
    )

    def window(self, days: list[str]) -> tuple[str | None, str | None]:
        """(start, end) UTC days to read, given the days present in the feature lake."""
        from datetime import date, timedelta

        end = self.end_date or (max(days) if days else None)
        if self.start_date or not self.lookback_days or end is None:
            return self.start_date, end
        return (date.fromisoformat(end) - timedelta(days=self.lookback_days - 1)).isoformat(), end

    def label_config(self) -> Any:
        from cryptovol.labels import LabelConfig

        return LabelConfig(
            kind=self.kind, horizon_s=self.horizon_s, trailing_s=self.trailing_s, quantile=self.quantile
        )


@dg.asset(
    deps=["features"],
    group_name="training",
    kinds={"pandas"},
    io_manager_key=TRAINING_IO_MANAGER,
    description=(
        "Forward-looking labels for every feature row of the window: `fwd_rv` (realized vol over the "
        "next H s, never across a gap) and `vol_ratio` (fwd_rv relative to trailing rv), with the "
        "feature rows themselves (`cryptovol.models.dataset.LabelledFeatures`)."
    ),
)
def labels(context: dg.AssetExecutionContext, config: LabelsConfig, lake: LakeResource) -> dg.Output:
    from cryptovol import lake as core_lake
    from cryptovol.labels import make_labels
    from cryptovol.models.dataset import LabelledFeatures

    settings = lake.settings()
    label_config = config.label_config()
    start, end = config.window([day for _, day in core_lake.list_feature_partitions(settings)])
    features_frame = core_lake.read_features(settings, settings.products, start, end,
                                             as_of_version=config.feature_table_version)
    table_version = features_frame.attrs.get("lake_version")
    if features_frame.empty:
        raise dg.Failure(
            description=f"no feature rows in {settings.features_dir}: materialize `features` first"
        )
    frame = make_labels(features_frame, label_config)
    ratio = frame[label_config.value_column]
    per_product = frame.groupby("product_id", observed=True).size().to_dict()
    value = LabelledFeatures(features=features_frame, labels=frame, label_config=label_config,
                             start=start, end=end)
    return dg.Output(
        value,
        metadata={
            "rows": dg.MetadataValue.int(len(frame)),
            "feature_rows": dg.MetadataValue.int(len(features_frame)),
            "rows_per_product": dg.MetadataValue.json({str(k): int(v) for k, v in per_product.items()}),
            "label_config": dg.MetadataValue.json(asdict(label_config)),
            "days": f"{start or 'first'} .. {end or 'last'}",
            "feature_table_version": dg.MetadataValue.int(-1 if table_version is None
                                                          else int(table_version)),
            f"{label_config.value_column}_p50": dg.MetadataValue.float(float(ratio.quantile(0.5))),
            f"{label_config.value_column}_p90": dg.MetadataValue.float(float(ratio.quantile(0.9))),
            "first_event_time": time_value(int(frame["event_time_ns"].min()) if len(frame) else None),
            "last_event_time": time_value(int(frame["event_time_ns"].max()) if len(frame) else None),
            "preview": preview(frame),
        },
    )


# --- training_dataset ---------------------------------------------------------------------------------


@dataclass
class PreparedDataset:
    """The `training_dataset` value: the matrix and how it is cut into folds."""

    training_set: Any
    walk_forward: Any


class DatasetConfig(dg.Config):
    grid_s: int = Field(default=1, description="One row per product per this many seconds (last tick).")
    min_segment_s: float = Field(
        default=900.0, description="Drop gap-free segments shorter than this (mostly warm-up otherwise)."
    )
    n_folds: int = Field(default=5, description="Purged walk-forward folds (time-ordered).")
    scheme: str = Field(default="expanding", description="'expanding' or 'rolling' training windows.")
    embargo_s: float = Field(
        default=60.0, description="Purge gap between training and test rows; must be >= the label horizon."
    )
    val_fraction: float = Field(
        default=0.25, description="Last share of each fold's training rows used for validation."
    )


@dg.asset(
    group_name="training",
    kinds={"pandas"},
    io_manager_key=TRAINING_IO_MANAGER,
    description=(
        "The training matrix: the labelled feature rows split into gap-free segments and sampled on "
        "a 1 s grid (`cryptovol.models.dataset.training_set_from_features`, the same code as "
        "`cryptovol train`), with time-ordered purged walk-forward folds (fit / validation / test, "
        "embargo >= the label horizon)."
    ),
)
def training_dataset(
    context: dg.AssetExecutionContext, config: DatasetConfig, labels: Any, lake: LakeResource
) -> dg.Output:

    import pandas as pd

    from cryptovol.models.walkforward import WalkForwardConfig, walk_forward_folds

    label_config = labels.label_config
    walk_forward = WalkForwardConfig(
        n_folds=config.n_folds,
        scheme=config.scheme,
        embargo_s=config.embargo_s,
        val_fraction=config.val_fraction,
    )
    walk_forward.check(label_config.horizon_s)
    training_set = labels.training_set(grid_s=config.grid_s, min_segment_s=config.min_segment_s)
    table_version = labels.features.attrs.get("lake_version")
    training_set.info["feature_table_version"] = table_version
    training_set.info["source"] = (f"feature lake (Delta table version {table_version}), days "
                                   f"{labels.start or 'first'} .. {labels.end or 'last'}")
    rows, info = training_set.frame, training_set.info
    folds = list(
        walk_forward_folds(rows["event_time_ns"].to_numpy(), walk_forward, horizon_s=label_config.horizon_s)
    )
    if not folds:
        raise dg.Failure(description=f"{len(rows)} rows are too few for {config.n_folds} purged folds")
    t = rows["event_time_ns"].to_numpy()
    fold_table = [
        {
            "fold": f.index,
            "fit": len(f.fit),
            "validation": len(f.val),
            "test": len(f.test),
            "fit_end": time_value(int(t[f.fit].max())) if len(f.fit) else "n/a",
            "validation_start": time_value(int(t[f.val].min())),
            "test_start": time_value(int(t[f.test].min())),
            "test_end": time_value(int(t[f.test].max())),
        }
        for f in folds
    ]
    last = folds[-1]
    return dg.Output(
        PreparedDataset(training_set=training_set, walk_forward=walk_forward),
        metadata={
            "rows": dg.MetadataValue.int(len(rows)),
            "segments": dg.MetadataValue.json({k: v for k, v in info.items() if k != "products"}),
            "folds": dg.MetadataValue.md(pd.DataFrame(fold_table).to_markdown(index=False)),
            "train_rows": dg.MetadataValue.int(len(last.fit)),
            "validation_rows": dg.MetadataValue.int(len(last.val)),
            "test_rows": dg.MetadataValue.int(len(last.test)),
            "purge_gap_s": dg.MetadataValue.float(walk_forward.embargo_s),
            **{k: v for k, v in training_set.window().items() if not k.endswith("_ns")},
        },
    )


# --- models -------------------------------------------------------------------------------------------


class ModelRunConfig(dg.Config):
    target_alert_rate: float | None = Field(
        default=None, description="Decision threshold for this alert rate; unset = best F1 on validation."
    )
    seed: int = Field(default=0, description="Seed for the models.")


class BaselineConfig(ModelRunConfig):
    pass


class LogisticConfig(ModelRunConfig):
    search: bool = Field(
        default=True,
        description="Choose C and the input set per fold from cryptovol.models.fitting.LOGISTIC_GRID on "
        "the first half of validation (as `cryptovol train`); off = use C below.",
    )
    C: float = Field(
        default=DEFAULT_PARAMS["logistic"]["C"],
        description="Inverse L2 regularization strength (class-weighted, scaled), when search is off.",
    )


class XGBoostConfig(ModelRunConfig):
    search: bool = Field(
        default=True,
        description="Choose depth, leaf size and inputs per fold from cryptovol.models.fitting.XGBOOST_GRID "
        "on the first half of validation (as `cryptovol train`); off = use the values below.",
    )
    n_estimators: int = Field(
        default=_XGB["n_estimators"], description="Maximum boosting rounds (early stopping on validation)."
    )
    max_depth: int = Field(default=_XGB["max_depth"], description="Tree depth.")
    learning_rate: float = Field(default=_XGB["learning_rate"], description="Shrinkage per round.")
    early_stopping_rounds: int = Field(
        default=_XGB["early_stopping_rounds"], description="Stop after this many rounds without gain."
    )
    min_child_weight: float = Field(
        default=_XGB["min_child_weight"], description="Minimum hessian weight per leaf."
    )
    n_jobs: int = Field(default=_XGB["n_jobs"], description="Threads.")
    regression_view: bool = Field(
        default=True, description="Also forecast forward vol (QLIKE/MSE vs HAR and EWMA) on every fold."
    )


@dataclass
class ModelCandidates:
    """A model asset's value: its walk-forward evaluation and the models it logged to MLflow."""

    evaluation: Any
    logged: dict[str, Any]
    run_id: str


def _evaluate_and_track(
    context: dg.AssetExecutionContext,
    *,
    dataset: PreparedDataset,
    learned: tuple[str, ...],
    baselines: tuple[str, ...],
    params: dict[str, Any],
    config: ModelRunConfig,
    mlflow_tracking: MlflowTrackingResource,
) -> dg.Output:
    """Walk-forward evaluation of this asset's kinds and one MLflow child run (nested under the
    Dagster run's MLflow run) with the candidate model logged."""
    import pandas as pd

    from cryptovol.models.lifecycle import log_models, log_run
    from cryptovol.models.training import TrainConfig, evaluate_walk_forward

    training_set = dataset.training_set
    train_config = TrainConfig(
        label=training_set.label_config,
        walk_forward=dataset.walk_forward,
        learned_kinds=learned,
        baseline_kinds=baselines,
        target_alert_rate=config.target_alert_rate,
        model_params={learned[0]: params} if learned and params else {},
        regression_view=bool(getattr(config, "regression_view", True)),
        seed=config.seed,
    )
    evaluation = evaluate_walk_forward(
        training_set, train_config, kinds=(*baselines, *learned), progress=context.log.info
    )
    with mlflow_tracking.child_run(context, run_name=f"dagster-{context.asset_key.to_user_string()}") as run:
        log_run(evaluation)
        logged = log_models(evaluation)
        run_meta = mlflow_tracking.run_metadata(run)
    kind = evaluation.chosen_kind or evaluation.best_baseline
    summary = evaluation.summary
    table = summary.loc[:, [c for c in SUMMARY_COLUMNS if c in summary.columns]].round(4)
    return dg.Output(
        ModelCandidates(evaluation=evaluation, logged=logged, run_id=run.info.run_id),
        metadata={
            **run_meta,
            "model_uri": logged[kind].uri,
            "model_kind": kind,
            "folds": dg.MetadataValue.int(len(evaluation.folds)),
            "validation_pr_auc_mean": dg.MetadataValue.float(float(evaluation.selection_pr_auc[kind])),
            **numbers(
                {k: float(summary.loc[kind, f"{k}_mean"]) for k in ("pr_auc", "roc_auc", "brier", "f1")},
                prefix="test_",
            ),
            **numbers({"pr_auc": float(summary.loc[kind, "pr_auc_pooled"])}, prefix="pooled_"),
            **numbers(evaluation.last_fold.metrics[kind], prefix="holdout_"),
            "kinds": dg.MetadataValue.md(pd.DataFrame(table).to_markdown()),
            "params": dg.MetadataValue.json(
                {k: str(v) for k, v in evaluation.predictor(kind).scorer.params().items()}
            ),
        },
    )


@dg.asset(
    group_name="training",
    kinds={"mlflow", "sklearn"},
    io_manager_key=TRAINING_IO_MANAGER,
    description=(
        "The baselines a learned model must beat (persistence z-score, EWMA vol, HAR-style linear "
        "on 1/30/300 s rv), evaluated on the purged folds; the best one (pooled out-of-sample "
        "PR-AUC) is logged to MLflow as a servable model."
    ),
)
def baseline_model(
    context: dg.AssetExecutionContext,
    config: BaselineConfig,
    training_dataset: PreparedDataset,
    mlflow_tracking: MlflowTrackingResource,
) -> dg.Output:
    from cryptovol.models.fitting import BASELINE_KINDS

    return _evaluate_and_track(context, dataset=training_dataset, learned=(), baselines=BASELINE_KINDS,
                               params={}, config=config, mlflow_tracking=mlflow_tracking)


@dg.asset(
    group_name="training",
    kinds={"mlflow", "sklearn"},
    io_manager_key=TRAINING_IO_MANAGER,
    description=(
        "Class-weighted, scaled logistic regression, calibrated and thresholded on validation, "
        "evaluated on the purged folds; tracked in MLflow with the last fold's model."
    ),
)
def logistic_model(
    context: dg.AssetExecutionContext,
    config: LogisticConfig,
    training_dataset: PreparedDataset,
    mlflow_tracking: MlflowTrackingResource,
) -> dg.Output:
    return _evaluate_and_track(context, dataset=training_dataset, learned=("logistic",), baselines=(),
                               params={"C": config.C, **({} if config.search else {"grid": None})},
                               config=config, mlflow_tracking=mlflow_tracking)


@dg.asset(
    group_name="training",
    kinds={"mlflow", "xgboost"},
    io_manager_key=TRAINING_IO_MANAGER,
    description=(
        "XGBoost (`hist`, early stopping on the validation fold), calibrated and thresholded on "
        "validation, evaluated on the purged folds; tracked in MLflow with the last fold's model."
    ),
)
def xgboost_model(
    context: dg.AssetExecutionContext,
    config: XGBoostConfig,
    training_dataset: PreparedDataset,
    mlflow_tracking: MlflowTrackingResource,
) -> dg.Output:
    params = {
        "n_estimators": config.n_estimators,
        "max_depth": config.max_depth,
        "learning_rate": config.learning_rate,
        "early_stopping_rounds": config.early_stopping_rounds,
        "min_child_weight": config.min_child_weight,
        "n_jobs": config.n_jobs,
        "seed": config.seed,
        **({} if config.search else {"grid": None}),
    }
    return _evaluate_and_track(context, dataset=training_dataset, learned=("xgboost",), baselines=(),
                               params=params, config=config, mlflow_tracking=mlflow_tracking)


# --- evaluation and the gate ----------------------------------------------------------------------------


class EvaluationConfig(dg.Config):
    min_pr_auc_gain: float = Field(
        default=_GATE.min_pr_auc_gain,
        description="The 95% bootstrap lower bound of the pooled PR-AUC gain must exceed this margin.",
    )
    recent_margin: float = Field(
        default=_GATE.recent_margin,
        description="Non-inferiority margin (PR-AUC) on the most recent test block.",
    )
    brier_tolerance: float = Field(
        default=_GATE.brier_tolerance, description="Allowed pooled Brier-score worsening."
    )
    n_boot: int = Field(default=_GATE.n_boot, description="Bootstrap resamples.")
    seed: int = Field(default=_GATE.seed, description="Bootstrap seed.")

    def gate(self) -> GateConfig:
        return GateConfig(min_pr_auc_gain=self.min_pr_auc_gain, recent_margin=self.recent_margin,
                          brier_tolerance=self.brier_tolerance, n_boot=self.n_boot, seed=self.seed)


@dataclass
class EvaluatedCandidates:
    """The `model_evaluation` value: every kind on the same folds, the candidate choice, the models."""

    evaluation: Any
    choice: Any
    logged: dict[str, Any]


@dg.asset(
    group_name="training",
    kinds={"pandas"},
    io_manager_key=TRAINING_IO_MANAGER,
    description=(
        "Every model and baseline side by side on the same purged folds (mean, pooled and most "
        "recent test PR-AUC, Brier, base rate); the learned challenger (best VALIDATION PR-AUC) "
        "against the best baseline through the promotion gate on the pooled test folds."
    ),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    lake: LakeResource,
    baseline_model: ModelCandidates,
    logistic_model: ModelCandidates,
    xgboost_model: ModelCandidates,
) -> dg.Output:
    from dataclasses import replace

    from cryptovol.models.lifecycle import judge_candidates
    from cryptovol.models.training import merge_evaluations, select

    parts = (baseline_model, logistic_model, xgboost_model)
    evaluation = merge_evaluations([p.evaluation for p in parts])
    evaluation.config = replace(evaluation.config, gate=config.gate())
    evaluation = select(evaluation)
    choice = judge_candidates(evaluation)
    logged = {k: v for p in parts for k, v in p.logged.items()}
    table = evaluation.summary
    columns = [c for c in SUMMARY_COLUMNS if c in table.columns]
    return dg.Output(
        EvaluatedCandidates(evaluation=evaluation, choice=choice, logged=logged),
        metadata={
            "chosen_kind": evaluation.chosen_kind or "none",
            "best_baseline": evaluation.best_baseline or "none",
            "candidate_kind": choice.candidate_kind,
            "learned_cleared_gate": dg.MetadataValue.bool(choice.learned_won),
            "gate_reason": choice.reason,
            "chosen_mlflow_run_id": logged[choice.candidate_kind].run_id,
            "comparison": dg.MetadataValue.md(table.loc[:, columns].round(4).to_markdown()),
            **numbers({f"{k}_pr_auc": float(table.loc[k, "pr_auc_mean"]) for k in table.index},
                      prefix="test_"),
            **numbers({f"gain_{k}": v for k, v in evaluation.bootstrap.items()}, prefix="bootstrap_"),
        },
    )


@dg.asset(
    group_name="training",
    kinds={"mlflow"},
    io_manager_key=TRAINING_IO_MANAGER,
    description=(
        "The MLflow registry alias `champion`: the learned challenger and the best baseline are "
        "registered (both servable); the candidate becomes champion on first training, later only "
        "if it clears the promotion gate against the champion on the rows it never saw. Emits a "
        "champion_changed alert when the alias moves."
    ),
)
def champion_model(
    context: dg.AssetExecutionContext,
    model_evaluation: EvaluatedCandidates,
    lake: LakeResource,
    mlflow: MlflowResource,
    alerts: AlertsResource,
) -> dg.Output:
    from cryptovol.models.lifecycle import register_and_gate

    settings = mlflow.settings_for(lake.settings())
    mlflow.activate(settings)
    evaluation, choice = model_evaluation.evaluation, model_evaluation.choice
    table_version = evaluation.training_set.info.get("feature_table_version")
    run_tags = {**mlflow.dagster_tags(context), "cryptovol.feature_table_version": str(table_version)}
    result = register_and_gate(evaluation, model_evaluation.logged, settings=settings, choice=choice,
                               run_tags=run_tags)
    decision = result.decision
    name, before, after = settings.model_name, result.champion_before, result.champion_after
    kind_of = {v: k for k, v in result.versions.items()}
    if after != before:
        alerts.notifier(settings).notify(
            CHAMPION_CHANGED,
            f"champion of {name} moved from {'v' + before if before else 'none'} to v{after}",
            severity="info",
            model=name,
            previous=before,
            champion=after,
            model_kind=kind_of.get(after, decision.challenger_kind),
            reason=decision.reason,
            dagster_run_id=context.run_id,
        )
    return dg.Output(
        {"decision": asdict(decision), "versions": result.versions, "champion": after, "previous": before},
        metadata={
            "model_name": name,
            "registered_version": result.version,
            "registered_versions": dg.MetadataValue.json(result.versions),
            "candidate_kind": decision.challenger_kind,
            "champion_version": after or "none",
            "champion_kind": kind_of.get(after, "earlier run") if after else "none",
            "previous_champion": before or "none",
            "promoted": dg.MetadataValue.bool(decision.promote),
            "champion_changed": dg.MetadataValue.bool(after != before),
            "reason": decision.reason,
            "reference": decision.reference,
            **numbers({k: v for k, v in asdict(decision).items()
                       if k.endswith(("pr_auc", "brier", "gain_low", "gain_high"))}),
            "holdout_rows": dg.MetadataValue.int(decision.holdout_rows),
            "champion_uri": f"models:/{name}@champion",
            "mlflow_model_url": dg.MetadataValue.url(mlflow.model_url(result.version)),
            "mlflow_run_id": result.run_id or "",
        },
    )


TRAINING_ASSETS = [
    labels,
    training_dataset,
    baseline_model,
    logistic_model,
    xgboost_model,
    model_evaluation,
    champion_model,
]
