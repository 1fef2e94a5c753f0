"""Feature rows written by the streaming featurizer into the feature Delta table, and what that
table tells a restarted featurizer.

Each flush is one append transaction (`cryptovol.delta.append_exactly_once`) partitioned by
product and UTC event date, carrying an application transaction per `ticks.raw` partition
(`<group>:<topic>:<partition>` = next offset), so a restart, a rebalance or two members writing at
once leave every (product, event_time_ns, sequence) in the table exactly once.
Schema: `cryptovol.delta.FEATURE_SCHEMA` (`FEATURE_SET.columns` + `date` + `feature_set_version` +
`source_partition` + `source_offset`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from cryptovol import delta
from cryptovol.config import TICK_MAX_AHEAD_S
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, HISTORY_S
from cryptovol.stream.engine import DurableState, FeatureBatch
from cryptovol.ticks import valid_product_id

log = logging.getLogger(__name__)

NS = 1_000_000_000
DAY_NS = 86_400 * NS
SCHEMA = delta.FEATURE_SCHEMA
#: Application-transaction prefix of writers that are not a consumer group (tests, tools).
LOCAL_APP = "local:ticks.raw"


def date_of(event_time_ns: int) -> str:
    return pd.Timestamp(int(event_time_ns), tz="UTC").strftime("%Y-%m-%d")


def batches_table(batches: Iterable[FeatureBatch]) -> pa.Table:
    """Pending feature rows (in emission order) as one Arrow table with `SCHEMA`.

    Arrow arrays straight from the batches' NumPy columns (no DataFrame: this runs every flush of
    the streaming featurizer); NaN features are written as nulls, as pandas -> Arrow would.
    """
    batches = [b for b in batches if len(b)]
    if not batches:
        return SCHEMA.empty_table()

    def column(get) -> np.ndarray:
        parts = [get(b) for b in batches]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    n = sum(len(b) for b in batches)
    products = np.concatenate([np.full(len(b), b.product_id, dtype=object) for b in batches])
    times = column(lambda b: b.event_time_ns)
    arrays = [
        pa.array(products, type=pa.string()),
        delta.day_of_ns(times),
        pa.array(times, type=pa.int64()),
        pa.array(column(lambda b: b.sequence), type=pa.int64()),
        *[pa.array(column(lambda b, f=name: b.features[f]), type=pa.float64(), from_pandas=True)
          for name in FEATURE_NAMES],
        pa.array([FEATURE_SET.version] * n, type=pa.string()),
        pa.array(column(lambda b: b.source_partition), type=pa.int32()),
        pa.array(column(lambda b: b.source_offset), type=pa.int64()),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write_batches(features_dir: Path, batches: Iterable[FeatureBatch], *,
                  app_prefix: str = LOCAL_APP) -> list[delta.Commit]:
    """Commit pending feature rows as one Delta transaction (exactly once per key, see the module
    docstring); `app_prefix` is `"<consumer group>:<topic>"`. Returns the commit ([] if no rows)."""
    table = batches_table(batches)
    if table.num_rows == 0:
        return []
    commit = delta.append_exactly_once(Path(features_dir), "features", table, app_prefix, batch_guard=True)
    if commit.skipped:
        log.info("flush: %d row(s) already in the feature table (restart/rebalance), not written again",
                 commit.skipped)
    return [commit]


def quarantine_dir(features_dir: Path) -> Path:
    """Where rows with impossible event times are moved (beside the lake, never read by it)."""
    return Path(features_dir).parent / "quarantine" / Path(features_dir).name


def _stream_partitions(table) -> dict[str, list[str]]:
    """product -> its dates (newest first) in the table."""
    out: dict[str, list[str]] = {}
    for part in table.partitions():
        product, day = part.get("product_id"), part.get("date")
        if product is None or day is None:
            continue
        if not valid_product_id(product):
            log.warning("ignoring feature partition of %r: not a valid product id", product)
            continue
        out.setdefault(product, []).append(day)
    return {p: sorted(days, reverse=True) for p, days in out.items()}


def load_durable_state(
    features_dir: Path,
    history_s: float = HISTORY_S,
    *,
    max_ahead_s: float = TICK_MAX_AHEAD_S,
    now_ns: int | None = None,
) -> dict[str, DurableState]:
    """Per product: where the stream rows of the feature table stop, and the window a restarted
    engine re-warms from.

    Reads only the key/lineage columns of each product's newest dates (newest first) until it has
    passed `history_s` before the last written row.

    A date lying after the clock + `max_ahead_s` (one tick dated 2100, written before consumers
    range-checked event times) would freeze its product's watermark on every restart: its rows are
    copied to `quarantine_dir` and deleted from the table in one transaction; rows beyond the bound
    in a current date never set the watermark.
    """
    history_ns = int(history_s * NS)
    limit_ns = (time.time_ns() if now_ns is None else now_ns) + int(max_ahead_s * NS)
    table = delta.open_table(Path(features_dir))
    if table is None:
        return {}
    by_product = _stream_partitions(table)
    limit_day = date_of(limit_ns)
    if any(day > limit_day for days in by_product.values() for day in days):
        _quarantine_days_after(Path(features_dir), limit_day)
        table = delta.open_table(Path(features_dir))
        by_product = _stream_partitions(table)
    out: dict[str, DurableState] = {}
    columns = ["event_time_ns", "sequence", "source_partition", "source_offset"]
    for product, days in sorted(by_product.items()):
        parts: list[pd.DataFrame] = []
        last_ns: int | None = None
        for day in days:
            data = table.to_pyarrow_dataset(partitions=[("product_id", "=", product), ("date", "=", day)])
            cols = data.to_table(columns=columns, filter=pads.field("source_partition").is_valid()
                                 & (pads.field("event_time_ns") <= limit_ns)).to_pandas()
            if cols.empty:
                continue
            parts.append(cols)
            day_max = int(cols["event_time_ns"].max())
            last_ns = day_max if last_ns is None else max(last_ns, day_max)
            if int(cols["event_time_ns"].min()) < last_ns - history_ns:
                break
        if last_ns is None:
            continue
        rows = pd.concat(parts, ignore_index=True)
        rows = rows[rows["event_time_ns"] >= last_ns - history_ns]
        warm = rows.groupby("source_partition")["source_offset"].min()
        out[product] = DurableState(
            product_id=product,
            last_event_time_ns=last_ns,
            window_ids=set(zip(rows["event_time_ns"].tolist(), rows["sequence"].tolist(), strict=True)),
            warm_offsets={int(p): int(o) for p, o in warm.items()},
        )
    return out


def _quarantine_days_after(features_dir: Path, limit_day: str) -> None:
    """Copy the rows of dates after `limit_day` to the quarantine (Parquet), then delete them from
    the table (one transaction)."""
    from cryptovol.atomic import write_parquet_atomic

    table = delta.open_table(features_dir)
    rows = table.to_pyarrow_dataset().to_table(filter=pads.field("date") > limit_day)
    if rows.num_rows == 0:
        return
    target = quarantine_dir(features_dir) / f"after-{limit_day}-v{table.version()}.parquet"
    write_parquet_atomic(rows, target)
    table.delete(f"date > '{limit_day}'")
    log.warning("%d feature row(s) dated after %s moved from the table to %s",
                rows.num_rows, limit_day, target)


def read_stream_features(features_dir: Path, product: str | None = None) -> pd.DataFrame:
    """Every stream-written row (for tests and tools), sorted by product and event time."""
    filt = pads.field("source_partition").is_valid()
    got, _ = delta.scan(Path(features_dir), products=[product] if product else None, filter=filt)
    columns = [c for c in SCHEMA.names if c != "date"]
    if got is None or got.num_rows == 0:
        return SCHEMA.empty_table().select(columns).to_pandas()
    frame = got.select(columns).to_pandas()
    return frame.sort_values(["product_id", "event_time_ns", "source_partition", "source_offset"],
                             kind="stable").reset_index(drop=True)


def stream_row_count(features_dir: Path) -> int:
    got, _ = delta.scan(Path(features_dir), columns=["source_partition"],
                        filter=pads.field("source_partition").is_valid())
    return 0 if got is None else got.num_rows


__all__ = ["SCHEMA", "batches_table", "load_durable_state", "read_stream_features", "write_batches"]
