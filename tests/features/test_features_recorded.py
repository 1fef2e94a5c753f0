"""Features and labels on real recorded Coinbase ticks (Dec 2025 BTC-USD, see its SOURCE.md)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from cryptovol.features import compute_features
from cryptovol.featureset import FEATURE_NAMES, MAX_GAP_S, WARMUP_S
from cryptovol.labels import make_labels

DEC6 = "coinbase_advtrade_ticker_btcusd_2025-12/commit_e8e0fb4"


@functools.cache
def _load(folder: Path) -> tuple:
    from cryptovol.recorded import load_ticks

    files = sorted(folder.glob("ticks_BTCUSD_20251206_0*.ndjson.gz"))[:6]
    if len(files) < 6:
        return None
    ticks = load_ticks(files)  # receive time is UTC for this folder (SOURCE.md)
    return ticks, compute_features(ticks)


@pytest.fixture
def dec6_features(shared_data: Path) -> tuple:
    pytest.importorskip("cryptovol.recorded")
    loaded = _load(Path(shared_data) / DEC6)
    if loaded is None:
        pytest.skip(f"Dec-6 recording not found under {shared_data / DEC6}")
    return loaded


def segment_age_s(times: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(times), dtype=np.int64)
    gap = np.flatnonzero(np.diff(times) > MAX_GAP_S * 1e9) + 1
    starts[gap] = gap
    np.maximum.accumulate(starts, out=starts)
    return (times - times[starts]) / 1e9


def test_no_nan_after_warm_up_on_real_ticks(dec6_features):
    ticks, feats = dec6_features
    assert len(feats) == len(ticks) > 10_000
    age = segment_age_s(feats["event_time_ns"].to_numpy())
    warm = age >= WARMUP_S
    assert warm.sum() > 5_000
    nan_counts = feats.loc[warm, FEATURE_NAMES].isna().sum()
    assert nan_counts.sum() == 0, nan_counts[nan_counts > 0].to_dict()
    assert feats.loc[age < 1.0, "ret_1s"].isna().all()  # warm-up really is NaN, not a fill
    assert feats.loc[age < 60.0, "tick_rate_60s"].isna().all()


def test_real_feature_values_are_plausible(dec6_features):
    _, feats = dec6_features
    warm = feats.loc[segment_age_s(feats["event_time_ns"].to_numpy()) >= WARMUP_S]
    assert (warm["spread"] >= 0).all() and (warm["spread_bps"] < 50).all()
    assert 1.0 < warm["tick_rate_60s"].median() < 10.0  # SOURCE.md: about 3 messages/s
    assert 5e-5 < warm["rv_300s"].median() < 5e-3  # BTC 5-min vol: a few basis points
    # a shorter window holds a subset of the same squared returns
    assert (warm["rv_30s"] <= warm["rv_60s"] * (1 + 1e-12)).all()
    assert (warm["rv_60s"] <= warm["rv_300s"] * (1 + 1e-12)).all()
    assert warm["book_imbalance"].between(-1, 1).all()


def test_real_labels_are_regime_relative(dec6_features):
    _, feats = dec6_features
    labels = make_labels(feats)
    assert len(labels) > 3_000
    assert labels["fwd_rv"].gt(0).mean() > 0.99
    # forward vol over the next minute relative to the trailing 5 minutes sits around 1
    assert 0.6 < labels["vol_ratio"].median() < 1.4
