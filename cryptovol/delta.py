"""The lake's two Delta Lake tables (delta-rs): how they are created, written and maintained.

`data/features` and `data/predictions` are Delta tables partitioned by `product_id` and `date`
(UTC event day). Every write is one transaction in `_delta_log`, so every engine that reads Delta
(this code through `cryptovol.lake`, Spark, Trino, Polars, pyarrow over `DeltaTable(...)`) sees
the same rows: there is no part-file precedence rule to know.

Exactly once, for the streaming writers (featurizer and scorer):
- each flush is one append carrying an *application transaction* per source topic partition,
  `app_id = "<group>:<topic>:<partition>"`, `version = highest source offset written + 1` (the
  featurizer), or per product, `version = newest event time written + 1` (the scorer, whose rows
  of one product arrive in event order);
- before writing, the writer reads those versions: if one is above the lowest offset it is about
  to write, some of its rows may be in the table already (a restart, a rebalance, a second group
  member) and rows whose key is already in the table are dropped;
- two writers committing the same app id at once conflict in the Delta log (delta-rs rejects the
  second), and the loser re-reads and retries, so a race cannot duplicate a row.

The batch featurizer replaces a (product, day) up to its newest row with one predicate overwrite
and records that row's time as app transaction `batch:<product>:<day>`; stream writers drop rows at
or before it and re-assert the same transaction, so a batch rebuild racing a stream flush makes one
of them retry instead of duplicating rows.

Schema: the feature table carries its feature-set version as table property
`cryptovol.feature_set_version` and in the `feature_set_version` column. A writer of another
version is refused (`FeatureSchemaError`); changing the feature set is the explicit migration
`cryptovol lake archive-features` (see the README), never a relabel.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, FeatureSchemaError

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 1_000_000_000
PARTITION_BY = ["product_id", "date"]
VERSION_PROPERTY = "cryptovol.feature_set_version"
TABLE_KIND_PROPERTY = "cryptovol.table"
COMMIT_ATTEMPTS = 20
#: Vacuum keeps files an older table version needs this long (Delta's own default: 7 days).
VACUUM_RETENTION_HOURS = 168.0

FEATURE_SCHEMA = pa.schema([
    pa.field("product_id", pa.string()),
    pa.field("date", pa.string()),
    pa.field("event_time_ns", pa.int64()),
    pa.field("sequence", pa.int64()),
    *[pa.field(name, pa.float64()) for name in FEATURE_NAMES],
    pa.field("feature_set_version", pa.string()),
    # Stream rows: the `ticks.raw` partition and offset they came from; batch rows: null.
    pa.field("source_partition", pa.int32()),
    pa.field("source_offset", pa.int64()),
])

PREDICTION_SCHEMA = pa.schema([
    pa.field("product_id", pa.string()),
    pa.field("date", pa.string()),
    pa.field("event_time_ns", pa.int64()),
    pa.field("sequence", pa.int64()),
    pa.field("spike_probability", pa.float64()),
    pa.field("spike_flag", pa.bool_()),
    pa.field("model_name", pa.string()),
    pa.field("model_version", pa.string()),
    pa.field("model_alias", pa.string()),
    pa.field("feature_set_version", pa.string()),
    pa.field("scored_at_ns", pa.int64()),
    pa.field("scoring_latency_s", pa.float64()),
])

KEY = ("product_id", "event_time_ns", "sequence")


def is_table(root: Path) -> bool:
    """A committed Delta table at `root` (a `_delta_log` with at least one commit or checkpoint)."""
    log_dir = Path(root) / "_delta_log"
    return log_dir.is_dir() and (any(log_dir.glob("*.json")) or any(log_dir.glob("*.checkpoint*.parquet")))


def open_table(root: Path, version: int | None = None):
    """The Delta table at `root` (at `version` if given), or None if there is none yet."""
    from deltalake import DeltaTable

    if not is_table(root):
        return None
    return DeltaTable(str(root), version=version) if version is not None else DeltaTable(str(root))


def _configuration(kind: str) -> dict[str, str]:
    conf = {TABLE_KIND_PROPERTY: kind, "delta.checkpointInterval": "100"}
    if kind == "features":
        conf[VERSION_PROPERTY] = FEATURE_SET.version
    return conf


def ensure_table(root: Path, kind: str):
    """Open the `kind` table ("features" or "predictions") at `root`, creating it empty if needed.
    Two processes creating it at once: the loser opens the winner's table."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    # Opened afresh for every write: a long-lived DeltaTable kept current with update_incremental()
    # gets slower with every commit (150 ms per write after 1,200 commits, against 40 ms for a
    # fresh load from the last checkpoint; measured with delta-rs 1.6.6).
    table = open_table(root)
    if table is None:
        schema = FEATURE_SCHEMA if kind == "features" else PREDICTION_SCHEMA
        Path(root).mkdir(parents=True, exist_ok=True)
        try:
            table = DeltaTable.create(str(root), schema, mode="ignore", partition_by=PARTITION_BY,
                                      name=kind, configuration=_configuration(kind),
                                      raise_if_key_not_exists=False)
        except DeltaError:
            table = DeltaTable(str(root))
    if kind == "features":
        check_feature_version(table, root)
    return table


