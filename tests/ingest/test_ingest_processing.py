"""Frame handling without sockets: parsing, validation, de-dup, landing lines, dead letters, counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryptovol.config import TOPIC_DEADLETTER, TOPIC_RAW
from cryptovol.ingest import DeadLetterWriter, FrameProcessor, IngestStats, LandingWriter, RecentKeys, utc_day
from cryptovol.protocol import frame_tickers, parse_frame, subscribe_message, unsubscribe_message
from cryptovol.recorded import read_recorded
from cryptovol.ticks import Tick, TickError, parse_timestamp_ns, tick_from_landing

T0 = "2026-04-05T22:35:14.009945409Z"


def rx(n: int) -> int:
    """A receive time `n` ns after T0 (event times must lie near their receive time)."""
    return parse_timestamp_ns(T0) + n


def ticker(product: str = "BTC-USD", **overrides: str) -> dict:
    base = {
        "type": "ticker",
        "product_id": product,
        "price": "67468.26",
        "volume_24_h": "3057.53218222",
        "low_24_h": "66600",
        "high_24_h": "67812",
        "best_bid": "67469.15",
        "best_ask": "67469.62",
        "best_bid_quantity": "0.00379643",
        "best_ask_quantity": "0.16458201",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def frame(*tickers: dict, seq: int = 1, ts: str = T0, event_type: str = "update") -> str:
    return json.dumps(
        {
            "channel": "ticker",
            "client_id": "",
            "timestamp": ts,
            "sequence_num": seq,
            "events": [{"type": event_type, "tickers": list(tickers)}],
        }
    )


def heartbeat(seq: int) -> str:
    return json.dumps(
        {"channel": "heartbeats", "client_id": "", "timestamp": T0, "sequence_num": seq,
         "events": [{"current_time": "x", "heartbeat_counter": "1"}]}
    )


class Sink:
    """Collects what the processor publishes (the Kafka side is tested with a real broker elsewhere)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str | None, bytes]] = []

    def __call__(self, topic: str, key: str | None, value: bytes) -> None:
        self.records.append((topic, key, value))

    def topic(self, name: str) -> list[tuple[str | None, bytes]]:
        return [(k, v) for t, k, v in self.records if t == name]


@pytest.fixture
def rig(tmp_path: Path):
    stats = IngestStats()
    sink = Sink()
    landing = LandingWriter(tmp_path / "raw")
    dead = DeadLetterWriter(tmp_path / "deadletter")
    proc = FrameProcessor(
        landing=landing, deadletter=dead, publish=sink, stats=stats, source="ws://test", dedup=RecentKeys(64)
    )
    yield proc, stats, sink, tmp_path
    landing.close()
    dead.close()


def ndjson_lines(folder: Path) -> list[dict]:
    files = sorted(folder.rglob("*.ndjson"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def landing_lines(root: Path) -> list[dict]:
    return ndjson_lines(root / "raw")


def deadletter_lines(root: Path) -> list[dict]:
    return ndjson_lines(root / "deadletter")


def test_subscribe_messages_match_the_exchange_shape():
    assert subscribe_message(["BTC-USD", "ETH-USD"], "ticker") == {
        "type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "ticker"
    }
    assert unsubscribe_message(["BTC-USD"], "heartbeats")["type"] == "unsubscribe"
    assert subscribe_message(["BTC-USD"], "ticker", jwt="abc")["jwt"] == "abc"


def test_parse_frame_on_the_verbatim_recorded_envelope(shared_data: Path):
    """The first ticker envelope of the verbatim exchange recording parses into one snapshot ticker."""
    import gzip

    path = shared_data / "coinbase_advtrade_ticker_2026-04_slices" / "guhankesav" / "BTC_USD.ndjson.gz"
    with gzip.open(path, "rt") as fh:
        payloads = [json.loads(next(fh))["payload"] for _ in range(3)]
    first = parse_frame(json.dumps(payloads[0]))
    assert first.kind == "ticker" and first.sequence_num == 0
    tickers = list(frame_tickers(first))
    assert [(t, k["product_id"]) for t, k in tickers] == [("snapshot", "BTC-USD")]
    assert first.timestamp_ns == parse_timestamp_ns(payloads[0]["timestamp"])
    assert parse_frame(json.dumps(payloads[1])).kind == "subscriptions"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_envelope"),
        ('{"events": []}', "bad_envelope"),
        ('{"channel": "ticker", "sequence_num": "7", "events": []}', "bad_envelope"),
        ('{"channel": "ticker", "events": {"type": "update"}}', "bad_envelope"),
    ],
)
def test_parse_frame_rejects_bad_envelopes_with_a_reason(text: str, reason: str):
    with pytest.raises(TickError) as info:
        parse_frame(text)
    assert info.value.reason == reason


