"""The durable spool and the Kafka publisher thread, against the real embedded broker."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from cryptovol.broker import EmbeddedBroker
from cryptovol.ingest import Backoff, IngestStats, Publisher, Spool, SpoolBusyError, SpoolRecord
from cryptovol.kafka_io import read_topic
from cryptovol.procs import free_port, wait_until

TOPIC = "ticks.raw"
DEAD = "ticks.deadletter"


def rec(i: int, key: str = "BTC-USD") -> SpoolRecord:
    return SpoolRecord(TOPIC, key, json.dumps({"i": i, "key": key}).encode())


def test_spool_reads_back_in_order_and_truncates_when_all_acked(tmp_path: Path):
    spool = Spool(tmp_path)
    spool.append([rec(i) for i in range(5)])
    assert spool.pending == 5
    first = spool.read(0, max_records=2)
    assert [json.loads(r.value)["i"] for r, _ in first] == [0, 1]
    assert spool.ack(first[-1][1], 2) is False
    rest = spool.read(first[-1][1])
    assert [json.loads(r.value)["i"] for r, _ in rest] == [2, 3, 4]
    assert spool.ack(rest[-1][1], 3) is True  # everything acknowledged: truncated
    assert spool.pending == 0 and spool.path.stat().st_size == 0
    spool.close()


def test_spool_survives_a_restart_and_drops_a_torn_last_line(tmp_path: Path):
    spool = Spool(tmp_path)
    spool.append([rec(i) for i in range(4)])
    (_, end1), (_, end2) = spool.read(0, max_records=2)
    spool.ack(end2, 2)
    spool.close()
    with open(tmp_path / "spool.ndjson", "ab") as fh:  # a crash in the middle of an append
        fh.write(b'{"t":"ticks.raw","k":"BTC')
    again = Spool(tmp_path)
    assert again.pending == 2 and again.acked_offset == end2
    assert [json.loads(r.value)["i"] for r, _ in again.read(again.acked_offset)] == [2, 3]
    again.append([rec(4)])
    assert [json.loads(r.value)["i"] for r, _ in again.read(again.acked_offset)] == [2, 3, 4]
    again.close()


def test_one_spool_per_process(tmp_path: Path):
    spool = Spool(tmp_path)
    with pytest.raises(SpoolBusyError, match="another process"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()  # free again once closed


def test_backoff_grows_exponentially_with_jitter_and_caps():
    import random

    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 4, 4, 4, 4]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def topic_values(bootstrap: str, topic: str = TOPIC) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(bootstrap, topic, idle_timeout_s=1.5)]


def by_key(values: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for v in values:
        out[v["key"]].append(v["i"])
    return out


def test_publisher_delivers_directly_when_the_broker_is_up(broker: EmbeddedBroker, tmp_path: Path):
    stats = IngestStats()
    pub = Publisher(broker.bootstrap, Spool(tmp_path / "spool"), stats, topics=[TOPIC, DEAD])
    pub.start()
    for i in range(300):
        pub.publish(TOPIC, "BTC-USD" if i % 2 else "ETH-USD", rec(i, "BTC-USD" if i % 2 else "ETH-USD").value)
    pub.publish(DEAD, None, b'{"reason":"bad_json","i":-1,"key":"-"}')
    pub.stop()
    assert pub.error is None
    assert (stats.published, stats.deadletter_published, stats.spooled) == (300, 1, 0)
    keyed = by_key(topic_values(broker.bootstrap))
    assert keyed["BTC-USD"] == list(range(1, 300, 2)) and keyed["ETH-USD"] == list(range(0, 300, 2))
    assert len(topic_values(broker.bootstrap, DEAD)) == 1


def test_publisher_spools_while_the_broker_is_absent_and_delivers_in_order_later(tmp_path: Path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    stats = IngestStats()
    spool_dir = tmp_path / "spool"
    pub = Publisher(bootstrap, Spool(spool_dir), stats, topics=[TOPIC, DEAD])
    pub.start()
    broker = EmbeddedBroker(tmp_path / "run", port=port)
    try:
        for i in range(100):
            pub.publish(TOPIC, "BTC-USD", rec(i).value)
        wait_until(lambda: stats.spooled == 100, timeout_s=30, what="records spooled")
        assert (spool_dir / "spool.ndjson").read_bytes().count(b"\n") == 100  # durable on disk
        assert stats.published == 0
        broker.start()
        for i in range(100, 150):
            pub.publish(TOPIC, "BTC-USD", rec(i).value)
        wait_until(lambda: stats.published == 150, timeout_s=60, what="spool drained")
        pub.stop()
        assert by_key(topic_values(bootstrap))["BTC-USD"] == list(range(150))  # spool first, in order
        assert stats.spool_pending == 0 and (spool_dir / "spool.ndjson").stat().st_size == 0
    finally:
        pub.stop(drain_timeout_s=1)
        broker.stop()


def test_spooled_records_outlive_the_process_and_go_out_on_the_next_start(tmp_path: Path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    first = IngestStats()
    pub = Publisher(bootstrap, Spool(tmp_path / "spool"), first, topics=[TOPIC, DEAD])
    pub.start()
    for i in range(20):
        pub.publish(TOPIC, "ETH-USD", rec(i, "ETH-USD").value)
    pub.stop(drain_timeout_s=1)  # broker never came: everything stays in the spool
    assert first.spool_pending == 20 and first.published == 0
    broker = EmbeddedBroker(tmp_path / "run", port=port)
    broker.start()
    try:
        second = IngestStats()
        pub = Publisher(bootstrap, Spool(tmp_path / "spool"), second, topics=[TOPIC, DEAD])
        assert second.spool_pending == 20
        pub.start()
        pub.publish(TOPIC, "ETH-USD", rec(20, "ETH-USD").value)
        wait_until(lambda: second.published == 21, timeout_s=60, what="spool from the last run delivered")
        pub.stop()
        assert by_key(topic_values(bootstrap))["ETH-USD"] == list(range(21))
    finally:
        broker.stop()


@pytest.mark.slow  # ~20 s; the e2e broker-restart test covers the same path in the default suite
@pytest.mark.timeout(180)
def test_publisher_survives_a_broker_restart_without_loss_or_duplicates(
    broker: EmbeddedBroker, tmp_path: Path
):
    """Records keep flowing while the broker dies and comes back empty on the same port."""
    stats = IngestStats()
    pub = Publisher(broker.bootstrap, Spool(tmp_path / "spool"), stats, topics=[TOPIC, DEAD])
    pub.start()
    sent_at: dict[int, float] = {}
    stop_sending = threading.Event()

    def producer_loop() -> None:
        i = 0
        while not stop_sending.is_set():
            key = "BTC-USD" if i % 3 else "ETH-USD"
            sent_at[i] = time.monotonic()
            pub.publish(TOPIC, key, rec(i, key).value)
            i += 1
            time.sleep(0.01)

    thread = threading.Thread(target=producer_loop)
    thread.start()
    try:
        wait_until(lambda: stats.published > 50, timeout_s=30, what="first records delivered")
        broker.stop()
        stopped_at = time.monotonic()
        wait_until(lambda: stats.spooled > 50, timeout_s=60, what="records spooled during the outage")
        broker.start()  # same port, empty (memory-only): the publisher must recreate the topics
        wait_until(lambda: stats.spool_pending == 0 and stats.published > 0, timeout_s=60, what="drain")
        time.sleep(0.5)
    finally:
        stop_sending.set()
        thread.join()
        pub.stop()
    assert pub.error is None and stats.broker_outages >= 1
    after_restart = topic_values(broker.bootstrap)
    ids = [v["i"] for v in after_restart]
    assert len(ids) == len(set(ids)), "a record reached the new broker twice"
    for key, seq in by_key(after_restart).items():
        assert seq == sorted(seq), f"per-key order broken for {key}"
    must_have = {i for i, t in sent_at.items() if t > stopped_at}
    assert must_have and must_have <= set(ids), f"{len(must_have - set(ids))} records lost"


# --- Issue 2.2: a refused record never blocks the others; the spool repairs itself at start ------

BIG = json.dumps({"i": -1, "key": "BTC-USD", "pad": "x" * (2 * 2**20)}).encode()  # > max_request_size


def rejected_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.ndjson")) for line in f.read_text().splitlines()]


def test_a_record_the_broker_refuses_is_kept_on_disk_and_never_blocks_the_rest(
    broker: EmbeddedBroker, tmp_path: Path
):
    stats = IngestStats()
    pub = Publisher(broker.bootstrap, Spool(tmp_path / "spool"), stats, topics=[TOPIC, DEAD],
                    rejected_dir=tmp_path / "rejected")
    pub.start()
    for i in range(5):
        pub.publish(TOPIC, "BTC-USD", rec(i).value)
    pub.publish(TOPIC, "BTC-USD", BIG)
    for i in range(5, 10):
        pub.publish(TOPIC, "BTC-USD", rec(i).value)
    wait_until(lambda: stats.published == 10, timeout_s=30, what="the records around the big one")
    pub.stop()
    assert pub.error is None
    assert (stats.broker_outages, stats.spooled, stats.rejected_by_broker) == (0, 0, 1)
    assert by_key(topic_values(broker.bootstrap))["BTC-USD"] == list(range(10))
    [kept] = rejected_lines(tmp_path / "rejected")
    assert kept["reason"] == "broker_rejected" and "MessageSizeTooLarge" in kept["detail"]
    assert kept["raw_size"] == len(BIG) and len(kept["raw"]) <= 2048 and kept["topic"] == TOPIC


def test_a_refused_record_in_the_spool_is_set_aside_and_the_spool_drains(tmp_path: Path):
    """The reproduced wedge: a refused record spooled during an outage was retried forever and held
    back every record behind it, across restarts."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    spool = Spool(tmp_path / "spool")
    spool.append([rec(0), SpoolRecord(TOPIC, "BTC-USD", BIG), rec(1), rec(2)])
    spool.close()
    stats = IngestStats()
    broker = EmbeddedBroker(tmp_path / "run", port=port)
    broker.start()
    pub = Publisher(bootstrap, Spool(tmp_path / "spool"), stats, topics=[TOPIC, DEAD],
                    rejected_dir=tmp_path / "rejected")
    try:
        pub.start()
        pub.publish(TOPIC, "BTC-USD", rec(3).value)
        wait_until(lambda: stats.published == 4, timeout_s=60, what="the spool to drain")
        pub.stop()
        assert by_key(topic_values(bootstrap))["BTC-USD"] == [0, 1, 2, 3]
        assert stats.rejected_by_broker == 1 and stats.spool_pending == 0 and stats.broker_outages == 0
        assert (tmp_path / "spool" / "spool.ndjson").stat().st_size == 0
    finally:
        pub.stop(drain_timeout_s=1)
        broker.stop()


