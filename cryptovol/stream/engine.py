"""The streaming featurizer's state machine, without Kafka: event-time reordering, per-product
incremental feature state, exactly-once bookkeeping against what is already durable.

Features come from `cryptovol.features.RollingFeatures`, the incremental form of the one feature
implementation (`compute_features`): per product it keeps only O(1)-per-second rolling state and a
short as-of tick buffer, so a tick costs the same whatever the window lengths (the tail-recompute
it replaces re-ran the ~320 s history with every release). Rows equal the batch computation within
1e-9 relative (`tests/stream/test_stream_engine.py`, `tests/features/test_features_rolling.py`).

Out-of-order policy: the one rule of `cryptovol.eventtime`, which the batch featurizer applies
to the landing files identically (so stream == batch row for row, out-of-order arrivals included):

- Each product has a watermark `max event time seen - lateness`. With the default lateness 0 an
  in-order tick is released the moment it arrives; with lateness > 0 arriving ticks wait in a small
  per-product buffer and are released in event-time order (ties: arrival order, like the batch
  path's stable sort) once the watermark has passed them.
- A tick that arrives behind its product's watermark (event time < max seen - lateness), or behind
  a row already emitted, is *late*: reported to the caller (dead-lettered with reason `late_tick`)
  and counted, never emitted out of order. The verdict depends on arrival order only, not on how
  records happen to be batched into polls, so replaying the same records gives the same verdicts.
- A tick whose identity (event_time_ns, sequence) was emitted within the last `HISTORY_S` or is
  in the buffer is a duplicate (at-least-once delivery upstream) and is dropped and counted.
- When a product has received nothing for `idle_release_s` of wall-clock time its buffer is
  released anyway (processing-time idleness, as Flink does), so the end of a stream is not held
  back forever. This is the only place where wall-clock time influences output.

Exactly-once in the Parquet sink (see `sink.DurableState`): after a restart or a rebalance each
product starts from what the Parquet part files already hold: ticks up to the last durable event
time are never emitted again; those whose identity is in the durable window (the last `HISTORY_S`
before it) are fed to the rolling feature state instead (re-warm), so the next emitted row sees the
history it would have seen without the interruption.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
import numpy as np
import pandas as pd

from cryptovol.eventtime import LATENESS_S
from cryptovol.features import RollingFeatures
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, HISTORY_S
from cryptovol.ticks import Tick

NS = 1_000_000_000
HISTORY_NS = int(HISTORY_S * NS)

#: Columns taken from the ticks of one release (what `RollingFeatures.update` needs, plus keys).
_TICK_FIELDS = ("event_time_ns", "sequence", "best_bid", "best_ask", "best_bid_qty", "best_ask_qty",
                "volume_24h")


class SourceRecord(msgspec.Struct, frozen=True, gc=False):
    """A tick and where it was read from (so output rows carry their lineage).

    A msgspec Struct: one is built per consumed record, ~10x cheaper than a frozen dataclass.
    """

    tick: Tick
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A tick the engine will not emit, with the dead-letter reason."""

    record: SourceRecord
    reason: str
    detail: str


@dataclass
class DurableState:
    """What the sink already holds for one product: the last event time written, the identities
    (event_time_ns, sequence) written within `HISTORY_S` before it (to re-warm the tail), and per
    source partition the lowest source offset of those rows (where to seek back to)."""

    product_id: str
    last_event_time_ns: int
    window_ids: set[tuple[int, int]]
    warm_offsets: dict[int, int]