def feature_set_version_of(table) -> str | None:
    return table.metadata().configuration.get(VERSION_PROPERTY)


def check_feature_version(table, root: Path | str = "") -> None:
    """Refuse a feature table of another feature-set version (no merge, no relabel)."""
    found = feature_set_version_of(table)
    if found != FEATURE_SET.version:
        raise FeatureSchemaError(
            f"the feature table {root} holds feature set {found!r}, this code computes "
            f"{FEATURE_SET.version!r}: archive it with `cryptovol lake archive-features`, then rebuild "
            "with `cryptovol features build --all` (README, 'Feature-set versions')"
        )


def day_of_ns(event_time_ns: np.ndarray) -> pa.Array:
    """UTC day strings of ns timestamps (the `date` partition column)."""
    days = (np.asarray(event_time_ns, dtype=np.int64) // NS_PER_DAY).astype("datetime64[D]")
    return pa.array(np.datetime_as_string(days), pa.string())


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def batch_app_id(product: str, day: str) -> str:
    return f"batch:{product}:{day}"


@dataclass(frozen=True)
class Commit:
    """One write: rows committed (after de-duplication), rows dropped as already present, the
    table version it created (None if nothing was left to write)."""

    rows: int
    skipped: int
    version: int | None


def _existing_keys(table, rows: pa.Table) -> set[tuple[str, int, int]]:
    """Keys of `rows` already in `table` (read only the products, days and time range concerned)."""
    import pyarrow.dataset as ds

    products = pc.unique(rows["product_id"]).to_pylist()
    days = pc.unique(rows["date"]).to_pylist()
    lo, hi = pc.min(rows["event_time_ns"]).as_py(), pc.max(rows["event_time_ns"]).as_py()
    partitions = [("product_id", "in", products), ("date", "in", days)]
    data = table.to_pyarrow_dataset(partitions=partitions)
    found = data.to_table(columns=list(KEY), filter=(ds.field("event_time_ns") >= lo)
                          & (ds.field("event_time_ns") <= hi))
    return set(zip(*(found[c].to_pylist() for c in KEY), strict=True))


def _drop_keys(rows: pa.Table, keys: set) -> pa.Table:
    if not keys:
        return rows
    mine = zip(*(rows[c].to_pylist() for c in KEY), strict=True)
    keep = np.fromiter((k not in keys for k in mine), dtype=bool, count=rows.num_rows)
    return rows.filter(pa.array(keep))


def _progress(rows: pa.Table, by: str) -> list[tuple[str, int, int]]:
    """(app id suffix, lowest, highest) progress marks of `rows`: per source partition (offsets)
    for `by="offset"`, per product (event times; one product's rows arrive in event order) for
    `by="event_time"`."""
    out = []
    if by == "offset":
        parts = rows["source_partition"]
        for p in pc.unique(parts).to_pylist():
            if p is None:
                continue
            offsets = rows.filter(pc.equal(parts, p))["source_offset"]
            out.append((str(p), pc.min(offsets).as_py(), pc.max(offsets).as_py()))
    else:
        products = rows["product_id"]
        for product in pc.unique(products).to_pylist():
            times = rows.filter(pc.equal(products, product))["event_time_ns"]
            out.append((product, pc.min(times).as_py(), pc.max(times).as_py()))
    return out


def sync_version(root: Path, version: int) -> int:
    """fsync every file that table version `version` added, its directories up to `root`, and the
    version's log entry: a write is durable when it returns, as on a cloud object store.

    delta-rs's local-file store writes a temporary file and renames it but never fsyncs, so after
    a power cut (not a process crash) a committed version could point at files still only in the
    page cache while the consumer offsets it covers were already committed. Returns the number of
    files synced."""
    import json
    import urllib.parse

    from cryptovol.atomic import fsync_dir

    root = Path(root)
    log_file = root / "_delta_log" / f"{version:020d}.json"
    files = []
    for line in log_file.read_text(encoding="utf-8").splitlines():
        add = json.loads(line).get("add") if line.strip() else None
        if add is not None and "://" not in add["path"]:  # relative: a file of this local table
            files.append(root / urllib.parse.unquote(add["path"]))
    dirs: set[Path] = {root, log_file.parent}
    for path in [*files, log_file]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        parent = path.parent
        while parent != root and root in parent.parents:
            dirs.add(parent)
            parent = parent.parent
    for directory in sorted(dirs, key=lambda d: len(d.parts), reverse=True):  # deepest first
        fsync_dir(directory)
    return len(files) + 1


def append_exactly_once(root: Path, kind: str, rows: pa.Table, app_prefix: str,
                        *, batch_guard: bool = False, by: str = "offset") -> Commit:
    """Append `rows` as one transaction, each key at most once (see the module docstring).

    `app_prefix` names the writer's stream (`"<group>:<topic>"`); progress is tracked per source
    partition offset (`by="offset"`, rows carry `source_partition`/`source_offset`) or per product
    event time (`by="event_time"`). `batch_guard` (features): drop rows a batch rebuild covers.
    """
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    if rows.num_rows == 0:
        return Commit(0, 0, None)
    marks = _progress(rows, by)
    for attempt in range(COMMIT_ATTEMPTS):
        table = ensure_table(root, kind)
        todo = rows
        txns = []
        overlap = False
        for suffix, lo, hi in marks:
            app_id = f"{app_prefix}:{suffix}"
            done = table.transaction_version(app_id)
            overlap = overlap or (done is not None and done > lo)
            txns.append(Transaction(app_id, max(hi + 1, done or 0)))
        if batch_guard:
            pairs = todo.select(["product_id", "date"]).group_by(["product_id", "date"]).aggregate([])
            for product, day in sorted(zip(pairs["product_id"].to_pylist(), pairs["date"].to_pylist(),
                                           strict=True)):
                app_id = batch_app_id(product, day)
                covered = table.transaction_version(app_id)
                if covered is not None:
                    mask = pc.invert(pc.and_(pc.and_(pc.equal(todo["product_id"], product),
                                                     pc.equal(todo["date"], day)),
                                             pc.less_equal(todo["event_time_ns"], covered)))
                    todo = todo.filter(mask)
                txns.append(Transaction(app_id, -1 if covered is None else covered))
        if overlap and todo.num_rows:
            todo = _drop_keys(todo, _existing_keys(table, todo))
        skipped = rows.num_rows - todo.num_rows
        if todo.num_rows == 0:
            return Commit(0, skipped, None)
        try:
            write_deltalake(table, todo, mode="append", partition_by=PARTITION_BY,
                            commit_properties=CommitProperties(app_transactions=txns))
        except CommitFailedError as exc:  # another writer committed the same app id: re-read, retry
            log.info("concurrent commit on %s (%s); retrying (%d)", root, exc, attempt + 1)
            time.sleep(0.01 * (attempt + 1))
            continue
        sync_version(root, table.version())
        return Commit(todo.num_rows, skipped, table.version())
    raise RuntimeError(f"could not commit to {root} after {COMMIT_ATTEMPTS} concurrent conflicts")


def replace_partition(root: Path, rows: pa.Table, product: str, day: str) -> Commit:
    """Replace the feature rows of (product, day) up to the newest of `rows` with `rows`, in one
    transaction (predicate overwrite); stream rows after it stay. Empty `rows`: the whole
    partition becomes empty."""
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    where = f"product_id = {_sql_str(product)} AND date = {_sql_str(day)}"
    for attempt in range(COMMIT_ATTEMPTS):
        table = ensure_table(root, "features")
        try:
            if rows.num_rows == 0:
                table.delete(where)
                sync_version(root, table.version())
                return Commit(0, 0, table.version())
            newest = int(pc.max(rows["event_time_ns"]).as_py())
            write_deltalake(
                table, rows, mode="overwrite", partition_by=PARTITION_BY,
                predicate=f"{where} AND event_time_ns <= {newest}",
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(batch_app_id(product, day), newest)]),
            )
        except CommitFailedError as exc:  # a stream flush into the same partition won the race
            log.info("concurrent commit on %s %s %s (%s); retrying", root, product, day, exc)
            time.sleep(0.01 * (attempt + 1))
            continue
        sync_version(root, table.version())
        return Commit(rows.num_rows, 0, table.version())
    raise RuntimeError(f"could not replace {product} {day} in {root} after {COMMIT_ATTEMPTS} conflicts")


