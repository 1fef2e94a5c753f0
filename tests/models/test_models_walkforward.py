"""Purged walk-forward folds: time order, embargo, label threshold fitted on train only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptovol.labels import LabelConfig
from cryptovol.models.walkforward import WalkForwardConfig, fold_labels, walk_forward_folds

SEC = 1_000_000_000


def _times(n=3000, seed=0):
    """1 s grid with a few long gaps, like the recordings."""
    rng = np.random.default_rng(seed)
    steps = np.where(rng.random(n) < 0.003, rng.integers(60, 5000, n), 1)
    return np.cumsum(steps).astype(np.int64) * SEC + 1_764_983_567 * SEC


@pytest.mark.parametrize("scheme", ["expanding", "rolling"])
@pytest.mark.parametrize("embargo_s", [60.0, 180.0])
def test_folds_are_time_ordered_and_purged(scheme, embargo_s):
    t = _times()
    config = WalkForwardConfig(n_folds=5, scheme=scheme, embargo_s=embargo_s)
    folds = list(walk_forward_folds(t, config, horizon_s=60))
    assert len(folds) == 5
    embargo = int(embargo_s * SEC)
    previous_test_end = None
    for fold in folds:
        assert fold.fit.size and fold.val.size and fold.test.size
        # fit < val < test, each separated by at least the embargo (>= label horizon)
        assert t[fold.fit].max() < t[fold.val].min() - embargo
        assert t[fold.val].max() < t[fold.test].min() - embargo
        # no row is in two parts
        assert not set(fold.fit) & set(fold.val) and not set(fold.train) & set(fold.test)
        # test blocks walk forward without overlap
        if previous_test_end is not None:
            assert t[fold.test].min() > previous_test_end
        previous_test_end = t[fold.test].max()
    sizes = [f.train.size for f in folds]
    if scheme == "expanding":
        assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]
    else:
        assert max(sizes) <= 2 * len(t) / 6 + 1


def test_embargo_shorter_than_horizon_is_rejected():
    with pytest.raises(ValueError, match="embargo"):
        list(walk_forward_folds(_times(), WalkForwardConfig(embargo_s=30), horizon_s=60))


def test_unsorted_rows_are_rejected():
    t = _times()[::-1].copy()
    with pytest.raises(ValueError, match="sorted"):
        list(walk_forward_folds(t, WalkForwardConfig(), horizon_s=60))


def test_label_threshold_is_fit_on_training_rows_only():
    t = _times()
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"event_time_ns": t, "vol_ratio": rng.lognormal(0, 0.3, t.size)})
    config = LabelConfig(quantile=0.9)
    for fold in walk_forward_folds(t, WalkForwardConfig(), horizon_s=60):
        labels = fold_labels(frame, fold, config)
        train_values = frame["vol_ratio"].to_numpy()[fold.train]
        assert labels.spike_threshold == pytest.approx(np.quantile(train_values, 0.9))
        # Changing the test rows (the future) does not move the threshold.
        future = frame.copy()
        future.loc[fold.test, "vol_ratio"] *= 100.0
        assert fold_labels(future, fold, config).spike_threshold == labels.spike_threshold
        # ...but changing training rows does.
        past = frame.copy()
        past.loc[fold.fit, "vol_ratio"] *= 2.0
        assert fold_labels(past, fold, config).spike_threshold != labels.spike_threshold
        test_values = frame["vol_ratio"].to_numpy()[fold.test]
        assert labels.y_test.sum() == (test_values >= labels.spike_threshold).sum()