@dataclass
class FeatureBatch:
    """Feature rows emitted for one product by one release, in event-time order."""

    product_id: str
    event_time_ns: np.ndarray
    sequence: np.ndarray
    features: dict[str, np.ndarray]
    source_partition: np.ndarray
    source_offset: np.ndarray
    compute_s: float = 0.0
    #: When the ingestor received each tick (wall clock, UTC ns): travels to the scorer for the
    #: tick-received -> prediction-produced latency. Not part of the Parquet schema.
    receive_time_ns: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.event_time_ns)

    def frame(self) -> pd.DataFrame:
        """Sink schema: `FEATURE_SET.columns` + feature_set_version + source partition/offset."""
        n = len(self)
        data: dict[str, object] = {
            "product_id": pd.array([self.product_id] * n, dtype="string"),
            "event_time_ns": self.event_time_ns.astype(np.int64),
            "sequence": self.sequence.astype(np.int64),
        }
        data.update({name: self.features[name] for name in FEATURE_NAMES})
        data["feature_set_version"] = pd.array([FEATURE_SET.version] * n, dtype="string")
        data["source_partition"] = self.source_partition.astype(np.int32)
        data["source_offset"] = self.source_offset.astype(np.int64)
        return pd.DataFrame(data)


@dataclass
class EngineCounters:
    offered: int = 0
    emitted: int = 0
    late: int = 0
    duplicates: int = 0
    rewarmed: int = 0
    skipped_durable: int = 0
    compute_calls: int = 0
    compute_s: float = 0.0


_OUTCOMES = ("buffered", "late", "duplicate", "rewarmed", "skipped_durable")


