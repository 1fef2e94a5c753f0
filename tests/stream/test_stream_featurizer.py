"""The streaming featurizer through the real embedded broker, as real `cryptovol featurize` processes:
stream == batch, crash/restart exactly-once, two group members, late and bad ticks."""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from cryptovol import lake
from cryptovol.batch import featurize_day
from cryptovol.config import TOPIC_DEADLETTER, TOPIC_FEATURES, TOPIC_RAW
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET, KEY_COLUMNS
from cryptovol.kafka_io import ensure_topics, make_producer, read_topic
from cryptovol.lake import list_landing_partitions, read_features
from cryptovol.procs import wait_until
from cryptovol.simulator.synthetic import generate_landing_files
from cryptovol.stream.featurizer import FeaturizerConfig, StreamFeaturizer
from cryptovol.stream.sink import read_stream_features
from cryptovol.ticks import Tick, tick_from_landing

START = datetime(2026, 1, 5, 23, 55, tzinfo=UTC)  # crosses midnight: two date partitions
DURATION_S = 660.0  # > WARMUP_S, so rows past warm-up (every feature set) are compared too


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Tick]]:
    """Synthetic landing files (the system of record) and the ticks they hold: both products
    interleaved, in event-time order (a stream without late arrivals)."""
    root = tmp_path_factory.mktemp("batch-lake")
    paths = generate_landing_files(root, ("BTC-USD", "ETH-USD"), start=START, duration_s=DURATION_S, seed=11)
    ticks = [tick_from_landing(json.loads(line)) for p in paths for line in p.read_text().splitlines()]
    return root, sorted(ticks, key=lambda t: t.event_time_ns)


@pytest.fixture(scope="module")
def batch_features(landing: tuple[Path, list[Tick]]) -> pd.DataFrame:
    """The batch featurizer's rows for the same landing files (each day with its previous-day context)."""
    root, _ = landing
    for product, day in sorted(list_landing_partitions(root), key=lambda pair: pair[1]):
        featurize_day(root, product, day)
    return read_features(root)


def _produce(ticks: list[Tick], *, extra: list[tuple[bytes, bytes]] = ()) -> None:
    import os

    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    ensure_topics(bootstrap)
    producer = make_producer(bootstrap, linger_ms=20)
    for t in ticks:
        producer.send(TOPIC_RAW, key=t.product_id.encode(), value=t.to_json())
    for key, value in extra:
        producer.send(TOPIC_RAW, key=key, value=value)
    producer.flush()
    producer.close()


def _stream_rows(data_dir: Path) -> pd.DataFrame:
    return read_stream_features(data_dir / "features")


def _wait_rows(data_dir: Path, n: int, timeout_s: float = 120) -> None:
    wait_until(lambda: len(_stream_rows(data_dir)) >= n, timeout_s=timeout_s, interval_s=0.3,
               what=f"{n} feature rows in Parquet")


def _assert_equals_batch(stream: pd.DataFrame, batch: pd.DataFrame) -> None:
    keys = list(KEY_COLUMNS)
    assert not stream.duplicated(keys).any(), stream[stream.duplicated(keys, keep=False)].head()
    s = stream.sort_values(keys, kind="stable").reset_index(drop=True)
    b = batch.sort_values(keys, kind="stable").reset_index(drop=True)
    assert len(s) == len(b)
    assert (s["product_id"].astype(str).to_numpy() == b["product_id"].astype(str).to_numpy()).all()
    np.testing.assert_array_equal(s["event_time_ns"].to_numpy(), b["event_time_ns"].to_numpy())
    np.testing.assert_array_equal(s["sequence"].to_numpy(), b["sequence"].to_numpy())
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(s[name].to_numpy(), b[name].to_numpy(), rtol=1e-9, atol=0,
                                   equal_nan=True, err_msg=name)
    assert s["rv_300s"].notna().sum() > 1000, "the comparison must include rows past warm-up"


def _metrics(featurizer) -> str:
    with urllib.request.urlopen(featurizer.metrics_url, timeout=5) as response:  # noqa: S310 (loopback)
        return response.read().decode()


def _swap_close_pairs(ticks: list[Tick], within_ns: int) -> list[Tick]:
    """Arrival order with neighbouring ticks of a product swapped when close in time (< lateness)."""
    out = list(ticks)
    i = 0
    while i + 1 < len(out):
        a, b = out[i], out[i + 1]
        if a.product_id == b.product_id and 0 < b.event_time_ns - a.event_time_ns < within_ns:
            out[i], out[i + 1] = b, a
            i += 2
        else:
            i += 1
    return out


