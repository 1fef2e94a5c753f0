"""The streaming featurizer process: `ticks.raw` -> `StreamEngine` -> `ticks.features` + Parquet.

Delivery guarantees, in the order a flush does things:

1. Feature rows go to `ticks.features` as soon as they are computed (latency), dead-letters to
   `ticks.deadletter`, each product's rows as one burst (`cryptovol.kafka_send.BurstSender`);
   `producer.flush()` makes both durable on the broker first, and the delivery result of every
   send since the last flush is checked: if any failed, the featurizer stops (`DeliveryFailed`)
   without writing Parquet or committing, and a restart redoes the batch,
2. then the rows are committed to the feature Delta table as one transaction (exactly once per
   key: application transaction per source partition, `cryptovol.stream.sink.write_batches`), on
   a background writer (`cryptovol.runtime.OrderedWriter`) so polling goes on meanwhile,
3. then, once that write finished, the offsets it covers are committed (after the next poll, or
   at once on a stop or a revoke), never past a tick still waiting in a reorder buffer.

Every record is decoded and range-checked (`decode_tick`); one that fails is dead-lettered with a
bounded excerpt (`cryptovol.deadletter.raw_fields`) and counted, and the featurizer moves on.

A crash between any two steps is safe: the restarted featurizer reads `load_durable_state` from the
Parquet, skips every tick already written there (so the Parquet holds each (product,
event_time_ns, sequence) exactly once) and re-warms its history tails from the re-read ticks. The
topics are at-least-once: rows produced before a crash but not yet in Parquet are produced again.

Rebalances: on revoke the featurizer flushes and commits (asynchronously: the listener runs on
kafka-python's IO thread, which must not block) and forgets all state; on assign it rebuilds state
from the Parquet, and (on the main thread, which may block) seeks each partition with a committed
offset back to the oldest row of the durable history window, so the re-read ticks warm the tails.
The topic must be keyed by product (the ingestor and replay do that): one product's ticks then
live in one partition and in one featurizer. One consumer group per data dir: the Parquet is the
group's shared memory of what is done.

Message on `ticks.features` (key = product id): one JSON object per tick with the keys
(`product_id`, `event_time_ns`, `sequence`), every feature (NaN as `null`), `feature_set_version`,
`source_partition`, `source_offset`, `receive_time_ns` (when the ingestor received the tick, wall
clock UTC ns; 0 if unknown) and `emitted_at_ns` (wall clock). The scorer turns the last two and the
event time into its end-to-end latency histograms.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from cryptovol.config import TICK_MAX_AHEAD_S, TICK_MAX_BEHIND_S, TOPIC_DEADLETTER, TOPIC_FEATURES, TOPIC_RAW
from cryptovol.deadletter import raw_fields
from cryptovol.eventtime import LATENESS_S
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET
from cryptovol.kafka_io import ensure_topics, make_consumer, make_producer
from cryptovol.kafka_send import BurstSender
from cryptovol.runtime import Cadence, OrderedWriter, Runner, StopSignal
from cryptovol.stream.engine import FeatureBatch, SourceRecord, StreamEngine
from cryptovol.stream.sink import load_durable_state, write_batches
from cryptovol.ticks import (
    INT64_MAX,
    INT64_MIN,
    MIN_EVENT_TIME_NS,
    NS_PER_S,
    TICK_DECODER,
    Tick,
    TickError,
    check_event_time,
    check_product_id,
)

log = logging.getLogger("cryptovol.featurize")

#: Producer overrides, measured side by side with `bench/bench_stream.py` (730-byte feature rows):
#: - no compression: with the native `crc32c` installed, gzip (kafka-python's level 9) cost the
#:   featurizer more CPU than it saved (9,012 vs 8,507 msg/s, 100,000 ticks, 64 KiB batches);
#: - 256 KiB batches (~350 rows): each batch that fills wakes kafka-python's sender thread and
#:   hands it the GIL; fewer, larger batches took the featurizer from ~9,000 to ~11,900 msg/s;
#: - linger 20 ms: costs at most 20 ms of latency per row.
PRODUCER_SETTINGS: dict[str, object] = {"linger_ms": 20, "batch_size": 262144}
#: Consumer overrides for latency: the embedded broker answers a fetch only after
#: `fetch_max_wait_ms` (kafka-python's default 500 ms made one hop ~150 ms p50); 10 ms measured
#: ~10 ms p50 per hop (`bench/bench_e2e.py`). Kafka/Redpanda answer as soon as data arrives anyway.
CONSUMER_SETTINGS: dict[str, object] = {"fetch_max_wait_ms": 10}


@dataclass
class FeaturizerConfig:
    bootstrap_servers: str
    features_dir: Path
    group_id: str = "featurizer"
    lateness_s: float = LATENESS_S
    idle_release_s: float = 5.0
    flush_every_s: float = 1.0
    flush_rows: int | None = None
    duration_s: float | None = None
    log_every_s: float = 10.0
    topic_in: str = TOPIC_RAW
    topic_out: str = TOPIC_FEATURES
    topic_deadletter: str = TOPIC_DEADLETTER
    topic_partitions: int = 3
    poll_timeout_ms: int = 100
    #: Extra kafka-python producer settings (merged over `PRODUCER_SETTINGS`).
    producer_overrides: dict[str, object] | None = None
    #: Event-time bounds of a consumed tick (`TickBounds`; settings CRYPTOVOL_TICK_MAX_AHEAD_S/_BEHIND_S).
    max_ahead_s: float = TICK_MAX_AHEAD_S
    max_behind_s: float = TICK_MAX_BEHIND_S
    #: Catch-up batches: the feature call's cost is mostly a fixed number of NumPy operations per
    #: release, so more ticks per release cost less each (a live stream polls far fewer).
    max_poll_records: int = 5000


@dataclass
class FeaturizerStats:
    consumed: int = 0
    emitted: int = 0
    late: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    bad_messages: int = 0
    skipped_durable: int = 0
    rewarmed: int = 0
    parquet_files: int = 0
    parquet_rows: int = 0
    flushes: int = 0
    commits: int = 0
    rebalances: int = 0
    buffered: int = 0
    lag: int = 0
    compute_calls: int = 0
    compute_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        out = asdict(self)
        out["compute_s"] = round(self.compute_s, 6)
        return out


_INT_FIELDS = ("event_time_ns", "sequence", "receive_time_ns")
_PRICE_FIELDS = ("price", "best_bid", "best_ask")
_SIZE_FIELDS = ("best_bid_qty", "best_ask_qty", "volume_24h")


class TickBounds(msgspec.Struct, frozen=True):
    """How far a consumed tick's event time may lie from its own receive time (ahead or behind)
    and ahead of this consumer's clock (`now_ns`; None: read the clock)."""

    max_ahead_s: float = TICK_MAX_AHEAD_S
    max_behind_s: float = TICK_MAX_BEHIND_S
    now_ns: int | None = None


