"""Scored rows -> the prediction Delta table (`data/predictions`, partitioned by product_id and
UTC event date; `cryptovol.delta`).

Each flush of the scorer is one append transaction carrying an application transaction per product
(`scorer:<product>` = newest event time written + 1): a scorer restarted after a crash re-scores
the rows of its last uncommitted batch, and those whose key is already in the table are dropped, so
the table holds one prediction per (product_id, event_time_ns, sequence). Two scorers writing the
same product at once conflict in the Delta log and the loser retries.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from cryptovol import delta

#: Columns of a prediction row (Kafka JSON and the table), in order.
PREDICTION_COLUMNS = (
    "product_id",
    "event_time_ns",
    "sequence",
    "spike_probability",
    "spike_flag",
    "model_name",
    "model_version",
    "model_alias",
    "feature_set_version",
    "scored_at_ns",
    "scoring_latency_s",
)

PREDICTION_SCHEMA = delta.PREDICTION_SCHEMA
#: Application-transaction prefix of the scorer's commits.
SCORER_APP = "scorer"


def prediction_table(frame: pd.DataFrame) -> pa.Table:
    """Prediction rows (PREDICTION_COLUMNS) -> an Arrow table with the table's schema."""
    rows = frame.loc[:, list(PREDICTION_COLUMNS)]
    schema = PREDICTION_SCHEMA.remove(PREDICTION_SCHEMA.get_field_index("date"))
    table = pa.Table.from_pandas(rows, schema=schema, preserve_index=False)
    days = delta.day_of_ns(rows["event_time_ns"].to_numpy(dtype="int64"))
    return table.add_column(1, "date", days).select(PREDICTION_SCHEMA.names)


def write_prediction_parts(frame: pd.DataFrame, root: Path, *,
                           app_prefix: str = SCORER_APP) -> list[delta.Commit]:
    """Commit `frame` (PREDICTION_COLUMNS) as one transaction, each key once; [] if nothing new."""
    if frame.empty:
        return []
    commit = delta.append_exactly_once(Path(root), "predictions", prediction_table(frame), app_prefix,
                                       by="event_time")
    return [commit] if commit.rows else []