def test_valid_ticker_is_landed_then_published_with_envelope_time(rig):
    proc, stats, sink, root = rig
    proc.process(frame(ticker(), seq=5), receive_time_ns=1_775_428_514_100_000_000)
    (line,) = landing_lines(root)
    assert line["ticker"] == ticker()  # verbatim
    assert line["timestamp"] == T0 and line["sequence_num"] == 5 and line["event_type"] == "update"
    ((key, value),) = sink.topic(TOPIC_RAW)
    tick = Tick.from_json(value)
    assert key == "BTC-USD"
    assert tick == tick_from_landing(line)  # the landing line and the Kafka record are the same tick
    assert tick.event_time_ns == parse_timestamp_ns(T0)
    assert tick.receive_time_ns == 1_775_428_514_100_000_000
    assert (stats.received, stats.landed, stats.deadlettered) == (1, 1, 0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (frame(ticker())[:40], "bad_json"),
        (frame(ticker(best_bid=None)), "missing_field"),
        (frame(ticker(price="n/a")), "non_numeric"),
        (frame(ticker(price="0")), "non_positive"),
        (frame(ticker(price="-5")), "non_positive"),
        (frame(ticker(best_bid="67470.00", best_ask="67469.00")), "crossed_book"),
        (frame(ticker(), ts="yesterday"), "bad_timestamp"),
        (frame(ticker(product="../../etc")), "bad_product_id"),
    ],
)
def test_malformed_frames_are_dead_lettered_with_reason_and_never_raise(rig, text: str, reason: str):
    proc, stats, sink, root = rig
    proc.process(text, receive_time_ns=1_775_428_514_100_000_000)
    proc.process(frame(ticker(price="67470.01"), seq=9), receive_time_ns=1_775_428_514_200_000_000)
    (dead,) = deadletter_lines(root)
    assert dead["reason"] == reason
    assert dead["raw"] == text  # the frame exactly as received
    assert dead["source"] == "ws://test" and dead["received_at"].startswith("2026-04-05T22:35:14.1")
    ((_, value),) = sink.topic(TOPIC_DEADLETTER)
    assert json.loads(value) == dead
    assert stats.deadletter_reasons == {reason: 1}
    # ingestion went on: the next good frame landed and was published
    assert len(landing_lines(root)) == 1 and len(sink.topic(TOPIC_RAW)) == 1
    assert not list((root / "raw").rglob("etc"))


def test_one_bad_ticker_in_a_frame_does_not_lose_the_good_ones(rig):
    proc, stats, sink, root = rig
    proc.process(frame(ticker("BTC-USD"), ticker("ETH-USD", price="x"), ticker("SOL-USD")), rx(1))
    assert [json.loads(v)["product_id"] for _, v in sink.topic(TOPIC_RAW)] == ["BTC-USD", "SOL-USD"]
    assert stats.deadletter_reasons == {"non_numeric": 1}
    assert deadletter_lines(root)[0]["product_id"] == "ETH-USD"


def test_duplicates_after_a_reconnect_are_dropped_by_content_not_sequence(rig):
    proc, stats, sink, root = rig
    proc.process(frame(ticker(), seq=10), rx(1))
    proc.process(frame(ticker(price="67470.5"), seq=11, ts="2026-04-05T22:35:15Z"), rx(2))
    proc.new_connection()
    # new connection: sequence restarts, the snapshot repeats the last update verbatim
    snapshot = frame(ticker(price="67470.5"), seq=0, ts="2026-04-05T22:35:15Z", event_type="snapshot")
    proc.process(snapshot, rx(3))
    # same sequence number as before but new content: kept
    proc.process(frame(ticker(price="67471"), seq=10, ts="2026-04-05T22:35:16Z"), rx(4))
    assert stats.duplicates == 1
    assert [json.loads(v)["price"] for _, v in sink.topic(TOPIC_RAW)] == [67468.26, 67470.5, 67471.0]
    assert len(landing_lines(root)) == 3
    assert stats.received == stats.landed + stats.duplicates + stats.deadlettered


