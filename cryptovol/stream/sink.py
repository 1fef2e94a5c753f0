"""Feature Parquet written by the streaming featurizer, and what it tells a restarted featurizer.

Layout (shared with the batch featurizer, hive style):
`<features_dir>/product=<P>/date=<YYYY-MM-DD>/part-stream-t<first event ns>-p<partition>-o<first
offset>-<last offset>.parquet`, one file per (product, UTC event date, source partition) per flush.

- Atomic: written to a hidden `.<name>.<pid>.tmp` in the same directory, fsynced, then renamed, so
  readers (DuckDB globs `*.parquet`) never see a half-written file.
- Names start with the zero-padded event time of their first row: within a product, rows are
  emitted in event-time order, so sorting names sorts files by time. That lets a restarting
  featurizer read only the newest files to find where it stopped (`load_durable_state`).
- Schema: `FEATURE_SET.columns` + `feature_set_version` + `source_partition` + `source_offset`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cryptovol.config import TICK_MAX_AHEAD_S
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, HISTORY_S
from cryptovol.procs import pid_alive
from cryptovol.stream.engine import DurableState, FeatureBatch
from cryptovol.ticks import valid_product_id

log = logging.getLogger(__name__)

NS = 1_000_000_000
DAY_NS = 86_400 * NS
STREAM_PREFIX = "part-stream-"
_NAME = re.compile(r"^part-stream-t(\d+)-p(\d+)-o(\d+)-(\d+)\.parquet$")
_TMP = re.compile(r"^\.part-stream-.*\.(\d+)\.tmp$")

SCHEMA = pa.schema(
    [
        pa.field("product_id", pa.string()),
        pa.field("event_time_ns", pa.int64()),
        pa.field("sequence", pa.int64()),
        *[pa.field(name, pa.float64()) for name in FEATURE_NAMES],
        pa.field("feature_set_version", pa.string()),
        pa.field("source_partition", pa.int32()),
        pa.field("source_offset", pa.int64()),
    ],
    # The same file metadata the batch writer (`cryptovol.lake.feature_table`) sets; readers check it.
    metadata={
        b"cryptovol.feature_set_version": FEATURE_SET.version.encode(),
        b"cryptovol.feature_names": json.dumps(FEATURE_SET.names).encode(),
    },
)


def part_name(first_event_ns: int, partition: int, first_offset: int, last_offset: int) -> str:
    """A stream part's file name: sorting names sorts a product's parts by first event time."""
    return f"{STREAM_PREFIX}t{first_event_ns:019d}-p{partition}-o{first_offset}-{last_offset}.parquet"


def parse_part_name(name: str) -> tuple[int, int, int, int] | None:
    """(first event ns, source partition, first offset, last offset) of a stream part, else None."""
    m = _NAME.match(name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4))) if m else None


def date_of(event_time_ns: int) -> str:
    return pd.Timestamp(int(event_time_ns), tz="UTC").strftime("%Y-%m-%d")


def partition_dir(features_dir: Path, product: str, date: str) -> Path:
    return Path(features_dir) / f"product={product}" / f"date={date}"


@dataclass(frozen=True)
class WrittenPart:
    path: Path
    product_id: str
    date: str
    rows: int


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_batches(features_dir: Path, batches: Iterable[FeatureBatch]) -> list[WrittenPart]:
    """Write pending feature rows as part files (one per product, date and source partition).

    Arrow arrays straight from the batches' NumPy columns (no DataFrame: this runs every flush of
    the streaming featurizer); NaN features are written as nulls, as pandas -> Arrow would.
    """
    groups: dict[tuple[str, int, int], list[tuple[FeatureBatch, np.ndarray | None]]] = {}
    for batch in batches:
        if not len(batch):
            continue
        day = batch.event_time_ns // DAY_NS
        part = batch.source_partition
        if day[0] == day[-1] and bool((part == part[0]).all()):  # the usual case: one file
            groups.setdefault((batch.product_id, int(day[0]), int(part[0])), []).append((batch, None))
            continue
        for d, p in np.unique(np.stack([day, part.astype(np.int64)]), axis=1).T:
            rows = np.flatnonzero((day == d) & (part == p))
            groups.setdefault((batch.product_id, int(d), int(p)), []).append((batch, rows))
    written = []
    for key in sorted(groups):
        product, d, part = key
        table = _table(product, groups[key])
        offsets = table.column("source_offset")
        first_ns = table.column("event_time_ns")[0].as_py()
        name = part_name(first_ns, part, pc.min(offsets).as_py(), pc.max(offsets).as_py())
        directory = partition_dir(features_dir, product, date_of(d * DAY_NS))
        written.append(write_part_atomic(directory, name, table))
    return written


def _table(product: str, pieces: list[tuple[FeatureBatch, np.ndarray | None]]) -> pa.Table:
    """The rows of one part file (in emission order) as an Arrow table with `SCHEMA`."""
    def column(get) -> np.ndarray:
        parts = [get(b) if rows is None else get(b)[rows] for b, rows in pieces]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    n = sum(len(b) if rows is None else len(rows) for b, rows in pieces)
    arrays = [
        pa.array([product] * n, type=pa.string()),
        pa.array(column(lambda b: b.event_time_ns), type=pa.int64()),
        pa.array(column(lambda b: b.sequence), type=pa.int64()),
        *[pa.array(column(lambda b, f=name: b.features[f]), type=pa.float64(), from_pandas=True)
          for name in FEATURE_NAMES],
        pa.array([FEATURE_SET.version] * n, type=pa.string()),
        pa.array(column(lambda b: b.source_partition), type=pa.int32()),
        pa.array(column(lambda b: b.source_offset), type=pa.int64()),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write_part_atomic(directory: Path, name: str, table: pa.Table) -> WrittenPart:
    """Write `table` as `directory/name`: hidden temp file, fsync, rename, fsync the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(directory)
    product = directory.parent.name.split("=", 1)[1]
    return WrittenPart(final, product, directory.name.split("=", 1)[1], table.num_rows)


