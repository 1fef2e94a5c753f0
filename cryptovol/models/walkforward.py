"""Purged walk-forward validation: time-ordered folds with an embargo of at least the label horizon.

Rows are sorted by event time and cut into `n_folds + 1` blocks of equal row count (equal rows,
not equal wall time: the recordings have long gaps). Fold k tests on block k+1 and trains on
everything before it (`expanding`) or on the last `rolling_blocks` blocks before it (`rolling`).

Purge/embargo: a training row at time t carries a label computed from (t, t + H]. Any training row
with t >= test_start - embargo is dropped, and embargo >= H, so no training label window overlaps
the test block. The same rule separates the fit part from the validation part inside the training
window (validation = the last `val_fraction` of training rows: early stopping, calibration and the
decision threshold are chosen there, never on test).

Labels: the spike threshold (a quantile of `vol_ratio`) is fitted on each fold's training rows
only (fit + validation) and applied to that fold's fit, validation and test rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from cryptovol.labels import LabelConfig, fit_spike_threshold

SEC = 1_000_000_000


@dataclass(frozen=True)
class WalkForwardConfig:
    n_folds: int = 5
    scheme: Literal["expanding", "rolling"] = "expanding"
    rolling_blocks: int = 2
    embargo_s: float = 60.0
    val_fraction: float = 0.25

    def check(self, horizon_s: float) -> None:
        if self.embargo_s < horizon_s:
            raise ValueError(f"embargo_s={self.embargo_s} must be >= the label horizon {horizon_s} s")
        if self.n_folds < 1:
            raise ValueError("n_folds must be >= 1")
        if self.scheme not in ("expanding", "rolling"):
            raise ValueError(f"scheme must be 'expanding' or 'rolling', not {self.scheme!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be in (0, 1)")


@dataclass(frozen=True)
class Fold:
    """Positional row indices (into the time-sorted frame) of one walk-forward fold."""

    index: int
    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def train(self) -> np.ndarray:
        return np.concatenate([self.fit, self.val])


def walk_forward_folds(
    event_time_ns: np.ndarray, config: WalkForwardConfig, *, horizon_s: float = 60.0
) -> Iterator[Fold]:
    """Yield purged folds over rows already sorted by event time."""
    config.check(horizon_s)
    t = np.asarray(event_time_ns, dtype=np.int64)
    if np.any(np.diff(t) < 0):
        raise ValueError("rows must be sorted by event time")
    n = t.size
    blocks = np.array_split(np.arange(n), config.n_folds + 1)
    embargo = int(config.embargo_s * SEC)
    for k in range(config.n_folds):
        test = blocks[k + 1]
        if test.size == 0:
            continue
        first_block = 0 if config.scheme == "expanding" else max(0, k + 1 - config.rolling_blocks)
        train_all = np.concatenate(blocks[first_block : k + 1])
        train_all = train_all[t[train_all] < t[test[0]] - embargo]
        if train_all.size < 10:
            continue
        n_val = max(1, int(round(config.val_fraction * train_all.size)))
        val = train_all[-n_val:]
        fit = train_all[:-n_val]
        fit = fit[t[fit] < t[val[0]] - embargo]
        yield Fold(index=k, fit=fit, val=val, test=test)


@dataclass(frozen=True)
class FoldLabels:
    spike_threshold: float
    y_fit: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray


def fold_labels(frame: pd.DataFrame, fold: Fold, config: LabelConfig) -> FoldLabels:
    """Fit the spike threshold on the fold's training rows only; label fit/val/test with it."""
    values = frame[config.value_column].to_numpy(np.float64)
    threshold = fit_spike_threshold(values[fold.train], config.quantile)
    return FoldLabels(
        spike_threshold=threshold,
        y_fit=values[fold.fit] >= threshold,
        y_val=values[fold.val] >= threshold,
        y_test=values[fold.test] >= threshold,
    )
