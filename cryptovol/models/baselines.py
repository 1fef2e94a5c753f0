"""Baselines a learned model must beat before it is promoted.

- persistence: current realized volatility (rv_60s, log) z-scored against the training window.
- EWMA: RiskMetrics-style `ewma_vol` scaled to the horizon, relative to the label's reference vol.
- HAR-style: linear regression of log forward realized vol on log realized vol at 1 s (|ret_1s|),
  30 s and 300 s (Corsi's heterogeneous autoregression, on our horizons).

Each is a `Scorer` (so it is calibrated and thresholded exactly like the learned models) and EWMA
and HAR also forecast forward realized volatility for the regression view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.models.classifiers import Scorer, select_features

_EPS = 1e-10
#: Forward vol below this (a window with no price change) is floored before taking logs.
FWD_RV_FLOOR = 1e-6


def _log(x: np.ndarray | pd.Series) -> np.ndarray:
    return np.log(np.asarray(x, float) + _EPS)


@dataclass
class PersistenceScorer(Scorer):
    kind: str = "persistence"
    column: str = "rv_60s"
    mean: float = 0.0
    std: float = 1.0

    def fit(self, frame: pd.DataFrame, y: np.ndarray | None = None, **_: Any) -> PersistenceScorer:
        values = _log(select_features(frame)[self.column])
        values = values[np.isfinite(values)]
        if values.size:
            self.mean, self.std = float(values.mean()), float(values.std()) or 1.0
        return self

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        z = (_log(select_features(frame)[self.column]) - self.mean) / self.std
        return np.nan_to_num(z, nan=0.0)

    def params(self) -> dict[str, Any]:
        return {"column": self.column, "transform": "log, z-score on train"}


@dataclass
class EwmaScorer(Scorer):
    """Forecast: sigma_H = ewma_vol * sqrt(H); score = log(sigma_H / label reference vol)."""

    horizon_s: float = 60.0
    kind: str = "ewma"

    def fit(self, frame: pd.DataFrame, y: np.ndarray | None = None, **_: Any) -> EwmaScorer:
        return self

    def forecast_vol(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(select_features(frame)["ewma_vol"], float) * np.sqrt(self.horizon_s)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        f = select_features(frame)
        reference = np.asarray(f["rv_300s"], float) * np.sqrt(self.horizon_s / 300.0)
        return np.nan_to_num(_log(self.forecast_vol(frame)) - _log(reference), nan=0.0)

    def params(self) -> dict[str, Any]:
        return {"horizon_s": self.horizon_s, "half_life_s": 30}


@dataclass
class HarScorer(Scorer):
    """HAR-RV: log fwd_rv = b0 + b1 log|r_1s| + b2 log rv_30s + b3 log rv_300s (OLS on train)."""

    horizon_s: float = 60.0
    kind: str = "har"
    coef: np.ndarray | None = None
    medians: np.ndarray | None = None
    #: Log-OLS forecasts the geometric mean; this variance scale (fitted on train) makes
    #: mean(realized / forecast variance) = 1, as QLIKE and MSE expect.
    variance_scale: float = 1.0

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        f = select_features(frame)
        X = np.column_stack([_log(f["ret_1s"].abs()), _log(f["rv_30s"]), _log(f["rv_300s"])])
        if self.medians is not None:
            X = np.where(np.isfinite(X), X, self.medians)
        return np.column_stack([np.ones(len(X)), X])

    def fit(
        self, frame: pd.DataFrame, y: np.ndarray | None = None, *, fwd_rv: np.ndarray, **_: Any
    ) -> HarScorer:
        self.medians = None
        X = self._design(frame)
        target = np.log(np.maximum(np.asarray(fwd_rv, float), FWD_RV_FLOOR))
        ok = np.isfinite(X).all(axis=1) & np.isfinite(target)
        self.medians = np.nanmedian(X[ok, 1:], axis=0) if ok.any() else np.zeros(3)
        self.coef, *_ = np.linalg.lstsq(X[ok], target[ok], rcond=None)
        fitted = X[ok] @ self.coef
        self.variance_scale = float(np.mean(np.exp(2 * (target[ok] - fitted)))) if ok.any() else 1.0
        return self

    def forecast_vol(self, frame: pd.DataFrame) -> np.ndarray:
        return np.exp(self._design(frame) @ self.coef) * np.sqrt(self.variance_scale)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        f = select_features(frame)
        reference = np.asarray(f["rv_300s"], float) * np.sqrt(self.horizon_s / 300.0)
        return np.nan_to_num(np.log(self.forecast_vol(frame)) - _log(reference), nan=0.0)

    def params(self) -> dict[str, Any]:
        names = ["intercept", "log_abs_ret_1s", "log_rv_30s", "log_rv_300s"]
        return {f"coef_{n}": float(c) for n, c in zip(names, self.coef, strict=True)}


BASELINES = {"persistence": PersistenceScorer, "ewma": EwmaScorer, "har": HarScorer}