def remove_stale_temp_files(features_dir: Path) -> int:
    """Delete `.part-stream-*.tmp` files left by featurizers that died mid-write (pid gone)."""
    removed = 0
    for tmp in Path(features_dir).glob("product=*/date=*/.part-stream-*.tmp"):
        m = _TMP.match(tmp.name)
        if m and not pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def stream_files(features_dir: Path, product: str | None = None) -> list[Path]:
    pattern = f"product={product or '*'}/date=*/{STREAM_PREFIX}*.parquet"
    return sorted(Path(features_dir).glob(pattern))


def quarantine_dir(features_dir: Path) -> Path:
    """Where parts holding impossible event times are moved (beside the lake, never read by it)."""
    return Path(features_dir).parent / "quarantine" / Path(features_dir).name


def load_durable_state(
    features_dir: Path,
    history_s: float = HISTORY_S,
    *,
    max_ahead_s: float = TICK_MAX_AHEAD_S,
    now_ns: int | None = None,
) -> dict[str, DurableState]:
    """Per product: where the stream Parquet stops, and the window a restarted engine re-warms from.

    Reads only the key/lineage columns of the newest files of each product (newest first, by name =
    first event time) until it has passed `history_s` before the last written row.

    A part whose rows lie more than `max_ahead_s` ahead of the clock (one tick dated 2100, written
    before consumers range-checked event times) would freeze its product's watermark on every
    restart: it is moved to `quarantine_dir` (kept, never read) and the state comes from the rest.
    """
    history_ns = int(history_s * NS)
    limit_ns = (time.time_ns() if now_ns is None else now_ns) + int(max_ahead_s * NS)
    out: dict[str, DurableState] = {}
    root = Path(features_dir)
    for product_dir in sorted(root.glob("product=*")):
        product = product_dir.name.split("=", 1)[1]
        if not valid_product_id(product):
            log.warning("ignoring %s: not a valid product id", product_dir)
            continue
        files = [f for f in product_dir.glob(f"date=*/{STREAM_PREFIX}*.parquet") if _NAME.match(f.name)]
        files = [f for f in files if not _quarantine_if_ahead(root, f, limit_ns)]
        files.sort(key=lambda f: (int(_NAME.match(f.name).group(1)), f.name), reverse=True)
        parts: list[pd.DataFrame] = []
        last_ns: int | None = None
        for f in files:
            try:
                cols = pq.read_table(
                    f, columns=["event_time_ns", "sequence", "source_partition", "source_offset"]
                ).to_pandas()
            except FileNotFoundError:  # merged by a compaction: old rows, outside the window
                continue
            cols = cols[cols["event_time_ns"] <= limit_ns]  # impossible rows never set the watermark
            if cols.empty:
                continue
            parts.append(cols)
            file_max = int(cols["event_time_ns"].max())
            last_ns = file_max if last_ns is None else max(last_ns, file_max)
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


def _quarantine_if_ahead(root: Path, part: Path, limit_ns: int) -> bool:
    """Move `part` to the quarantine if its whole date partition starts after `limit_ns` (cheap:
    the directory name says so); True if moved. Rows beyond the limit in a current date are
    filtered where the newest parts are read."""
    try:
        day_start = int(pd.Timestamp(part.parent.name.split("=", 1)[1], tz="UTC").value)
    except (ValueError, IndexError):
        return False
    if day_start <= limit_ns:
        return False
    target = quarantine_dir(root) / part.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(part, target)
        log.warning("part %s lies in a day after the clock + bound: moved to %s", part, target)
    return True


def read_stream_features(features_dir: Path, product: str | None = None) -> pd.DataFrame:
    """Every stream-written row (for tests and tools), sorted by product and event time."""
    files = stream_files(features_dir, product)
    if not files:
        return SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in files]).to_pandas()
    return frame.sort_values(["product_id", "event_time_ns", "source_partition", "source_offset"],
                             kind="stable").reset_index(drop=True)
