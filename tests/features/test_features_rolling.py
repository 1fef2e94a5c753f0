"""RollingFeatures, the incremental form the streaming featurizer uses: equal to compute_features
within 1e-9 however the ticks are split into calls, exact zeros on flat prices, and history
invariance (a state started later, given HISTORY_S of lead-in, emits the same rows)."""

from __future__ import annotations

import numpy as np
import pytest
from featkit import S, random_ticks

from cryptovol.features import RollingFeatures, Windows, compute_features
from cryptovol.featureset import FEATURE_NAMES, HISTORY_S

INPUTS = ("event_time_ns", "best_bid", "best_ask", "best_bid_qty", "best_ask_qty", "volume_24h")


def _columns(ticks) -> list[np.ndarray]:
    return [ticks[c].to_numpy(dtype=np.int64) if c == "event_time_ns"
            else ticks[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in INPUTS]


def _run(ticks, bounds: list[int], state: RollingFeatures | None = None) -> dict[str, np.ndarray]:
    state = state or RollingFeatures()
    cols = _columns(ticks)
    outs = [state.update(*(c[a:b] for c in cols)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return {name: np.concatenate([o[name] for o in outs]) for name in FEATURE_NAMES}


def _assert_close(got: dict[str, np.ndarray], want, start: int = 0) -> None:
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(got[name], want[name].to_numpy()[start:], rtol=1e-9, atol=0,
                                   equal_nan=True, err_msg=name)


@pytest.mark.parametrize("split", ["one_call", "one_tick_per_call", "random_calls"])
def test_rolling_equals_batch_within_1e_9_however_the_stream_is_split(split: str):
    # gaps just over and under MAX_GAP_S, a long one, shared timestamps and ticks on whole seconds
    ticks = random_ticks(1400, seed=7, rate_hz=2.5, gaps=((300.0, 15.5), (600.0, 14.0), (900.0, 500.0)))
    want = compute_features(ticks)
    n = len(ticks)
    if split == "one_call":
        bounds = [0, n]
    elif split == "one_tick_per_call":
        bounds = list(range(n + 1))
    else:
        cuts = np.random.default_rng(1).choice(np.arange(1, n), size=60, replace=False)
        bounds = [0, *sorted(cuts.tolist()), n]
    got = _run(ticks, bounds)
    _assert_close(got, want)
    assert np.isfinite(got["rv_300s"]).sum() > 500 and np.isfinite(got["vol_of_vol"]).sum() > 500


def test_flat_prices_give_exact_zeros_like_the_batch():
    ticks = random_ticks(900, seed=8, rate_hz=2.0)
    ticks.loc[100:1100, ["best_bid", "best_ask"]] = (89_999.0, 90_001.0)
    want = compute_features(ticks)
    got = _run(ticks, list(range(len(ticks) + 1)))
    _assert_close(got, want)
    zero = want["rv_60s"].to_numpy() == 0
    assert zero.sum() > 100 and (got["rv_60s"][zero] == 0).all()
    assert ((want["vol_of_vol"] == 0).to_numpy() == (got["vol_of_vol"] == 0)).all()


def test_history_invariance_a_later_start_with_history_s_of_lead_in_emits_the_same_rows():
    ticks = random_ticks(1500, seed=4, rate_hz=3.0, gaps=((700.0, 30.0),))
    want = compute_features(ticks)
    times = ticks["event_time_ns"].to_numpy()
    for cut in (900, 2500, len(ticks) - 40):
        start = int(np.searchsorted(times, times[cut] - int(HISTORY_S * S)))
        state = RollingFeatures()
        cols = _columns(ticks)
        state.update(*(c[start:cut] for c in cols))  # lead-in, as the featurizer re-warms after a restart
        got = _run(ticks, [cut, len(ticks)], state)
        _assert_close(got, want, start=cut)


def test_out_of_order_input_is_a_clear_error_and_windows_scale():
    ticks = random_ticks(60, seed=2)
    state = RollingFeatures()
    cols = _columns(ticks)
    state.update(*(c[10:20] for c in cols))
    with pytest.raises(ValueError, match="event-time order"):
        state.update(*(c[5:6] for c in cols))
    assert Windows().scaled(10).rv_s == (300, 600, 3000)
