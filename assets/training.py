"""Training lineage: labels -> training_dataset -> {baseline, logistic, xgboost}_model ->
model_evaluation -> champion_model.

Each step calls the cryptovol core (`cryptovol.labels`, `cryptovol.models.*`) and keeps its result
under `<data>/training/` for the next step:

- `labels`: forward realized vol and the regime-relative ratio for every feature row in the lake.
- `training_dataset`: the same feature rows, labelled with the `labels` config on a 1-second grid,
  segments split at gaps (`cryptovol.models.dataset.training_set_from_features`, shared with the
  CLI), with the purged walk-forward folds (time-ordered fit / validation / test, embargo >= label
  horizon).
- `*_model`: purged walk-forward evaluation of one model kind against the baselines on those
  folds, tracked as one MLflow run (the fitted model is logged) nested under the Dagster run's
  MLflow run from dagster-mlflow (`mlflow_tracking`); both are tagged with the Dagster run id.
- `model_evaluation`: every kind side by side; the learned kind with the best mean validation
  PR-AUC is chosen (test folds are never used for choices, as in `cryptovol.models.training`).
- `champion_model`: the chosen model is registered as challenger and goes through the promotion
  gate (`cryptovol.models.registry.run_promotion_gate`); the `champion` alias moves only if it wins.
"""

import json
import os
import pickle
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from assets.metadata import numbers, path_value, preview, time_value
from cryptovol.alerts import CHAMPION_CHANGED
from cryptovol.config import Settings
from orchestration.resources import AlertsResource, LakeResource, MlflowResource, MlflowTrackingResource

SUMMARY_COLUMNS = ("pr_auc_mean", "pr_auc_std", "roc_auc_mean", "brier_mean", "f1_mean", "base_rate_mean")


def training_dir(settings: Settings) -> Path:
    return settings.data_dir / "training"


def _atomic_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path


def _atomic_parquet(frame: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".parquet", dir=path.parent)
    os.close(fd)
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


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
    kinds={"parquet", "pandas"},
    description=(
        "Forward-looking labels for every feature row: `fwd_rv` (realized vol over the next H s, "
        "never across a gap) and `vol_ratio` (fwd_rv relative to trailing rv). Rows without a full "
        "horizon are dropped. `<data>/training/labels.parquet`."
    ),
)
def labels(
    context: dg.AssetExecutionContext, config: LabelsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from cryptovol import lake as core_lake
    from cryptovol.labels import make_labels

    settings = lake.settings()
    label_config = config.label_config()
    start, end = config.window([day for _, day in core_lake.list_feature_partitions(settings)])
    features_frame = core_lake.read_features(settings, settings.products, start, end)
    if features_frame.empty:
        raise dg.Failure(
            description=f"no feature rows in {settings.features_dir}: materialize `features` first"
        )
    frame = make_labels(features_frame, label_config)
    path = _atomic_parquet(frame, training_dir(settings) / "labels.parquet")
    _atomic_bytes(
        path.with_suffix(".json"),
        json.dumps({"label_config": asdict(label_config), "start": start, "end": end}).encode(),
    )
    ratio = frame[label_config.value_column]
    per_product = frame.groupby("product_id", observed=True).size().to_dict()
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(len(frame)),
            "feature_rows": dg.MetadataValue.int(len(features_frame)),
            "rows_per_product": dg.MetadataValue.json({str(k): int(v) for k, v in per_product.items()}),
            "label_config": dg.MetadataValue.json(asdict(label_config)),
            "days": f"{start or 'first'} .. {end or 'last'}",
            f"{label_config.value_column}_p50": dg.MetadataValue.float(float(ratio.quantile(0.5))),
            f"{label_config.value_column}_p90": dg.MetadataValue.float(float(ratio.quantile(0.9))),
            "first_event_time": time_value(int(frame["event_time_ns"].min()) if len(frame) else None),
            "last_event_time": time_value(int(frame["event_time_ns"].max()) if len(frame) else None),
            "path": path_value(path),
            "preview": preview(frame),
        }
    )


