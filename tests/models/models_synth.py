"""Small synthetic feature matrices with a known, learnable spike signal (seeded)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptovol.featureset import FEATURE_NAMES

START_NS = 1_764_983_567_000_000_000  # 2025-12-06T01:12:47Z


def synthetic_matrix(n: int = 3000, seed: int = 0, horizon_s: float = 60.0) -> pd.DataFrame:
    """One row per second: features, forward realized vol and the relative vol ratio.

    A persistent latent volatility state drives both the recent vols (features) and the forward
    vol (label), so short-window vol relative to rv_300s genuinely predicts spikes.
    """
    rng = np.random.default_rng(seed)
    state = np.zeros(n)
    for i in range(1, n):
        state[i] = 0.97 * state[i - 1] + rng.normal(0, 0.25)
    base = np.log(2e-4)
    log_rv300 = base + 0.3 * pd.Series(state).rolling(300, min_periods=1).mean().to_numpy()
    log_rv30 = base + state + rng.normal(0, 0.2, n)
    log_rv60 = 0.5 * (log_rv30 + log_rv300) + rng.normal(0, 0.1, n)
    log_fwd = base + 0.8 * state + rng.normal(0, 0.35, n) + 0.5 * np.log(horizon_s / 300)
    frame = pd.DataFrame({name: rng.normal(0, 1, n) for name in FEATURE_NAMES})
    frame["mid"] = 89_000 + np.cumsum(rng.normal(0, 5, n))
    frame["spread"] = 0.01
    frame["spread_bps"] = 0.01 / frame["mid"] * 1e4
    frame["rv_30s"] = np.exp(log_rv30)
    frame["rv_60s"] = np.exp(log_rv60)
    frame["rv_300s"] = np.exp(log_rv300)
    frame["ewma_vol"] = np.exp(log_rv30) / np.sqrt(30)
    frame["vol_of_vol"] = np.abs(rng.normal(0, 1e-5, n))
    frame["ret_1s"] = rng.normal(0, 1, n) * np.exp(log_rv30) / np.sqrt(30)
    frame["tick_rate_30s"] = np.abs(rng.normal(3, 1, n))
    frame["tick_rate_60s"] = np.abs(rng.normal(3, 1, n))
    frame.insert(0, "sequence", np.arange(n))
    frame.insert(0, "event_time_ns", START_NS + np.arange(n) * 1_000_000_000)
    frame.insert(0, "product_id", "BTC-USD")
    frame["fwd_rv"] = np.exp(log_fwd)
    frame["vol_ratio"] = frame["fwd_rv"] / (frame["rv_300s"] * np.sqrt(horizon_s / 300))
    return frame


def spike_labels(frame: pd.DataFrame, q: float = 0.9) -> np.ndarray:
    return (frame["vol_ratio"] >= frame["vol_ratio"].quantile(q)).to_numpy()


def activity_matrix(n: int = 3000, seed: int = 0, horizon_s: float = 60.0, shift_s: int = 0) -> pd.DataFrame:
    """Like `synthetic_matrix`, but the coming spikes announce themselves in trading activity
    (tick rate) and the spread, which no baseline looks at: a learned model can beat them."""
    rng = np.random.default_rng(seed)
    frame = synthetic_matrix(n, seed=seed, horizon_s=horizon_s)
    state = np.zeros(n)
    for i in range(1, n):
        state[i] = 0.95 * state[i - 1] + rng.normal(0, 0.3)
    frame["tick_rate_30s"] = np.exp(1.0 + 0.6 * state + rng.normal(0, 0.15, n))
    frame["spread_bps"] = np.exp(-2.0 + 0.4 * state + rng.normal(0, 0.2, n))
    surprise = np.exp(0.9 * state + rng.normal(0, 0.35, n))
    frame["fwd_rv"] = frame["rv_300s"] * np.sqrt(horizon_s / 300) * surprise
    frame["vol_ratio"] = frame["fwd_rv"] / (frame["rv_300s"] * np.sqrt(horizon_s / 300))
    frame["event_time_ns"] = frame["event_time_ns"] + shift_s * 1_000_000_000
    return frame
