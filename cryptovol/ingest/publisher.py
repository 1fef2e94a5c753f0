"""Kafka delivery off the event loop: a thread that owns the producer, the spool and reconnects.

The socket reader only calls `publish()` (a non-blocking queue put), so a slow or absent broker
never stalls the WebSocket. The thread has two modes:

- direct: the spool is empty and the broker is up: records go straight to `producer.send`.
- spooled: the broker is down (kafka-python raises NoBrokersAvailable on creation, or sends time
  out), or the spool still holds records not yet handed to the producer: every new record is
  appended to the durable spool, and while the broker is up the spool is sent in order.

As soon as every spooled record has been handed to the producer, new records go direct again: the
producer keeps send order per partition, so they queue behind the spooled ones. The spool is
truncated once its last record is acknowledged. (Waiting for the acknowledgements before going
direct would never end under steady traffic: each ack round trip lets new records into the spool.)
Because the spool is sent in append order before any newer record, records of one key (product)
reach the topic in the order they were published. On a broker loss the producer
is force-closed, records it had not acknowledged go to the spool (in order), and the thread
reconnects with backoff, recreating the topics first (the embedded broker restarts empty).

Only an outage spools. A record the broker (or the client, before sending) refuses for what it is
(too large, invalid: `RECORD_REJECTIONS`) would be refused forever, so it is written to the
rejected-records file on disk with the reason (`rejected_dir/<UTC day>.ndjson`, bounded like a
dead letter) and counts as done: it never blocks the records behind it, spooled or not.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kafka import errors as kafka_errors
from kafka.errors import KafkaError
from kafka.future import Future

from cryptovol.deadletter import raw_fields
from cryptovol.ingest.spool import Spool, SpoolRecord
from cryptovol.ingest.stats import IngestStats
from cryptovol.ingest.writers import DeadLetterWriter
from cryptovol.kafka_io import broker_reachable, ensure_topics, make_producer, port_open
from cryptovol.ticks import format_timestamp_ns

log = logging.getLogger(__name__)

#: Producer timeouts short enough that a dead broker is noticed in seconds, not minutes.
PRODUCER_TIMEOUTS = {
    "max_block_ms": 3000,  # send() waiting for metadata
    "request_timeout_ms": 4000,
    "delivery_timeout_ms": 8000,  # a batch not acknowledged by then fails
    "reconnect_backoff_max_ms": 1000,
}


#: Errors that are about the record itself: sending it again can never succeed.
RECORD_REJECTIONS: tuple[type[KafkaError], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidRecordError,
    kafka_errors.CorruptRecordError,
    kafka_errors.InvalidTimestampError,
    kafka_errors.InvalidTopicError,
    kafka_errors.UnsupportedForMessageFormatError,
)


def is_record_rejection(exc: BaseException | None) -> bool:
    """True when the broker or client refused a record for what it is (not for an outage)."""
    return isinstance(exc, RECORD_REJECTIONS)


class Backoff:
    """Exponential backoff with equal jitter: delay in [d/2, d], d = min(cap, base * 2**attempt)."""

    def __init__(self, base_s: float = 0.25, cap_s: float = 10.0, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


def _bootstrap_host_port(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host or "127.0.0.1", int(port)


def force_close(producer: Any) -> None:
    """Close a producer now, failing every record it has not delivered.

    `close(timeout=0)` first tries a zero-time flush, which raises when batches are pending, before
    it would force the sender shut; so on that error we force the sender ourselves (kafka-python
    3.0 internals, guarded), otherwise the sender could still deliver a record after we spooled it.
    """
    try:
        producer.close(timeout=0)
        return
    except KafkaError:
        pass
    except Exception:  # noqa: BLE001 (closing a broken client must not crash the publisher)
        log.debug("producer close failed", exc_info=True)
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(5)
    try:
        producer._closed = True  # noqa: SLF001 (avoid a second close at interpreter exit)
    except AttributeError:
        pass


class Publisher(threading.Thread):
    """Deliver (topic, key, value) records to Kafka, falling back to a durable spool."""

    def __init__(
        self,
        bootstrap_servers: str,
        spool: Spool,
        stats: IngestStats,
        *,
        topics: Iterable[str],
        partitions: int = 3,
        producer_overrides: dict[str, Any] | None = None,
        rejected_dir: Path | None = None,
    ) -> None:
        """`rejected_dir`: where records the broker refuses for what they are go (default: a
        `rejected` folder beside the spool)."""
        super().__init__(name="kafka-publisher", daemon=True)
        self.rejected = DeadLetterWriter(rejected_dir or Path(spool.dir).parent / "rejected")
        self.bootstrap = bootstrap_servers
        self.spool = spool
        self.stats = stats
        self.topics = list(topics)
        self.partitions = partitions
        self.producer_overrides = {**PRODUCER_TIMEOUTS, **(producer_overrides or {})}
        self._queue: queue.SimpleQueue[list[SpoolRecord]] = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self._drain_deadline = 0.0
        self._producer: Any = None
        # (record, future, spool offset after it or None for a direct send, send time), in send order
        self._inflight: deque[tuple[SpoolRecord, Any, int | None, float]] = deque()
        self._spool_sent = spool.acked_offset  # next spool byte to send
        self._backoff = Backoff(base_s=0.25, cap_s=2.0)
        self._last_probe = 0.0
        self._next_connect = 0.0
        self.connected = threading.Event()
        self.stats.spool_pending = spool.pending
        self.error: BaseException | None = None

    # -- called from other threads --------------------------------------------------------------

    def publish(self, topic: str, key: str | None, value: bytes) -> None:
        """Queue one record (never blocks)."""
        self._queue.put([SpoolRecord(topic, key, value)])

    def publish_many(self, records: list[tuple[str, str | None, bytes]]) -> None:
        """Queue records in order (never blocks); one queue operation for the batch."""
        self._queue.put([SpoolRecord(topic, key, value) for topic, key, value in records])

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to `drain_timeout_s`), spool the rest, and end the thread."""
        self._drain_deadline = time.monotonic() + drain_timeout_s
        self._stop_requested.set()
        self.join(drain_timeout_s + 15)

    # -- the thread -----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 (reported via .error, then re-raised by the owner)
            self.error = exc
            log.exception("publisher crashed; queued records are spooled")
            self._spool_queue()
        finally:
            if self._producer is not None:
                self._finish_producer()
            self.stats.spool_pending = self.spool.pending
            self.spool.close()
            self.rejected.close()

    def _loop(self) -> None:
        while True:
            stopping = self._stop_requested.is_set()
            if stopping and time.monotonic() >= self._drain_deadline:
                break
            if self._producer is None and time.monotonic() >= self._next_connect:
                self._spool_queue()  # a connection attempt can block: keep new records durable first
                self._connect()
            batch = self._take_batch(timeout=0.02 if self._inflight or self.spool.pending else 0.05)
            if batch:
                if self._producer is None or self._has_unsent_spool():
                    self._to_spool(batch)
                else:
                    self._send_direct(batch)
            if self._producer is not None:
                self._send_from_spool()
                self._collect_acks()
                self._probe_stalled()
            self.spool.sync_cursor_if_due()
            if stopping and self._idle():
                break
            if stopping and self._producer is None:
                # Broker away while stopping: spool the rest; it is delivered on the next start.
                self._spool_queue()
                break

    def _idle(self) -> bool:
        return self._queue.empty() and not self._inflight and self.spool.pending == 0

    def _has_unsent_spool(self) -> bool:
        return self._spool_sent < self.spool.end_offset

    def _take_batch(self, timeout: float, limit: int = 1000) -> list[SpoolRecord]:
        try:
            batch = list(self._queue.get(timeout=timeout))
        except queue.Empty:
            return []
        while len(batch) < limit:
            try:
                batch.extend(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _spool_queue(self) -> None:
        records: list[SpoolRecord] = []
        while True:
            try:
                records.extend(self._queue.get_nowait())
            except queue.Empty:
                break
        self._to_spool(records)

    def _to_spool(self, records: list[SpoolRecord]) -> None:
        if not records:
            return
        self.spool.append(records)
        self.stats.spooled += len(records)
        self.stats.spool_pending = self.spool.pending

    # -- connection -----------------------------------------------------------------------------

    def _connect(self) -> None:
        host, port = _bootstrap_host_port(self.bootstrap)
        try:
            if not port_open(host, port, timeout=0.5) or not broker_reachable(self.bootstrap, 2.0):
                raise ConnectionError(f"broker {self.bootstrap} not reachable")
            ensure_topics(self.bootstrap, self.topics, partitions=self.partitions)
            self._producer = make_producer(self.bootstrap, **self.producer_overrides)
        except (KafkaError, OSError, ValueError) as exc:
            delay = self._backoff.next_delay()
            self._next_connect = time.monotonic() + delay
            loud = self._backoff.attempt <= 1 or self._backoff.attempt % 10 == 0
            level = logging.WARNING if loud else logging.DEBUG
            log.log(level, "kafka unavailable (%s); spooling, retry in %.1fs", exc, delay)
            return
        self._backoff.reset()
        self._spool_sent = self.spool.acked_offset
        self.connected.set()
        log.info("kafka connected at %s; %d spooled records to deliver", self.bootstrap, self.spool.pending)

    def _lost_broker(self, reason: str) -> None:
        """Force-close the producer; unacknowledged direct sends go to the spool, in order."""
        log.warning("kafka delivery failed (%s); spooling until the broker is back", reason)
        self.stats.broker_outages += 1
        self.connected.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            force_close(producer)
        self._collect_acks(final=True)
        self._spool_sent = self.spool.acked_offset
        self._next_connect = time.monotonic() + self._backoff.next_delay()

    def _finish_producer(self) -> None:
        """Stopping: flush what is in flight, spool whatever did not make it."""
        producer = self._producer
        try:
            remaining = max(0.5, self._drain_deadline - time.monotonic())
            producer.flush(timeout=remaining)
        except KafkaError as exc:
            log.warning("flush on stop failed: %s", exc)
        force_close(producer)
        self._producer = None
        self._collect_acks(final=True)
        self._spool_queue()

    # -- sending --------------------------------------------------------------------------------

    def _send(self, record: SpoolRecord, offset: int | None) -> KafkaError | None:
        try:
            future = self._producer.send(record.topic, key=record.key, value=record.value)
        except KafkaError as exc:
            if not is_record_rejection(exc):
                self.stats.publish_errors += 1
                return exc
            future = Future().failure(exc)  # settled in order with the others by `_collect_acks`
        self._inflight.append((record, future, offset, time.monotonic()))
        return None

    def _reject(self, record: SpoolRecord, exc: BaseException) -> None:
        """Keep a record the broker will never take on disk, with the reason; it counts as done."""
        now = time.time_ns()
        self.rejected.write({
            "reason": "broker_rejected",
            "detail": f"{type(exc).__name__}: {exc}"[:500],
            "topic": record.topic,
            "key": record.key,
            **raw_fields(record.value),
            "rejected_at": format_timestamp_ns(now),
        }, now)
        self.stats.rejected_by_broker += 1
        log.warning("record for %s refused by the broker (%s); kept in %s",
                    record.topic, type(exc).__name__, self.rejected.deadletter_dir)

    def _send_direct(self, batch: list[SpoolRecord]) -> None:
        for index, record in enumerate(batch):
            error = self._send(record, None)
            if error is not None:
                self._lost_broker(f"send: {error!r}")  # spools what was in flight first...
                self._to_spool(batch[index:])  # ...then this record and the rest, keeping order
                return

    def _send_from_spool(self, max_records: int = 500) -> None:
        if not self._has_unsent_spool() or len(self._inflight) > 5000:
            return
        for record, end in self.spool.read(self._spool_sent, max_records):
            error = self._send(record, end)
            if error is not None:
                self._lost_broker(f"send: {error!r}")  # the record stays in the spool
                return
            self._spool_sent = end

    def _collect_acks(self, final: bool = False) -> None:
        """Pop completed sends in order; a failed one means the broker is lost, unless the record
        itself was refused (`is_record_rejection`): that one is kept on disk and counts as done.

        The spool cursor only advances over an unbroken run of settled records from the front;
        failed direct records go (back) to the spool in their original order.
        """
        acked_offset, acked_count = None, 0
        failed: str | None = None
        while self._inflight:
            record, future, offset, _ = self._inflight[0]
            if not future.is_done and not final:
                break
            self._inflight.popleft()
            if future.is_done and future.succeeded():
                self._count_published(record)
                if offset is not None and failed is None:
                    acked_offset, acked_count = offset, acked_count + 1
                continue
            if future.is_done and is_record_rejection(future.exception):
                self._reject(record, future.exception)
                if offset is not None and failed is None:
                    acked_offset, acked_count = offset, acked_count + 1
                continue
            self.stats.publish_errors += 1
            if failed is None:
                failed = repr(future.exception) if future.is_done else "not acknowledged before close"
            if offset is None:
                self._to_spool([record])
        if acked_offset is not None and self.spool.ack(acked_offset, acked_count):
            self._spool_sent = 0
        self.stats.spool_pending = self.spool.pending
        if failed is not None and not final:
            self._lost_broker(failed)

    def _probe_stalled(self, stall_s: float = 1.5, every_s: float = 1.0) -> None:
        """A send waiting this long while the broker's port is closed: the broker died, say so now.

        Otherwise kafka-python would only fail the batch after `delivery_timeout_ms`.
        """
        if self._producer is None or not self._inflight:
            return
        now = time.monotonic()
        if now - self._inflight[0][3] < stall_s or now - self._last_probe < every_s:
            return
        self._last_probe = now
        host, port = _bootstrap_host_port(self.bootstrap)
        if not port_open(host, port, timeout=0.5):
            self._lost_broker(f"broker port {host}:{port} closed")

    def _count_published(self, record: SpoolRecord) -> None:
        if record.topic == self.topics[0]:
            self.stats.published += 1
        else:
            self.stats.deadletter_published += 1