# --- training_dataset ---------------------------------------------------------------------------------


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
    deps=[labels],
    group_name="training",
    kinds={"parquet", "pandas"},
    description=(
        "The training matrix: the feature rows of the labelled window, split into gap-free segments, "
        "labelled with the `labels` config and sampled on a 1 s grid (`cryptovol.models.dataset."
        "training_set_from_features`, the same code as `cryptovol train`), with time-ordered purged "
        "walk-forward folds (fit / validation / test, embargo >= the label horizon). "
        "`<data>/training/training_set.pkl`."
    ),
)
def training_dataset(
    context: dg.AssetExecutionContext, config: DatasetConfig, lake: LakeResource
) -> dg.MaterializeResult:
    import pandas as pd

    from cryptovol import lake as core_lake
    from cryptovol.labels import LabelConfig
    from cryptovol.models.dataset import training_set_from_features
    from cryptovol.models.walkforward import WalkForwardConfig, walk_forward_folds

    settings = lake.settings()
    # The label definition and the day window are the ones `labels` was materialized with.
    stored = json.loads((training_dir(settings) / "labels.json").read_text())
    label_config = LabelConfig(**stored["label_config"])
    walk_forward = WalkForwardConfig(
        n_folds=config.n_folds,
        scheme=config.scheme,
        embargo_s=config.embargo_s,
        val_fraction=config.val_fraction,
    )
    walk_forward.check(label_config.horizon_s)

    features_frame = core_lake.read_features(settings, settings.products, stored["start"], stored["end"])
    training_set = training_set_from_features(
        features_frame, label_config, grid_s=config.grid_s, min_segment_s=config.min_segment_s
    )
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
    path = _atomic_bytes(
        training_dir(settings) / "training_set.pkl",
        pickle.dumps({"training_set": training_set, "walk_forward": walk_forward}),
    )
    last = folds[-1]
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(len(rows)),
            "segments": dg.MetadataValue.json(info),
            "folds": dg.MetadataValue.md(pd.DataFrame(fold_table).to_markdown(index=False)),
            "train_rows": dg.MetadataValue.int(len(last.fit)),
            "validation_rows": dg.MetadataValue.int(len(last.val)),
            "test_rows": dg.MetadataValue.int(len(last.test)),
            "purge_gap_s": dg.MetadataValue.float(walk_forward.embargo_s),
            **{k: v for k, v in training_set.window().items() if not k.endswith("_ns")},
            "path": path_value(path),
        }
    )


# --- models -------------------------------------------------------------------------------------------


class ModelRunConfig(dg.Config):
    target_alert_rate: float | None = Field(
        default=None, description="Decision threshold for this alert rate; unset = best F1 on validation."
    )
    n_boot: int = Field(default=200, description="Bootstrap resamples for the PR-AUC difference CI.")
    seed: int = Field(default=0, description="Seed for the bootstrap and the models.")


class BaselineConfig(ModelRunConfig):
    pass


class LogisticConfig(ModelRunConfig):
    C: float = Field(default=0.1, description="Inverse L2 regularization strength (class-weighted, scaled).")


class XGBoostConfig(ModelRunConfig):
    n_estimators: int = Field(
        default=400, description="Maximum boosting rounds (early stopping on validation)."
    )
    max_depth: int = Field(default=3, description="Tree depth.")
    learning_rate: float = Field(default=0.05, description="Shrinkage per round.")
    early_stopping_rounds: int = Field(default=30, description="Stop after this many rounds without gain.")
    min_child_weight: float = Field(default=20.0, description="Minimum hessian weight per leaf.")
    n_jobs: int = Field(default=2, description="Threads.")
    regression_view: bool = Field(
        default=True, description="Also forecast forward vol (QLIKE/MSE vs HAR and EWMA) on every fold."
    )


def _evaluate_and_track(
    context: dg.AssetExecutionContext,
    *,
    kind: str,
    baselines: tuple[str, ...],
    params: dict[str, Any],
    config: ModelRunConfig,
    lake: LakeResource,
    mlflow_tracking: MlflowTrackingResource,
) -> dg.MaterializeResult:
    """Walk-forward evaluation of `kind` (+ `baselines`) and one MLflow run with the fitted model,
    nested under the Dagster run's MLflow run."""
    import pandas as pd

    from cryptovol.models.training import TrainConfig, evaluate_walk_forward, log_evaluation

    settings = lake.settings()
    stored = pickle.loads((training_dir(settings) / "training_set.pkl").read_bytes())
    training_set = stored["training_set"]
    train_config = TrainConfig(
        label=training_set.label_config,
        walk_forward=stored["walk_forward"],
        learned_kinds=(kind,),
        baseline_kinds=baselines,
        target_alert_rate=config.target_alert_rate,
        model_params={kind: params} if params else {},
        regression_view=bool(getattr(config, "regression_view", False)),
        n_boot=config.n_boot,
        seed=config.seed,
    )
    evaluation = evaluate_walk_forward(training_set, train_config)
    with mlflow_tracking.child_run(context, run_name=f"dagster-{context.asset_key.to_user_string()}") as run:
        info = log_evaluation(evaluation, model_name=None, register=False)
        run_meta = mlflow_tracking.run_metadata(run)
    path = _atomic_bytes(
        training_dir(settings) / f"{kind}_evaluation.pkl",
        pickle.dumps({"evaluation": evaluation, "run_id": run.info.run_id, "model_uri": info.model_uri}),
    )
    summary = evaluation.summary
    table = summary.loc[:, [c for c in SUMMARY_COLUMNS if c in summary.columns]].round(4)
    holdout = evaluation.last_fold.metrics[kind]
    return dg.MaterializeResult(
        metadata={
            **run_meta,
            "model_uri": info.model_uri,
            "model_kind": kind,
            "folds": dg.MetadataValue.int(len(evaluation.folds)),
            "validation_pr_auc_mean": dg.MetadataValue.float(float(evaluation.val_pr_auc[kind])),
            **numbers(
                {k: float(summary.loc[kind, f"{k}_mean"]) for k in ("pr_auc", "roc_auc", "brier", "f1")},
                prefix="test_",
            ),
            **numbers(holdout, prefix="holdout_"),
            "vs_baselines": dg.MetadataValue.md(pd.DataFrame(table).to_markdown()),
            "params": dg.MetadataValue.json(
                {k: str(v) for k, v in evaluation.chosen_predictor.scorer.params().items()}
            ),
            "path": path_value(path),
        }
    )


