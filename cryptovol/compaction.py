"""Merge the small Parquet parts the streaming featurizer and the scorer leave, once they are old.

Why: both make their rows durable every second or so, one part file per (product, UTC date[,
source partition]) per flush, so a day of two products is up to ~170,000 feature parts and as many
prediction parts. DuckDB views, `lake.read_features`, training and drift list and open every one.

What: per (product, date[, source partition]), the parts whose every row is more than
`older_than_s` older than the product's newest part are merged into one part, rows sorted by event
time, written atomically; then the merged sources are deleted.

- Feature parts keep their naming scheme (first event time, source partition, offset range) and
  one row per key (product, event time, sequence), as every feature reader returns them.
- Prediction parts are at-least-once (a scorer restarted after a crash may score a row again, and
  drift keeps the last score per key); merging keeps every score and drops only exact copies of one
  (same key and `scored_at_ns`), so a merge changes no reader's answer.

Safe while the featurizer and the scorer run:
- parts are immutable once renamed, and neither process rewrites an old one;
- `older_than_s` must exceed the re-warm window a restarted featurizer reads (`HISTORY_S`), so
  `load_durable_state` never needs a feature part that is being merged;
- between the rename and the deletions (or after a crash there) a row is in two files: feature
  readers return each key once and drift keeps one score per key; the next run folds the
  leftovers in.

A reader that listed the files before a run (a DuckDB connection from `lake.connect`) must
reconnect. One compaction at a time per tree (a lock file; a second one is refused).
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cryptovol.config import COMPACT_OLDER_THAN_S
from cryptovol.featureset import HISTORY_S
from cryptovol.lake import newest_event_ns
from cryptovol.scoring.sink import PREDICTION_SCHEMA
from cryptovol.stream.sink import (
    NS,
    SCHEMA,
    STREAM_PREFIX,
    fsync_dir,
    parse_part_name,
    part_name,
    write_part_atomic,
)

LOCK_NAME = ".compact.lock"
#: Name prefix of merged prediction parts (the scorer's own parts are `part-<UTC time>-<id>`).
MERGED_PREDICTIONS_PREFIX = "part-merged-"


class CompactionBusyError(RuntimeError):
    """Another compaction holds the tree's lock."""


@dataclass(frozen=True)
class PartGroup:
    """Parts of one (product, date[, source partition]) that can be merged into one."""

    product: str
    date: str
    partition: int | None  # the source partition of feature parts; None for predictions
    files: tuple[Path, ...]

    @property
    def directory(self) -> Path:
        return self.files[0].parent


@dataclass
class CompactionResult:
    """What one run over one tree did (or, with `dry_run`, would do)."""

    kind: str
    groups: list[PartGroup] = field(default_factory=list)
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def summary(self) -> str:
        if not self.groups:
            return f"{self.kind}: nothing to compact (no product/date with 2+ parts old enough)"
        verb = "would merge" if self.dry_run else "merged"
        text = f"{self.kind}: {verb} {self.files_before:,} parts into {len(self.groups):,}"
        if self.dry_run:
            return text
        return (f"{text}: {self.rows:,} rows, {self.bytes_before / 1e6:,.1f} MB -> "
                f"{self.bytes_after / 1e6:,.1f} MB in {self.seconds:.2f} s")


def _check_age(older_than_s: float) -> int:
    if older_than_s <= HISTORY_S:
        raise ValueError(
            f"older_than_s={older_than_s:g} must exceed the featurizer's re-warm window "
            f"({HISTORY_S:g} s): a restarted featurizer reads the parts inside it"
        )
    return int(older_than_s * NS)


def _groups(by_group: dict[tuple[str, str, int | None], list[Path]], min_files: int) -> list[PartGroup]:
    return [PartGroup(product, date, partition, tuple(sorted(files)))
            for (product, date, partition), files in sorted(by_group.items(), key=lambda kv: str(kv[0]))
            if len(files) >= min_files]


def plan_features(features_dir: Path, older_than_s: float = COMPACT_OLDER_THAN_S,
                  min_files: int = 2) -> list[PartGroup]:
    """Feature parts entirely older than the product's newest part's first event time minus
    `older_than_s`, grouped by (product, date, source partition), `min_files` or more per group."""
    age_ns = _check_age(older_than_s)
    by_group: dict[tuple[str, str, int | None], list[Path]] = defaultdict(list)
    for product_dir in sorted(Path(features_dir).glob("product=*")):
        parts = [(f, parse_part_name(f.name)) for f in product_dir.glob(f"date=*/{STREAM_PREFIX}*.parquet")]
        parts = [(f, parsed) for f, parsed in parts if parsed is not None]
        if not parts:
            continue
        # The newest first event time (from the names, no I/O) is a lower bound of the newest row,
        # so the cutoff errs on the side of merging less.
        cutoff = max(parsed[0] for _, parsed in parts) - age_ns
        product = product_dir.name.split("=", 1)[1]
        for f, (first_ns, partition, _, _) in parts:
            if first_ns >= cutoff:
                continue
            newest = newest_event_ns(f)
            if newest is not None and newest < cutoff:  # (the featurizer never writes empty parts)
                by_group[(product, f.parent.name.split("=", 1)[1], partition)].append(f)
    return _groups(by_group, min_files)


