"""The embedded broker: a real Tansu process, started/stopped/inspected by the CLI."""

from __future__ import annotations

import subprocess
import sys

from cryptovol import kafka_io
from cryptovol.broker import BrokerError, EmbeddedBroker
from cryptovol.config import ALL_TOPICS
from cryptovol.procs import free_port


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cryptovol.cli", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )


def test_broker_cli_start_status_stop_creates_topics(data_dir, monkeypatch):
    import os

    port = free_port()
    env = {**os.environ}
    started = _cli("broker", "start", "--port", str(port), env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"127.0.0.1:{port}" in started.stdout
        assert (data_dir / "run" / "broker.json").exists()
        assert (data_dir / "run" / "broker.log").exists()
        status = _cli("broker", "status", env=env)
        assert status.returncode == 0 and "running" in status.stdout
        topics = set(kafka_io.admin_client(f"127.0.0.1:{port}").list_topics())
        assert set(ALL_TOPICS) <= topics
    finally:
        stopped = _cli("broker", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not kafka_io.port_open("127.0.0.1", port)
    after = _cli("broker", "status", env=env)
    assert after.returncode == 1 and "not running" in after.stdout


def test_start_refuses_a_port_taken_by_someone_else(tmp_path, broker):
    other = EmbeddedBroker(tmp_path / "other", port=broker.port)
    try:
        other.start(timeout_s=5)
    except BrokerError as exc:
        assert "already in use" in str(exc)
    else:  # pragma: no cover - the assertion below explains the failure
        raise AssertionError("a second broker started on a port already in use")


def test_produce_consume_keeps_per_key_order(broker):
    kafka_io.ensure_topics(broker.bootstrap, ["ticks.raw"], partitions=3)
    producer = kafka_io.make_producer(broker.bootstrap)
    for i in range(300):
        producer.send("ticks.raw", key=("BTC-USD", "ETH-USD")[i % 2], value=str(i))
    producer.flush()
    producer.close()
    records = list(kafka_io.read_topic(broker.bootstrap, "ticks.raw", idle_timeout_s=1.0))
    assert len(records) == 300
    by_key: dict[bytes, list[int]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(int(record.value))
    assert set(by_key) == {b"BTC-USD", b"ETH-USD"}
    for values in by_key.values():
        assert values == sorted(values), "a product's ticks must stay in order within its partition"
    # Same key -> same partition.
    partitions = {(r.key, r.partition) for r in records}
    assert len(partitions) == 2


def test_ensure_topics_is_idempotent(broker):
    first = kafka_io.ensure_topics(broker.bootstrap, partitions=2)
    assert sorted(first) == sorted(ALL_TOPICS)
    assert kafka_io.ensure_topics(broker.bootstrap, partitions=2) == []


def test_broker_restart_loses_memory_only_state(broker):
    """Documented behaviour: Tansu is memory-only, so topics vanish on restart (replay rebuilds)."""
    kafka_io.ensure_topics(broker.bootstrap, ["ticks.raw"])
    broker.stop()
    broker.start()
    assert "ticks.raw" not in kafka_io.admin_client(broker.bootstrap).list_topics()