class ProductStream:
    """One product: reorder buffer, rolling feature state, and the durable boundary after a (re)start."""

    def __init__(
        self,
        product_id: str,
        *,
        lateness_ns: int,
        durable: DurableState | None = None,
        resume_offsets: dict[int, int] | None = None,
    ) -> None:
        self.product_id = product_id
        self.lateness_ns = int(lateness_ns)
        self._rolling = RollingFeatures()
        self._tail_ids: deque[tuple[int, int]] = deque()
        self._tail_id_set: set[tuple[int, int]] = set()
        self._warm: list[Tick] = []
        self._heap: list[tuple[int, int, SourceRecord]] = []
        self._buffer_ids: set[tuple[int, int]] = set()
        self._arrival = itertools.count()
        self.last_emitted_ns: int | None = None
        self.max_seen_ns: int | None = None
        self.last_arrival_monotonic = time.monotonic()
        self._durable_ns: int | None = None
        self._durable_ids: set[tuple[int, int]] = set()
        self._resume = dict(resume_offsets or {})
        if durable is not None:
            self._durable_ns = durable.last_event_time_ns
            self._durable_ids = set(durable.window_ids)
            self.last_emitted_ns = durable.last_event_time_ns
            self.max_seen_ns = durable.last_event_time_ns

    # -- intake --------------------------------------------------------------------------------
    def offer(self, rec: SourceRecord) -> str:
        """Take one tick; returns one of `_OUTCOMES`."""
        tick = rec.tick
        et = tick.event_time_ns
        ident = (et, tick.sequence)
        self.last_arrival_monotonic = time.monotonic()
        if self._durable_ns is not None and et <= self._durable_ns:
            if ident in self._durable_ids:
                if ident not in self._tail_id_set:
                    self._warm.append(tick)
                    self._tail_id_set.add(ident)
                    return "rewarmed"
                return "skipped_durable"
            if et < self._durable_ns:
                # Not in the sink: it was late (or a duplicate) the first time round. Read again
                # only to re-warm; it is dead-lettered again only if it lies past the committed
                # offset (its first dead-letter may not have been flushed).
                resume = self._resume.get(rec.partition)
                if resume is not None and rec.offset >= resume and ident not in self._tail_id_set:
                    return "late"
                return "skipped_durable"
            # same timestamp as the last durable row but a new identity: a new tick, go on.
        if ident in self._tail_id_set or ident in self._buffer_ids:
            return "duplicate"
        if self.is_late(et):
            return "late"
        heapq.heappush(self._heap, (et, next(self._arrival), rec))
        self._buffer_ids.add(ident)
        if self.max_seen_ns is None or et > self.max_seen_ns:
            self.max_seen_ns = et
        return "buffered"

    def watermark_ns(self) -> int | None:
        return None if self.max_seen_ns is None else self.max_seen_ns - self.lateness_ns

    def is_late(self, event_time_ns: int) -> bool:
        """Behind the watermark at arrival, or behind a row already emitted (after an idle release).

        Decided from arrival order alone (not from how records were batched into polls), so a
        replay of the same records classifies the same ticks as late.
        """
        wm = self.watermark_ns()
        if wm is not None and event_time_ns < wm:
            return True
        return self.last_emitted_ns is not None and event_time_ns < self.last_emitted_ns

    # -- release -------------------------------------------------------------------------------
    def buffered(self) -> int:
        return len(self._heap)

    def min_buffered_offset(self) -> dict[int, int]:
        """Per source partition, the lowest offset still waiting in the buffer (commit bound)."""
        out: dict[int, int] = {}
        for _, _, rec in self._heap:
            if rec.offset < out.get(rec.partition, rec.offset + 1):
                out[rec.partition] = rec.offset
        return out

    def release(self, *, force: bool = False) -> FeatureBatch | None:
        """Emit the ticks the watermark has passed (all buffered ones if `force`)."""
        if not self._heap:
            return None
        limit = None if force else self.max_seen_ns - self.lateness_ns
        out: list[SourceRecord] = []
        while self._heap and (limit is None or self._heap[0][0] <= limit):
            out.append(heapq.heappop(self._heap)[2])
        if not out:
            return None
        for rec in out:
            self._buffer_ids.discard((rec.tick.event_time_ns, rec.tick.sequence))
        return self._compute(out)

    def _compute(self, recs: list[SourceRecord]) -> FeatureBatch:
        if self._warm:
            self._fold_warm()
        ticks = [r.tick for r in recs]
        new = _columns(ticks)
        started = time.perf_counter()
        arrays = self._rolling.update(
            new["event_time_ns"], new["best_bid"], new["best_ask"], new["best_bid_qty"],
            new["best_ask_qty"], new["volume_24h"],
        )
        elapsed = time.perf_counter() - started
        last_ns = int(new["event_time_ns"][-1])
        self.last_emitted_ns = last_ns
        for t in ticks:
            ident = (t.event_time_ns, t.sequence)
            self._tail_ids.append(ident)
            self._tail_id_set.add(ident)
        self._trim_ids(last_ns - HISTORY_NS)
        return FeatureBatch(
            product_id=self.product_id,
            event_time_ns=new["event_time_ns"],
            sequence=new["sequence"],
            features=arrays,
            source_partition=np.fromiter((r.partition for r in recs), dtype=np.int32, count=len(recs)),
            source_offset=np.fromiter((r.offset for r in recs), dtype=np.int64, count=len(recs)),
            compute_s=elapsed,
            receive_time_ns=np.fromiter((t.receive_time_ns for t in ticks), dtype=np.int64, count=len(ticks)),
        )

    def _fold_warm(self) -> None:
        """Feed the re-read durable ticks to the rolling state (event-time, then arrival order)
        before the first new row. They all arrive first: a product lives in one partition, read in
        offset order, and the re-read window lies before the committed offset."""
        warm = sorted(self._warm, key=lambda t: t.event_time_ns)  # stable: ties keep arrival order
        self._warm = []
        last = self._rolling.last_ns
        if last is not None:
            warm = [t for t in warm if t.event_time_ns >= last]
        if warm:
            cols = _columns(warm)
            self._rolling.update(cols["event_time_ns"], cols["best_bid"], cols["best_ask"],
                                 cols["best_bid_qty"], cols["best_ask_qty"], cols["volume_24h"])
        ids = list(self._tail_ids) + [(t.event_time_ns, t.sequence) for t in warm]
        self._tail_ids = deque(sorted(ids))
        self._trim_ids(max(self._rolling.last_ns or 0, self.last_emitted_ns or 0) - HISTORY_NS)

    def _trim_ids(self, min_ns: int) -> None:
        while self._tail_ids and self._tail_ids[0][0] < min_ns:
            self._tail_id_set.discard(self._tail_ids.popleft())