@dg.asset(
    deps=[training_dataset],
    group_name="training",
    kinds={"mlflow", "sklearn"},
    description=(
        "The baselines a learned model must beat (persistence z-score, EWMA vol, HAR-style linear "
        "on 1/30/300 s rv), evaluated on the purged folds; the HAR model is logged to MLflow."
    ),
)
def baseline_model(
    context: dg.AssetExecutionContext,
    config: BaselineConfig,
    lake: LakeResource,
    mlflow_tracking: MlflowTrackingResource,
) -> dg.MaterializeResult:
    return _evaluate_and_track(
        context,
        kind="har",
        baselines=("persistence", "ewma"),
        params={},
        config=config,
        lake=lake,
        mlflow_tracking=mlflow_tracking,
    )


@dg.asset(
    deps=[training_dataset],
    group_name="training",
    kinds={"mlflow", "sklearn"},
    description=(
        "Class-weighted, scaled logistic regression, calibrated and thresholded on validation, "
        "evaluated on the purged folds against the baselines; tracked in MLflow."
    ),
)
def logistic_model(
    context: dg.AssetExecutionContext,
    config: LogisticConfig,
    lake: LakeResource,
    mlflow_tracking: MlflowTrackingResource,
) -> dg.MaterializeResult:
    from cryptovol.models.fitting import BASELINE_KINDS

    return _evaluate_and_track(
        context,
        kind="logistic",
        baselines=BASELINE_KINDS,
        params={"C": config.C},
        config=config,
        lake=lake,
        mlflow_tracking=mlflow_tracking,
    )


@dg.asset(
    deps=[training_dataset],
    group_name="training",
    kinds={"mlflow", "xgboost"},
    description=(
        "XGBoost (`hist`, early stopping on the validation fold), calibrated and thresholded on "
        "validation, evaluated on the purged folds against the baselines; tracked in MLflow."
    ),
)
def xgboost_model(
    context: dg.AssetExecutionContext,
    config: XGBoostConfig,
    lake: LakeResource,
    mlflow_tracking: MlflowTrackingResource,
) -> dg.MaterializeResult:
    from cryptovol.models.fitting import BASELINE_KINDS

    params = {
        "n_estimators": config.n_estimators,
        "max_depth": config.max_depth,
        "learning_rate": config.learning_rate,
        "early_stopping_rounds": config.early_stopping_rounds,
        "min_child_weight": config.min_child_weight,
        "n_jobs": config.n_jobs,
        "seed": config.seed,
    }
    return _evaluate_and_track(
        context,
        kind="xgboost",
        baselines=BASELINE_KINDS,
        params=params,
        config=config,
        lake=lake,
        mlflow_tracking=mlflow_tracking,
    )


MODEL_KINDS = {"baseline_model": "har", "logistic_model": "logistic", "xgboost_model": "xgboost"}
LEARNED = ("logistic", "xgboost")


def _load_evaluations(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        kind: pickle.loads((training_dir(settings) / f"{kind}_evaluation.pkl").read_bytes())
        for kind in MODEL_KINDS.values()
    }