def plan_predictions(predictions_dir: Path, older_than_s: float = COMPACT_OLDER_THAN_S,
                     min_files: int = 2) -> list[PartGroup]:
    """Prediction parts entirely older than the product's newest scored row minus `older_than_s`,
    grouped by (product, date), `min_files` or more per group."""
    age_ns = _check_age(older_than_s)
    by_group: dict[tuple[str, str, int | None], list[Path]] = defaultdict(list)
    for product_dir in sorted(Path(predictions_dir).glob("product=*")):
        newest_of = {f: newest_event_ns(f) for f in product_dir.glob("date=*/part-*.parquet")}
        newest_of = {f: newest for f, newest in newest_of.items() if newest is not None}
        if not newest_of:
            continue
        cutoff = max(newest_of.values()) - age_ns
        product = product_dir.name.split("=", 1)[1]
        for f, newest in newest_of.items():
            if newest < cutoff:
                by_group[(product, f.parent.name.split("=", 1)[1], None)].append(f)
    return _groups(by_group, min_files)


def _first_of_each(table: pa.Table, columns: list[str]) -> pa.Table:
    """Rows of a table sorted by `columns` whose values differ from the previous row's."""
    keys = [table.column(c).to_numpy() for c in columns]
    first = np.ones(table.num_rows, dtype=bool)
    if table.num_rows > 1:
        first[1:] = np.logical_or.reduce([k[1:] != k[:-1] for k in keys])
    return table if first.all() else table.filter(pa.array(first))


def _merge_features(group: PartGroup) -> tuple[str, pa.Table]:
    table = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in group.files])
    table = table.sort_by([("event_time_ns", "ascending"), ("sequence", "ascending"),
                           ("source_offset", "ascending")])
    table = _first_of_each(table, ["event_time_ns", "sequence"])
    offsets = table.column("source_offset").to_numpy()
    first_ns = int(table.column("event_time_ns")[0].as_py())
    name = part_name(first_ns, group.partition, int(offsets.min()), int(offsets.max()))
    return name, table.replace_schema_metadata(SCHEMA.metadata)  # the feature-set version readers check


def _merge_predictions(group: PartGroup) -> tuple[str, pa.Table]:
    table = pa.concat_tables([pq.read_table(f, schema=PREDICTION_SCHEMA) for f in group.files])
    table = table.sort_by([("event_time_ns", "ascending"), ("sequence", "ascending"),
                           ("scored_at_ns", "ascending")])
    table = _first_of_each(table, ["event_time_ns", "sequence", "scored_at_ns"])
    first_ns = int(table.column("event_time_ns")[0].as_py())
    return f"{MERGED_PREDICTIONS_PREFIX}t{first_ns:019d}-{uuid.uuid4().hex[:12]}.parquet", table


def merge_group(group: PartGroup, merge: Callable[[PartGroup], tuple[str, pa.Table]]) -> tuple[Path, int]:
    """Write the group's rows as one part (atomically), then delete the sources.

    Returns the merged part and its row count.
    """
    name, table = merge(group)
    written = write_part_atomic(group.directory, name, table)
    for source in group.files:
        if source != written.path:  # a feature leftover of a crashed run can share the merged name
            with suppress(FileNotFoundError):
                source.unlink()
    fsync_dir(group.directory)
    return written.path, written.rows


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / LOCK_NAME, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CompactionBusyError(f"another compaction of {root} is running") from exc
        yield


def _compact(kind: str, root: Path, plan: Callable[..., list[PartGroup]],
             merge: Callable[[PartGroup], tuple[str, pa.Table]], older_than_s: float, min_files: int,
             dry_run: bool) -> CompactionResult:
    started = time.perf_counter()
    _check_age(older_than_s)
    if not Path(root).is_dir():
        return CompactionResult(kind, dry_run=dry_run)
    with _exclusive(root):
        groups = plan(root, older_than_s, min_files)
        result = CompactionResult(kind, groups=groups, dry_run=dry_run,
                                  files_before=sum(len(g.files) for g in groups))
        if dry_run:
            return result
        for group in groups:
            result.bytes_before += sum(os.path.getsize(f) for f in group.files)
            merged, rows = merge_group(group, merge)
            result.rows += rows
            result.bytes_after += os.path.getsize(merged)
            result.files_after += 1
    result.seconds = time.perf_counter() - started
    return result


def compact_feature_parts(features_dir: Path, older_than_s: float = COMPACT_OLDER_THAN_S, *,
                          min_files: int = 2, dry_run: bool = False) -> CompactionResult:
    """Merge old stream feature parts (see the module docstring); `dry_run` only plans."""
    return _compact("features", features_dir, plan_features, _merge_features, older_than_s, min_files,
                    dry_run)


def compact_prediction_parts(predictions_dir: Path, older_than_s: float = COMPACT_OLDER_THAN_S, *,
                             min_files: int = 2, dry_run: bool = False) -> CompactionResult:
    """Merge old scorer prediction parts (see the module docstring); `dry_run` only plans."""
    return _compact("predictions", predictions_dir, plan_predictions, _merge_predictions, older_than_s,
                    min_files, dry_run)

