"""Kafka-protocol plumbing shared by every process: client settings, producers, consumers, topics.

Only kafka-python, only `KAFKA_BOOTSTRAP_SERVERS` (+ optional TLS/SASL variables), so the same code
runs against the embedded broker, a Redpanda container or a managed cluster.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.serializer import DefaultSerializer
from pydantic import SecretStr

from cryptovol.config import ALL_TOPICS, load_env

#: Environment variables passed through to every kafka-python client when set (validated by
#: cryptovol.config.PlatformEnv: protocol and mechanism names, readable certificate files).
_SECURITY_ENV = {
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_plain_username",
    "KAFKA_SASL_PASSWORD": "sasl_plain_password",
    "KAFKA_SSL_CAFILE": "ssl_cafile",
    "KAFKA_SSL_CERTFILE": "ssl_certfile",
    "KAFKA_SSL_KEYFILE": "ssl_keyfile",
}

#: Group timings that make a consumer-group join take ~3 s instead of ~23 s (see STACK.md).
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def client_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """Common client settings: bootstrap servers plus TLS/SASL from the environment."""
    config: dict[str, Any] = {"bootstrap_servers": bootstrap_servers.split(",")}
    env = load_env()
    for env_name, option in _SECURITY_ENV.items():
        value = env.value_of(env_name)
        if value is not None:
            config[option] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    config.update(overrides)
    return config


def make_producer(bootstrap_servers: str, **overrides: Any) -> KafkaProducer:
    """A durable producer: acks=all, retries, small linger; keys and values are bytes or str."""
    settings = {
        "acks": "all",
        "retries": 5,
        # kafka-python 3 turns idempotence on by default, but the memory-only embedded broker forgets
        # producer ids when it restarts and every later send then fails until the process restarts.
        # Consumers here de-duplicate, so retries' rare duplicates are harmless; opt in for Redpanda
        # or Kafka with KAFKA_ENABLE_IDEMPOTENCE=true.
        "enable_idempotence": load_env().kafka_enable_idempotence,
        "linger_ms": 5,
        "max_in_flight_requests_per_connection": 1,  # keeps per-key order under retries
        "key_serializer": DefaultSerializer(),
        "value_serializer": DefaultSerializer(),
    }
    settings.update(overrides)
    return KafkaProducer(**client_config(bootstrap_servers, **settings))


def make_consumer(
    bootstrap_servers: str,
    *topics: str,
    group_id: str | None,
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer with manual commits and fast group timings; reads from the start by default."""
    settings: dict[str, Any] = {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **FAST_GROUP,
    }
    settings.update(overrides)
    return KafkaConsumer(*topics, **client_config(bootstrap_servers, **settings))


def admin_client(bootstrap_servers: str, **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**client_config(bootstrap_servers, **overrides))


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str] = ALL_TOPICS,
    *,
    partitions: int = 3,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created. Idempotent."""
    admin = admin_client(bootstrap_servers)
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        if not wanted:
            return []
        spec = {
            t: {"num_partitions": partitions, "replication_factor": replication_factor}
            for t in wanted
        }
        try:
            admin.create_topics(spec)
        except TopicAlreadyExistsError:
            pass  # created concurrently by another process: fine
        return wanted
    finally:
        admin.close()


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_reachable(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """True when a metadata request to the cluster succeeds within `timeout_s`."""
    try:
        admin = admin_client(bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def wait_for_broker(bootstrap_servers: str, timeout_s: float = 20.0) -> None:
    """Block until the broker answers metadata requests; raise `TimeoutError` otherwise."""
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host or "127.0.0.1", int(port)) and broker_reachable(bootstrap_servers):
            return
        time.sleep(0.1)
    raise TimeoutError(f"Kafka broker at {bootstrap_servers} not ready after {timeout_s:.0f}s")


def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, int]:
    """Partition -> end offset of `topic` as the broker reports it.

    Caveat: Tansu 0.6 reports the base offset of the last record batch + 1, not the true high
    watermark, so on the embedded broker this is a lower bound (fine for "is it empty?"/lag hints).
    """
    consumer = make_consumer(bootstrap_servers, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    idle_timeout_s: float = 2.0,
    max_wait_s: float = 120.0,
) -> Iterator[Any]:
    """Yield every record in `topic` (all partitions, from the start) until it has been idle.

    Group-less (no join delay). It stops after `idle_timeout_s` without a new record rather than at
    the reported end offsets, because the embedded broker under-reports those (see `end_offsets`).
    """
    consumer = make_consumer(bootstrap_servers, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + max_wait_s
        last_record = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_record < idle_timeout_s:
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                if records:
                    last_record = time.monotonic()
                yield from records
    finally:
        consumer.close()


class DeliveryFailed(RuntimeError):
    """A produce of the current batch failed: nothing of the batch was persisted or committed."""


class DeliveryLedger:
    """The delivery futures of every produce since the last good flush.

    `producer.flush()` returning does not mean every record was acknowledged: a batch is persisted
    and its offsets committed only after `check()` saw every future succeed. A failure is sticky,
    so a batch that lost a record is never persisted, and a restart re-reads it.
    """

    def __init__(self) -> None:
        self.futures: list[Any] = []
        self.failure: str | None = None

    def refused(self, exc: BaseException) -> None:
        """A send refused before it left (e.g. MessageSizeTooLarge): the batch fails at `check()`."""
        self.failure = self.failure or f"send refused: {exc!r}"

    def check(self) -> None:
        """Raise `DeliveryFailed` unless every send since the last good flush was acknowledged."""
        if self.failure is None:
            for future in self.futures:
                if not future.is_done or future.failed():
                    error = future.exception if future.is_done else "not acknowledged after flush"
                    self.failure = f"{len(self.futures)} sends; first failure {error!r}"
                    break
        if self.failure is not None:
            raise DeliveryFailed(f"a produce failed, nothing committed ({self.failure})")
        self.futures = []