def test_stream_equals_batch_with_out_of_order_arrivals(broker, data_dir, featurizer_factory, landing,
                                                        batch_features):
    _, ticks = landing
    # Receive-time order (network jitter reorders ~3% of ticks by up to ~70 ms) plus swapped
    # neighbours up to 0.5 s apart: all within the 1 s lateness, so nothing is late.
    shuffled = _swap_close_pairs(sorted(ticks, key=lambda t: t.receive_time_ns), within_ns=500_000_000)
    assert shuffled != ticks
    featurizer = featurizer_factory("--lateness-s", "1", "--idle-release-s", "1", "--flush-every-s", "0.5")
    _produce(shuffled)
    _wait_rows(data_dir, len(ticks))
    wait_until(lambda: f"cryptovol_featurizer_emitted_total {float(len(ticks))}" in _metrics(featurizer),
               timeout_s=30, what="the emitted counter on /metrics")
    assert featurizer.process.stop(timeout_s=20) == 0  # SIGTERM: flush, commit, exit 0
    stream = _stream_rows(data_dir)
    _assert_equals_batch(stream, batch_features)
    assert set(stream["feature_set_version"]) == {FEATURE_SET.version}
    summary = featurizer.summary()
    assert summary["consumed"] == len(ticks) and summary["emitted"] == len(ticks)
    assert summary["late"] == 0 and summary["dead_lettered"] == 0
    # The Delta table is partitioned by UTC event date (the data crosses midnight).
    assert {day for _, day in lake.list_feature_partitions(data_dir)} == {"2026-01-05", "2026-01-06"}
    # The topic carries the same rows (keys, features with NaN as null, version).
    rows = [json.loads(r.value) for r in read_topic(broker.bootstrap, TOPIC_FEATURES)]
    assert len(rows) == len(ticks)
    last = max(rows, key=lambda r: r["event_time_ns"])
    match = stream[(stream.event_time_ns == last["event_time_ns"]) & (stream.sequence == last["sequence"])]
    assert len(match) == 1 and last["feature_set_version"] == FEATURE_SET.version
    for name in FEATURE_NAMES:
        expected = match[name].iloc[0]
        if np.isnan(expected):
            assert last[name] is None, name
        else:
            assert last[name] == pytest.approx(expected, rel=1e-12), name


@pytest.fixture(scope="module")
def arrival_landing(tmp_path_factory: pytest.TempPathFactory, landing: tuple[Path, list[Tick]]):
    """The same ticks in an arrival order with stragglers (neighbours up to 0.5 s apart swapped),
    landing files rewritten in that order (as the ingestor appends them), and the batch
    featurizer's rows for them: (arrival ticks, batch rows, ticks the rule skips)."""
    root, ticks = landing
    lines = {}
    for path in (root / "raw").glob("*/*.ndjson"):
        for line in path.read_text().splitlines():
            t = tick_from_landing(json.loads(line))
            lines[(t.product_id, t.event_time_ns, t.sequence)] = (path.relative_to(root), line)
    # Not across midnight: a day's landing file cannot know that a next-day tick arrived before
    # its last lines (the documented edge of the rule, see cryptovol/eventtime.py).
    midnight = int(pd.Timestamp("2026-01-06", tz="UTC").value)
    arrival = (_swap_close_pairs([t for t in ticks if t.event_time_ns < midnight], within_ns=500_000_000)
               + _swap_close_pairs([t for t in ticks if t.event_time_ns >= midnight], within_ns=500_000_000))
    out = tmp_path_factory.mktemp("arrival-lake")
    files: dict[Path, list[str]] = {}
    for t in arrival:
        rel, line = lines[(t.product_id, t.event_time_ns, t.sequence)]
        files.setdefault(rel, []).append(line)
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("\n".join(text) + "\n")
    skipped = 0
    for product, day in sorted(list_landing_partitions(out), key=lambda pair: pair[1]):
        skipped += featurize_day(out, product, day).skipped_late
    return arrival, read_features(out), skipped


