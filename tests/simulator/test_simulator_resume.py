"""A resumed market continues the offline history tick for tick (the demo's history and its live
simulator are one market: calm live data must not look like drift against the history)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from cryptovol.simulator.price_process import MarketSimulator
from cryptovol.simulator.synthetic import generate_ticks_frame

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("history_s", [600.0, 900.0])
def test_resumed_market_continues_the_history_tick_for_tick(history_s: float) -> None:
    """History = the first `history_s` of a run; the market resumed after it gives the rest."""
    regime_live_s = 120.0
    whole = generate_ticks_frame(
        duration_s=history_s + 300, seed=7, start=START,
        regime_change_at_s=history_s + regime_live_s, regime_vol_mult=4.0,
    )
    history = generate_ticks_frame(
        duration_s=history_s, seed=7, start=START,
        regime_change_at_s=history_s + regime_live_s, regime_vol_mult=4.0,
    )
    t_whole = (whole["event_time_ns"].to_numpy() - whole["event_time_ns"].iloc[0]) / 1e9
    before = whole[t_whole < history_s].reset_index(drop=True)
    np.testing.assert_array_equal(history["price"].to_numpy(), before["price"].to_numpy())

    market = MarketSimulator(
        ("BTC-USD", "ETH-USD"), seed=7, rate_hz=4.0,
        regime_change_at_s=history_s + regime_live_s, start_at_s=history_s,
    )
    # Snapshots after resuming show the history's last quote.
    for product in ("BTC-USD", "ETH-USD"):
        last = history[history["product_id"] == product].iloc[-1]
        assert market.state(product).bid_c == round(last["best_bid"] * 100)
    after = whole[t_whole >= history_s]
    events = [market.next_event() for _ in range(200)]
    assert events[0].t_s >= history_s
    got = [(e.product_id, e.state.price_c / 100) for e in events]
    want = list(zip(after["product_id"].astype(str), after["price"], strict=False))[:200]
    assert got == [(p, float(x)) for p, x in want]


def test_resume_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="start_at_s"):
        MarketSimulator(("BTC-USD",), start_at_s=-1.0)
