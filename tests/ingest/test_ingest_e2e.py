"""End to end on real processes: `cryptovol simulate` -> `cryptovol ingest` -> embedded broker + files.

What the simulator sent is read from its record file (every frame, as sent); what the ingestor did
is read from the topics, the landing/dead-letter files and its summary line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cryptovol.broker import EmbeddedBroker
from cryptovol.kafka_io import read_topic
from cryptovol.procs import wait_until
from cryptovol.ticks import Tick, parse_timestamp_ns, tick_from_landing, tick_from_ticker

REPO_ROOT = Path(__file__).resolve().parents[2]

#: dead-letter reasons the simulator's malformed kinds map to
MALFORMED_REASONS = {"bad_json", "missing_field", "non_numeric", "non_positive", "crossed_book"}


def sent_ticks(records: list[dict]) -> list[Tick]:
    """Every valid tick the simulator sent (parsed independently of the ingestor's code)."""
    ticks = []
    for rec in records:
        if rec["kind"] != "ticker":
            continue
        frame = json.loads(rec["frame"])
        for event in frame["events"]:
            for ticker in event["tickers"]:
                ticks.append(
                    tick_from_ticker(
                        ticker,
                        event_time_ns=parse_timestamp_ns(frame["timestamp"]),
                        sequence=frame["sequence_num"],
                        receive_time_ns=0,
                    )
                )
    return ticks


def malformed_frames(records: list[dict]) -> list[str]:
    return [rec["frame"] for rec in records if rec["kind"] == "malformed"]


def ndjson(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.rglob("*.ndjson")) for line in f.read_text().splitlines()]


def count_lines(folder: Path) -> int:
    return sum(len(f.read_bytes().splitlines()) for f in folder.rglob("*.ndjson")) if folder.exists() else 0


def topic_ticks(bootstrap: str, topic: str = "ticks.raw") -> list[Tick]:
    return [Tick.from_json(r.value) for r in read_topic(bootstrap, topic, idle_timeout_s=2.0)]


def wait_for_simulator(sim, max_updates: int, timeout_s: float = 90) -> list[dict]:
    """Until the simulator has sent all its updates (ticker + malformed frames beyond snapshots)."""

    def done() -> bool:
        kinds = Counter(r["kind"] for r in sim.records())
        sent = kinds["ticker"] + kinds["malformed"]
        snapshots = sum(1 for r in sim.records() if r["kind"] == "ticker" and '"snapshot"' in r["frame"])
        return sent - snapshots >= max_updates

    wait_until(done, timeout_s=timeout_s, interval_s=0.2, what=f"simulator to send {max_updates} updates")
    return sim.records()


def stop_with(ingestor, signum: int) -> int:
    ingestor.process.send_signal(signum)
    return ingestor.process.wait(timeout_s=60)


