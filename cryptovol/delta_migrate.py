"""`cryptovol lake migrate`: the pre-Delta Parquet lake -> the feature and prediction Delta tables.

The old layout (kept readable here, and only here):

    features/product=<P>/date=<D>/part-batch.parquet        batch featurizer (whole day)
    features/product=<P>/date=<D>/part-stream-*.parquet     streaming featurizer, one per flush
    predictions/product=<P>/date=<D>/part-*.parquet         scorer, one per flush (at least once)

Its readers took every batch row plus the stream rows newer than the batch part's last row (or only
the stream parts without a batch part), one row per key; predictions kept the latest score per key
(drift's rule). The migration applies exactly those rules per (product, date), commits each
partition as one transaction carrying application transaction `migrate:<table>:<P>:<D>` (a re-run
after a crash skips what is done and never writes a partition twice), then moves the old files to
`<data>/pre-delta/` (kept until you delete them). The new tables' directories are
`product_id=<P>/date=<D>`, so old and new files never share a directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cryptovol import delta
from cryptovol.atomic import write_text_atomic
from cryptovol.featureset import FEATURE_SET, FeatureSchemaError
from cryptovol.ticks import valid_product_id

BATCH_NAME = "part-batch.parquet"
KEY = list(delta.KEY)


def legacy_partitions(root: Path) -> list[tuple[str, str, Path]]:
    """(product, date, directory) of every old-layout partition holding part files."""
    found = []
    for part_dir in sorted(Path(root).glob("product=*/date=*")):
        product = part_dir.parent.name.split("=", 1)[1]
        day = part_dir.name.split("=", 1)[1]
        if valid_product_id(product) and any(part_dir.glob("part-*.parquet")):
            found.append((product, day, part_dir))
    return found


def _read(path: Path, schema: pa.Schema) -> pa.Table:
    table = pq.read_table(path)
    for name in schema.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(schema.names).cast(schema)


def _with_date(table: pa.Table, schema: pa.Schema) -> pa.Table:
    table = table.drop_columns([c for c in ("date",) if c in table.column_names])
    table = table.append_column("date", delta.day_of_ns(table["event_time_ns"].to_numpy()))
    return table.select(schema.names)


def legacy_feature_rows(part_dir: Path, check_version: bool = True) -> tuple[pa.Table, int | None]:
    """One old feature partition by the old readers' rules; and the batch part's newest event time
    (None without a batch part)."""
    schema = delta.FEATURE_SCHEMA
    source = schema.remove(schema.get_field_index("date"))
    files = sorted(part_dir.glob("part-*.parquet"))
    batch = [f for f in files if f.name == BATCH_NAME]
    stream = [f for f in files if f.name != BATCH_NAME]
    for f in files:
        version = (pq.read_schema(f).metadata or {}).get(b"cryptovol.feature_set_version", b"?").decode()
        if check_version and version != FEATURE_SET.version:
            raise FeatureSchemaError(f"{f} holds feature set {version!r}, this code computes "
                                     f"{FEATURE_SET.version!r}: rebuild it, it cannot be relabelled")
    newest = None
    parts = []
    if batch:
        rows = _read(batch[0], source)
        parts.append(rows)
        if rows.num_rows:
            newest = int(pc.max(rows["event_time_ns"]).as_py())
    for f in stream:
        rows = _read(f, source)
        if newest is not None:
            rows = rows.filter(pc.greater(rows["event_time_ns"], newest))
        parts.append(rows)
    table = pa.concat_tables(parts) if parts else source.empty_table()
    frame = table.to_pandas()
    frame = frame.sort_values([*KEY, "source_partition", "source_offset"], kind="stable", na_position="first")
    frame = frame.drop_duplicates(KEY, keep="first")
    out = pa.Table.from_pandas(frame, schema=source, preserve_index=False)
    return _with_date(out, schema), newest


def legacy_prediction_rows(part_dir: Path) -> pa.Table:
    """One old prediction partition: the latest score per key (the rule drift applied)."""
    schema = delta.PREDICTION_SCHEMA
    source = schema.remove(schema.get_field_index("date"))
    files = sorted(part_dir.glob("*.parquet"))
    table = pa.concat_tables([_read(f, source) for f in files]) if files else source.empty_table()
    frame = table.to_pandas().sort_values("scored_at_ns", kind="stable")
    frame = frame.drop_duplicates(KEY, keep="last").sort_values(KEY, kind="stable")
    return _with_date(pa.Table.from_pandas(frame, schema=source, preserve_index=False), schema)


def read_legacy_features(root: Path) -> pd.DataFrame:
    """Every feature row of an old-layout lake by its readers' rules (for checks and benchmarks)."""
    frames = [legacy_feature_rows(d)[0].to_pandas() for _, _, d in legacy_partitions(root)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return delta.FEATURE_SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True).sort_values(KEY, kind="stable").reset_index(drop=True)


