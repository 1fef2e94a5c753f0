"""Exposure rules driven by a signal, and their parameters chosen on validation rows only.

- `overlay` (binary): hold the base long (1.0); cut to `cut_to` when the spike probability reaches
  the threshold, for the label horizon after the last alert (`hold_rows`). Candidate
  thresholds: the model's own decision threshold (best F1 on
  validation) and the validation-probability quantiles for alert rates 5-30%; the candidate with
  the best net Sharpe on the validation rows wins (costs included), so a signal that does not pay
  on validation ends up cutting rarely, never because the test rows said so.
- `voltarget` (continuous): exposure = min(1, target_vol / predicted_vol). Predicted forward vol
  of a row = its trailing reference vol (the label's `rv_300s` scaled to the horizon) x
  E[forward/trailing vol ratio | the driver's probability], an isotonic map fitted on the
  validation rows; the target is the median predicted vol on validation; the position is rebalanced
  only when it is more than `band` (0.1) away from the target. Every driver (baseline
  or learned) goes through the same map, so they differ only in what their probability knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.backtest.engine import CostModel, block_starts, execute_blocks
from cryptovol.backtest.metrics import periods_per_year, sharpe

ALERT_RATES = (0.05, 0.10, 0.20, 0.30)


@dataclass
class Overlay:
    """Cut to `cut_to` from an alert row until `hold_rows` rows have passed without a new alert:
    the signal predicts the next label horizon (60 s), so the cut lasts that long instead of
    flickering with every tick of the probability (which would pay the spread each time)."""

    threshold: float
    cut_to: float = 0.0
    hold_rows: int = 60

    def target(self, probability: np.ndarray, frame: pd.DataFrame | None = None) -> np.ndarray:
        alert = (np.asarray(probability, float) >= self.threshold).astype(float)
        if self.hold_rows > 1 and alert.size:
            # any alert in the last `hold_rows` rows (this one included): past rows only
            alert = pd.Series(alert).rolling(self.hold_rows, min_periods=1).max().to_numpy()
        return np.where(alert > 0, self.cut_to, 1.0)

    def describe(self) -> dict[str, Any]:
        return {"rule": "overlay", "threshold": self.threshold, "cut_to": self.cut_to,
                "hold_rows": self.hold_rows}


@dataclass
class VolTarget:
    """min(1, target_vol / predicted_vol), predicted vol from an isotonic ratio map."""

    horizon_s: float = 60.0
    #: Rebalance only when the target moved more than this from the position.
    band: float = 0.1
    trailing_column: str = "rv_300s"
    trailing_s: float = 300.0
    target_vol: float = float("nan")
    iso: Any = field(default=None, repr=False)

    def predicted_vol(self, probability: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
        reference = frame[self.trailing_column].to_numpy(float) * np.sqrt(self.horizon_s / self.trailing_s)
        ratio = self.iso.predict(np.nan_to_num(np.asarray(probability, float), nan=0.0))
        return reference * ratio

    def fit(self, probability: np.ndarray, frame: pd.DataFrame, vol_ratio: np.ndarray) -> VolTarget:
        from sklearn.isotonic import IsotonicRegression

        p = np.nan_to_num(np.asarray(probability, float), nan=0.0)
        ok = np.isfinite(vol_ratio)
        self.iso = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(p[ok], vol_ratio[ok])
        predicted = self.predicted_vol(p, frame)
        self.target_vol = float(np.nanmedian(predicted))
        return self

    def target(self, probability: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
        predicted = self.predicted_vol(probability, frame)
        with np.errstate(divide="ignore", invalid="ignore"):
            exposure = np.minimum(1.0, self.target_vol / predicted)
        return np.where(np.isfinite(exposure), exposure, 1.0)

    def describe(self) -> dict[str, Any]:
        return {"rule": "voltarget", "target_vol": self.target_vol, "band": self.band}


def run_rule(rule: Overlay | VolTarget, probability: np.ndarray, frame: pd.DataFrame,
             costs: CostModel) -> Any:
    """Execute a rule on rows sorted by product, segment, time (blocks split at gaps)."""
    starts = block_starts(frame["product_id"].to_numpy(), frame["segment"].to_numpy())
    return execute_blocks(frame["mid"].to_numpy(float), frame["spread"].to_numpy(float),
                          rule.target(probability, frame), starts, costs, band=getattr(rule, "band", 0.0))


def choose_overlay(probability: np.ndarray, frame: pd.DataFrame, costs: CostModel, *,
                   decision_threshold: float | None = None, cut_to: float = 0.0,
                   grid_s: float = 1.0, hold_rows: int = 60) -> tuple[Overlay, dict[str, float]]:
    """The overlay threshold with the best net Sharpe on these (validation) rows."""
    p = np.asarray(probability, float)
    candidates = sorted({float(np.quantile(p, 1.0 - r)) for r in ALERT_RATES}
                        | ({float(decision_threshold)} if decision_threshold is not None else set()))
    ppy = periods_per_year(grid_s)
    scores = {}
    for threshold in candidates:
        result = run_rule(Overlay(threshold, cut_to, hold_rows), p, frame, costs)
        s = sharpe(result.net, ppy)
        scores[threshold] = s if np.isfinite(s) else -np.inf
    best = max(candidates, key=lambda t: scores[t])  # ties: the lowest threshold listed first
    return Overlay(best, cut_to, hold_rows), {f"val_sharpe@{t:.4g}": v for t, v in scores.items()}


def sort_rows(frame: pd.DataFrame) -> np.ndarray:
    """Row order the engine needs: product, segment, event time (positions into `frame`)."""
    return np.lexsort((frame["event_time_ns"].to_numpy(np.int64), frame["segment"].to_numpy(),
                       frame["product_id"].astype(str).to_numpy()))