def scan(root: Path, *, columns: Sequence[str] | None = None, products: Iterable[str] | None = None,
         days: Iterable[str] | None = None, filter=None, version: int | None = None
         ) -> tuple[pa.Table | None, int | None]:
    """Rows of the table at `root` (at `version`), pruned by product/day partitions; (None, None)
    if there is no table."""
    table = open_table(root, version)
    if table is None:
        return None, None
    partitions = []
    if products is not None:
        partitions.append(("product_id", "in", list(products)))
    if days is not None:
        partitions.append(("date", "in", list(days)))
    data = table.to_pyarrow_dataset(partitions=partitions or None)
    return data.to_table(columns=list(columns) if columns else None, filter=filter), table.version()


@dataclass(frozen=True)
class MaintenanceResult:
    kind: str
    version_before: int | None
    version_after: int | None
    files_before: int
    files_after: int
    files_removed_by_vacuum: int
    seconds: float

    def summary(self) -> str:
        if self.version_before is None:
            return f"{self.kind}: no table yet"
        return (f"{self.kind}: {self.files_before} -> {self.files_after} data files, "
                f"{self.files_removed_by_vacuum} unreferenced files vacuumed, table version "
                f"{self.version_before} -> {self.version_after}, checkpoint written, {self.seconds:.2f} s")


