"""`cryptovol.kafka_send.BurstSender` against the real embedded broker (the shared `broker` fixture).

What a user relies on: a burst puts every record where a plain `producer.send` would, delivers it
without a `flush()`, coalesces sender wake-ups only inside the burst, reports refused sends at
`check()`, and leaves a custom partitioner its per-record say. kafka-python is never mocked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.partitioner.abc import Partitioner
from kafka.partitioner.default import DefaultPartitioner

from cryptovol.kafka_io import DeliveryFailed, ensure_topics, make_consumer, make_producer
from cryptovol.kafka_send import BurstSender
from cryptovol.stream.featurizer import PRODUCER_SETTINGS

TOPIC = "burst.test"
KEYS = [b"BTC-USD", b"ETH-USD", b"SOL-USD", b"ADA-USD", b"XRP-USD", b"DOGE-USD", b"LTC-USD", b"DOT-USD",
        b"AVAX-USD", b"LINK-USD", b"MATIC-USD", b"BCH-USD", b"XLM-USD", b"ATOM-USD", b"UNI-USD",
        b"ETC-USD", b"FIL-USD", b"AAVE-USD", b"BTC-EUR", b"ETH-BTC"]


@pytest.fixture
def topic(broker) -> str:
    ensure_topics(broker.bootstrap, [TOPIC], partitions=3)
    return TOPIC


@pytest.fixture
def producers(broker) -> Iterator[list[KafkaProducer]]:
    """Producers a test makes (append to the list); all closed at teardown."""
    made: list[KafkaProducer] = []
    yield made
    for producer in made:
        producer.close(timeout=10)


def _producer(broker, producers: list[KafkaProducer], **overrides: object) -> KafkaProducer:
    producer = make_producer(broker.bootstrap, **overrides)
    producers.append(producer)
    return producer


def _read_back(bootstrap: str, topic: str, expected: int, timeout_s: float = 15.0) -> list:
    """Every record of `topic` (group-less, from the start) until `expected` arrived or time is up."""
    consumer = make_consumer(bootstrap, group_id=None, fetch_max_wait_ms=10)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_send_many_puts_each_key_where_a_plain_send_does(broker, topic, producers) -> None:
    producer = _producer(broker, producers)
    sender = BurstSender(producer)
    plain = {key: producer.send(topic, key=key, value=b"plain").get(timeout=10).partition for key in KEYS}
    assert len(set(plain.values())) == 3, f"20 keys should spread over all 3 partitions: {plain}"

    for key in KEYS:
        start = len(sender.ledger.futures)
        sender.send_many(topic, key, [b"burst-%d" % i for i in range(3)])
        burst_futures = sender.ledger.futures[start:]
        assert len(burst_futures) == 3
        got = {future.get(timeout=10).partition for future in burst_futures}
        assert got == {plain[key]}, f"{key!r}: plain send -> {plain[key]}, send_many -> {got}"
        assert sender.partition_for(topic, key) == plain[key]
    producer.flush(timeout=10)
    sender.check()


def test_burst_is_delivered_without_flush_in_order_per_key(broker, topic, producers) -> None:
    producer = _producer(broker, producers, linger_ms=20)
    sender = BurstSender(producer)
    keys = KEYS[:4]
    sent = {key: [b"%s|%04d|" % (key, i) + b"x" * (i % 97) for i in range(500)] for key in keys}
    started = time.monotonic()
    for key in keys:
        sender.send_many(topic, key, sent[key])
    futures = list(sender.ledger.futures)
    assert len(futures) == 2000
    for future in futures:  # nobody calls producer.flush(): the end-of-burst wake-up must suffice
        future.get(timeout=10)
    assert time.monotonic() - started < 10

    records = _read_back(broker.bootstrap, topic, expected=2000)
    assert len(records) == 2000
    got: dict[bytes, list[bytes]] = {key: [] for key in keys}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        got[record.key].append(record.value)
    assert got == sent


def test_wakeups_are_coalesced_inside_a_burst_only(broker, topic, producers) -> None:
    producer = _producer(broker, producers, **PRODUCER_SETTINGS)
    sender = BurstSender(producer)
    assert sender.coalescing
    records = 20_000
    payload = b"f" * 690
    sender.send_many(topic, b"BTC-USD", (b"%08d|" % i + payload for i in range(records // 2)))
    sender.send_many(topic, b"ETH-USD", (b"%08d|" % i + payload for i in range(records // 2)))

    assert sender.coalesced > 0
    assert sender.wakeups < records // 10, (sender.wakeups, sender.coalesced)
    assert "wakeup" not in vars(producer._sender), "the burst left its wake-up shadow on the sender"

    counts = (sender.wakeups, sender.coalesced)
    outside = producer.send(topic, key=b"BTC-USD", value=b"outside a burst")
    producer.flush(timeout=30)
    assert outside.is_done and outside.succeeded()
    assert (sender.wakeups, sender.coalesced) == counts, "sends outside a burst went through the shadow"
    sender.check()
    assert len(sender.ledger.futures) == 0  # a good check() starts a new batch


def test_check_raises_when_a_send_of_the_burst_is_refused(broker, topic, producers) -> None:
    producer = _producer(broker, producers, max_request_size=10_000)
    sender = BurstSender(producer)
    sender.send_many(topic, b"BTC-USD", [b"ok-1", b"x" * 20_000, b"ok-2"])
    producer.flush(timeout=10)
    with pytest.raises(DeliveryFailed, match="MessageSizeTooLarge"):
        sender.check()
    assert "wakeup" not in vars(producer._sender)

    single = BurstSender(producer)
    single.send(topic, b"ETH-USD", b"y" * 20_000)
    producer.flush(timeout=10)
    with pytest.raises(DeliveryFailed, match="MessageSizeTooLarge"):
        single.check()

    clean = BurstSender(producer)
    clean.send_many(topic, b"BTC-USD", [b"fine-%d" % i for i in range(100)])
    clean.send(topic, b"ETH-USD", b"fine")
    producer.flush(timeout=10)
    clean.check()  # does not raise
    assert len(clean.ledger.futures) == 0


class _ByValueDigit(Partitioner):
    """Routes a record by the last digit of its value: ignores the key entirely."""

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        partitions = sorted(cluster.partitions_for_topic(topic))
        return partitions[int(serialized_value[-1:]) % len(partitions)]


class _ByValueDigitDefault(DefaultPartitioner):
    """The same rule, written as a tweak of the default partitioner (still a custom partitioner)."""

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        partitions = sorted(cluster.partitions_for_topic(topic))
        return partitions[int(serialized_value[-1:]) % len(partitions)]


def _assert_custom_partitioner_decides(broker, topic, producers, partitioner: Partitioner) -> None:
    producer = _producer(broker, producers, partitioner=partitioner)
    sender = BurstSender(producer)
    assert sender.partition_for(topic, b"BTC-USD") is None
    values = [b"rec-%d" % i for i in range(9)]
    sender.send_many(topic, b"BTC-USD", values)
    landed = [future.get(timeout=10).partition for future in sender.ledger.futures]
    assert landed == [i % 3 for i in range(9)]


def test_custom_partitioner_keeps_its_say(broker, topic, producers) -> None:
    _assert_custom_partitioner_decides(broker, topic, producers, _ByValueDigit())


def test_default_partitioner_subclass_keeps_its_say(broker, topic, producers) -> None:
    _assert_custom_partitioner_decides(broker, topic, producers, _ByValueDigitDefault())


def test_a_burst_that_raises_restores_the_sender_and_delivers_what_it_sent(broker, topic, producers) -> None:
    producer = _producer(broker, producers, linger_ms=20)
    sender = BurstSender(producer)

    def values() -> Iterator[bytes]:
        yield from (b"v-%d" % i for i in range(50))
        raise RuntimeError("featurizer blew up mid-burst")

    with pytest.raises(RuntimeError, match="mid-burst"):
        sender.send_many(topic, b"BTC-USD", values())
    assert "wakeup" not in vars(producer._sender)
    assert len(sender.ledger.futures) == 50
    for future in sender.ledger.futures:  # no flush: the burst's final wake-up ran despite the error
        future.get(timeout=10)


def test_send_many_inside_an_outer_burst(broker, topic, producers) -> None:
    producer = _producer(broker, producers, linger_ms=20)
    sender = BurstSender(producer)
    with sender.burst():
        for key in KEYS[:2]:
            sender.send_many(topic, key, [b"n-%d" % i for i in range(20)])
    assert "wakeup" not in vars(producer._sender)
    for future in sender.ledger.futures:
        future.get(timeout=10)


def test_end_of_burst_wakes_an_idle_sender_even_when_every_wakeup_was_coalesced(
        broker, topic, producers) -> None:
    # A long interval coalesces every wake-up inside the second burst; the sender sleeps idle after
    # the first. Only the unconditional wake-up at the end of the burst can hand the records over.
    producer = _producer(broker, producers, linger_ms=5)
    sender = BurstSender(producer, min_interval_s=600)
    sender.send_many(topic, b"BTC-USD", [b"warm-up"])
    sender.ledger.futures[0].get(timeout=10)
    time.sleep(0.2)  # let the sender finish its loop and go idle (nothing pending, nothing in flight)

    before = sender.coalesced
    sender.send_many(topic, b"ETH-USD", [b"late-%d" % i for i in range(100)])
    assert sender.coalesced > before, "the in-burst wake-ups should have been coalesced"
    started = time.monotonic()
    for future in sender.ledger.futures[1:]:
        future.get(timeout=10)
    assert time.monotonic() - started < 5