def test_out_of_order_arrivals_at_lateness_0_equal_batch_on_the_same_arrival_order(
        broker, data_dir, featurizer_factory, arrival_landing):
    """The default policy: in-order ticks leave at once, a straggler is late (dead-lettered and
    counted) in the stream and skipped by the batch featurizer reading the landing files, which
    keep the same arrival order: the two agree row for row."""
    arrival, batch, skipped = arrival_landing
    assert 0 < skipped < len(arrival) // 2
    featurizer = featurizer_factory("--flush-every-s", "0.5")
    _produce(arrival)
    _wait_rows(data_dir, len(arrival) - skipped)
    assert featurizer.process.stop(timeout_s=20) == 0
    _assert_equals_batch(_stream_rows(data_dir), batch)
    summary = featurizer.summary()
    assert summary["late"] == skipped and summary["emitted"] == len(arrival) - skipped
    assert summary["dead_lettered"] == skipped
    late = [json.loads(r.value) for r in read_topic(broker.bootstrap, TOPIC_DEADLETTER)]
    assert len(late) == skipped and {d["reason"] for d in late} == {"late_tick"}


def test_sigkill_and_restart_writes_every_row_exactly_once(data_dir, broker, featurizer_factory, landing,
                                                           batch_features):
    _, ticks = landing
    cut = int(len(ticks) * 0.6)
    _produce(ticks[:cut])
    first = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.2")
    _wait_rows(data_dir, len(ticks) // 4)
    first.process.kill()  # SIGKILL: no flush, no commit, maybe a half-written temp file
    _produce(ticks[cut:])
    second = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.2")
    _wait_rows(data_dir, len(ticks))
    assert second.process.stop(timeout_s=20) == 0
    _assert_equals_batch(_stream_rows(data_dir), batch_features)
    summary = second.summary()
    assert summary["rewarmed"] > 0, "the restart must rebuild the history tail from re-read ticks"


def test_two_group_members_split_partitions_and_union_equals_batch(data_dir, broker, featurizer_factory,
                                                                    landing, batch_features):
    _, ticks = landing
    half = len(ticks) // 2
    first = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.3")
    _produce(ticks[:half])
    _wait_rows(data_dir, half // 2)
    second = featurizer_factory("--lateness-s", "0", "--flush-every-s", "0.3")
    wait_until(lambda: "partitions assigned: [" in second.log() and "partitions assigned: []" not in
               second.log(), timeout_s=60, what="the second member to get partitions")
    _produce(ticks[half:])
    _wait_rows(data_dir, len(ticks))
    assert second.process.stop(timeout_s=20) == 0
    assert first.process.stop(timeout_s=20) == 0
    _assert_equals_batch(_stream_rows(data_dir), batch_features)
    a, b = first.summary(), second.summary()
    assert a["emitted"] > 0 and b["emitted"] > 0, (a, b)
    assert a["rebalances"] >= 1
    assert "partitions revoked" in first.log()


def test_late_and_bad_messages_are_dead_lettered_and_counted(data_dir, broker, landing):
    _, ticks = landing
    btc = [t for t in ticks if t.product_id == "BTC-USD"][:400]
    assert btc == sorted(btc, key=lambda t: t.event_time_ns)
    late = btc[100]
    late_copy = msgspec.structs.replace(late, sequence=10**9)
    wrong_type = {**json.loads(btc[0].to_json()), "event_time_ns": "soon"}
    bad = [(b"BTC-USD", b"{not json"), (b"BTC-USD", json.dumps({"product_id": "BTC-USD"}).encode()),
           (b"BTC-USD", json.dumps(wrong_type).encode())]
    _produce(btc + [late_copy], extra=bad)
    stop = threading.Event()
    featurizer = StreamFeaturizer(
        FeaturizerConfig(broker.bootstrap, data_dir / "features", group_id="late-test", lateness_s=0.5,
                         idle_release_s=0.5, flush_every_s=0.2, log_every_s=60),
        stop=stop,
    )
    runner = threading.Thread(target=featurizer.run)
    runner.start()
    try:
        wait_until(lambda: featurizer.stats.dead_lettered >= 4 and featurizer.stats.parquet_rows >= len(btc),
                   timeout_s=60, what="the late tick and the three bad messages")
    finally:
        stop.set()
        runner.join(timeout=30)
    stats = featurizer.stats
    assert (stats.late, stats.bad_messages, stats.dead_lettered) == (1, 3, 4)
    assert stats.emitted == len(btc)
    dead = [json.loads(r.value) for r in read_topic(broker.bootstrap, TOPIC_DEADLETTER)]
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == ["bad_tick_json", "bad_tick_json", "bad_tick_value", "late_tick"]
    late_msg = next(d for d in dead if d["reason"] == "late_tick")
    assert json.loads(late_msg["raw"])["sequence"] == 10**9 and late_msg["source"] == "featurizer"
    rows = _stream_rows(data_dir)
    assert len(rows) == len(btc) and 10**9 not in set(rows["sequence"])
