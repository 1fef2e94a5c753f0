"""Sending a poll's worth of records through one kafka-python producer without its per-record tax.

The featurizer and the scorer produce one record per input record, thousands per poll when they
catch up. kafka-python's `send` then pays two costs per record that a burst does not need:

- **A sender wake-up per record.** While more than one batch waits for a partition (the sender
  keeps one request in flight per connection), every `send` writes a byte to the sender thread's
  wake-up socket: a syscall and a GIL hand-off to the IO thread, which then runs a loop iteration
  that finds nothing new. `bench/bench_stream.py` counted 64,000 wake-ups for 100,000 feature rows
  (18,000 for the pass-through's smaller records). Inside `burst()` wake-ups are coalesced to one
  per `min_interval_s`, and one unconditional wake-up at the end of the burst hands every batch to
  the sender, so no record waits for the next flush: a record waits at most until its burst ends
  (or the producer's own linger timer fires), and a burst is one poll's rows, sent in a tight loop.
- **The partitioner per record.** kafka-python hashes every key with a pure-Python murmur2. Every
  record of a burst here shares its key (one product), so `send_many` hashes it once, by the
  `DefaultPartitioner`'s rule (the partition a plain `send` chooses, tested), and passes it
  explicitly.

Every delivery future goes to a `DeliveryLedger`: `check()` after `producer.flush()` raises
`DeliveryFailed` unless all were acknowledged (`cryptovol.kafka_io`).

The wake-up coalescing shadows `producer._sender.wakeup` for the duration of a burst only (a
kafka-python internal, pinned to 3.0.x in pyproject.toml; without it, bursts send uncoalesced and
`coalescing` is False). Outside a burst, `flush()` and `close()` wake the sender as always.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from kafka.errors import KafkaError
from kafka.partitioner.default import DefaultPartitioner, murmur2

from cryptovol.kafka_io import DeliveryLedger

log = logging.getLogger(__name__)

#: At most one sender wake-up per interval inside a burst (the end of a burst always wakes it).
WAKEUP_INTERVAL_S = 0.001


class BurstSender:
    """One producer's sends, each future kept for `check()`; bursts coalesce sender wake-ups."""

    def __init__(self, producer: Any, *, min_interval_s: float = WAKEUP_INTERVAL_S) -> None:
        self.producer = producer
        self.ledger = DeliveryLedger()
        self.min_interval_s = min_interval_s
        self.wakeups = 0  # real wake-ups issued inside bursts (what `bench_stream` reports)
        self.coalesced = 0  # wake-ups kafka-python asked for inside bursts and this skipped
        self._sender = getattr(producer, "_sender", None)
        self.coalescing = callable(getattr(self._sender, "wakeup", None))
        if not self.coalescing:
            log.debug("kafka-python producer has no _sender.wakeup: bursts are not coalesced")
        self._last_wakeup = 0.0
        self._depth = 0  # nested bursts: only the outermost installs and removes the shadow
        # A custom partitioner (producer_overrides) keeps its per-record say: no explicit partition.
        partitioner = getattr(producer, "config", {}).get("partitioner")
        self._default_partitioner = type(partitioner) is DefaultPartitioner

    # -- sending ---------------------------------------------------------------------------------
    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Send one record; a send refused before it left fails the batch at `check()`."""
        try:
            self.ledger.futures.append(self.producer.send(topic, key=key, value=value, partition=partition))
        except KafkaError as exc:
            self.ledger.refused(exc)

    def send_many(self, topic: str, key: bytes, values: Iterable[bytes]) -> None:
        """Send records that share `key`, hashed to its partition once, as one burst."""
        partition = self.partition_for(topic, key)
        futures, send = self.ledger.futures, self.producer.send
        with self.burst():
            try:
                for value in values:
                    futures.append(send(topic, key=key, value=value, partition=partition))
            except KafkaError as exc:
                self.ledger.refused(exc)

    def partition_for(self, topic: str, key: bytes) -> int | None:
        """The partition kafka-python's `DefaultPartitioner` gives `key` (Kafka's keyed rule:
        murmur2 of the key over the sorted partitions); None with any other partitioner, a
        subclass included (it keeps its per-record say)."""
        if not self._default_partitioner:
            return None
        partitions = sorted(self.producer.partitions_for(topic))
        return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]

    def check(self) -> None:
        """After `producer.flush()`: raise `DeliveryFailed` unless every send was acknowledged."""
        self.ledger.check()

    # -- wake-ups --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Coalesce the sender wake-ups of the sends inside; wake it once when the block ends."""
        if not self.coalescing or self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self._sender.wakeup = self._coalesced_wakeup  # instance attribute shadows the method
        try:
            yield
        finally:
            self._depth = 0
            del self._sender.wakeup
            type(self._sender).wakeup(self._sender)
            self.wakeups += 1
            self._last_wakeup = time.monotonic()

    def _coalesced_wakeup(self) -> None:
        now = time.monotonic()
        if now - self._last_wakeup >= self.min_interval_s:
            self._last_wakeup = now
            self.wakeups += 1
            type(self._sender).wakeup(self._sender)
        else:
            self.coalesced += 1
