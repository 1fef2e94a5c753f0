"""Jobs: what a sensor, a schedule or a user in the UI launches (asset jobs, and the op job that
compacts the lake's small parts, from `orchestration.maintenance`)."""

from __future__ import annotations

import dagster as dg

from assets.partitions import day_product_partitions
from orchestration.maintenance import compact_lake

RAW_TICKS = dg.AssetKey("raw_ticks")
FEATURES = dg.AssetKey("features")
LABELS = dg.AssetKey("labels")
TRAINING_DATASET = dg.AssetKey("training_dataset")
MODEL_KEYS = (dg.AssetKey("baseline_model"), dg.AssetKey("logistic_model"), dg.AssetKey("xgboost_model"))
MODEL_EVALUATION = dg.AssetKey("model_evaluation")
CHAMPION_MODEL = dg.AssetKey("champion_model")
DRIFT_REPORT = dg.AssetKey("drift_report")
BACKTEST = dg.AssetKey("backtest")

#: One (day, product) partition: validate the landing file, then featurize it (checks included).
ingest_features_job = dg.define_asset_job(
    "ingest_and_featurize",
    selection=dg.AssetSelection.assets(RAW_TICKS, FEATURES),
    partitions_def=day_product_partitions,
    description="Validate one day x product of landing files (raw_ticks) and featurize it (features).",
)

#: Everything downstream of the feature lake: labels -> dataset -> models -> evaluation -> champion,
#: and the backtest of the evaluated signals (so every retrain answers "does it pay?" too).
retrain_job = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets(
        LABELS, TRAINING_DATASET, *MODEL_KEYS, MODEL_EVALUATION, CHAMPION_MODEL, BACKTEST
    ),
    description=(
        "Relabel, rebuild the dataset, retrain every model, evaluate, run the promotion gate and "
        "backtest the signals."
    ),
)

drift_job = dg.define_asset_job(
    "drift_monitoring",
    selection=dg.AssetSelection.assets(DRIFT_REPORT),
    description="Compare recent features with the champion's training window (Evidently).",
)

freshness_job = dg.define_asset_job(
    "freshness_checks",
    selection=dg.AssetSelection.checks(
        dg.AssetCheckKey(RAW_TICKS, "raw_ticks_freshness"), dg.AssetCheckKey(FEATURES, "features_freshness")
    ),
    description="Is the newest landed tick / feature row recent enough?",
)

ALL_JOBS = [ingest_features_job, retrain_job, drift_job, freshness_job, compact_lake]
