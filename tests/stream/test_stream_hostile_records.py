"""Records on `ticks.raw` that used to freeze or escape a real `cryptovol featurize` (issue 2.2).

Another producer can write anything to the topic: a tick dated 2100 (which moved its product's
watermark, so every later tick was "late"), huge integers, NaN/inf, product ids with path
characters. Each must be dead-lettered and counted while every good tick still becomes a feature
row, and a bad row persisted by older code must not freeze the product after a restart.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kafka import TopicPartition

from cryptovol import lake
from cryptovol.config import TOPIC_DEADLETTER, TOPIC_RAW
from cryptovol.kafka_io import DeliveryFailed, ensure_topics, make_consumer, make_producer, read_topic
from cryptovol.procs import wait_until
from cryptovol.stream.engine import SourceRecord, StreamEngine
from cryptovol.stream.featurizer import FeaturizerConfig, StreamFeaturizer
from cryptovol.stream.sink import read_stream_features, write_batches
from cryptovol.ticks import Tick

NS = 1_000_000_000
YEAR_2100_NS = 4_102_444_800 * NS


def good_ticks(n: int, product: str = "BTC-USD") -> list[Tick]:
    """`n` in-order ticks, one a second, ending a minute ago (near their receive times)."""
    start = time.time_ns() - (n + 60) * NS
    return [Tick(product, start + i * NS, i, 100.0 + i * 0.01, 99.99 + i * 0.01, 100.01 + i * 0.01,
                 1.0, 2.0, 1000.0, start + i * NS + 50_000_000) for i in range(n)]


def produce(values: list[tuple[bytes, bytes]]) -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    ensure_topics(bootstrap)
    producer = make_producer(bootstrap, linger_ms=20)
    for key, value in values:
        producer.send(TOPIC_RAW, key=key, value=value)
    producer.flush()
    producer.close()


def keyed(ticks: list[Tick]) -> list[tuple[bytes, bytes]]:
    return [(t.product_id.encode(), t.to_json()) for t in ticks]


def as_json(tick: Tick, **changes: object) -> bytes:
    return json.dumps({**json.loads(tick.to_json()), **changes}).encode()


def dead_letters(bootstrap: str) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(bootstrap, TOPIC_DEADLETTER, idle_timeout_s=1.0)]


def wait_rows(data_dir: Path, n: int, timeout_s: float = 60) -> None:
    wait_until(lambda: len(read_stream_features(data_dir / "features")) >= n, timeout_s=timeout_s,
               interval_s=0.3, what=f"{n} feature rows in Parquet")


def test_a_tick_dated_2100_and_other_bad_records_never_move_a_watermark(
    data_dir, broker, featurizer_factory
):
    """Case (b), consumer side: 99 of 200 good ticks used to be dead-lettered as late after one
    tick dated 2100; now the bad records are dead-lettered and all 200 good ticks are featurized."""
    ticks = good_ticks(200)
    t = ticks[0]
    now = time.time_ns()
    hostile = {
        "year_2100": as_json(t, event_time_ns=YEAR_2100_NS, receive_time_ns=YEAR_2100_NS, sequence=-1),
        "ahead_of_receipt": as_json(t, event_time_ns=now + 3600 * NS, receive_time_ns=now, sequence=-2),
        "huge_int": as_json(t, sequence=10**30),
        "huge_time": as_json(t, event_time_ns=2**70, sequence=-3),
        "nan_price": t.to_json().replace(b'"price":100.0', b'"price":NaN'),
        "inf_size": as_json(t, best_bid_qty=float("inf"), sequence=-4),
        "path_product": as_json(t, product_id="../../escaped", sequence=-5),
        "long_product": as_json(t, product_id="BTC-" + "U" * 300, sequence=-6),
        "nested": b"[" * 100_000 + b"]" * 100_000,
        "not_utf8": b"\xff\xfe{",
    }
    values = keyed(ticks[:100]) + [(b"BTC-USD", v) for v in hostile.values()] + keyed(ticks[100:])
    produce(values)
    featurizer = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.3")
    wait_rows(data_dir, 200)
    wait_until(lambda: len(dead_letters(broker.bootstrap)) >= len(hostile), timeout_s=30,
               what="every bad record dead-lettered")
    assert featurizer.process.alive(), featurizer.log()[-3000:]

    rows = read_stream_features(data_dir / "features")
    assert len(rows) == 200 and sorted(rows["sequence"]) == list(range(200))
    dead = dead_letters(broker.bootstrap)
    reasons = sorted(d["reason"] for d in dead)
    assert "late_tick" not in reasons
    assert reasons.count("event_time_out_of_range") == 2 and reasons.count("bad_tick_value") == 4
    assert reasons.count("bad_product_id") == 2
    assert len(dead) == len(hostile)
    assert all(len(d["raw"]) <= 2048 and d["raw_size"] > 0 for d in dead)
    assert not (data_dir.parent / "escaped").exists() and not (data_dir / "escaped").exists()
    assert sorted(p.name for p in (data_dir / "features").iterdir()) == ["_delta_log", "product_id=BTC-USD"]


def test_a_persisted_row_dated_2100_does_not_freeze_the_product_after_a_restart(
    data_dir, broker, featurizer_factory
):
    """A 2100 row written to the lake by older code set the product's durable watermark on every
    restart, so nothing after it was ever emitted. Its rows are now quarantined at start."""
    engine = StreamEngine(lateness_s=0)
    bad = Tick("BTC-USD", YEAR_2100_NS, 7, 100.0, 99.0, 101.0, 1.0, 1.0, 1.0, YEAR_2100_NS)
    assert engine.offer(SourceRecord(bad, 0, 0)) is None
    [written] = write_batches(data_dir / "features", engine.release(force=True))
    assert written.rows == 1 and lake.list_feature_partitions(data_dir) == [("BTC-USD", "2100-01-01")]

    produce(keyed(good_ticks(200)))
    featurizer = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.3")
    wait_rows(data_dir, 200)
    assert featurizer.process.alive(), featurizer.log()[-3000:]
    rows = read_stream_features(data_dir / "features")
    assert len(rows) == 200 and int(rows["event_time_ns"].max()) < time.time_ns()
    [quarantined] = list((data_dir / "quarantine" / "features").rglob("*.parquet"))
    kept = pq.read_table(quarantined)
    assert kept.column("event_time_ns").to_pylist() == [YEAR_2100_NS]  # kept, out of the table
    assert ("BTC-USD", "2100-01-01") not in lake.list_feature_partitions(data_dir)


def test_a_failed_produce_stops_the_featurizer_without_parquet_or_commit(data_dir, broker):
    """Commits follow success: every delivery result is checked after the producer flush. Here
    every feature row is refused (larger than the producer's max request size), so nothing may be
    written to Parquet or committed; a restart redoes the batch."""
    produce(keyed(good_ticks(50)))
    featurizer = StreamFeaturizer(FeaturizerConfig(
        broker.bootstrap, data_dir / "features", group_id="refused", lateness_s=0, flush_every_s=0.2,
        log_every_s=60, duration_s=60, producer_overrides={"max_request_size": 300},
    ))
    with pytest.raises(DeliveryFailed, match="MessageSizeTooLarge"):
        featurizer.run()
    assert featurizer.stats.consumed == 50 and featurizer.engine.counters.emitted == 50
    assert read_stream_features(data_dir / "features").empty and featurizer.stats.commits == 0
    consumer = make_consumer(broker.bootstrap, group_id="refused")
    try:
        partitions = consumer.partitions_for_topic(TOPIC_RAW)
        committed = [consumer.committed(TopicPartition(TOPIC_RAW, p)) for p in partitions or ()]
        assert committed and all(c is None for c in committed)
    finally:
        consumer.close()