DEFAULT_BOUNDS = TickBounds()


def decode_tick(value: bytes | None, bounds: TickBounds = DEFAULT_BOUNDS) -> Tick:
    """A `ticks.raw` value -> a `Tick` with checked types and values; raises `TickError`.

    Range checks come with the types, whatever producer wrote the record: a product id that is
    safe as a path (`cryptovol.ticks.valid_product_id`), integers within int64, finite prices,
    sizes finite or NaN (missing), and an event time near its receive time and not ahead of this
    consumer's clock (`bounds`), so no single record can move a product's watermark.

    Fast path: `TICK_DECODER` parses and type-checks in one step, ~6x cheaper than `json.loads`
    plus Python checks (the "codecs" line of `bench/bench_stream.py`). A value it rejects (or one
    with a `NaN` quantity, which strict JSON cannot hold) goes through `_decode_tick_checked`, the
    reference path, which either accepts it or names the exact problem, so the dead-letter reason
    does not depend on which path ran (`tests/stream/test_stream_codec.py`).
    """
    try:
        tick = TICK_DECODER.decode(value if value is not None else b"null")
    except msgspec.DecodeError:
        return _decode_tick_checked(value, bounds)
    except RecursionError as exc:
        raise TickError("bad_tick_json", "nested too deeply") from exc
    _check_tick_values(tick, bounds)
    return tick


