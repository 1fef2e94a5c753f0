"""Prediction Parquet: `data/predictions/product=<P>/date=<YYYY-MM-DD>/part-*.parquet`.

Hive-partitioned like the feature lake, so DuckDB (`read_parquet(..., hive_partitioning=true)`) and
the drift job read it directly. Every part file is written under a hidden temporary name and then
renamed into place, so a reader never sees a half-written file and a crash leaves no torn part.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: Columns of a prediction row (Kafka JSON and Parquet), in order.
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

PREDICTION_SCHEMA = pa.schema([
    ("product_id", pa.string()),
    ("event_time_ns", pa.int64()),
    ("sequence", pa.int64()),
    ("spike_probability", pa.float64()),
    ("spike_flag", pa.bool_()),
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("model_alias", pa.string()),
    ("feature_set_version", pa.string()),
    ("scored_at_ns", pa.int64()),
    ("scoring_latency_s", pa.float64()),
])


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_prediction_parts(frame: pd.DataFrame, root: Path) -> list[Path]:
    """Append `frame` (PREDICTION_COLUMNS) as one new part file per product and UTC event day."""
    if frame.empty:
        return []
    day = pd.to_datetime(frame["event_time_ns"], unit="ns", utc=True).dt.strftime("%Y-%m-%d")
    written = []
    for (product, date), part in frame.groupby([frame["product_id"], day], sort=True):
        directory = Path(root) / f"product={product}" / f"date={date}"
        directory.mkdir(parents=True, exist_ok=True)
        name = f"part-{pd.Timestamp.now(tz='UTC').strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
        final = directory / name
        tmp = directory / f".{name}.tmp"
        table = pa.Table.from_pandas(
            part.loc[:, list(PREDICTION_COLUMNS)], schema=PREDICTION_SCHEMA, preserve_index=False
        )
        with open(tmp, "wb") as fh:  # durable before the offsets that cover it are committed
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(directory)
        written.append(final)
    return written