@pytest.mark.parametrize("cursor", [b"", b"12x", b"-5", b"999999999"],
                         ids=["empty", "garbage", "negative", "past-end"])
def test_an_unreadable_cursor_restarts_from_the_start_instead_of_stopping(tmp_path: Path, cursor: bytes):
    spool = Spool(tmp_path)
    spool.append([rec(i) for i in range(3)])
    spool.close()
    (tmp_path / "spool.cursor").write_bytes(cursor)
    again = Spool(tmp_path)
    values = [json.loads(r.value)["i"] for r, _ in again.read(again.acked_offset)]
    assert values == [0, 1, 2]  # re-sent (at-least-once), never skipped
    again.close()


def test_a_cursor_inside_a_record_moves_back_to_its_start(tmp_path: Path):
    spool = Spool(tmp_path)
    spool.append([rec(i) for i in range(3)])
    (_, end0), (_, end1) = spool.read(0, max_records=2)
    spool.close()
    (tmp_path / "spool.cursor").write_text(str(end0 + 5))  # torn: points into record 1
    again = Spool(tmp_path)
    assert again.acked_offset == end0 and again.pending == 2
    assert [json.loads(r.value)["i"] for r, _ in again.read(again.acked_offset)] == [1, 2]
    again.close()


def test_an_unreadable_spooled_line_is_set_aside_not_fatal(tmp_path: Path):
    spool = Spool(tmp_path)
    spool.append([rec(0)])
    spool.close()
    with open(tmp_path / "spool.ndjson", "ab") as fh:
        fh.write(b'{"t":"ticks.raw","k":null,"v":\xff\xfe}\n')  # flipped bits: not JSON
    again = Spool(tmp_path)
    again.append([rec(1)])
    assert again.bad_lines == 1 and again.pending == 2
    assert [json.loads(r.value)["i"] for r, _ in again.read(again.acked_offset)] == [0, 1]
    assert (tmp_path / "spool.bad.ndjson").read_bytes().count(b"\n") == 1
    again.close()


def test_the_cursor_is_fsynced_within_the_interval(tmp_path: Path):
    spool = Spool(tmp_path, fsync_interval_s=0.2)
    spool.append([rec(i) for i in range(3)])
    (_, end0), _ = spool.read(0, max_records=2)
    spool.ack(end0, 1)  # written at once (atomic rename), fsynced later
    time.sleep(0.25)
    spool.sync_cursor_if_due()
    assert not spool._cursor_dirty and (tmp_path / "spool.cursor").read_text() == str(end0)
    spool.close()
