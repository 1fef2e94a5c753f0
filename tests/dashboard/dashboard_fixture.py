"""A small, real data dir for the dashboard: the project's own generator -> feature lake,
a logistic champion trained on the first half and registered in a real MLflow SQLite store
(promoted through `cryptovol.models.registry`), the scorer's prediction Parquet for the second
half, a champion_changed alert, a drift report and a backtest summary with charts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from cryptovol.config import Settings

START = datetime(2025, 12, 1, 10, tzinfo=UTC)
PRODUCTS = ("BTC-USD", "ETH-USD")


def build_dashboard_data(data_dir: Path, *, seconds: float = 2400.0, seed: int = 21) -> Settings:
    import mlflow

    from cryptovol import lake
    from cryptovol.alerts import CHAMPION_CHANGED, AlertNotifier, alert_log_path
    from cryptovol.backtest.publish import publish_backtest
    from cryptovol.backtest.run import BacktestConfig
    from cryptovol.features import compute_features
    from cryptovol.featureset import FEATURE_SET
    from cryptovol.labels import LabelConfig, fit_spike_threshold
    from cryptovol.models import registry
    from cryptovol.models.dataset import build_training_set
    from cryptovol.models.fitting import fit_predictor
    from cryptovol.models.pyfunc import log_spike_model
    from cryptovol.models.tracking import configure_tracking
    from cryptovol.models.training import TrainConfig
    from cryptovol.models.walkforward import WalkForwardConfig
    from cryptovol.scoring.sink import write_prediction_parts
    from cryptovol.simulator.synthetic import generate_ticks_frame

    settings = Settings(data_dir=data_dir, products=PRODUCTS,
                        mlflow_tracking_uri=f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
    ticks = generate_ticks_frame(PRODUCTS, start=START, duration_s=seconds, seed=seed, rate_hz=2.0,
                                 regime_change_at_s=seconds * 0.6, regime_vol_mult=3.0)
    # the feature lake, as the batch featurizer writes it
    features = []
    for product, group in ticks.groupby("product_id", observed=True):
        f = compute_features(group.reset_index(drop=True))
        lake.write_feature_part(f, data_dir, str(product), START.date())
        features.append(f)
    feature_rows = pd.concat(features, ignore_index=True)

    # a champion trained and calibrated on the first half only
    training_set = build_training_set(ticks, min_segment_s=0.0)
    frame = training_set.frame
    cut_ns = int(np.quantile(frame["event_time_ns"], 0.5))
    train = frame[frame["event_time_ns"] <= cut_ns].reset_index(drop=True)
    label = LabelConfig(quantile=0.8)
    threshold = fit_spike_threshold(train["vol_ratio"].to_numpy(float), label.quantile)
    y = train["vol_ratio"].to_numpy(float) >= threshold
    n_fit = int(len(train) * 0.7)
    predictor, _ = fit_predictor("logistic", train.iloc[:n_fit], y[:n_fit], train.iloc[n_fit:], y[n_fit:])
    configure_tracking(settings, "dashboard-tests")
    metadata = {
        "feature_set_version": FEATURE_SET.version,
        "decision_threshold": predictor.decision_threshold,
        "label_config": {"kind": label.kind, "horizon_s": label.horizon_s, "trailing_s": label.trailing_s,
                         "quantile": label.quantile, "spike_threshold": float(threshold)},
        "model_kind": "logistic",
        "trained_window": {"first_event_time_ns": int(train["event_time_ns"].min()),
                           "last_event_time_ns": int(train["event_time_ns"].max())},
        "metrics": {"note": "synthetic test data"},
    }
    with mlflow.start_run():
        info = log_spike_model(predictor, metadata=metadata, input_example=train.head(5),
                               registered_model_name=settings.model_name)
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    client.set_model_version_tag(settings.model_name, version, "cryptovol.model_kind", "logistic")
    registry.promote(settings.model_name, version, reason="dashboard test", client=client)
    AlertNotifier(alert_log_path(settings)).notify(
        CHAMPION_CHANGED, f"champion of {settings.model_name} moved from none to v{version}",
        severity="info", champion=version, previous=None)
    AlertNotifier(alert_log_path(settings)).notify("drift_detected", "feature drift in the current window")

    # the scorer's output for the second half (what `cryptovol score` writes)
    later = feature_rows[feature_rows["event_time_ns"] > cut_ns].reset_index(drop=True)
    out = predictor.predict(later)
    predictions = pd.DataFrame({
        "product_id": later["product_id"].astype(str), "event_time_ns": later["event_time_ns"],
        "sequence": later["sequence"], "spike_probability": out["spike_probability"].to_numpy(),
        "spike_flag": out["spike_flag"].to_numpy(), "model_name": settings.model_name,
        "model_version": version, "model_alias": "champion", "feature_set_version": FEATURE_SET.version,
        "scored_at_ns": later["event_time_ns"] + 5_000_000, "scoring_latency_s": 0.005,
    })
    write_prediction_parts(predictions, settings.predictions_dir)

    # the latest drift report and the backtest summary + charts, through their own code
    from cryptovol.drift import build_drift_report

    build_drift_report(settings, current_end_ns=int(feature_rows["event_time_ns"].max()))
    publish_backtest(build_training_set(ticks[ticks["product_id"] == "BTC-USD"], min_segment_s=0.0),
                     settings=settings, mlflow_log=False, config=BacktestConfig(n_boot=50),
                     train_config=TrainConfig(walk_forward=WalkForwardConfig(n_folds=3),
                                              learned_kinds=("logistic",), regression_view=False,
                                              latency_repeats=1))
    return settings