def test_dedup_memory_is_seeded_from_landing_files_after_a_restart(tmp_path: Path):
    """A restarted ingestor drops the snapshot that repeats the last tick the previous run landed."""
    from cryptovol.ingest import seed_from_landing

    def run(keys: RecentKeys, text: str) -> IngestStats:
        stats = IngestStats()
        landing = LandingWriter(tmp_path / "raw")
        FrameProcessor(landing=landing, deadletter=DeadLetterWriter(tmp_path / "dl"), publish=Sink(),
                       stats=stats, source="t", dedup=keys).process(text, rx(1))
        landing.close()
        return stats

    last = frame(ticker(price="67470.5"), seq=44)
    assert run(RecentKeys(), last).landed == 1
    keys = RecentKeys()
    assert seed_from_landing(keys, tmp_path / "raw", ["BTC-USD", "ETH-USD"]) == 1
    again = run(keys, frame(ticker(price="67470.5"), seq=0, event_type="snapshot"))
    assert (again.landed, again.duplicates) == (0, 1)
    assert len(landing_lines(tmp_path)) == 1


def test_recent_keys_is_bounded_per_product():
    keys = RecentKeys(capacity=3)
    for i in range(5):
        assert not keys.seen("BTC-USD", i)
    assert keys.seen("BTC-USD", 4) and keys.seen("BTC-USD", 2)
    assert not keys.seen("BTC-USD", 0)  # evicted long ago
    assert not keys.seen("ETH-USD", 4)  # per product
    assert len(keys) == 4


def test_sequence_gaps_are_counted_per_connection(rig):
    proc, stats, _, _ = rig
    for seq in (0, 1, 2, 5, 6, 9):
        proc.process(heartbeat(seq), rx(1))
    assert (stats.gaps, stats.missing_messages) == (2, 4)
    proc.new_connection()
    proc.process(heartbeat(0), 1)  # restart at 0 on a new connection is not a gap
    proc.process(heartbeat(1), rx(1))
    assert (stats.gaps, stats.missing_messages, stats.heartbeats) == (2, 4, 8)


def test_error_and_unknown_frames_are_counted_not_dead_lettered(rig):
    proc, stats, sink, root = rig
    proc.process('{"type":"error","message":"failure to subscribe"}', rx(1))
    level2 = '{"channel":"level2","timestamp":"2026-01-01T00:00:00Z","sequence_num":0,"events":[]}'
    proc.process(level2, rx(1))
    assert stats.server_errors == 1 and stats.deadlettered == 0 and sink.records == []


def test_landing_files_rotate_at_utc_midnight_by_event_time(rig):
    proc, _, _, root = rig
    for ts, price in (("2026-04-05T23:59:59.999999999Z", "67469"), ("2026-04-06T00:00:00Z", "67470"),
                      # an offset timestamp is placed by its UTC day
                      ("2026-04-06T01:30:00+02:00", "67471")):
        proc.process(frame(ticker(price=price), ts=ts), parse_timestamp_ns(ts) + 1000)
    files = sorted(p.relative_to(root / "raw").as_posix() for p in (root / "raw").rglob("*.ndjson"))
    assert files == ["BTC-USD/2026-04-05.ndjson", "BTC-USD/2026-04-06.ndjson"]
    days = {p.name: len(p.read_text().splitlines()) for p in (root / "raw" / "BTC-USD").iterdir()}
    assert days == {"2026-04-05.ndjson": 2, "2026-04-06.ndjson": 1}
    assert utc_day(parse_timestamp_ns("2026-04-06T00:00:00Z")) == "2026-04-06"


def test_landing_lines_are_on_disk_before_publish(tmp_path: Path):
    """The landing line is flushed before the record is handed to Kafka (disk is the record)."""
    landing = LandingWriter(tmp_path / "raw")
    seen_on_disk: list[int] = []

    def publish(topic: str, key: str | None, value: bytes) -> None:
        seen_on_disk.append(len(ndjson_lines(tmp_path / "raw")))

    proc = FrameProcessor(
        landing=landing, deadletter=DeadLetterWriter(tmp_path / "dl"), publish=publish,
        stats=IngestStats(), source="t",
    )
    proc.process(frame(ticker()), rx(1))
    proc.process(frame(ticker(price="67470")), rx(2))
    assert seen_on_disk == [1, 2]
    landing.close()


