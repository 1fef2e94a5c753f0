"""compute_features: hand-computed cases, the reference definitions, causality, history invariance."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from featkit import S, random_ticks, reference_features, tick_frame

from cryptovol.features import compute_feature_arrays, compute_features, compute_features_multi
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, HISTORY_S, WARMUP_S


def feature(frame: pd.DataFrame, name: str) -> list[float]:
    return frame[name].tolist()


def test_output_shape_keys_and_dtypes():
    ticks = tick_frame([0.0, 0.5, 1.0], [100.0, 101.0, 102.0])
    out = compute_features(ticks)
    assert list(out.columns) == FEATURE_SET.columns
    assert len(out) == 3
    assert out["event_time_ns"].tolist() == ticks["event_time_ns"].tolist()
    assert out["sequence"].tolist() == [0, 1, 2]
    assert (out["product_id"] == "BTC-USD").all()
    assert all(out[name].dtype == np.float64 for name in FEATURE_NAMES)
    emitted = compute_features(ticks, emit_from=2)
    assert emitted["sequence"].tolist() == [2]
    assert compute_features(ticks, emit_from=3).empty


def test_instant_features_by_hand():
    ticks = tick_frame([0.0], [100.0], spread=0.5, bid_qty=[3.0], ask_qty=[1.0])
    row = compute_features(ticks).iloc[0]
    assert row["mid"] == 100.0
    assert row["spread"] == pytest.approx(0.5)
    assert row["spread_bps"] == pytest.approx(0.5 / 100.0 * 1e4)
    assert row["book_imbalance"] == pytest.approx((3 - 1) / (3 + 1))
    # T0 is midnight UTC: seconds of day 0
    assert row["tod_sin"] == pytest.approx(0.0)
    assert row["tod_cos"] == pytest.approx(1.0)
    six_am = compute_features(tick_frame([6 * 3600.0], [100.0])).iloc[0]
    assert six_am["tod_sin"] == pytest.approx(1.0) and six_am["tod_cos"] == pytest.approx(0.0, abs=1e-12)


def test_book_imbalance_is_zero_when_sizes_unknown():
    ticks = tick_frame([0, 1, 2], [100, 100, 100], bid_qty=[np.nan, 0.0, 2.0], ask_qty=[1.0, 0.0, np.nan])
    assert feature(compute_features(ticks), "book_imbalance") == [0.0, 0.0, 0.0]


def test_returns_as_of_the_tick_at_or_before_t_minus_lag():
    # ticks at 0, 0.5, 1.0, 1.2, 2.0 s
    ticks = tick_frame([0.0, 0.5, 1.0, 1.2, 2.0], [100, 101, 102, 103, 104])
    ret = feature(compute_features(ticks), "ret_1s")
    assert math.isnan(ret[0]) and math.isnan(ret[1])  # 1 s window does not fit yet
    assert ret[2] == pytest.approx(math.log(102 / 100))  # as-of exactly t - 1 = 0.0
    assert ret[3] == pytest.approx(math.log(103 / 100))  # as-of 0.2 -> the tick at 0.0
    assert ret[4] == pytest.approx(math.log(104 / 102))  # as-of 1.0 -> the tick at 1.0
    assert all(math.isnan(x) for x in feature(compute_features(ticks), "ret_5s"))


def test_identical_timestamps_are_row_causal():
    # two ticks share t=0, three share t=1
    ticks = tick_frame([0.0, 0.0, 1.0, 1.0, 1.0], [100, 105, 110, 120, 130])
    out = compute_features(ticks)
    # as-of t-1 = 0.0 is the LAST tick at 0.0 (mid 105); each row at t=1 uses its own mid
    assert feature(out, "ret_1s")[2:] == pytest.approx([math.log(110 / 105), math.log(120 / 105),
                                                        math.log(130 / 105)])
    # tick counts include only rows up to and including this one
    ticks_long = tick_frame([0.0, 10.0, 20.0, 30.0, 30.0, 30.0], [100] * 6)
    rate = feature(compute_features(ticks_long), "tick_rate_30s")
    assert all(math.isnan(x) for x in rate[:3])
    assert rate[3:] == pytest.approx([3 / 30, 4 / 30, 5 / 30])  # (t-30, t] excludes the tick at 0


def test_realized_vol_whole_seconds_plus_partial_second_by_hand():
    # one tick per whole second 0..30 with mid = 100 * exp(0.001 * k), then a tick at 30.4
    secs = list(range(31))
    mids = [100 * math.exp(0.001 * k) for k in secs]
    ticks = tick_frame([*secs, 30.4], [*mids, 100 * math.exp(0.001 * 30 + 0.002)])
    out = compute_features(ticks)
    # row at t=30.4: K = 30, grid returns r_2..r_30 (29 whole seconds, each 0.001) + partial 0.002
    assert out["rv_30s"].iloc[-1] == pytest.approx(math.sqrt(29 * 0.001**2 + 0.002**2), rel=1e-9)
    # row at t=30.0 exactly: K = 29 (last whole second strictly before t), window (0, 30]
    assert out["rv_30s"].iloc[-2] == pytest.approx(math.sqrt(30 * 0.001**2), rel=1e-9)
    # row at t=29.0: K = 28, needs g(K - 29) = g(-1): before the segment -> NaN
    assert math.isnan(out["rv_30s"].iloc[-3])
    assert math.isnan(out["rv_60s"].iloc[-1])


def test_constant_one_second_returns_give_closed_form_vols():
    # a tick on every whole second with log mid rising by c per second
    c = 2e-4
    secs = list(range(0, 321))
    out = compute_features(tick_frame(secs, [100 * math.exp(c * k) for k in secs]))
    out.index = secs
    # first warm row for 300 s windows is t = 300 (K = 299, window from the tick at 0)
    assert math.isnan(out.loc[299, "rv_300s"]) and math.isnan(out.loc[299, "ewma_vol"])
    for t in (300, 320):
        assert out.loc[t, "rv_300s"] == pytest.approx(c * math.sqrt(300), rel=1e-12)
        assert out.loc[t, "rv_30s"] == pytest.approx(c * math.sqrt(30), rel=1e-12)
        assert out.loc[t, "ewma_vol"] == pytest.approx(c, rel=1e-12)  # a weighted mean of equal c^2
        assert out.loc[t, "vol_of_vol"] == pytest.approx(0.0, abs=1e-15)
        assert out.loc[t, "ret_60s"] == pytest.approx(60 * c, rel=1e-9)


def test_vol_of_vol_is_the_spread_of_per_second_rv30():
    # flat until second 200, then +c every second: rv30g(k) = c * sqrt(#moving seconds in (k-30, k])
    c = 1e-4
    secs = list(range(0, 271))
    out = compute_features(tick_frame(secs, [100 * math.exp(c * max(0, k - 200)) for k in secs]))
    t = 270
    k_last = t - 1  # K for a tick on a whole second
    rv30 = [c * math.sqrt(min(30, max(0, k - 200))) for k in range(k_last - 119, k_last + 1)]
    assert out["vol_of_vol"].iloc[t] == pytest.approx(statistics.pstdev(rv30), rel=1e-9)
    assert math.isnan(out["vol_of_vol"].iloc[148]) and np.isfinite(out["vol_of_vol"].iloc[150])


def test_single_tick_in_window_gives_zero_vol_and_rate():
    # a tick every 14 s (no gap: 14 <= MAX_GAP_S); the mid moves only at the last tick
    ticks = tick_frame([0.0, 14.0, 28.0, 42.0, 56.0], [100, 100, 100, 100, 101])
    out = compute_features(ticks)
    # at t=56: window (26, 56] holds ticks at 28, 42, 56
    assert out["tick_rate_30s"].iloc[-1] == pytest.approx(3 / 30)
    # rv_30s at 56: the grid is flat until the tick at 56 itself -> only the partial second moves
    assert out["rv_30s"].iloc[-1] == pytest.approx(abs(math.log(101 / 100)), rel=1e-12)
    assert out["rv_30s"].iloc[-2] == 0.0  # t=42: warm (window from 12 s) and flat
    assert math.isnan(out["rv_30s"].iloc[-3])  # t=28: window would start before the first tick


def test_gap_starts_a_new_segment_and_warm_up_again():
    # 0..40 s every second, a 20 s silence (> MAX_GAP_S), then 60..100 s every second
    secs = [*range(0, 41), *range(61, 101)]
    ticks = tick_frame(secs, [100 + 0.01 * k for k in secs])
    out = compute_features(ticks).set_index(pd.Index(secs))
    assert np.isfinite(out.loc[40, "rv_30s"])
    assert math.isnan(out.loc[61, "ret_1s"]) and math.isnan(out.loc[61, "rv_30s"])
    assert math.isnan(out.loc[61, "tick_rate_30s"])
    assert out.loc[62, "ret_1s"] == pytest.approx(math.log((100 + 0.62) / (100 + 0.61)))
    assert math.isnan(out.loc[90, "rv_30s"])  # needs g(60): before the segment start at 61
    assert np.isfinite(out.loc[92, "rv_30s"])
    assert out.loc[91, "tick_rate_30s"] == pytest.approx(30 / 30)


def test_volume_change_and_warm_up():
    secs = list(range(0, 121))
    ticks = tick_frame(secs, [100.0] * len(secs), volume=[1000.0 + k for k in secs])
    out = compute_features(ticks)
    chg = feature(out, "volume_24h_chg_60s")
    assert all(math.isnan(x) for x in chg[:60])
    assert chg[60] == pytest.approx(1060 / 1000 - 1)
    assert chg[120] == pytest.approx(1120 / 1060 - 1)
    unknown = tick_frame(secs, [100.0] * len(secs), volume=[np.nan] * len(secs))
    assert feature(compute_features(unknown), "volume_24h_chg_60s")[60:] == [0.0] * 61


@pytest.mark.parametrize("seed", [1, 2])
def test_matches_reference_definitions(seed: int):
    ticks = random_ticks(760, seed=seed, rate_hz=2.0, gaps=((340.0, 17.0),))
    out = compute_features(ticks)
    rows = list(range(0, len(ticks), 7)) + [len(ticks) - 1]
    ref = reference_features(ticks, rows)
    got = out.loc[rows, FEATURE_NAMES]
    warm = int(np.isfinite(got["rv_300s"]).sum())
    assert warm > 5, "the sample must contain warm rv_300s rows"
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(got[name].to_numpy(), ref[name].to_numpy(), rtol=1e-9, atol=1e-15,
                                   err_msg=name)


def test_causal_perturbing_later_ticks_changes_nothing_before():
    ticks = random_ticks(700, seed=3, rate_hz=3.0)
    base = compute_features(ticks)
    rng = np.random.default_rng(7)
    for i in (50, 400, 1200, len(ticks) - 2):
        changed = ticks.copy()
        later = np.arange(i + 1, len(ticks))
        # later ticks: other prices and sizes, and same-timestamp ties at t_i
        changed.loc[later, "best_bid"] *= np.exp(rng.normal(0, 0.01, len(later)))
        changed.loc[later, "best_ask"] = changed.loc[later, "best_bid"] + 0.5
        changed.loc[later, "best_bid_qty"] = rng.exponential(5, len(later))
        changed.loc[later, "volume_24h"] = rng.uniform(1, 9, len(later))
        changed.loc[later[:3], "event_time_ns"] = changed.loc[i, "event_time_ns"]
        out = compute_features(changed)
        pd.testing.assert_frame_equal(out.iloc[: i + 1], base.iloc[: i + 1])


@pytest.mark.parametrize("extra_s", [0.0, 1.0, 250.0])
def test_history_invariance_tail_equals_long_array_bitwise(extra_s: float):
    ticks = random_ticks(1500, seed=4, rate_hz=3.0, gaps=((700.0, 30.0),))
    full = compute_features(ticks)
    times = ticks["event_time_ns"].to_numpy()
    for cut in (900, 2100, 2500, len(ticks) - 40):
        start = int(np.searchsorted(times, times[cut] - int((HISTORY_S + extra_s) * S)))
        tail = ticks.iloc[start:].reset_index(drop=True)
        part = compute_features(tail, emit_from=cut - start)
        expect = full.iloc[cut:].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, expect, check_exact=True)


def test_stream_shaped_calls_reproduce_batch():
    """One new tick at a time with a HISTORY_S tail, as the streaming featurizer does."""
    ticks = random_ticks(420, seed=5, rate_hz=1.5, gaps=((100.0, 16.0),))
    batch = compute_features(ticks)
    times = ticks["event_time_ns"].to_numpy()
    rows = []
    for i in range(len(ticks)):
        start = int(np.searchsorted(times, times[i] - int(HISTORY_S * S)))
        rows.append(compute_features(ticks.iloc[start: i + 1], emit_from=i - start))
    stream = pd.concat(rows, ignore_index=True)
    assert stream["rv_300s"].notna().sum() > 10  # warm rows are part of the comparison
    pd.testing.assert_frame_equal(stream, batch, check_exact=True)


def test_serving_window_of_warmup_length_is_warm():
    ticks = random_ticks(WARMUP_S + 2, seed=6, rate_hz=4.0)
    times = ticks["event_time_ns"].to_numpy()
    start = int(np.searchsorted(times, times[-1] - int(WARMUP_S * S), side="right")) - 1
    window = ticks.iloc[start:]
    assert (times[-1] - times[start]) >= WARMUP_S * S
    last = compute_features(window, emit_from=len(window) - 1).iloc[0]
    assert all(np.isfinite(last[name]) for name in FEATURE_NAMES)


def test_array_core_equals_frame_api():
    ticks = random_ticks(400, seed=8)
    arrays = compute_feature_arrays(
        ticks["event_time_ns"].to_numpy(), ticks["best_bid"].to_numpy(), ticks["best_ask"].to_numpy(),
        ticks["best_bid_qty"].to_numpy(), ticks["best_ask_qty"].to_numpy(), ticks["volume_24h"].to_numpy(),
        emit_from=100,
    )
    frame = compute_features(ticks, emit_from=100)
    for name in FEATURE_NAMES:
        np.testing.assert_array_equal(arrays[name], frame[name].to_numpy())


def test_bad_input_is_a_clear_error():
    ticks = tick_frame([0.0, 2.0, 1.0], [100, 100, 100])
    with pytest.raises(ValueError, match="not sorted by event_time_ns"):
        compute_features(ticks)
    with pytest.raises(ValueError, match="missing columns"):
        compute_features(ticks.drop(columns=["best_bid"]))
    with pytest.raises(ValueError, match="emit_from"):
        compute_features(tick_frame([0.0], [100.0]), emit_from=2)
    two = pd.concat([tick_frame([0.0], [1.0]), tick_frame([1.0], [2.0], product="ETH-USD")],
                    ignore_index=True)
    with pytest.raises(ValueError, match="one product"):
        compute_features(two)


def test_multi_product_equals_per_product():
    btc = random_ticks(200, seed=9, product="BTC-USD")
    eth = random_ticks(200, seed=10, product="ETH-USD")
    mixed = pd.concat([btc, eth]).sort_values("event_time_ns", kind="stable").reset_index(drop=True)
    out = compute_features_multi(mixed)
    expect = pd.concat([compute_features(btc), compute_features(eth)], ignore_index=True)
    pd.testing.assert_frame_equal(out, expect)
    assert compute_features_multi(mixed.iloc[:0]).columns.tolist() == FEATURE_SET.columns

