"""Metrics, calibration and the decision threshold behave as the report and the gate assume."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from cryptovol.models import metrics as M
from cryptovol.models.calibration import Calibrator, choose_calibrator, choose_decision_threshold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pr_auc_matches_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(800) < 0.15
    score = np.round(rng.random(800) + 0.4 * y, 1)  # heavy ties
    assert M.pr_auc(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)
    assert np.isnan(M.pr_auc(np.zeros(5, bool), np.arange(5.0)))


def test_best_f1_threshold_maximises_f1():
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.2
    score = rng.random(500) + 0.5 * y
    t = M.best_f1_threshold(y, score)
    best = f1_score(y, score >= t)
    for other in np.quantile(score, np.linspace(0.05, 0.95, 19)):
        assert f1_score(y, score >= other) <= best + 1e-12


def test_precision_at_alert_rate_and_threshold_for_rate():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1], bool)
    score = np.arange(10.0)[::-1]  # rows 0 and 1 score highest
    assert M.precision_at_alert_rate(y, score, rate=0.2) == 1.0
    assert M.precision_at_alert_rate(y, score, rate=0.3) == pytest.approx(2 / 3)
    t = M.threshold_for_alert_rate(np.linspace(0, 1, 1001), 0.1)
    assert t == pytest.approx(0.9)


def test_qlike_is_zero_for_a_perfect_forecast_and_penalises_under_forecasts_more():
    realized = np.array([1e-4, 2e-4, 5e-4])
    assert M.qlike(realized, realized) == pytest.approx(0.0)
    assert M.qlike(realized, realized * 0.5) > M.qlike(realized, realized * 2.0)
    assert M.mse_vol(realized, realized) == 0.0


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.15
    good = rng.random(3000) + 0.8 * y
    noise = rng.random(3000)
    ci = M.paired_block_bootstrap(y, good, noise, n_boot=200, seed=1)
    assert ci["low"] > 0
    null = M.paired_block_bootstrap(y, noise, rng.random(3000), n_boot=200, seed=1)
    assert null["low"] < 0 < null["high"]


def test_calibration_is_monotone_bounded_and_chosen_by_heldout_brier():
    rng = np.random.default_rng(5)
    score = rng.normal(0, 1, 4000)
    y = rng.random(4000) < 1 / (1 + np.exp(-(2 * score - 2)))  # a logistic truth: Platt fits it
    calibrator, diag = choose_calibrator(score, y)
    assert set(diag) == {"val_brier_platt", "val_brier_isotonic"}
    assert calibrator.method == min(("platt", "isotonic"), key=lambda m: diag[f"val_brier_{m}"])
    grid = np.linspace(-4, 4, 50)
    for method in ("platt", "isotonic"):
        p = Calibrator(method).fit(score, y).transform(grid)
        assert ((p >= 0) & (p <= 1)).all() and (np.diff(p) >= -1e-12).all()
    p = calibrator.transform(score)
    assert M.brier(y, p) < M.brier(y, np.full_like(p, y.mean()))
    # the alert-rate rule flags that share of validation rows
    t = choose_decision_threshold(p, y, target_alert_rate=0.1)
    assert np.mean(p >= t) == pytest.approx(0.1, abs=0.02)