def test_batched_mode_flushes_landing_before_handing_the_batch_to_kafka(tmp_path: Path):
    batches: list[list] = []
    on_disk_at_publish: list[int] = []

    def publish_many(records: list) -> None:
        on_disk_at_publish.append(len(ndjson_lines(tmp_path / "raw")))
        batches.append(records)

    landing = LandingWriter(tmp_path / "raw")
    proc = FrameProcessor(
        landing=landing, deadletter=DeadLetterWriter(tmp_path / "dl"), publish=Sink(), stats=IngestStats(),
        source="t", batch_size=3, publish_many=publish_many,
    )
    for i in range(4):
        proc.process(frame(ticker(price=f"6747{i}"), seq=i), rx(i))
    assert [len(b) for b in batches] == [3] and proc.pending == 1
    proc.flush()  # the timer / stop path
    assert [len(b) for b in batches] == [3, 1] and proc.pending == 0
    assert on_disk_at_publish == [3, 4]
    assert [json.loads(v)["price"] for b in batches for _, _, v in b] == [67470, 67471, 67472, 67473]
    landing.close()


def test_partial_line_from_a_crash_stays_one_bad_line(tmp_path: Path):
    path = tmp_path / "raw" / "BTC-USD" / "2026-04-05.ndjson"
    path.parent.mkdir(parents=True)
    path.write_text('{"ticker": {"product_id": "BTC-U')  # crash mid-line
    proc = FrameProcessor(
        landing=LandingWriter(tmp_path / "raw"), deadletter=DeadLetterWriter(tmp_path / "dl"),
        publish=Sink(), stats=IngestStats(), source="t",
    )
    proc.process(frame(ticker()), rx(1))
    proc.landing.close()
    from cryptovol.recorded import ReadReport

    report = ReadReport()
    ticks = list(read_recorded(path, fmt="landing", on_error="skip", report=report))
    assert len(ticks) == 1 and report.bad_lines == 1


def test_stats_summary_line_round_trips():
    stats = IngestStats(received=3, landed=2, deadletter_reasons={"bad_json": 1}, deadlettered=1)
    again = IngestStats.from_summary_line(f"ingest summary: {stats.to_json()}")
    assert again == stats


def test_landing_lines_are_fsynced_on_the_configured_cadence(tmp_path: Path):
    """Power loss: at most `fsync_interval_s` of flushed lines are not yet on stable storage."""
    import time

    landing = LandingWriter(tmp_path / "raw", fsync_interval_s=0.2)
    landing.write("BTC-USD", parse_timestamp_ns(T0), {"n": 1})
    landing.flush()  # handed to the OS at once; the first fsync comes once the interval has passed
    assert landing.syncs == 0 and len(ndjson_lines(tmp_path / "raw")) == 1
    time.sleep(0.25)
    landing.sync_if_due()  # what the ingestor's timer calls when no new frame arrives
    assert landing.syncs == 1
    landing.write("BTC-USD", parse_timestamp_ns(T0), {"n": 2})
    landing.flush()
    assert landing.syncs == 1  # not due yet: no fsync per frame
    landing.close()  # close always syncs
    assert len(ndjson_lines(tmp_path / "raw")) == 2


def test_a_frame_with_several_bad_tickers_is_one_bounded_dead_letter(rig):
    proc, stats, sink, root = rig
    proc.process(frame(ticker(price="x"), ticker(best_bid="-1"), ticker("ETH-USD"), ticker(best_ask="")),
                 rx(1))
    [letter] = [json.loads(line) for f in (root / "deadletter").glob("*.ndjson")
                for line in f.read_text().splitlines()]
    assert letter["tickers"] == 3 and [e["index"] for e in letter["errors"]] == [0, 1, 3]
    assert letter["reason"] == "non_numeric" and len(sink.topic(TOPIC_DEADLETTER)) == 1
    assert stats.deadlettered == 3 and stats.deadletter_records == 1 and stats.landed == 1
    assert stats.received == stats.landed + stats.duplicates + stats.deadlettered


def test_products_never_subscribed_are_dead_lettered_and_not_remembered(tmp_path: Path):
    stats, sink, keys = IngestStats(), Sink(), RecentKeys(64)
    landing, dead = LandingWriter(tmp_path / "raw"), DeadLetterWriter(tmp_path / "deadletter")
    proc = FrameProcessor(landing=landing, deadletter=dead, publish=sink, stats=stats, source="t",
                          dedup=keys, products=["BTC-USD"])
    for i in range(50):
        proc.process(frame(ticker(f"X{i}-USD"), seq=i), rx(i))
    proc.process(frame(ticker("BTC-USD"), seq=50), rx(50))
    landing.close()
    dead.close()
    assert stats.deadletter_reasons == {"unsubscribed_product": 50} and stats.landed == 1
    assert len(keys) == 1 and [p.name for p in (tmp_path / "raw").iterdir()] == ["BTC-USD"]
