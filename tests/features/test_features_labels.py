"""Labels: forward realized vol by hand, forward-only, horizon dropping, the spike threshold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from featkit import random_ticks, tick_frame

from cryptovol.features import compute_features
from cryptovol.labels import (
    LabelConfig,
    apply_spike_threshold,
    fit_spike_threshold,
    forward_realized_vol,
    make_labels,
)


def test_forward_vol_by_hand_on_whole_seconds():
    # ticks at 0..4 s, log mid = 0.01 * k^2 (returns 0.01, 0.03, 0.05, 0.07)
    secs = [0, 1, 2, 3, 4]
    ticks = tick_frame(secs, [100 * math.exp(0.01 * k * k) for k in secs], spread=0.0)
    fwd = forward_realized_vol(ticks, horizon_s=2).tolist()
    assert fwd[0] == pytest.approx(math.sqrt(0.01**2 + 0.03**2), rel=1e-9)
    assert fwd[1] == pytest.approx(math.sqrt(0.03**2 + 0.05**2), rel=1e-9)
    assert fwd[2] == pytest.approx(math.sqrt(0.05**2 + 0.07**2), rel=1e-9)
    assert math.isnan(fwd[3]) and math.isnan(fwd[4])  # horizon runs past the last tick
    one = forward_realized_vol(ticks, horizon_s=1).tolist()
    assert one[0] == pytest.approx(0.01, rel=1e-9) and one[3] == pytest.approx(0.07, rel=1e-9)


def test_forward_vol_partial_seconds_by_hand():
    # t=0.5 (lm a), 1.0 (b), 2.0 (c), 2.7 (d), 3.0 (e): fwd at 0.5 over (0.5, 2.5]
    lms = {"a": 0.0, "b": 0.002, "c": -0.001, "d": 0.004, "e": 0.0}
    ticks = tick_frame([0.5, 1.0, 2.0, 2.7, 3.0], [100 * math.exp(v) for v in lms.values()], spread=0.0)
    fwd = forward_realized_vol(ticks, horizon_s=2).tolist()
    # samples: 0.5 -> a, 1 -> b, 2 -> c, 2.5 -> as-of = c; head (b-a), whole second (c-b), tail 0
    expect = math.sqrt((0.002 - 0.0) ** 2 + (-0.001 - 0.002) ** 2 + 0.0)
    assert fwd[0] == pytest.approx(expect, rel=1e-9)
    # at 1.0: samples 1 -> b, 2 -> c, 3 -> e: (c-b), (e-c); the tick at 2.7 only matters via e
    assert fwd[1] == pytest.approx(math.sqrt(0.003**2 + 0.001**2), rel=1e-9)


def test_forward_vol_counts_same_timestamp_ticks_as_of_t():
    ticks = tick_frame([0.0, 0.0, 1.0], [100.0, 101.0, 102.0], spread=0.0)
    fwd = forward_realized_vol(ticks, horizon_s=1).tolist()
    # both rows at t=0 start from the state at t (the last tick at 0.0): log(102/101)
    assert fwd[0] == pytest.approx(math.log(102 / 101)) and fwd[1] == pytest.approx(math.log(102 / 101))


def test_rows_whose_horizon_crosses_a_gap_are_dropped():
    secs = [*range(0, 30), *range(50, 120)]  # 20 s silence after t=29
    ticks = tick_frame(secs, [100 + 0.01 * (k % 7) for k in secs])
    fwd = pd.Series(forward_realized_vol(ticks, horizon_s=10).to_numpy(), index=secs)
    assert np.isfinite(fwd.loc[19])  # (19, 29] ends at the last tick before the gap
    assert fwd.loc[20:29].isna().all()
    assert np.isfinite(fwd.loc[50]) and np.isfinite(fwd.loc[109])
    assert fwd.loc[110:].isna().all()


def test_forward_only_perturbing_the_past_changes_nothing():
    ticks = random_ticks(400, seed=11, rate_hz=2.0)
    base = forward_realized_vol(ticks, horizon_s=60).to_numpy()
    times = ticks["event_time_ns"].to_numpy()
    i = 300
    changed = ticks.copy()
    earlier = np.flatnonzero(times < times[i])
    changed.loc[earlier, "best_bid"] *= 1.01
    changed.loc[earlier, "best_ask"] *= 1.01
    after = forward_realized_vol(changed, horizon_s=60).to_numpy()
    np.testing.assert_array_equal(after[i:], base[i:])
    # and the future does matter
    later = changed.copy()
    later.loc[i + 5:, "best_bid"] *= 1.001
    later.loc[i + 5:, "best_ask"] *= 1.001
    assert forward_realized_vol(later, horizon_s=60).iloc[i] != base[i]


def test_forward_vol_per_product_and_index_alignment():
    btc = random_ticks(200, seed=12, product="BTC-USD")
    eth = random_ticks(200, seed=13, product="ETH-USD")
    mixed = pd.concat([btc, eth]).sort_values("event_time_ns", kind="stable")
    mixed.index = pd.RangeIndex(1000, 1000 + len(mixed))
    got = forward_realized_vol(mixed, horizon_s=30)
    assert got.index.equals(mixed.index)
    only_btc = forward_realized_vol(btc, horizon_s=30).to_numpy()
    np.testing.assert_allclose(got[mixed["product_id"] == "BTC-USD"].to_numpy(), only_btc, rtol=1e-12)


def test_make_labels_relative_and_threshold_from_training_only():
    ticks = random_ticks(1500, seed=14, rate_hz=2.0)
    feats = compute_features(ticks)
    config = LabelConfig()
    labels = make_labels(feats, config)
    assert list(labels.columns) == ["product_id", "event_time_ns", "sequence", "fwd_rv", "vol_ratio"]
    assert labels["fwd_rv"].notna().all() and np.isfinite(labels["vol_ratio"]).all()
    # warm-up rows (no rv_300s) and the last minute (no full horizon) are gone
    times = feats["event_time_ns"]
    assert labels["event_time_ns"].min() >= times.iloc[0] + 300e9 - 1e9
    assert labels["event_time_ns"].max() <= times.iloc[-1] - 60e9
    merged = labels.merge(feats, on=["product_id", "event_time_ns", "sequence"])
    np.testing.assert_allclose(
        merged["vol_ratio"], merged["fwd_rv"] / (merged["rv_300s"] * math.sqrt(60 / 300)), rtol=1e-12
    )
    half = len(labels) // 2
    train, test = labels.iloc[:half], labels.iloc[half:]
    threshold = fit_spike_threshold(train["vol_ratio"], config.quantile)
    assert threshold == pytest.approx(np.quantile(train["vol_ratio"], 0.9))
    labelled = make_labels(feats, config, threshold=threshold)
    assert (labelled["spike"] == (labelled["vol_ratio"] >= threshold)).all()
    assert labelled["spike"].iloc[:half].mean() == pytest.approx(0.1, abs=0.01)
    # the test rows are labelled with the training threshold, not one refitted on them
    assert fit_spike_threshold(test["vol_ratio"], 0.9) != threshold
    test_spikes = apply_spike_threshold(test, threshold)["spike"]
    assert (test_spikes == (test["vol_ratio"] >= threshold)).all()


def test_absolute_label_uses_forward_vol():
    feats = compute_features(random_ticks(900, seed=15, rate_hz=2.0))
    config = LabelConfig(kind="absolute", horizon_s=30)
    labels = make_labels(feats, config)
    # absolute labels do not need rv_300s: warm-up rows stay
    assert len(labels) > len(make_labels(feats, LabelConfig(horizon_s=30)))
    threshold = fit_spike_threshold(labels["fwd_rv"], 0.8)
    spiked = apply_spike_threshold(labels, threshold, config)
    assert (spiked["spike"] == (spiked["fwd_rv"] >= threshold)).all()


def test_label_config_and_threshold_errors():
    with pytest.raises(ValueError, match="kind"):
        LabelConfig(kind="weird")
    with pytest.raises(ValueError, match="trailing_s"):
        LabelConfig(trailing_s=120)
    with pytest.raises(ValueError, match="zero finite"):
        fit_spike_threshold([np.nan, np.inf])
    with pytest.raises(ValueError, match="needs feature columns"):
        make_labels(pd.DataFrame({"product_id": ["x"], "event_time_ns": [1]}))
