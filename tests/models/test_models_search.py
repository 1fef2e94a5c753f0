"""Per-fold hyperparameter/input search: chosen on the first half of the validation rows only, so the
second half (which chooses between kinds) and the test block never influence it."""

from __future__ import annotations

import numpy as np
from models_synth import activity_matrix, spike_labels

from cryptovol.models.fitting import LOGISTIC_GRID, VOL_INPUTS, fit_predictor


def _fit(frame, y, fit, val):
    return fit_predictor("logistic", frame.iloc[fit], y[fit], frame.iloc[val], y[val],
                         params={"grid": LOGISTIC_GRID})


def test_the_search_uses_only_the_first_half_of_validation():
    frame = activity_matrix(2400, seed=4)
    y = spike_labels(frame)
    fit, val = np.arange(0, 1400), np.arange(1460, 1900)
    predictor, diag = _fit(frame, y, fit, val)
    assert 0 <= diag["search_choice"] < len(LOGISTIC_GRID)
    chosen = LOGISTIC_GRID[int(diag["search_choice"])]
    assert chosen["C"] == predictor.scorer.C and tuple(predictor.scorer.columns) == tuple(chosen["columns"])
    # scramble the labels of the second half of validation: the choice stays
    scrambled = y.copy()
    second = val[len(val) // 2:]
    scrambled[second] = np.random.default_rng(0).permutation(scrambled[second])
    _, again = _fit(frame, scrambled, fit, val)
    assert again["search_choice"] == diag["search_choice"]
    assert again["search_pr_auc"] == diag["search_pr_auc"]


def test_activity_driven_spikes_pick_inputs_that_see_activity():
    """The compact inputs include tick rate and spread; the volatility-only set cannot see the
    signal of `activity_matrix`, so the search must not pick it."""
    frame = activity_matrix(3000, seed=7)
    y = spike_labels(frame)
    _, diag = _fit(frame, y, np.arange(0, 1800), np.arange(1860, 2500))
    assert tuple(LOGISTIC_GRID[int(diag["search_choice"])]["columns"]) != VOL_INPUTS
