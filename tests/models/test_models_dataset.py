"""The training matrix: segments at gaps, one row per second, labels never across a gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptovol.featureset import FEATURE_NAMES
from cryptovol.labels import LabelConfig
from cryptovol.models.dataset import build_training_set, split_segments
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


def test_split_segments():
    t = np.array([0, 1, 2, 20, 21, 40], dtype=np.int64) * SEC
    assert split_segments(t).tolist() == [0, 0, 0, 1, 1, 2]
    assert split_segments(t, max_gap_s=30).tolist() == [0, 0, 0, 0, 0, 0]
