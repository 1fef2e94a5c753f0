"""The engine's timing and costs: next-row execution, no look-ahead, costs exactly as modelled."""

from __future__ import annotations

import numpy as np
import pytest

from cryptovol.backtest.engine import ZERO_COST, CostModel, execute, execute_blocks
from cryptovol.backtest.metrics import drawdown, paired_block_bootstrap, performance, sharpe


def random_walk(n: int, seed: int = 0, vol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mid = 60_000 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    spread = rng.uniform(0.01, 2.0, n)
    return mid, spread


def test_signal_of_row_t_cannot_touch_the_return_of_rows_up_to_t_plus_1() -> None:
    mid, spread = random_walk(500, seed=1)
    rng = np.random.default_rng(2)
    target = rng.uniform(0, 1, 500)
    base = execute(mid, spread, target)
    for t in (0, 1, 57, 250, 497):
        changed = target.copy()
        changed[t] = 1.0 - changed[t] + 0.3
        other = execute(mid, spread, changed)
        # nothing at or before row t changes; at row t+1 the trade happens (its cost changes) but
        # the return earned over (t, t+1] is still the old position's
        np.testing.assert_array_equal(other.net[: t + 1], base.net[: t + 1])
        np.testing.assert_array_equal(other.gross[: t + 2], base.gross[: t + 2])
        np.testing.assert_array_equal(other.position[: t + 1], base.position[: t + 1])
        assert other.position[t + 1] == changed[t]
        assert not np.array_equal(other.gross[t + 2:t + 3], base.gross[t + 2:t + 3])


def test_an_oracle_that_knows_the_next_return_gains_nothing_when_executed_next_row() -> None:
    """A signal built from the FUTURE return of row t+1 would be a perfect overlay if the engine let
    row t's signal earn row t+1's return. Executed on the next row it earns row t+2's (independent)
    return instead, so it is no better than holding."""
    n = 40_000
    mid, spread = random_walk(n, seed=3)
    ret = np.r_[0.0, mid[1:] / mid[:-1] - 1.0]
    oracle = np.where(np.r_[ret[1:], 0.0] < 0, 0.0, 1.0)  # row t sees ret[t+1]: look-ahead
    result = execute(mid, spread, oracle, ZERO_COST)
    ppy = 365 * 86400
    # what a same-row (look-ahead) execution would have earned with the same signal
    cheating = np.r_[0.0, oracle[:-1] * ret[1:]]
    assert sharpe(cheating, ppy) > 1000
    honest = sharpe(result.gross, ppy)
    hold = sharpe(ret, ppy)
    # no edge: the honest oracle overlay's Sharpe is within noise of holding (sd of an annualised
    # Sharpe estimate on n rows ~ sqrt(ppy / n) ~ 28 here)
    assert abs(honest - hold) < 3 * np.sqrt(ppy / n)
    assert honest < 0.05 * sharpe(cheating, ppy)


def test_shifting_a_signal_later_changes_nothing_before_it_can_act() -> None:
    mid, spread = random_walk(300, seed=4)
    target = np.random.default_rng(5).choice([0.0, 1.0], 300)
    shifted = np.r_[np.ones(7), target[:-7]]  # the same decisions, 7 rows late
    a = execute(mid, spread, target)
    b = execute(mid, spread, shifted)
    np.testing.assert_array_equal(b.position[8:], a.position[1:-7])


def test_zero_fee_and_fee_runs_differ_by_exactly_the_computed_cost() -> None:
    mid, spread = random_walk(2_000, seed=6)
    target = np.random.default_rng(7).choice([0.0, 0.5, 1.0], 2_000)
    costs = CostModel(fee_bps=5.0, slippage_bps=1.0, spread=True)
    free = execute(mid, spread, target, ZERO_COST)
    paid = execute(mid, spread, target, costs)
    np.testing.assert_array_equal(free.position, paid.position)
    np.testing.assert_array_equal(free.gross, paid.gross)
    assert free.cost.sum() == 0.0
    expected = np.r_[0.0, np.abs(np.diff(paid.position))] * (6e-4 + 0.5 * spread / mid)
    np.testing.assert_allclose(paid.cost, expected, rtol=1e-12, atol=0)
    assert free.net.sum() - paid.net.sum() == pytest.approx(paid.cost.sum(), rel=1e-12)
    assert paid.cost.sum() > 0


def test_cost_of_one_round_trip_by_hand() -> None:
    mid = np.array([100.0, 100.0, 100.0, 100.0])
    spread = np.array([0.02, 0.04, 0.02, 0.10])
    result = execute(mid, spread, np.array([0.0, 1.0, 1.0, 1.0]), CostModel(fee_bps=10, slippage_bps=0))
    # cut to 0 at row 1 (spread 0.04), back to 1 at row 2 (spread 0.02)
    np.testing.assert_array_equal(result.position, [1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(result.cost, [0.0, 1e-3 + 0.0002, 1e-3 + 0.0001, 0.0], rtol=1e-12)
    assert result.turnover == 2.0


def test_no_return_across_a_gap_and_each_block_starts_long() -> None:
    mid = np.array([100.0, 101.0, 102.0, 50.0, 51.0])
    starts = np.array([True, False, False, True, False])
    result = execute_blocks(mid, np.zeros(5), np.zeros(5), starts, ZERO_COST)
    np.testing.assert_array_equal(result.position, [1.0, 0.0, 0.0, 1.0, 0.0])
    assert result.gross[3] == 0.0  # the 102 -> 50 jump across the gap is never earned
    assert result.gross[1] == pytest.approx(0.01)
    assert result.turnover == 2.0


def test_bad_prices_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        execute(np.array([100.0, 0.0]), np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="same length"):
        execute(np.array([100.0, 101.0]), np.zeros(2), np.ones(3))


def test_metrics_on_a_known_series() -> None:
    net = np.array([0.1, -0.5, 0.2])
    dd = drawdown(net)
    np.testing.assert_allclose(dd, [0.0, -0.5, -0.4])
    perf = performance(net, np.zeros(3), np.zeros(3), np.ones(3), grid_s=1.0)
    assert perf["max_drawdown"] == pytest.approx(-0.5)
    assert perf["total_return"] == pytest.approx(1.1 * 0.5 * 1.2 - 1)
    assert perf["calmar"] == pytest.approx(perf["ann_return"] / 0.5)


def test_bootstrap_of_identical_series_is_zero_and_seeded() -> None:
    x = np.random.default_rng(8).normal(0, 1e-4, 3_000)
    fn = lambda a: sharpe(a, 1.0)  # noqa: E731
    same = paired_block_bootstrap(x, x, fn, n_boot=200)
    assert same["diff"] == same["low"] == same["high"] == 0.0
    y = x + np.random.default_rng(9).normal(0, 1e-4, 3_000)
    first = paired_block_bootstrap(y, x, fn, n_boot=200, seed=3)
    assert first == paired_block_bootstrap(y, x, fn, n_boot=200, seed=3)
    assert first["low"] <= first["diff"] <= first["high"]


def test_overlay_stays_cut_for_the_hold_after_the_last_alert_and_looks_only_back() -> None:
    from cryptovol.backtest.policy import Overlay

    p = np.zeros(200)
    p[[50, 80]] = 0.9
    target = Overlay(threshold=0.5, hold_rows=60).target(p)
    np.testing.assert_array_equal(np.flatnonzero(target == 0.0), np.arange(50, 140))
    for t in (10, 60, 120):
        changed = p.copy()
        changed[t] = 1.0
        other = Overlay(threshold=0.5, hold_rows=60).target(changed)
        np.testing.assert_array_equal(other[:t], target[:t])


def test_no_trade_band_trades_only_outside_it_and_stays_causal() -> None:
    mid, spread = random_walk(400, seed=10)
    # a jittery target around a slow swing: the band skips the jitter, follows the swing
    target = 0.7 + 0.2 * np.sin(np.arange(400) / 40.0) + np.random.default_rng(11).normal(0, 0.03, 400)
    banded = execute(mid, spread, target, band=0.1)
    free = execute(mid, spread, target)
    assert banded.turnover < 0.5 * free.turnover
    assert np.count_nonzero(banded.traded) < 0.1 * np.count_nonzero(free.traded)
    assert np.max(np.abs(banded.position[1:] - target[:-1])) <= 0.1 + 1e-12
    moved = np.flatnonzero(banded.traded > 0)
    assert moved.size > 0
    for k in moved:
        assert banded.position[k] == target[k - 1]
    changed = target.copy()
    changed[200] = 0.0
    other = execute(mid, spread, changed, band=0.1)
    np.testing.assert_array_equal(other.position[:201], banded.position[:201])
    assert other.position[201] == 0.0