@dg.asset(
    deps=[baseline_model, logistic_model, xgboost_model],
    group_name="training",
    kinds={"mlflow", "pandas"},
    description=(
        "Every model and baseline side by side on the same purged folds (test PR-AUC, ROC-AUC, Brier, "
        "F1, base rate); chooses the learned model with the best mean VALIDATION PR-AUC."
    ),
)
def model_evaluation(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    import pandas as pd

    settings = lake.settings()
    stored = _load_evaluations(settings)
    rows = {}
    for kind, item in stored.items():
        evaluation = item["evaluation"]
        for row_kind in evaluation.summary.index:
            if row_kind == kind or row_kind not in rows:
                rows[row_kind] = {
                    **evaluation.summary.loc[row_kind].to_dict(),
                    "validation_pr_auc": evaluation.val_pr_auc.get(row_kind, float("nan")),
                }
    table = pd.DataFrame.from_dict(rows, orient="index")
    val = {kind: stored[kind]["evaluation"].val_pr_auc[kind] for kind in LEARNED}
    chosen = max(LEARNED, key=lambda k: val[k] if val[k] == val[k] else float("-inf"))
    result = {
        "chosen_kind": chosen,
        "chosen_run_id": stored[chosen]["run_id"],
        "chosen_model_uri": stored[chosen]["model_uri"],
        "validation_pr_auc": val,
        "table": json.loads(table.to_json(orient="index")),
    }
    path = _atomic_bytes(
        training_dir(settings) / "model_evaluation.json", json.dumps(result, indent=1).encode()
    )
    columns = [c for c in (*SUMMARY_COLUMNS, "validation_pr_auc") if c in table.columns]
    return dg.MaterializeResult(
        metadata={
            "chosen_kind": chosen,
            "chosen_mlflow_run_id": stored[chosen]["run_id"],
            "comparison": dg.MetadataValue.md(table.loc[:, columns].round(4).to_markdown()),
            **numbers(
                {f"{k}_pr_auc": float(table.loc[k, "pr_auc_mean"]) for k in table.index}, prefix="test_"
            ),
            "path": path_value(path),
        }
    )


class ChampionConfig(dg.Config):
    min_pr_auc_gain: float = Field(
        default=0.01, description="Challenger must beat the champion's PR-AUC by this margin on the holdout."
    )
    brier_tolerance: float = Field(default=0.0, description="Allowed Brier-score worsening vs the champion.")


@dg.asset(
    deps=[model_evaluation],
    group_name="training",
    kinds={"mlflow"},
    description=(
        "The MLflow registry alias `champion`: the chosen model is registered as `challenger` and "
        "promoted only if it beats the current champion (or, first time, the best baseline) on the "
        "most recent held-out window. Emits a champion_changed alert when the alias moves."
    ),
)
def champion_model(
    context: dg.AssetExecutionContext,
    config: ChampionConfig,
    lake: LakeResource,
    mlflow: MlflowResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    import mlflow as mlflow_lib

    from cryptovol.models import registry
    from cryptovol.models.registry import GateConfig

    settings = mlflow.settings_for(lake.settings())
    choice = json.loads((training_dir(settings) / "model_evaluation.json").read_text())
    item = _load_evaluations(settings)[choice["chosen_kind"]]
    evaluation = item["evaluation"]
    mlflow.activate(settings)
    client = mlflow_lib.MlflowClient()
    name = settings.model_name
    before = registry.alias_version(name, registry.CHAMPION, client)
    version = str(mlflow_lib.register_model(item["model_uri"], name).version)
    for key, value in {
        "cryptovol.model_kind": choice["chosen_kind"],
        "cryptovol.run_id": item["run_id"],
        **mlflow.dagster_tags(context),
    }.items():
        client.set_model_version_tag(name, version, key, value)
    holdout_frame, holdout_y = evaluation.holdout()
    decision = registry.run_promotion_gate(
        name,
        version,
        holdout_frame=holdout_frame,
        holdout_y=holdout_y,
        baseline_scores=evaluation.baseline_holdout_scores(),
        config=GateConfig(min_pr_auc_gain=config.min_pr_auc_gain, brier_tolerance=config.brier_tolerance),
        client=client,
    )
    after = registry.alias_version(name, registry.CHAMPION, client)
    if after != before:
        alerts.notifier(settings).notify(
            CHAMPION_CHANGED,
            f"champion of {name} moved from {'v' + before if before else 'none'} to v{after}",
            severity="info",
            model=name,
            previous=before,
            champion=after,
            model_kind=choice["chosen_kind"],
            reason=decision.reason,
            dagster_run_id=context.run_id,
        )
    return dg.MaterializeResult(
        metadata={
            "model_name": name,
            "registered_version": version,
            "champion_version": after or "none",
            "previous_champion": before or "none",
            "promoted": dg.MetadataValue.bool(decision.promote),
            "champion_changed": dg.MetadataValue.bool(after != before),
            "reason": decision.reason,
            "reference": decision.reference,
            "challenger_pr_auc": dg.MetadataValue.float(decision.challenger_pr_auc),
            "reference_pr_auc": dg.MetadataValue.float(decision.reference_pr_auc),
            "holdout_rows": dg.MetadataValue.int(decision.holdout_rows),
            "champion_uri": f"models:/{name}@champion",
            "mlflow_model_url": dg.MetadataValue.url(mlflow.model_url(version)),
            "mlflow_run_id": item["run_id"],
        }
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
