"""The batch featurizer: one landing file (product, UTC day) -> one feature Parquet partition.

It runs the same `compute_features` as the streaming featurizer and the service. The previous
day's last `HISTORY_S` seconds are passed as context rows, so the first rows of a day are warm
exactly when the stream's would be (a segment running across midnight stays warm).

Which ticks become rows follows the one event-time rule of `cryptovol.eventtime`, applied to the
landing file's lines in their (arrival) order exactly as the streaming engine applies it to the
Kafka records: late ticks (behind the newest earlier arrival - lateness) and repeated identities
are skipped and counted, the rest are ordered by event time (stable, so equal timestamps keep their
arrival order). So stream == batch row for row, out-of-order arrivals included. Invalid landing
lines are skipped and counted by reason (they stay in the landing file: nothing is lost).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryptovol import lake
from cryptovol.eventtime import LATENESS_S, admitted_mask
from cryptovol.features import compute_features, empty_feature_frame
from cryptovol.featureset import FEATURE_SET, HISTORY_S

log = logging.getLogger(__name__)

HISTORY_NS = int(HISTORY_S * 1e9)


@dataclass(frozen=True)
class BatchResult:
    """What `featurize_day` did for one partition."""

    product: str
    day: str
    rows: int
    path: Path | None
    lines: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    context_rows: int = 0
    warm_rows: int = 0
    seconds: float = 0.0
    first_event_ns: int | None = None
    last_event_ns: int | None = None
    #: valid ticks the event-time rule skipped (late or repeated), see `cryptovol.eventtime`
    skipped_late: int = 0

    @property
    def invalid_count(self) -> int:
        return int(sum(self.invalid.values()))

    @property
    def ticks_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        bad = ""
        if self.invalid:
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.invalid.items()))
            bad = f", skipped {self.invalid_count} invalid line(s) ({reasons})"
        if self.skipped_late:
            bad += f", skipped {self.skipped_late} late/repeated tick(s)"
        return (
            f"{self.product} {self.day}: {self.rows:,} rows ({self.warm_rows:,} warm), "
            f"context {self.context_rows:,} rows{bad}, {self.seconds:.2f} s -> {self.path}"
        )


def _sorted(ticks: pd.DataFrame) -> pd.DataFrame:
    times = ticks["event_time_ns"].to_numpy(dtype=np.int64)
    if len(times) > 1 and bool(np.any(times[1:] < times[:-1])):
        ticks = ticks.sort_values("event_time_ns", kind="stable")
    return ticks.reset_index(drop=True)


def admitted(ticks: pd.DataFrame, *, lateness_ns: int, prior_max_ns: int | None = None) -> pd.DataFrame:
    """The ticks of one product (in arrival order) that the event-time rule turns into rows."""
    if len(ticks) == 0:
        return ticks
    keep = admitted_mask(ticks["event_time_ns"].to_numpy(dtype=np.int64),
                         ticks["sequence"].to_numpy(dtype=np.int64),
                         lateness_ns=lateness_ns, prior_max_ns=prior_max_ns)
    return ticks if keep.all() else ticks.loc[keep].reset_index(drop=True)


def featurize_frames(
    day_ticks: pd.DataFrame,
    context_ticks: pd.DataFrame | None = None,
    *,
    lateness_s: float = LATENESS_S,
) -> pd.DataFrame:
    """Pure core of the batch path: one product's day of ticks (+ earlier context), each in arrival
    (file) order -> feature rows of the ticks the event-time rule admits.

    Only context rows within `HISTORY_S` before, and not after, the day's first tick are used.
    """
    lateness_ns = int(round(lateness_s * 1e9))
    prior = None
    if context_ticks is not None and len(context_ticks):
        context_ticks = admitted(context_ticks, lateness_ns=lateness_ns)
        prior = int(context_ticks["event_time_ns"].max())
    day_ticks = _sorted(admitted(day_ticks, lateness_ns=lateness_ns, prior_max_ns=prior))
    if len(day_ticks) == 0:
        return empty_feature_frame()
    context = None
    if context_ticks is not None and len(context_ticks):
        first = int(day_ticks["event_time_ns"].iloc[0])
        times = context_ticks["event_time_ns"].to_numpy(dtype=np.int64)
        keep = (times >= first - HISTORY_NS) & (times <= first)
        context = _sorted(context_ticks.loc[keep]) if keep.any() else None
    if context is None:
        return compute_features(day_ticks)
    both = pd.concat([context, day_ticks], ignore_index=True)
    return compute_features(both, emit_from=len(context))


def featurize_day(
    where: lake.DataDir, product: str, day: lake.DayLike, *, write: bool = True,
    lateness_s: float = LATENESS_S,
) -> BatchResult:
    """Featurize `raw/<product>/<day>.ndjson` into `features/product=<product>/date=<day>/part-batch.parquet`.

    Raises FileNotFoundError when the landing file does not exist. A file without valid ticks
    writes an empty partition (0 rows), so the lake says what the landing file holds.
    """
    started = time.perf_counter()
    day = lake.day_str(day)
    read = lake.read_landing_file(lake.landing_path(where, product, day), product=product)
    ticks = read.ticks
    context = None
    if len(ticks):
        prev = lake.landing_path(where, product, lake.previous_day(day))
        if prev.exists() and prev.stat().st_size:
            first = int(ticks["event_time_ns"].min())
            context = lake.read_landing_tail(prev, first - HISTORY_NS, product=product)
    frame = featurize_frames(ticks, context, lateness_s=lateness_s)
    context_rows = 0
    if context is not None and len(frame):
        first = int(frame["event_time_ns"].iloc[0])
        times = context["event_time_ns"].to_numpy(dtype=np.int64)
        context_rows = int(((times >= first - HISTORY_NS) & (times <= first)).sum())
    path = lake.write_feature_part(frame, where, product, day) if write else None
    warm = int(frame[FEATURE_SET.names].notna().all(axis=1).sum()) if len(frame) else 0
    times = frame["event_time_ns"]
    result = BatchResult(
        product=product,
        day=day,
        rows=len(frame),
        path=path,
        lines=read.lines,
        invalid=dict(read.invalid),
        context_rows=context_rows,
        warm_rows=warm,
        seconds=time.perf_counter() - started,
        first_event_ns=int(times.iloc[0]) if len(frame) else None,
        last_event_ns=int(times.iloc[-1]) if len(frame) else None,
        skipped_late=len(ticks) - len(frame),
    )
    if result.invalid:
        log.warning("%s %s: skipped %d invalid landing line(s): %s", product, day,
                    result.invalid_count, result.invalid)
    return result


def stale_partitions(where: lake.DataDir) -> list[tuple[str, str]]:
    """Landing partitions whose batch feature part is missing or older than the landing file
    (the day after a changed day is stale too: its context changed)."""
    paths = lake.LakePaths.of(where)
    parts = lake.list_landing_partitions(where)
    stale = set()
    for product, day in parts:
        src = paths.landing_file(product, day)
        out = paths.feature_part(product, day)
        if not out.exists() or out.stat().st_mtime_ns < src.stat().st_mtime_ns:
            stale.add((product, day))
            nxt = (pd.Timestamp(day) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
            if (product, nxt) in parts:
                stale.add((product, nxt))
    return sorted(stale, key=lambda p: (p[1], p[0]))


def select_partitions(
    where: lake.DataDir,
    *,
    products: Iterable[str] | None = None,
    days: Iterable[lake.DayLike] | None = None,
    only_stale: bool = False,
) -> list[tuple[str, str]]:
    """Landing partitions filtered by product/day, optionally only the stale ones."""
    parts = stale_partitions(where) if only_stale else lake.list_landing_partitions(where)
    wanted_p = {p.upper() for p in products} if products else None
    wanted_d = {lake.day_str(d) for d in days} if days else None
    return [
        (p, d) for p, d in parts
        if (wanted_p is None or p.upper() in wanted_p) and (wanted_d is None or d in wanted_d)
    ]


def featurize_partitions(where: lake.DataDir, partitions: Iterable[tuple[str, str]]) -> list[BatchResult]:
    """Featurize partitions in (day, product) order."""
    return [featurize_day(where, product, day) for product, day in partitions]


__all__ = [
    "BatchResult",
    "admitted",
    "featurize_day",
    "featurize_frames",
    "featurize_partitions",
    "select_partitions",
    "stale_partitions",
]
