"""Probability calibration and the decision threshold, both chosen on the validation fold.

Raw scores (a logistic margin, XGBoost's probability under class weighting, a baseline's z-score)
are not probabilities a desk can act on. Isotonic regression is flexible but overfits small
validation sets; Platt scaling is rigid but stable. We let held-out Brier decide: each method is
fitted on one chronological half of validation and scored on the other (both ways), and the winner
is refitted on the whole validation fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from cryptovol.models.metrics import best_f1_threshold, brier, threshold_for_alert_rate

METHODS = ("platt", "isotonic")


@dataclass
class Calibrator:
    """Maps raw scores to calibrated spike probabilities (monotone, so rankings are unchanged)."""

    method: str
    _model: object | None = field(default=None, repr=False)

    def fit(self, score: np.ndarray, y: np.ndarray) -> Calibrator:
        score = _finite(score)
        y = np.asarray(y, dtype=int)
        if self.method == "platt":
            if len(np.unique(y)) < 2:
                self._model = ("constant", float(y.mean()) if y.size else 0.0)
            else:
                model = LogisticRegression(C=1e6, max_iter=1000)
                model.fit(score.reshape(-1, 1), y)
                self._model = model
        elif self.method == "isotonic":
            model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            model.fit(score, y)
            self._model = model
        else:
            raise ValueError(f"unknown calibration method {self.method!r}; expected one of {METHODS}")
        return self

    def transform(self, score: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("calibrator used before fit()")
        score = _finite(score)
        if isinstance(self._model, tuple):
            return np.full(score.shape, self._model[1])
        if isinstance(self._model, LogisticRegression):
            return self._model.predict_proba(score.reshape(-1, 1))[:, 1]
        return np.clip(self._model.predict(score), 0.0, 1.0)


def _finite(score: np.ndarray) -> np.ndarray:
    score = np.asarray(score, dtype=float)
    return np.nan_to_num(score, nan=0.0, posinf=1e6, neginf=-1e6)


def choose_calibrator(score: np.ndarray, y: np.ndarray) -> tuple[Calibrator, dict[str, float]]:
    """Pick Platt or isotonic by cross-fitted Brier on the (time-ordered) validation rows."""
    score = np.asarray(score, float)
    y = np.asarray(y, dtype=bool)
    half = score.size // 2
    halves = [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    results: dict[str, float] = {}
    for method in METHODS:
        losses = []
        for fit_part, eval_part in halves:
            if score[fit_part].size == 0 or score[eval_part].size == 0:
                continue
            cal = Calibrator(method).fit(score[fit_part], y[fit_part])
            losses.append(brier(y[eval_part], cal.transform(score[eval_part])))
        results[method] = float(np.mean(losses)) if losses else float("inf")
    method = min(METHODS, key=lambda m: results[m])
    return Calibrator(method).fit(score, y), {f"val_brier_{m}": v for m, v in results.items()}


def choose_decision_threshold(
    probability: np.ndarray, y: np.ndarray, *, target_alert_rate: float | None = None
) -> float:
    """The probability at which to alert: best F1 on validation, or a target alert rate."""
    if target_alert_rate is not None:
        return threshold_for_alert_rate(probability, target_alert_rate)
    return best_f1_threshold(y, probability)