@dataclass
class MigrationResult:
    table: str
    partitions: int = 0
    skipped_done: int = 0
    rows_in: int = 0
    rows_committed: int = 0
    moved_files: int = 0
    details: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.table}: {self.partitions} partition(s) migrated ({self.skipped_done} already done), "
                f"{self.rows_committed:,} rows committed of {self.rows_in:,} read, "
                f"{self.moved_files} old file(s) moved to pre-delta/")


def _migrate_one(root: Path, kind: str, app_id: str, rows: pa.Table, batch_newest: int | None) -> bool:
    """Commit one partition's rows once (False if an earlier run did)."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    table = delta.ensure_table(root, kind)
    if table.transaction_version(app_id) is not None:
        return False
    txns = [Transaction(app_id, 1)]
    if batch_newest is not None:
        product, day = rows["product_id"][0].as_py(), rows["date"][0].as_py()
        txns.append(Transaction(delta.batch_app_id(product, day), batch_newest))
    write_deltalake(table, rows, mode="append", partition_by=delta.PARTITION_BY,
                    commit_properties=CommitProperties(app_transactions=txns))
    return True


def _move_old(part_dir: Path, root: Path, backup: Path) -> int:
    target = backup / part_dir.relative_to(root)
    target.mkdir(parents=True, exist_ok=True)
    moved = 0
    for f in sorted(part_dir.iterdir()):
        if f.is_file():
            os.replace(f, target / f.name)
            moved += 1
    shutil.rmtree(part_dir, ignore_errors=True)
    if part_dir.parent.exists() and not any(part_dir.parent.iterdir()):
        part_dir.parent.rmdir()
    return moved


def _partitions_with_rows(rows: pa.Table) -> Iterator[pa.Table]:
    days = rows["date"].to_numpy(zero_copy_only=False)
    for day in sorted(set(days.tolist())):
        yield rows.filter(pa.array(days == day))


def migrate(data_dir: Path, *, dry_run: bool = False) -> list[MigrationResult]:
    """Migrate both trees of `data_dir` (see the module docstring); idempotent."""
    from cryptovol.lake import LakePaths

    paths = LakePaths.of(data_dir)
    results = []
    for kind, root in (("features", paths.features_dir), ("predictions", paths.predictions_dir)):
        result = MigrationResult(kind)
        backup = paths.data_dir / "pre-delta" / kind
        for product, day, part_dir in legacy_partitions(root):
            if kind == "features":
                rows, newest = legacy_feature_rows(part_dir)
            else:
                rows, newest = legacy_prediction_rows(part_dir), None
            result.rows_in += rows.num_rows
            if dry_run:
                result.details.append(f"{product} {day}: {rows.num_rows} rows")
                continue
            done = True
            # A row's date comes from its event time: an old part holding another day's rows
            # (written before the split by event day) lands in that day's partition.
            for piece in _partitions_with_rows(rows) if rows.num_rows else []:
                app_id = f"migrate:{kind}:{product}:{day}:{piece['date'][0].as_py()}"
                piece_newest = newest if piece["date"][0].as_py() == day else None
                if _migrate_one(root, kind, app_id, piece, piece_newest):
                    result.rows_committed += piece.num_rows
                else:
                    done = False
            if kind == "features" and newest is not None:
                marker = paths.feature_part(product, day)
                write_text_atomic(marker, '{"migrated": true}')
                mtime = (part_dir / BATCH_NAME).stat().st_mtime_ns
                os.utime(marker, ns=(mtime, mtime))
            result.moved_files += _move_old(part_dir, root, backup)
            result.partitions += 1
            result.skipped_done += 0 if done else 1
        results.append(result)
    return results


def table_rows(data_dir: Path) -> dict[str, int]:
    """Rows per Delta table now (0 without a table)."""
    from cryptovol.lake import LakePaths

    paths = LakePaths.of(data_dir)
    out = {}
    for kind, root in (("features", paths.features_dir), ("predictions", paths.predictions_dir)):
        table = delta.open_table(root)
        out[kind] = 0 if table is None else int(np.sum([
            b.num_rows for b in table.to_pyarrow_dataset().to_batches(columns=["event_time_ns"])]))
    return out


__all__ = ["MigrationResult", "legacy_feature_rows", "legacy_prediction_rows", "migrate",
           "read_legacy_features", "table_rows"]
