"""Fit one model kind on a fold's training part and calibrate/threshold it on its validation part."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cryptovol.models.baselines import EwmaScorer, HarScorer, PersistenceScorer
from cryptovol.models.calibration import choose_calibrator, choose_decision_threshold
from cryptovol.models.classifiers import (
    COMPACT_INPUTS,
    LogisticScorer,
    Scorer,
    SpikePredictor,
    XGBoostScorer,
)
from cryptovol.models.metrics import pr_auc

LEARNED_KINDS = ("logistic", "xgboost")


class SingleClassError(ValueError):
    """Training rows without both classes (a calm stretch with no spike, or only spikes)."""


BASELINE_KINDS = ("persistence", "ewma", "har")
ALL_KINDS = (*BASELINE_KINDS, *LEARNED_KINDS)

#: Small-data candidate inputs: recent volatility only (no spread / activity columns).
VOL_INPUTS = ("log_rv_30s", "log_rv_60s", "log_rv_300s", "log_ewma_vol", "rv30_over_rv300", "log_abs_ret_1s")

#: Per-fold candidates, declared before looking at any result and chosen on the first half of each
#: fold's validation rows (`_search`): regularization strength and input set for the logistic
#: model; shallower trees, larger leaves and fewer inputs for XGBoost on a few thousand rows.
LOGISTIC_GRID: tuple[dict[str, Any], ...] = tuple(
    {"C": c, "columns": cols} for cols in (COMPACT_INPUTS, VOL_INPUTS) for c in (0.01, 0.1, 1.0)
)
XGBOOST_GRID: tuple[dict[str, Any], ...] = (
    {"max_depth": 3, "min_child_weight": 20.0},
    {"max_depth": 2, "min_child_weight": 50.0},
    {"max_depth": 1, "min_child_weight": 50.0},
    {"max_depth": 2, "min_child_weight": 100.0, "inputs": VOL_INPUTS},
    {"max_depth": 1, "min_child_weight": 100.0, "inputs": VOL_INPUTS},
)

#: The one set of default hyperparameters (the CLI flags and the Dagster asset configs default to
#: these, so both paths fit the same models); `grid` = per-fold candidates chosen on validation.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logistic": {"C": 1.0, "grid": LOGISTIC_GRID},
    "xgboost": {"n_estimators": 400, "max_depth": 3, "learning_rate": 0.05, "early_stopping_rounds": 30,
                "min_child_weight": 20.0, "n_jobs": 2, "grid": XGBOOST_GRID},
}


def make_scorer(kind: str, *, horizon_s: float, params: dict[str, Any] | None = None) -> Scorer:
    params = dict(params or {})
    if kind == "logistic":
        return LogisticScorer(**params)
    if kind == "xgboost":
        return XGBoostScorer(**params)
    if kind == "persistence":
        return PersistenceScorer(**params)
    if kind == "ewma":
        return EwmaScorer(horizon_s=horizon_s, **params)
    if kind == "har":
        return HarScorer(horizon_s=horizon_s, **params)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {ALL_KINDS}")


def fit_predictor(
    kind: str,
    fit_frame: pd.DataFrame,
    y_fit: np.ndarray,
    val_frame: pd.DataFrame,
    y_val: np.ndarray,
    *,
    fwd_rv_fit: np.ndarray | None = None,
    horizon_s: float = 60.0,
    target_alert_rate: float | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[SpikePredictor, dict[str, float]]:
    """Fit the scorer on `fit_frame`, then choose calibration and the decision threshold on the
    validation rows (never on test). Returns the predictor and validation diagnostics, among them
    `selection_pr_auc`: PR-AUC on the second half of validation, which no fitting step has used
    (XGBoost early-stops on the first half), so candidates can be compared on it fairly."""
    if len(np.unique(np.asarray(y_fit, bool))) < 2:
        raise SingleClassError(f"{kind}: the fold's fit rows hold a single class; nothing to learn")
    params = dict(params or {})
    grid = params.pop("grid", None)
    search: dict[str, float] = {}
    if grid:
        params, search = _search(kind, params, grid, fit_frame, y_fit, val_frame, y_val,
                                 fwd_rv_fit=fwd_rv_fit, horizon_s=horizon_s)
    scorer = make_scorer(kind, horizon_s=horizon_s, params=params)
    scorer.fit(fit_frame, np.asarray(y_fit, bool), fwd_rv=fwd_rv_fit, val_frame=val_frame,
               y_val=np.asarray(y_val, bool))
    val_score = scorer.score(val_frame)
    calibrator, diag = choose_calibrator(val_score, y_val)
    probability = calibrator.transform(val_score)
    threshold = choose_decision_threshold(probability, y_val, target_alert_rate=target_alert_rate)
    y_val = np.asarray(y_val, bool)
    half = len(y_val) // 2
    diag = {**diag, **search, "decision_threshold": threshold,
            "selection_pr_auc": pr_auc(y_val[half:], val_score[half:])}
    return SpikePredictor(kind=kind, scorer=scorer, calibrator=calibrator,
                          decision_threshold=threshold), diag


def _search(
    kind: str, base: dict[str, Any], grid: list[dict[str, Any]], fit_frame: pd.DataFrame, y_fit: np.ndarray,
    val_frame: pd.DataFrame, y_val: np.ndarray, *, fwd_rv_fit: np.ndarray | None, horizon_s: float,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Pick hyperparameters/inputs from `grid` by PR-AUC on the FIRST half of the validation rows
    (the second half stays untouched for choosing between kinds; test folds are never seen)."""
    y_val = np.asarray(y_val, bool)
    half = len(y_val) // 2
    first, y_first = val_frame.iloc[:half], y_val[:half]
    best, best_score, best_i = base, -np.inf, -1
    for i, candidate in enumerate(grid):
        params = {**base, **candidate}
        scorer = make_scorer(kind, horizon_s=horizon_s, params=params)
        scorer.fit(fit_frame, np.asarray(y_fit, bool), fwd_rv=fwd_rv_fit, val_frame=val_frame, y_val=y_val)
        score = pr_auc(y_first, scorer.score(first)) if len(np.unique(y_first)) == 2 else float("nan")
        if score == score and score > best_score + 1e-12:
            best, best_score, best_i = params, score, i
    return best, {"search_choice": float(best_i), "search_pr_auc": float(best_score)}