def _columns(ticks: list[Tick]) -> dict[str, np.ndarray]:
    return {
        "event_time_ns": np.fromiter((t.event_time_ns for t in ticks), dtype=np.int64, count=len(ticks)),
        "sequence": np.fromiter((t.sequence for t in ticks), dtype=np.int64, count=len(ticks)),
        "best_bid": np.fromiter((t.best_bid for t in ticks), dtype=np.float64, count=len(ticks)),
        "best_ask": np.fromiter((t.best_ask for t in ticks), dtype=np.float64, count=len(ticks)),
        "best_bid_qty": np.fromiter((t.best_bid_qty for t in ticks), dtype=np.float64, count=len(ticks)),
        "best_ask_qty": np.fromiter((t.best_ask_qty for t in ticks), dtype=np.float64, count=len(ticks)),
        "volume_24h": np.fromiter((t.volume_24h for t in ticks), dtype=np.float64, count=len(ticks)),
    }


@dataclass
class StreamEngine:
    """All products of one featurizer: routes ticks, releases rows, reports late ticks."""

    lateness_s: float = LATENESS_S
    idle_release_s: float = 5.0
    durable: dict[str, DurableState] = field(default_factory=dict)
    resume_offsets: dict[int, int] = field(default_factory=dict)
    counters: EngineCounters = field(default_factory=EngineCounters)

    def __post_init__(self) -> None:
        self.products: dict[str, ProductStream] = {}

    def reset(self, durable: dict[str, DurableState], resume_offsets: dict[int, int] | None = None) -> None:
        """Drop all in-memory state (after a rebalance) and restart from what is durable."""
        self.durable = dict(durable)
        self.resume_offsets = dict(resume_offsets or {})
        self.products = {}

    def set_resume_offsets(self, offsets: dict[int, int]) -> None:
        self.resume_offsets.update(offsets)
        for stream in self.products.values():
            stream._resume.update(offsets)

    def _stream(self, product: str) -> ProductStream:
        stream = self.products.get(product)
        if stream is None:
            stream = self.products[product] = ProductStream(
                product,
                lateness_ns=int(self.lateness_s * NS),
                durable=self.durable.get(product),
                resume_offsets=self.resume_offsets,
            )
        return stream

    def offer(self, rec: SourceRecord) -> Rejected | None:
        self.counters.offered += 1
        outcome = self._stream(rec.tick.product_id).offer(rec)
        if outcome == "late":
            self.counters.late += 1
            stream = self.products[rec.tick.product_id]
            return Rejected(rec, "late_tick", (
                f"event time {rec.tick.event_time_ns} of {rec.tick.product_id} arrived behind the "
                f"watermark {stream.watermark_ns()} (lateness {self.lateness_s:g} s; last emitted "
                f"{stream.last_emitted_ns})"
            ))
        if outcome == "duplicate":
            self.counters.duplicates += 1
        elif outcome == "rewarmed":
            self.counters.rewarmed += 1
        elif outcome == "skipped_durable":
            self.counters.skipped_durable += 1
        return None

    def offer_many(self, recs: Iterable[SourceRecord]) -> list[Rejected]:
        return [r for r in map(self.offer, recs) if r is not None]

    def release(self, *, now: float | None = None, force: bool = False) -> list[FeatureBatch]:
        """Rows for every product whose watermark moved (or that sat idle, or all if `force`)."""
        now = time.monotonic() if now is None else now
        out = []
        for stream in self.products.values():
            idle = force or (stream.buffered() and now - stream.last_arrival_monotonic >= self.idle_release_s)
            batch = stream.release(force=bool(idle))
            if batch is not None:
                self.counters.emitted += len(batch)
                self.counters.compute_calls += 1
                self.counters.compute_s += batch.compute_s
                out.append(batch)
        return out

    def buffered(self) -> int:
        return sum(s.buffered() for s in self.products.values())

    def commit_bounds(self) -> dict[int, int]:
        """Per partition, the lowest offset still buffered: commits must not pass it."""
        out: dict[int, int] = {}
        for stream in self.products.values():
            for p, off in stream.min_buffered_offset().items():
                out[p] = min(off, out.get(p, off))
        return out