def maintain(root: Path, kind: str, *, retention_hours: float = VACUUM_RETENTION_HOURS, dry_run: bool = False
             ) -> MaintenanceResult:
    """Compact small files (`optimize.compact`), write a checkpoint, vacuum files unreferenced for
    `retention_hours` (readers of older versions within it keep working). Safe while the writers
    run: compaction rewrites data, never rows, and a conflicting commit is simply retried later."""
    from deltalake.exceptions import CommitFailedError

    started = time.perf_counter()
    table = open_table(root)
    if table is None:
        return MaintenanceResult(kind, None, None, 0, 0, 0, 0.0)
    before = table.version()
    files_before = len(table.file_uris())
    removed = 0
    if not dry_run:
        try:
            table.optimize.compact()
        except CommitFailedError as exc:
            log.warning("compaction of %s lost a race with a writer (%s); next run retries", root, exc)
        hours = max(0, int(retention_hours))
        removed = len(table.vacuum(retention_hours=hours, dry_run=False,
                                   enforce_retention_duration=False))
        table = open_table(root)
        table.create_checkpoint()  # readers start from here instead of replaying every commit
    return MaintenanceResult(kind, before, table.version(), files_before, len(table.file_uris()), removed,
                             time.perf_counter() - started)


__all__ = [
    "FEATURE_SCHEMA",
    "PREDICTION_SCHEMA",
    "Commit",
    "MaintenanceResult",
    "append_exactly_once",
    "ensure_table",
    "maintain",
    "open_table",
    "replace_partition",
    "scan",
]
