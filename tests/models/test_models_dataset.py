"""The training matrix: segments at gaps, one row per second, labels never across a gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptovol.features import compute_features_multi
from cryptovol.featureset import FEATURE_NAMES
from cryptovol.labels import LabelConfig
from cryptovol.models.dataset import build_training_set, split_segments, training_set_from_features
from cryptovol.simulator.synthetic import generate_ticks_frame

SEC = 1_000_000_000


@pytest.fixture(scope="module")
def gapped_ticks() -> pd.DataFrame:
    """BTC ticks: 16 min, a 2 min hole, 8 min, a 40 s hole, 20 min. ETH alongside for 16 min."""
    ticks = generate_ticks_frame(("BTC-USD", "ETH-USD"), duration_s=46 * 60, seed=4, rate_hz=2)
    t0 = int(ticks["event_time_ns"].min())
    rel = (ticks["event_time_ns"] - t0) / SEC
    btc = ticks["product_id"] == "BTC-USD"
    holes = ((rel > 16 * 60) & (rel < 18 * 60)) | ((rel > 26 * 60) & (rel < 26 * 60 + 40))
    keep = (btc & ~holes) | (~btc & (rel < 16 * 60))
    return ticks[keep].reset_index(drop=True)


def test_segments_rows_per_second_and_no_label_across_a_gap(gapped_ticks):
    ts = build_training_set(gapped_ticks, LabelConfig(), min_segment_s=600)
    frame = ts.frame
    assert ts.info["segments_total"] == 4  # BTC 3 + ETH 1
    assert ts.info["segments_dropped_short"] == 1  # the 8-minute BTC piece
    assert set(frame["product_id"]) == {"BTC-USD", "ETH-USD"}
    # one row per product per whole second, time-sorted
    second = frame["event_time_ns"] // SEC
    assert not pd.DataFrame({"p": frame["product_id"], "s": second}).duplicated().any()
    assert frame["event_time_ns"].is_monotonic_increasing
    # no warm-up rows: every row has the label's reference vol and finite labels
    assert frame["rv_300s"].notna().all() and np.isfinite(frame["vol_ratio"]).all()
    # each row's label horizon ends inside its own segment
    for _, rows in frame.groupby(["product_id", "segment"]):
        product = rows["product_id"].iloc[0]
        t = gapped_ticks.loc[gapped_ticks["product_id"] == product, "event_time_ns"].to_numpy()
        seg_ids = split_segments(t)
        seg_ticks = t[seg_ids == seg_ids[np.searchsorted(t, rows["event_time_ns"].iloc[0])]]
        assert (rows["event_time_ns"] + 60 * SEC <= seg_ticks.max()).all()
        assert (rows["event_time_ns"] - 300 * SEC >= seg_ticks.min() - SEC).all()
    assert set(FEATURE_NAMES) <= set(frame.columns)


def test_feature_rows_give_the_same_matrix_as_ticks(gapped_ticks):
    """The asset's path (feature lake -> rows) and the CLI's (ticks -> rows) are one path: features
    warm up again after every gap, so computing them over whole days changes nothing."""
    from_ticks = build_training_set(gapped_ticks, LabelConfig(), min_segment_s=600)
    features = compute_features_multi(gapped_ticks).assign(feature_set_version="v-test")
    from_features = training_set_from_features(features, LabelConfig(), min_segment_s=600)
    assert len(from_features.frame) > 1000
    pd.testing.assert_frame_equal(
        from_ticks.frame, from_features.frame.drop(columns="feature_set_version"), check_dtype=False
    )
    assert (from_features.frame["feature_set_version"] == "v-test").all()  # extra columns are kept
    for key in ("segments_total", "segments_kept", "segments_dropped_short", "rows"):
        assert from_ticks.info[key] == from_features.info[key], key
    assert from_features.info["feature_rows"] == len(features)


def straddling_cuts(t: np.ndarray, horizon_s: int = 60, n: int = 3) -> list[int]:
    """Tick times L such that, data cut at L, the second holding L - H has a tick that can still be
    labelled (<= L - H) AND a later one that cannot: there, "last tick of the second" and "last
    LABELLED tick of the second" differ."""
    cuts = []
    for last in t[len(t) // 3 :]:
        edge = int(last) - horizon_s * SEC
        second = t[(t // SEC) == edge // SEC]
        if (second <= edge).any() and (second > edge).any():
            cuts.append(int(last))
            if len(cuts) == n:
                break
    return cuts


def test_grid_rows_from_features_do_not_depend_on_later_data(gapped_ticks):
    """Cutting the data short drops the rows it can no longer label, and changes no other row:
    a second's grid row is its last tick even when only an earlier tick could be labelled."""
    features = compute_features_multi(gapped_ticks[gapped_ticks["product_id"] == "BTC-USD"])
    keys = ["product_id", "event_time_ns", "sequence"]
    full = training_set_from_features(features, min_segment_s=0).frame.set_index(keys)
    cuts = straddling_cuts(features["event_time_ns"].to_numpy())
    assert len(cuts) == 3
    for cut in cuts:
        part = training_set_from_features(features[features["event_time_ns"] <= cut], min_segment_s=0)
        part = part.frame.set_index(keys)
        assert len(part) > 100
        assert part.index.isin(full.index).all(), cut
        cols = [*FEATURE_NAMES, "fwd_rv", "vol_ratio"]
        np.testing.assert_allclose(full.loc[part.index, cols].to_numpy(), part[cols].to_numpy(), rtol=1e-12)
        assert (part.index.get_level_values("event_time_ns") + 60 * SEC <= cut).all()


def test_split_segments():
    t = np.array([0, 1, 2, 20, 21, 40], dtype=np.int64) * SEC
    assert split_segments(t).tolist() == [0, 0, 0, 1, 1, 2]
    assert split_segments(t, max_gap_s=30).tolist() == [0, 0, 0, 0, 0, 0]
