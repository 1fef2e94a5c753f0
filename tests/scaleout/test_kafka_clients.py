"""Which Kafka clients the embedded broker (Tansu 0.6) serves, against a real broker process.

The README says asyncio code can use aiokafka against the embedded default (librdkafka clients
such as kcat or confluent-kafka cannot: they fail the ApiVersions handshake, so those tools need
Redpanda). This is that claim, checked: aiokafka produces and consumes in a group with committed
offsets, and interoperates with the platform's kafka-python clients on the same topic, with the
same key -> partition mapping (the platform keys by product for per-product order).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from cryptovol.broker import EmbeddedBroker
from cryptovol.kafka_io import FAST_GROUP, ensure_topics, make_producer, read_topic

KEYS = ("BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD")
PER_KEY = 25


def _records(prefix: str) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), f"{prefix}:{k}:{i}".encode()) for i in range(PER_KEY) for k in KEYS]


async def _aio_produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]
) -> dict[bytes, set[int]]:
    """Send with aiokafka (acks=all); returns key -> partitions the broker acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for (key, _), meta in zip(records, metadata, strict=True):
        partitions[key].add(meta.partition)
    return partitions


async def _aio_consume(bootstrap: str, topic: str, group: str, want: int, timeout_s: float = 30.0) -> list:
    """Join `group`, read until `want` records (or `timeout_s`), commit, leave."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, **FAST_GROUP,
    )
    await consumer.start()
    records: list = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < want and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
        await consumer.commit()
    finally:
        await consumer.stop()
    return records


async def _aio_committed(bootstrap: str, topic: str, group: str, partitions: list[int]) -> dict[int, int]:
    """The group's committed offset per partition, fetched by a group-less aiokafka client."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        await consumer.stop()


def _per_key_values(records) -> dict[bytes, list[bytes]]:
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key[record.key].append(record.value)
    return by_key


def test_aiokafka_round_trip_and_interop_with_kafka_python(broker: EmbeddedBroker) -> None:
    topic = "clients.check"
    ensure_topics(broker.bootstrap, [topic], partitions=3)

    # kafka-python (the platform's producer) writes first, aiokafka second, same keys.
    from_platform = _records("kp")
    producer = make_producer(broker.bootstrap)
    kp_partitions: dict[bytes, set[int]] = defaultdict(set)
    futures = [(key, producer.send(topic, value=value, key=key)) for key, value in from_platform]
    producer.flush(timeout=30)
    for key, future in futures:
        kp_partitions[key].add(future.get(timeout=30).partition)
    producer.close()
    from_aio = _records("aio")
    aio_partitions = asyncio.run(_aio_produce(broker.bootstrap, topic, from_aio))

    # Same default partitioner: one partition per key, the same for both clients.
    assert all(len(parts) == 1 for parts in kp_partitions.values())
    assert aio_partitions == kp_partitions
    assert len({p for parts in aio_partitions.values() for p in parts}) > 1  # keys really spread

    # aiokafka in a consumer group reads both producers' records, per-key order kept.
    total = len(from_platform) + len(from_aio)
    consumed = asyncio.run(_aio_consume(broker.bootstrap, topic, "aiokafka-check", total))
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in [*from_platform, *from_aio]:
        expected[key].append(value)
    assert _per_key_values(consumed) == expected

    # Its commit landed: the group's committed offsets are the ends of what it read, per partition.
    ends: dict[int, int] = {}
    for record in consumed:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    assert asyncio.run(_aio_committed(broker.bootstrap, topic, "aiokafka-check", sorted(ends))) == ends

    # ... and the platform's kafka-python reader sees every record aiokafka wrote.
    seen = [(r.key, r.value) for r in read_topic(broker.bootstrap, topic)]
    assert sorted(seen) == sorted([*from_platform, *from_aio])
