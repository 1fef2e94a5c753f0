"""Registering small real MLflow models for the serving tests (sqlite store under a tmp data dir)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from cryptovol.featureset import FEATURE_SET

STUB_CODE = Path(__file__).with_name("stub_spike_model.py")

#: Two clearly different models: their probabilities differ on every realistic row.
WEIGHTS_V1 = {"rv_60s": 900.0, "tick_rate_30s": 0.05, "book_imbalance": 0.3}
WEIGHTS_V2 = {"rv_60s": -500.0, "spread_bps": 2.0, "ret_5s": 300.0}


def tracking_uri(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"


def _serving_experiment(data_dir: Path) -> str:
    """The store under `data_dir` made current and its `serving-tests` experiment (artifacts in
    `data_dir/mlflow/artifacts`), through the project's own set-up."""
    from cryptovol.config import Settings
    from cryptovol.models.tracking import configure_tracking

    settings = Settings(data_dir=data_dir, mlflow_tracking_uri=tracking_uri(data_dir))
    return configure_tracking(settings, "serving-tests")


def register_stub(
    data_dir: Path,
    model_name: str,
    *,
    weights: dict[str, float],
    bias: float = -2.0,
    threshold: float = 0.5,
    alias: str | None = "champion",
    feature_set_version: str = FEATURE_SET.version,
    broken: bool = False,
) -> str:
    """Log + register one stub model version, optionally point `alias` at it; returns the version."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(data_dir)
    experiment_id = _serving_experiment(data_dir)
    client = MlflowClient(uri, uri)
    metadata: dict[str, Any] = {
        "feature_set_version": feature_set_version,
        "decision_threshold": threshold,
        "model_kind": "stub-logistic",
        "label_config": {"horizon_s": 60, "spike_threshold": 0.001},
        "trained_window": {"first": "2025-12-06T00:00:00Z", "last": "2025-12-06T06:00:00Z"},
        "metrics": {"pr_auc": 0.42},
    }
    with mlflow.start_run(experiment_id=experiment_id), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(STUB_CODE),
            model_config={"weights": weights, "bias": bias, "threshold": threshold, "broken": broken},
            metadata=metadata,
            registered_model_name=model_name,
            pip_requirements=["mlflow", "pandas", "numpy"],  # skips ~5 s of requirement inference
        )
    version = str(info.registered_model_version)
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
    return version


def set_alias(data_dir: Path, model_name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    uri = tracking_uri(data_dir)
    MlflowClient(uri, uri).set_registered_model_alias(model_name, alias, version)


def delete_alias(data_dir: Path, model_name: str, alias: str) -> None:
    from mlflow import MlflowClient

    uri = tracking_uri(data_dir)
    MlflowClient(uri, uri).delete_registered_model_alias(model_name, alias)


def synthetic_ticks(product: str = "BTC-USD", seconds: float = 400.0, rate_hz: float = 2.0,
                    seed: int = 11, start_ns: int = 1_765_000_000_000_000_000):
    """A seeded random-walk tick window of one product (TICK_COLUMNS frame), no gaps."""
    import numpy as np
    import pandas as pd

    from cryptovol.ticks import TICK_COLUMNS, TICK_DTYPES

    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    times = start_ns + np.cumsum(rng.exponential(1e9 / rate_hz, n)).astype(np.int64)
    mid = 60_000 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    half = np.round(rng.uniform(0.005, 1.0, n), 2)
    bid, ask = np.round(mid - half, 2), np.round(mid + half, 2)
    frame = pd.DataFrame({
        "product_id": product,
        "event_time_ns": times,
        "sequence": np.arange(n),
        "price": np.round(mid, 2),
        "best_bid": bid,
        "best_ask": ask,
        "best_bid_qty": rng.uniform(0.01, 2, n),
        "best_ask_qty": rng.uniform(0.01, 2, n),
        "volume_24h": 10_000 + np.cumsum(rng.uniform(0, 0.5, n)),
        "receive_time_ns": times,
    }, columns=list(TICK_COLUMNS))
    return frame.astype(TICK_DTYPES)


def register_trained(data_dir: Path, model_name: str, *, kind: str = "xgboost", alias: str = "champion",
                     seed: int = 3) -> str:
    """Train a real `cryptovol.models` predictor (fit + calibrate + threshold) on features of
    synthetic ticks with a forward-volatility label, log it through the serving contract
    (`log_spike_model`) and point `alias` at it; returns the version."""
    import mlflow
    import numpy as np

    from cryptovol.features import compute_features
    from cryptovol.models.fitting import fit_predictor
    from cryptovol.models.pyfunc import log_spike_model

    ticks = synthetic_ticks(seconds=1500, rate_hz=2.0, seed=seed)
    feats = compute_features(ticks).dropna().reset_index(drop=True)
    # A forward-looking target: |return| over the next 60 rows above its 80th percentile.
    fwd = np.abs(np.log(feats["mid"].shift(-60) / feats["mid"])).to_numpy()
    keep = np.isfinite(fwd)
    feats, fwd = feats[keep].reset_index(drop=True), fwd[keep]
    y = fwd > np.quantile(fwd, 0.8)
    cut = int(len(feats) * 0.7)
    params = {"n_estimators": 60, "n_jobs": 1} if kind == "xgboost" else None
    predictor, _ = fit_predictor(kind, feats.iloc[:cut], y[:cut], feats.iloc[cut:], y[cut:], params=params)
    uri = tracking_uri(data_dir)
    experiment_id = _serving_experiment(data_dir)
    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    metadata = {
        "feature_set_version": FEATURE_SET.version,
        "decision_threshold": predictor.decision_threshold,
        "label_config": {"horizon_s": 60, "kind": "synthetic-test", "quantile": 0.8},
        "model_kind": kind,
        "trained_window": {"first_event_time_ns": int(feats["event_time_ns"].iloc[0]),
                           "last_event_time_ns": int(feats["event_time_ns"].iloc[-1])},
        "metrics": {"note": "synthetic test data"},
    }
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_spike_model(predictor, metadata=metadata, input_example=feats.head(5),
                               registered_model_name=model_name)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(model_name, alias, version)
    return version
