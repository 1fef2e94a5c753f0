"""The demo's status line counts Delta table rows from the log (stream rows only for features),
so compaction (which leaves the old files until vacuum) never double-counts."""

from __future__ import annotations

import pandas as pd

from cryptovol.delta import maintain
from cryptovol.demo.status import TableRowCounter
from cryptovol.scoring.sink import write_prediction_parts


def test_table_row_counter_counts_committed_rows_before_and_after_compaction(tmp_path):
    root = tmp_path / "predictions"
    counter = TableRowCounter(root)
    assert counter.update() == 0  # no table yet
    for start in range(0, 50, 10):
        write_prediction_parts(pd.DataFrame({
            "product_id": "BTC-USD", "event_time_ns": range(start, start + 10), "sequence": 1,
            "spike_probability": 0.2, "spike_flag": False, "model_name": "m", "model_version": "1",
            "model_alias": "champion", "feature_set_version": "x", "scored_at_ns": 9,
            "scoring_latency_s": 0.001}), root)
    assert counter.update() == 50
    maintain(root, "predictions", retention_hours=24)  # compacted; old files stay until vacuumed
    assert len(list(root.rglob("part-*.parquet"))) > 1
    assert counter.update() == 50
