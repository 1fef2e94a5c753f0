"""The comparison end to end on a synthetic training set: reproducible, choices on validation only."""

from __future__ import annotations

import numpy as np
import pytest
from backtest_synth import synthetic_training_set

from cryptovol.backtest.engine import CostModel
from cryptovol.backtest.run import BUY_AND_HOLD, TEST_FOLDS, BacktestConfig, run_backtest
from cryptovol.models.training import TrainConfig
from cryptovol.models.walkforward import WalkForwardConfig

FAST = TrainConfig(walk_forward=WalkForwardConfig(n_folds=3), learned_kinds=("logistic",),
                   regression_view=False, latency_repeats=1)
CONFIG = BacktestConfig(n_boot=100)


@pytest.fixture(scope="module")
def training_set():
    return synthetic_training_set(seconds=3600, seed=5)


def test_same_data_and_seed_give_identical_numbers(training_set) -> None:
    first = run_backtest(training_set, train_config=FAST, config=CONFIG)
    second = run_backtest(training_set, train_config=FAST, config=CONFIG)
    assert first.metrics_flat() == second.metrics_flat()
    for name, run in first.sections[0].strategies.items():
        np.testing.assert_array_equal(run.net, second.sections[0].strategies[name].net)
    other_seed = run_backtest(training_set, train_config=FAST, config=BacktestConfig(n_boot=100, seed=1))
    ci = first.sections[0].comparison["overlay"]["sharpe"]
    ci_other = other_seed.sections[0].comparison["overlay"]["sharpe"]
    assert ci["diff"] == ci_other["diff"] and (ci["low"], ci["high"]) != (ci_other["low"], ci_other["high"])


def test_every_strategy_is_reported_on_the_same_out_of_sample_rows(training_set) -> None:
    result = run_backtest(training_set, train_config=FAST, config=CONFIG)
    section = result.section(TEST_FOLDS)
    assert set(section.strategies) == {BUY_AND_HOLD} | {f"{rule}:{d}" for rule in ("overlay", "voltarget")
                                                         for d in ("persistence", "ewma", "har", "champion")}
    rows = {run.net.size for run in section.strategies.values()}
    assert len(rows) == 1 and rows.pop() > 1000
    bh = section.strategies[BUY_AND_HOLD]
    assert bh.metrics["turnover"] == 0 and bh.metrics["cost_paid"] == 0
    assert np.all(bh.position == 1.0)
    for name, run in section.strategies.items():
        np.testing.assert_array_equal(run.event_time_ns, bh.event_time_ns)
        for key in ("sharpe", "sortino", "realized_vol", "max_drawdown", "turnover", "cost_paid"):
            assert key in run.metrics, (name, key)
    for rule, stats in section.comparison.items():
        assert section.best_baseline[rule].startswith(rule + ":")
        assert stats["sharpe"]["low"] <= stats["sharpe"]["diff"] <= stats["sharpe"]["high"]
        assert section.verdict[rule]


def test_costs_only_lower_the_net_result(training_set) -> None:
    free = run_backtest(training_set, train_config=FAST,
                        config=BacktestConfig(costs=CostModel(0.0, 0.0, spread=False), n_boot=50))
    paid = run_backtest(training_set, train_config=FAST, config=BacktestConfig(n_boot=50))
    run_free = free.sections[0].strategies["voltarget:har"]
    run_paid = paid.sections[0].strategies["voltarget:har"]
    # the vol-target rule does not depend on costs, so positions match and only costs differ
    np.testing.assert_array_equal(run_free.position, run_paid.position)
    assert run_free.net.sum() - run_paid.net.sum() == pytest.approx(run_paid.cost.sum(), rel=1e-9)
    assert run_paid.metrics["cost_paid"] > 0 == run_free.metrics["cost_paid"]


def test_rules_are_chosen_without_the_test_rows(training_set) -> None:
    """Scrambling the prices of the last test block changes its results, never the rules the
    backtest applies there (chosen on that fold's validation rows)."""
    base = run_backtest(training_set, train_config=FAST, config=CONFIG)
    frame = training_set.frame.copy()
    t_last = base.sections[0].strategies[BUY_AND_HOLD].event_time_ns
    last_block = frame["event_time_ns"] >= np.sort(t_last)[-300]
    frame.loc[last_block, "mid"] = frame.loc[last_block, "mid"].to_numpy()[::-1]
    changed_set = type(training_set)(frame=frame, label_config=training_set.label_config,
                                     info=dict(training_set.info))
    changed = run_backtest(changed_set, train_config=FAST, config=CONFIG)
    for name, run in base.sections[0].strategies.items():
        assert run.params == changed.sections[0].strategies[name].params, name
    assert not np.array_equal(base.sections[0].strategies[BUY_AND_HOLD].net,
                              changed.sections[0].strategies[BUY_AND_HOLD].net)


def test_later_regime_section_uses_the_given_champion_and_last_fold_rules(training_set) -> None:
    from datetime import UTC, datetime

    later = synthetic_training_set(seconds=1200, seed=17, start=datetime(2026, 4, 1, 12, tzinfo=UTC))
    base = run_backtest(training_set, train_config=FAST, config=CONFIG)
    # a real fitted predictor stands in for the registry model (same `.predict` contract)
    from cryptovol.models.training import evaluate_walk_forward

    champion = evaluate_walk_forward(training_set, FAST).last_fold.predictors["har"]
    result = run_backtest(training_set, train_config=FAST, config=CONFIG, out_of_period={"april": later},
                          registered_champion=champion)
    assert [s.name for s in result.sections] == [TEST_FOLDS, "out_of_period"]
    oop = result.section("out_of_period")
    assert oop.strategies[BUY_AND_HOLD].net.size == len(later.frame)
    # the baselines keep the rules of the last fold's validation; the champion's are refitted on it
    for rule in ("overlay", "voltarget"):
        assert oop.strategies[f"{rule}:ewma"].params[0]["rule"] == rule
    last_fold_thresholds = base.sections[0].strategies["overlay:ewma"].params[-1]["threshold"]
    assert oop.strategies["overlay:ewma"].params[0]["threshold"] == last_fold_thresholds
    # the "champion" here is the har predictor, so its overlay trades exactly like har's
    np.testing.assert_array_equal(oop.strategies["overlay:champion"].position,
                                  oop.strategies["overlay:har"].position)
    # the test-fold section does not depend on later data
    assert result.sections[0].strategies["overlay:champion"].metrics == \
        base.sections[0].strategies["overlay:champion"].metrics