def test_ingest_lands_publishes_and_dead_letters_exactly_what_was_sent(
    broker: EmbeddedBroker, data_dir: Path, simulator_factory, ingestor_factory
):
    sim = simulator_factory(max_updates=120, rate=40, malformed_rate=0.1)
    ingestor = ingestor_factory(sim.url)
    records = wait_for_simulator(sim, 120)
    expected = sent_ticks(records)
    bad = malformed_frames(records)
    assert bad, "the simulator should have sent malformed frames"
    wait_until(
        lambda: (count_lines(data_dir / "raw"), count_lines(data_dir / "deadletter"))
        == (len(expected), len(bad)),
        timeout_s=60, what="every frame landed or dead-lettered",
    )
    assert stop_with(ingestor, signal.SIGTERM) == 0
    summary = ingestor.summary()

    # ticks.raw == landing lines == ticks the simulator sent (malformed ones excluded)
    want = Counter(t.content_key for t in expected)
    published = topic_ticks(broker.bootstrap)
    assert Counter(t.content_key for t in published) == want
    landed = [tick_from_landing(line) for line in ndjson(data_dir / "raw")]
    assert Counter(t.content_key for t in landed) == want
    assert set(published) == set(landed)  # same records, receive times included
    # every malformed frame is in the dead-letter file and topic, verbatim, with a reason
    dead_file = ndjson(data_dir / "deadletter")
    dead_topic = [json.loads(r.value) for r in read_topic(broker.bootstrap, "ticks.deadletter")]
    assert sorted(d["raw"] for d in dead_file) == sorted(bad)
    assert sorted(d["raw"] for d in dead_topic) == sorted(bad)
    assert {d["reason"] for d in dead_file} <= MALFORMED_REASONS
    # SIGTERM: exit 0, files flushed, summary consistent
    assert summary["landed"] == len(expected) == summary["published"]
    assert summary["deadlettered"] == len(bad) == summary["deadletter_published"]
    assert sum(summary["deadletter_reasons"].values()) == len(bad)
    assert summary["received"] == summary["landed"] + summary["duplicates"] + summary["deadlettered"]

    # Replaying the landing files reproduces the same records (byte for byte) in another topic.
    replay = subprocess.run(
        [sys.executable, "-m", "cryptovol.cli", "replay", str(data_dir / "raw"), "--topic", "ticks.replay",
         "--no-progress"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False,
    )
    assert replay.returncode == 0, replay.stderr
    assert f'"published":{len(expected)}' in replay.stdout
    original = sorted(r.value for r in read_topic(broker.bootstrap, "ticks.raw"))
    replayed_records = list(read_topic(broker.bootstrap, "ticks.replay"))
    assert sorted(r.value for r in replayed_records) == original
    for product in ("BTC-USD", "ETH-USD"):
        times = [Tick.from_json(r.value).event_time_ns for r in replayed_records if r.key == product.encode()]
        assert times and times == sorted(times), f"replay broke event-time order for {product}"


def test_ingest_reconnects_after_drops_without_losing_or_duplicating(
    broker: EmbeddedBroker, data_dir: Path, simulator_factory, ingestor_factory
):
    sim = simulator_factory(max_updates=200, rate=30, drop_every=1.5)
    ingestor = ingestor_factory(sim.url)
    records = wait_for_simulator(sim, 200)
    expected = sent_ticks(records)
    connections = {r["connection"] for r in records}
    assert len(connections) >= 3, "the simulator should have dropped the connection several times"
    wait_until(lambda: count_lines(data_dir / "raw") >= len(set(t.content_key for t in expected)),
               timeout_s=60, what="all ticks landed")
    assert stop_with(ingestor, signal.SIGINT) == 0
    summary = ingestor.summary()
    assert summary["reconnects"] >= len(connections) - 1
    published = topic_ticks(broker.bootstrap)
    keys = [t.content_key for t in published]
    assert len(keys) == len(set(keys)), "duplicates reached ticks.raw"
    assert set(keys) == {t.content_key for t in expected}, "ticks lost across reconnects"
    assert summary["landed"] == len(keys) == count_lines(data_dir / "raw")


@pytest.mark.timeout(300)
def test_ingest_keeps_every_tick_when_the_broker_restarts(
    broker: EmbeddedBroker, data_dir: Path, simulator_factory, ingestor_factory
):
    sim = simulator_factory(max_updates=500, rate=25)
    ingestor = ingestor_factory(sim.url)
    wait_until(lambda: ingestor.metrics().get("published", 0) >= 40, timeout_s=60, what="first publishes")
    broker.stop()
    stopped_ns = time.time_ns()
    wait_until(lambda: ingestor.metrics().get("spooled", 0) > 0, timeout_s=60, what="ticks spooled")
    landed_at_stop = count_lines(data_dir / "raw")
    wait_until(lambda: count_lines(data_dir / "raw") >= landed_at_stop + 60, timeout_s=60,
               what="ingestion to go on while the broker is down")
    assert ingestor.metrics()["spooled"] >= 60
    broker.start()  # same port, empty: topics must be recreated by the ingestor
    records = wait_for_simulator(sim, 500, timeout_s=120)
    expected = {t.content_key for t in sent_ticks(records)}
    wait_until(lambda: count_lines(data_dir / "raw") == len(expected), timeout_s=60, what="all ticks landed")
    wait_until(lambda: ingestor.metrics().get("spool_pending", 1) == 0, timeout_s=60, what="spool drained")
    assert stop_with(ingestor, signal.SIGTERM) == 0
    summary = ingestor.summary()
    assert summary["broker_outages"] >= 1 and summary["spooled"] > 0 and summary["spool_pending"] == 0

    # The restarted broker lost what it held before (memory-only); everything from the outage on
    # must be there: spooled while it was away, then delivered, in order, once.
    after = topic_ticks(broker.bootstrap)
    keys = [t.content_key for t in after]
    assert len(keys) == len(set(keys))
    landed = [tick_from_landing(line) for line in ndjson(data_dir / "raw")]
    since_outage = {t.content_key for t in landed if t.receive_time_ns > stopped_ns}
    assert len(since_outage) >= 60
    missing = since_outage - set(keys)
    assert not missing, f"{len(missing)} ticks received during/after the outage never reached ticks.raw"
    for product in ("BTC-USD", "ETH-USD"):
        times = [t.event_time_ns for t in after if t.product_id == product]
        assert times == sorted(times), f"per-product order broken for {product}"


def test_ingest_duration_stops_by_itself_with_a_summary(
    broker: EmbeddedBroker, data_dir: Path, simulator, ingestor_factory
):
    ingestor = ingestor_factory(simulator.url, "--duration", "3")
    assert ingestor.process.wait(timeout_s=60) == 0
    summary = ingestor.summary()
    assert summary["landed"] > 0 and summary["landed"] == count_lines(data_dir / "raw")
    assert summary["heartbeats"] >= 1
    assert "ingest progress:" in ingestor.log()


def test_ingest_stops_with_an_error_when_it_cannot_land(
    broker: EmbeddedBroker, data_dir: Path, simulator, ingestor_factory
):
    """If ticks cannot be written to the landing files, ingest stops (exit 1) instead of dropping them."""
    (data_dir / "raw").write_text("not a directory")
    ingestor = ingestor_factory(simulator.url)
    assert ingestor.process.wait(timeout_s=60) == 1
    assert "cannot process frames" in ingestor.log()
    assert ingestor.summary()["landed"] == 0


def test_ingest_rejects_a_non_websocket_url(data_dir: Path):
    result = subprocess.run(
        [sys.executable, "-m", "cryptovol.cli", "ingest", "--ws-url", "http://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
    )
    assert result.returncode == 2 and "ws:// or wss://" in result.stderr