def _decode_tick_checked(value: bytes | None, bounds: TickBounds = DEFAULT_BOUNDS) -> Tick:
    """The reference decoder: `Tick.from_json` (fields exist) + explicit type and value checks.

    A record written by another producer may carry a string time or a negative price, which must
    become a dead-letter, not a crash deep inside the feature arrays.
    """
    try:
        tick = Tick.from_json(value if value is not None else b"null")
    except RecursionError as exc:
        raise TickError("bad_tick_json", "nested too deeply") from exc
    fixed: dict[str, float] = {}
    for name in _INT_FIELDS:
        v = getattr(tick, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise TickError("bad_tick_value", f"{name}={v!r} is not an integer"[:200])
    for name in _PRICE_FIELDS + _SIZE_FIELDS:
        v = getattr(tick, name)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TickError("bad_tick_value", f"{name}={v!r} is not a number"[:200])
        if type(v) is not float:
            try:
                fixed[name] = float(v)
            except OverflowError as exc:
                raise TickError("bad_tick_value", f"{name} is an integer beyond float range") from exc
    if not isinstance(tick.product_id, str):
        raise TickError("bad_product_id", f"product_id={tick.product_id!r}"[:200])
    tick = msgspec.structs.replace(tick, **fixed) if fixed else tick
    _check_tick_values(tick, bounds)
    return tick


#: Product ids already found valid (bounded): the regex runs once per product, not once per tick.
_VALID_PRODUCTS: set[str] = set()


def _check_tick_values(tick: Tick, bounds: TickBounds = DEFAULT_BOUNDS) -> None:
    """Value rules both decoders share: a valid product id, int64 integers, positive finite prices,
    sizes >= 0 (or NaN: missing), bid <= ask, and the event time within `bounds`.

    Written as plain comparisons on the hot path (every consumed record); the error paths call the
    shared rule functions, so the reasons and details are theirs."""
    product = tick.product_id
    if product not in _VALID_PRODUCTS:
        check_product_id(product)
        if len(_VALID_PRODUCTS) < 4096:
            _VALID_PRODUCTS.add(product)
    et, rt, seq = tick.event_time_ns, tick.receive_time_ns, tick.sequence
    if not (INT64_MIN <= et <= INT64_MAX and INT64_MIN <= rt <= INT64_MAX and INT64_MIN <= seq <= INT64_MAX):
        name = next(n for n in _INT_FIELDS if not INT64_MIN <= getattr(tick, n) <= INT64_MAX)
        raise TickError("bad_tick_value", f"{name} is outside int64")
    price, bid, ask = tick.price, tick.best_bid, tick.best_ask
    if not (0 < price < math.inf and 0 < bid < math.inf and 0 < ask < math.inf):  # NaN fails too
        name, v = next((n, getattr(tick, n)) for n in _PRICE_FIELDS
                       if not (math.isfinite(getattr(tick, n)) and getattr(tick, n) > 0))
        raise TickError("bad_tick_value", f"{name}={v!r} must be a positive number")
    for name in _SIZE_FIELDS:
        v = getattr(tick, name)
        if v < 0 or v == math.inf:
            raise TickError("bad_tick_value", f"{name}={v!r} is negative or infinite")
    if bid > ask:
        raise TickError("crossed_book", f"best_bid={bid} > best_ask={ask}")
    ahead_ns = bounds.max_ahead_s * NS_PER_S
    now_ns = time.time_ns() if bounds.now_ns is None else bounds.now_ns
    if not (et >= MIN_EVENT_TIME_NS and et - rt <= ahead_ns and rt - et <= bounds.max_behind_s * NS_PER_S
            and et - now_ns <= ahead_ns):
        check_event_time(et, rt, max_ahead_s=bounds.max_ahead_s, max_behind_s=bounds.max_behind_s)
        check_event_time(et, now_ns, max_ahead_s=bounds.max_ahead_s, max_behind_s=None)


class _Rebalance(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread: no blocking consumer calls in here (see module doc)."""

    def __init__(self, owner: StreamFeaturizer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.owner._on_revoked(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owner._on_assigned(assigned)


#: One `ticks.features` message, fields in wire order (see the module docstring).
_FeatureRow = msgspec.defstruct(
    "_FeatureRow",
    [("product_id", str), ("event_time_ns", int), ("sequence", int)]
    + [(name, float) for name in FEATURE_NAMES]
    + [("feature_set_version", str), ("source_partition", int), ("source_offset", int),
       ("receive_time_ns", int), ("emitted_at_ns", int)],
)
#: msgspec writes NaN/inf as `null` and finite floats in their shortest exact form (round-trips).
_ROW_ENCODER = msgspec.json.Encoder()


def feature_messages(batch: FeatureBatch, emitted_at_ns: int) -> list[bytes]:
    """The `ticks.features` JSON values of one batch (NaN -> null), converted column-wise once.

    msgspec encodes a row struct ~6-10x faster than `repr` templates or one `json.dumps` dict per
    row (`bench/bench_stream.py` prints the side-by-side "codecs" line); same values, same fields.
    """
    values = np.column_stack([batch.features[name] for name in FEATURE_NAMES]).tolist()
    times = batch.event_time_ns.tolist()
    sequences = batch.sequence.tolist()
    partitions = batch.source_partition.tolist()
    offsets = batch.source_offset.tolist()
    received = batch.receive_time_ns.tolist() if batch.receive_time_ns is not None else [0] * len(times)
    product, version, encode = batch.product_id, FEATURE_SET.version, _ROW_ENCODER.encode
    return [
        encode(_FeatureRow(product, times[i], sequences[i], *row, version, partitions[i], offsets[i],
                           received[i], emitted_at_ns))
        for i, row in enumerate(values)
    ]


class StreamFeaturizer:
    """One member of the featurizer consumer group. `run()` blocks until stopped or `duration_s`."""

    def __init__(
        self,
        config: FeaturizerConfig,
        *,
        stop: threading.Event | None = None,
        on_stats: Callable[[FeaturizerStats], None] | None = None,
    ) -> None:
        self.config = config
        self.stop_event = stop or threading.Event()
        self.on_stats = on_stats
        self.stats = FeaturizerStats()
        self.engine = StreamEngine(lateness_s=config.lateness_s, idle_release_s=config.idle_release_s)
        self._pending: list[FeatureBatch] = []
        self._pending_rows = 0
        self._next_offset: dict[int, int] = {}  # partition -> offset after the last record taken
        self._lag: dict[int, int] = {}
        self._assigned: set[int] = set()
        self._need_resume_lookup = False
        self._warm_offsets: dict[int, int] = {}
        self._closing = False
        self._consumer = None
        self._producer = None
        self._lock = threading.RLock()
        self._sends: BurstSender | None = None  # every send since the last good flush (ledger)
        self._writer: OrderedWriter[dict] | None = None  # the lake writes of one run()

    # -- lifecycle -----------------------------------------------------------------------------
    def install_signal_handlers(self) -> StopSignal:
        """SIGINT/SIGTERM -> a graceful stop: the last batch is made durable and committed."""
        return StopSignal(self.stop_event, name="featurize").install()

    def run(self) -> FeaturizerStats:
        """The shared lifecycle (`cryptovol.runtime.Runner`) with this featurizer as its step."""
        cfg = self.config
        cfg.features_dir.mkdir(parents=True, exist_ok=True)
        ensure_topics(cfg.bootstrap_servers, [cfg.topic_in, cfg.topic_out, cfg.topic_deadletter],
                      partitions=cfg.topic_partitions)
        self._producer = make_producer(cfg.bootstrap_servers,
                                       **{**PRODUCER_SETTINGS, **(cfg.producer_overrides or {})})
        self._sends = BurstSender(self._producer)
        self._writer = OrderedWriter("featurize-lake")
        self._consumer = make_consumer(
            cfg.bootstrap_servers, group_id=cfg.group_id, max_poll_records=cfg.max_poll_records,
            **CONSUMER_SETTINGS,
        )
        self._consumer.subscribe([cfg.topic_in], listener=_Rebalance(self))
        log.info("featurizer started: group %s, topic %s, lateness %gs, data %s",
                 cfg.group_id, cfg.topic_in, cfg.lateness_s, cfg.features_dir)
        Runner(self, cadence=Cadence(cfg.flush_every_s, cfg.flush_rows or None), stop=self.stop_event,
               duration_s=cfg.duration_s, report_every_s=cfg.log_every_s).run()
        return self.stats

    # -- the runner's step (`cryptovol.runtime.Step`) -------------------------------------------
    def work(self) -> None:
        batch = self._consumer.poll(timeout_ms=self.config.poll_timeout_ms)
        with self._lock:
            if self._need_resume_lookup:
                batch = self._resume(batch)
            for tp, records in batch.items():
                self._take(tp.partition, records)
            self._emit(self.engine.release())
            if self._writer.ready():  # a flush's rows are written: commit them now, not a flush later
                self._commit(sync=True)

    def pending(self) -> int:
        return self._pending_rows

    def make_durable(self, final: bool = False) -> None:
        with self._lock:
            self._make_durable(final=final)

    def commit(self) -> None:
        with self._lock:
            self._commit(sync=True)
            self._sync_counters()

    def report(self, final: bool) -> None:
        self._log_stats(final=final)

    def close(self) -> None:
        with self._lock:
            self._closing = True
        # Outside the lock: close() runs on_partitions_revoked on the IO thread.
        try:
            self._consumer.close()
        finally:
            try:
                self._producer.close(timeout=10)
            finally:
                self._writer.close()  # a queued write finishes whole; its offsets stay uncommitted

    # -- intake --------------------------------------------------------------------------------
    def _take(self, partition: int, records: list) -> None:
        if not records:
            return
        dead: list[tuple[object, str, str]] = []
        offer = self.engine.offer
        bounds = TickBounds(self.config.max_ahead_s, self.config.max_behind_s, time.time_ns())
        for rec in records:
            try:
                tick = decode_tick(rec.value, bounds)
            except TickError as exc:
                self.stats.bad_messages += 1
                dead.append((rec, exc.reason, exc.detail))
                continue
            rejected = offer(SourceRecord(tick, partition, rec.offset))
            if rejected is not None:
                dead.append((rec, rejected.reason, rejected.detail))
        self.stats.consumed += len(records)
        self._next_offset[partition] = records[-1].offset + 1
        for rec, reason, detail in dead:
            self._dead_letter(rec, reason, detail)
        if records:
            # A hint only: the embedded broker under-reports high watermarks (see kafka_io).
            hw = self._consumer.highwater(TopicPartition(self.config.topic_in, partition))
            if hw is not None:
                self._lag[partition] = max(0, hw - self._next_offset[partition])
                self.stats.lag = sum(self._lag.values())

    def _dead_letter(self, rec: object, reason: str, detail: str) -> None:
        value = rec.value
        payload = {
            "reason": reason,
            "detail": str(detail)[:500],
            **raw_fields(value if isinstance(value, bytes | bytearray) or value is None else str(value)),
            "received_at": datetime.now(UTC).isoformat(),
            "source": "featurizer",
            "topic": rec.topic,
            "partition": rec.partition,
            "offset": rec.offset,
        }
        value = json.dumps(payload, separators=(",", ":")).encode()
        self._sends.send(self.config.topic_deadletter, rec.key, value)
        self.stats.dead_lettered += 1

    def _emit(self, batches: list[FeatureBatch]) -> None:
        if not batches:
            return
        now_ns = time.time_ns()
        for batch in batches:
            self._sends.send_many(self.config.topic_out, batch.product_id.encode(),
                                  feature_messages(batch, now_ns))
            self._pending.append(batch)
            self._pending_rows += len(batch)

    # -- durability ----------------------------------------------------------------------------
    def _flush(self, *, commit_sync: bool) -> None:
        """Producer flush -> every delivery checked -> Delta write (waited for) -> offset commit."""
        if self._producer is None:
            return
        self._make_durable(final=True)
        self._commit(sync=commit_sync)
        self._sync_counters()

    def _make_durable(self, *, final: bool = False) -> None:
        """Producer flushed and every delivery checked, then the pending rows are handed to the
        background writer with the offsets they make committable (`final`: wait for it)."""
        if self._producer is None:
            return
        self._producer.flush()
        self._sends.check()
        batches, self._pending, self._pending_rows = self._pending, [], 0
        self._writer.submit(lambda: self._write(batches), self._committable_offsets())
        if final:
            self._writer.wait()

    def _write(self, batches: list[FeatureBatch]) -> None:
        """On the writer thread: one Delta transaction for a flush's rows."""
        if not batches:
            return
        parts = write_batches(self.config.features_dir, batches,
                              app_prefix=f"{self.config.group_id}:{self.config.topic_in}")
        self.stats.parquet_files += len(parts)
        self.stats.parquet_rows += sum(p.rows for p in parts)
        self.stats.flushes += 1

    def _committable_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Next offsets per assigned partition, never past a tick still in a reorder buffer."""
        bounds = self.engine.commit_bounds()
        return {
            TopicPartition(self.config.topic_in, partition): OffsetAndMetadata(
                min(nxt, bounds.get(partition, nxt)), "", -1)
            for partition, nxt in self._next_offset.items() if partition in self._assigned
        }

    def _commit(self, *, sync: bool) -> None:
        """Commit the offsets whose rows are written (`OrderedWriter.written`), nothing further."""
        offsets = self._writer.written()
        if not offsets:
            return
        try:
            if sync:
                self._consumer.commit(offsets)
            else:
                self._consumer.commit_async(offsets)
        except KafkaError as exc:
            # Safe to skip: the Delta table is durable and a restart skips what it holds.
            log.warning("offset commit failed (%s); will retry at the next flush", exc)
            return
        self.stats.commits += 1

    def _sync_counters(self) -> None:
        c = self.engine.counters
        self.stats.emitted = c.emitted
        self.stats.late = c.late
        self.stats.duplicates = c.duplicates
        self.stats.skipped_durable = c.skipped_durable
        self.stats.rewarmed = c.rewarmed
        self.stats.compute_calls = c.compute_calls
        self.stats.compute_s = c.compute_s
        self.stats.buffered = self.engine.buffered()

    # -- rebalances (IO thread) ----------------------------------------------------------------
    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked or self._closing:
            return
        with self._lock:
            self.stats.rebalances += 1
            log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))
            self._flush(commit_sync=False)
            self._assigned = set()
            self._next_offset = {}
            self._lag = {}
            self.engine.reset({})

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        with self._lock:
            durable = load_durable_state(self.config.features_dir, max_ahead_s=self.config.max_ahead_s)
            self.engine.reset(durable)
            self._assigned = {tp.partition for tp in assigned}
            self._next_offset = {}
            self._lag = {}
            warm: dict[int, int] = {}
            for state in durable.values():
                for partition, offset in state.warm_offsets.items():
                    if partition in self._assigned:
                        warm[partition] = min(offset, warm.get(partition, offset))
            # Seeking needs the committed offsets, a blocking call: done on the main thread.
            self._warm_offsets = warm
            self._need_resume_lookup = bool(assigned)
            log.info("partitions assigned: %s; durable products %s", sorted(self._assigned), sorted(durable))

    def _resume(self, batch: dict) -> dict:
        """After an assignment (main thread): read the committed offsets and seek back to the
        durable history window where it starts before them, so the re-read ticks re-warm the tails.

        Only partitions with a committed offset are sought: without one (a new group, or a broker
        that lost its state, e.g. the memory-only embedded broker after a restart) the group reads
        from the earliest offset anyway, and offsets remembered in the Parquet may belong to an
        earlier incarnation of the topic. Records this poll returned for a sought partition are
        dropped: the consumer fetches them again from the new position.
        """
        self._need_resume_lookup = False
        committed: dict[int, int] = {}
        for partition in self._assigned:
            offset = self._consumer.committed(TopicPartition(self.config.topic_in, partition))
            if offset is not None:
                committed[partition] = int(offset)
        self.engine.set_resume_offsets(committed)
        sought = {}
        for partition, warm in self._warm_offsets.items():
            if partition in committed and warm < committed[partition]:
                self._consumer.seek(TopicPartition(self.config.topic_in, partition), warm)
                sought[partition] = warm
        if sought:
            log.info("re-reading the durable history window from offsets %s (committed %s)",
                     sought, committed)
        return {tp: recs for tp, recs in batch.items() if tp.partition not in sought}

    # -- reporting -----------------------------------------------------------------------------
    def _log_stats(self, *, final: bool = False) -> None:
        self._sync_counters()
        if self.on_stats is not None:
            self.on_stats(self.stats)
        text = json.dumps(self.stats.as_dict(), separators=(",", ":"))
        log.info("featurize %s: %s", "summary" if final else "progress", text)
