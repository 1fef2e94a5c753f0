"""Leakage guards: labels must carry the signal (shuffling them kills it), features must not look
ahead (recomputing on data truncated at T gives the same rows up to T), model transforms are per row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from models_synth import synthetic_matrix

from cryptovol.features import compute_features
from cryptovol.featureset import FEATURE_NAMES
from cryptovol.labels import LabelConfig
from cryptovol.models.classifiers import model_inputs
from cryptovol.models.dataset import TrainingSet, build_training_set
from cryptovol.models.training import TrainConfig, evaluate_walk_forward
from cryptovol.models.walkforward import WalkForwardConfig
from cryptovol.simulator.synthetic import generate_ticks_frame

SEC = 1_000_000_000
FAST = TrainConfig(learned_kinds=("logistic", "xgboost"), baseline_kinds=("har",), regression_view=False,
                   latency_repeats=3,
                   walk_forward=WalkForwardConfig(n_folds=3),
                   model_params={"xgboost": {"n_estimators": 60, "n_jobs": 1}})


def test_shuffled_future_labels_destroy_performance():
    frame = synthetic_matrix(2000, seed=5)
    real = evaluate_walk_forward(TrainingSet(frame, LabelConfig()), FAST).summary
    shuffled_frame = frame.copy()
    rng = np.random.default_rng(0)
    shuffled_frame["vol_ratio"] = rng.permutation(frame["vol_ratio"].to_numpy())
    shuffled = evaluate_walk_forward(TrainingSet(shuffled_frame, LabelConfig()), FAST).summary
    for kind in ("logistic", "xgboost"):
        assert real.loc[kind, "pr_auc_mean"] > real.loc[kind, "base_rate_mean"] + 0.15
        assert real.loc[kind, "pr_auc_mean"] < 0.95  # near-perfect would itself be a leakage smell
        assert shuffled.loc[kind, "pr_auc_mean"] < shuffled.loc[kind, "base_rate_mean"] + 0.06
        assert shuffled.loc[kind, "roc_auc_mean"] == pytest.approx(0.5, abs=0.08)


def lookahead_mismatches(compute, ticks: pd.DataFrame, cuts_ns: list[int]) -> int:
    """Rows at or before each cut whose features differ between full and truncated input."""
    full = compute(ticks).set_index(["event_time_ns", "sequence"])
    bad = 0
    for cut in cuts_ns:
        part = compute(ticks[ticks["event_time_ns"] <= cut]).set_index(["event_time_ns", "sequence"])
        common = full.loc[part.index, FEATURE_NAMES]
        same = np.isclose(common.to_numpy(), part[FEATURE_NAMES].to_numpy(), rtol=1e-9, atol=0,
                          equal_nan=True)
        bad += int((~same.all(axis=1)).sum())
    return bad


@pytest.fixture(scope="module")
def ticks():
    return generate_ticks_frame(("BTC-USD",), duration_s=1200, seed=11, rate_hz=3)


def test_features_do_not_peek_at_the_future(ticks):
    t = ticks["event_time_ns"].to_numpy()
    cuts = [int(np.quantile(t, q)) for q in (0.35, 0.6, 0.85)]
    assert lookahead_mismatches(compute_features, ticks, cuts) == 0


def test_the_lookahead_check_catches_a_peeking_feature(ticks):
    def peeking(frame: pd.DataFrame) -> pd.DataFrame:
        out = compute_features(frame)
        out["ret_1s"] = np.log(out["mid"].shift(-5) / out["mid"])  # 5 ticks into the future
        return out

    t = ticks["event_time_ns"].to_numpy()
    assert lookahead_mismatches(peeking, ticks, [int(np.quantile(t, 0.5))]) > 0


def test_training_rows_are_unchanged_by_later_data(ticks):
    """The whole matrix builder (segments, grid sampling, labels) is causal in its features and
    only drops (never alters) labels whose horizon the truncated data cannot cover."""
    full = build_training_set(ticks, min_segment_s=0).frame.set_index(["event_time_ns", "sequence"])
    cut = int(ticks["event_time_ns"].quantile(0.7))
    part = build_training_set(ticks[ticks["event_time_ns"] <= cut], min_segment_s=0).frame
    part = part.set_index(["event_time_ns", "sequence"])
    # grid rows are the last tick of each second, so the second containing the cut may differ
    part = part[part.index.get_level_values(0) < (cut // SEC) * SEC]
    assert len(part) > 100
    common = full.loc[part.index]
    cols = [*FEATURE_NAMES, "fwd_rv", "vol_ratio"]
    np.testing.assert_allclose(common[cols].to_numpy(), part[cols].to_numpy(), rtol=1e-9)
    assert (part.index.get_level_values(0) + 60 * SEC <= cut).all()


def test_model_inputs_are_computed_row_by_row():
    frame = synthetic_matrix(50, seed=2)
    batch = model_inputs(frame)
    for i in (0, 17, 49):
        one = model_inputs(frame.iloc[[i]])
        pd.testing.assert_frame_equal(one, batch.iloc[[i]])
