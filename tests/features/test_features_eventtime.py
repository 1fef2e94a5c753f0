"""The one event-time rule (`cryptovol.eventtime`): by hand, and applied identically by the batch
featurizer to a landing file with out-of-order lines and by the streaming engine to the same ticks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_features_batch_lake import DAY1, day_ticks, landing_lines, reference_ticks, write_lines

from cryptovol import batch, lake
from cryptovol.eventtime import admitted_mask
from cryptovol.features import compute_features
from cryptovol.featureset import FEATURE_SET
from cryptovol.stream.engine import SourceRecord, StreamEngine

S = 1_000_000_000


def test_admitted_mask_by_hand():
    t = np.array([1, 3, 2, 3, 5, 4, 6]) * S
    seq = np.array([0, 1, 2, 1, 3, 4, 5])
    # lateness 0: 2 arrives after 3 (late), the second (3, 1) repeats an identity, 4 arrives after 5
    assert admitted_mask(t, seq).tolist() == [True, True, False, False, True, False, True]
    # lateness 1 s: 2 >= 3 - 1 and 4 >= 5 - 1 are admitted; the repeat is still dropped
    assert admitted_mask(t, seq, lateness_ns=S).tolist() == [True, True, True, False, True, True, True]
    # equal event times are never late (ties keep arrival order)
    assert admitted_mask(np.array([5, 5, 5]) * S, np.array([1, 2, 3])).all()
    # what arrived before (the previous day's tail) counts too
    assert admitted_mask(np.array([1, 3]) * S, np.array([0, 1]), prior_max_ns=2 * S).tolist() == [False, True]
    assert admitted_mask(np.zeros(0), np.zeros(0)).tolist() == []


def _by_key(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["product_id", "event_time_ns", "sequence"]
    return frame[FEATURE_SET.columns].sort_values(keys, kind="stable").reset_index(drop=True)


def _with_stragglers(ticks: pd.DataFrame, every: int = 11, back: int = 4) -> pd.DataFrame:
    """Arrival (file) order where every `every`-th tick comes `back` lines later than its turn."""
    order = list(range(len(ticks)))
    for i in range(every, len(order) - back, every):
        order.insert(i + back, order.pop(i))
    return ticks.iloc[order].reset_index(drop=True)


def test_batch_skips_late_landing_lines_and_stream_agrees_row_for_row(settings):
    ticks = day_ticks(seed=21)
    arrival = _with_stragglers(ticks)
    lines = landing_lines(arrival)
    write_lines(lake.landing_path(settings, "BTC-USD", DAY1), lines)
    result = batch.featurize_day(settings, "BTC-USD", DAY1)
    got = _by_key(lake.read_features(settings, products=["BTC-USD"]))

    # batch: the admitted ticks (not behind an earlier arrival) in event order, through compute_features
    file_order = reference_ticks(lines)
    keep = admitted_mask(file_order["event_time_ns"].to_numpy(), file_order["sequence"].to_numpy())
    assert 0 < (~keep).sum() < len(ticks) // 10
    assert result.skipped_late == int((~keep).sum()) and result.rows == int(keep.sum())
    expect = compute_features(file_order.loc[keep].sort_values("event_time_ns", kind="stable")
                              .reset_index(drop=True))
    pd.testing.assert_frame_equal(got.astype({"product_id": "string"}), _by_key(expect), check_exact=True)
    # the skipped ticks stay in the landing file: nothing is lost
    assert lake.read_landing_file(lake.landing_path(settings, "BTC-USD", DAY1)).ticks.shape[0] == len(ticks)

    # stream: the same ticks in the same order, one poll at a time, lateness 0
    from cryptovol.ticks import Tick

    engine = StreamEngine(lateness_s=0.0)
    rows, late = [], 0
    for i, row in enumerate(file_order.itertuples(index=False)):
        late += engine.offer(SourceRecord(Tick(*row), 0, i)) is not None
        rows += [b.frame() for b in engine.release()]
    stream = _by_key(pd.concat(rows, ignore_index=True))
    assert late == result.skipped_late
    np.testing.assert_array_equal(stream["event_time_ns"], got["event_time_ns"])
    np.testing.assert_array_equal(stream["sequence"], got["sequence"])
    for name in FEATURE_SET.names:
        np.testing.assert_allclose(stream[name], got[name], rtol=1e-9, atol=0, equal_nan=True, err_msg=name)
