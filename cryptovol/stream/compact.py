"""Merge the streaming featurizer's small Parquet parts once they are old.

Why: the featurizer makes its rows durable every second, one part file per (product, UTC date,
source partition) per flush, so a day of two products is up to ~170,000 files. DuckDB views,
`lake.read_features`, training and drift list and open every one of them.

What: per (product, date, source partition), the stream parts whose every row is more than
`older_than_s` older than the product's newest stream part are merged into one part with the
same naming scheme (first event time, partition, offset range), rows sorted by event time and one
row per key, written atomically; then the merged sources are deleted.

Safe while the featurizer runs:
- parts are immutable once renamed, and the featurizer never rewrites an old one;
- `older_than_s` must exceed the re-warm window a restarted featurizer reads (`HISTORY_S`), so
  `load_durable_state` never needs a part that is being merged;
- readers return each key once, so the moment between the rename and the deletions (or a crash
  there) shows every row once; the next run folds the leftovers in.

A reader that listed the files before a run (a DuckDB connection from `lake.connect`) must
reconnect. One compaction at a time per feature directory (a lock file; a second one is refused).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cryptovol.featureset import HISTORY_S
from cryptovol.stream.sink import (
    NS,
    SCHEMA,
    STREAM_PREFIX,
    fsync_dir,
    parse_part_name,
    part_name,
    write_part_atomic,
)

#: Parts older than this (behind the product's newest part) are merged by default.
DEFAULT_OLDER_THAN_S = 3600.0
LOCK_NAME = ".compact.lock"


class CompactionBusyError(RuntimeError):
    """Another compaction holds the feature directory's lock."""


@dataclass(frozen=True)
class PartGroup:
    """Stream parts of one (product, date, source partition) that can be merged into one."""

    product: str
    date: str
    partition: int
    files: tuple[Path, ...]

    @property
    def directory(self) -> Path:
        return self.files[0].parent


@dataclass
class CompactionResult:
    """What one run did (or, with `dry_run`, would do)."""

    groups: list[PartGroup] = field(default_factory=list)
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would merge" if self.dry_run else "merged"
        if not self.groups:
            return "nothing to compact (no product/date/partition with 2+ parts old enough)"
        text = (f"{verb} {self.files_before:,} stream parts into {len(self.groups):,} "
                "(one per product, date and source partition)")
        if self.dry_run:
            return text
        return (f"{text}: {self.rows:,} rows, {self.bytes_before / 1e6:,.1f} MB -> "
                f"{self.bytes_after / 1e6:,.1f} MB in {self.seconds:.2f} s")


def _max_event_ns(path: Path) -> int | None:
    """The newest event time in a part (None if it has no rows), from the footer's statistics."""
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("event_time_ns")
    newest = None
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max:
            return int(pq.read_table(path, columns=["event_time_ns"]).column(0).to_numpy().max())
        newest = stats.max if newest is None else max(newest, stats.max)
    return int(newest) if newest is not None else None


def plan(features_dir: Path, older_than_s: float = DEFAULT_OLDER_THAN_S,
         min_files: int = 2) -> list[PartGroup]:
    """The groups a run would merge: parts entirely older than the product's newest part's first
    event time minus `older_than_s`, grouped by (product, date, partition), `min_files` or more."""
    if older_than_s <= HISTORY_S:
        raise ValueError(
            f"older_than_s={older_than_s:g} must exceed the featurizer's re-warm window "
            f"({HISTORY_S:g} s): a restarted featurizer reads the parts inside it"
        )
    groups: list[PartGroup] = []
    for product_dir in sorted(Path(features_dir).glob("product=*")):
        parts = [(f, parse_part_name(f.name)) for f in product_dir.glob(f"date=*/{STREAM_PREFIX}*.parquet")]
        parts = [(f, parsed) for f, parsed in parts if parsed is not None]
        if not parts:
            continue
        # The newest first event time of the product: a lower bound of its newest row, so the
        # cutoff errs on the side of merging less.
        cutoff = max(parsed[0] for _, parsed in parts) - int(older_than_s * NS)
        by_group: dict[tuple[str, int], list[Path]] = defaultdict(list)
        for f, (first_ns, partition, _, _) in parts:
            if first_ns >= cutoff:
                continue
            newest = _max_event_ns(f)
            if newest is not None and newest < cutoff:  # (the featurizer never writes empty parts)
                by_group[(f.parent.name, partition)].append(f)
        product = product_dir.name.split("=", 1)[1]
        for (date_dir, partition), files in sorted(by_group.items()):
            if len(files) >= min_files:
                groups.append(PartGroup(product, date_dir.split("=", 1)[1], partition,
                                        tuple(sorted(files))))
    return groups


def merge_group(group: PartGroup) -> tuple[Path, int]:
    """Write the group's rows as one part (sorted, one row per key), then delete the sources.

    Returns the merged part and its row count.
    """
    table = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in group.files])
    table = table.sort_by([("event_time_ns", "ascending"), ("sequence", "ascending"),
                           ("source_offset", "ascending")])
    times = table.column("event_time_ns").to_numpy()
    sequences = table.column("sequence").to_numpy()
    first_of_key = np.ones(len(times), dtype=bool)
    first_of_key[1:] = (times[1:] != times[:-1]) | (sequences[1:] != sequences[:-1])
    if not first_of_key.all():
        table = table.filter(pa.array(first_of_key))
    offsets = table.column("source_offset").to_numpy()
    name = part_name(int(times[0]), group.partition, int(offsets.min()), int(offsets.max()))
    written = write_part_atomic(group.directory, name, table.replace_schema_metadata(SCHEMA.metadata))
    for source in group.files:
        if source != written.path:  # a leftover of a crashed run can share the merged name
            with suppress(FileNotFoundError):
                source.unlink()
    fsync_dir(group.directory)
    return written.path, written.rows


@contextmanager
def _exclusive(features_dir: Path) -> Iterator[None]:
    Path(features_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(features_dir) / LOCK_NAME, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CompactionBusyError(f"another compaction of {features_dir} is running") from exc
        yield


def compact_stream_parts(features_dir: Path, older_than_s: float = DEFAULT_OLDER_THAN_S, *,
                         min_files: int = 2, dry_run: bool = False) -> CompactionResult:
    """Merge old stream parts (see the module docstring); `dry_run` only plans."""
    started = time.perf_counter()
    with _exclusive(features_dir):
        groups = plan(features_dir, older_than_s, min_files)
        result = CompactionResult(groups=groups, dry_run=dry_run,
                                  files_before=sum(len(g.files) for g in groups))
        if dry_run:
            return result
        for group in groups:
            result.bytes_before += sum(os.path.getsize(f) for f in group.files)
            merged, rows = merge_group(group)
            result.rows += rows
            result.bytes_after += os.path.getsize(merged)
            result.files_after += 1
    result.seconds = time.perf_counter() - started
    return result
