"""Frames that used to stop or wedge a real `cryptovol ingest` (issue 2.2), through a real broker.

A scripted exchange sends good ticker frames around one hostile frame; every good tick must reach
the landing files and `ticks.raw`, the hostile frame must be dead-lettered once, with a reason and
a bounded record, and the ingestor must keep running.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from cryptovol.kafka_io import read_topic
from cryptovol.procs import wait_until
from cryptovol.ticks import format_timestamp_ns

NS = 1_000_000_000


def ticker_frame(seq: int, price: float, *, ts_ns: int | None = None, product: str = "BTC-USD",
                 extra: dict | None = None, **overrides: object) -> str:
    """One ticker frame; `overrides` replace ticker fields (`last_price` is sent as `price`)."""
    if "last_price" in overrides:
        overrides["price"] = overrides.pop("last_price")
    ticker = {"type": "ticker", "product_id": product, "price": f"{price:.2f}", "volume_24_h": "3057.5",
              "best_bid": f"{price - 0.5:.2f}", "best_ask": f"{price + 0.5:.2f}",
              "best_bid_quantity": "0.1", "best_ask_quantity": "0.2", **overrides}
    frame = {"channel": "ticker", "client_id": "", "timestamp": format_timestamp_ns(ts_ns or time.time_ns()),
             "sequence_num": seq, "events": [{"type": "update", "tickers": [ticker]}], **(extra or {})}
    return json.dumps(frame)


def good_frames(first_seq: int, n: int, base_price: float) -> list[str]:
    return [ticker_frame(first_seq + i, base_price + i) for i in range(n)]


def dead_letters(data_dir: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((data_dir / "deadletter").glob("*.ndjson"))
            for line in f.read_text().splitlines()]


def run_script(frames: list[str], scripted_exchange, ingestor_factory, data_dir: Path, good: int):
    """Feed `frames` to a real ingestor; wait until `good` ticks are published; return its state."""
    exchange = scripted_exchange(frames)
    ingestor = ingestor_factory(exchange.url, "--products", "BTC-USD")
    wait_until(lambda: exchange.sent == len(frames), timeout_s=60, what="the script to be sent")
    wait_until(lambda: ingestor.metrics().get("published", 0) >= good, timeout_s=60, interval_s=0.3,
               what=f"{good} good ticks published")
    time.sleep(1.0)  # a moment for anything wrongly held back to show up (or wrongly go out)
    assert ingestor.process.alive(), "the ingestor stopped:\n" + ingestor.log()[-3000:]
    return ingestor, ingestor.metrics()


def published_prices(bootstrap: str) -> list[float]:
    records = read_topic(bootstrap, "ticks.raw", idle_timeout_s=2.0)
    return sorted(json.loads(r.value)["price"] for r in records)


def test_a_multi_megabyte_bad_frame_is_dead_lettered_bounded_and_never_blocks_later_ticks(
    broker, data_dir, scripted_exchange, ingestor_factory
):
    """Case (a): the dead letter used to carry the whole 3 MB frame, the broker refused it, the
    publisher took that for an outage and spooled every later tick forever."""
    huge = ticker_frame(6, 100.0, last_price="not-a-number", extra={"padding": "x" * (3 * 2**20)})
    frames = good_frames(1, 5, 100.0) + [huge] + good_frames(7, 10, 200.0)
    ingestor, metrics = run_script(frames, scripted_exchange, ingestor_factory, data_dir, good=15)

    assert published_prices(broker.bootstrap) == sorted([100.0 + i for i in range(5)] +
                                                        [200.0 + i for i in range(10)])
    assert metrics["broker_outages"] == 0 and metrics["spool_pending"] == 0
    [letter] = dead_letters(data_dir)  # one record for the frame
    assert letter["reason"] == "non_numeric" and letter["tickers"] == 1
    assert letter["raw_size"] == len(huge.encode()) and letter["raw_truncated"] is True
    assert letter["raw_sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    assert len(json.dumps(letter)) < 8192  # bounded, whatever the frame's size
    [on_topic] = [json.loads(r.value) for r in read_topic(broker.bootstrap, "ticks.deadletter",
                                                          idle_timeout_s=2.0)]
    assert on_topic["raw_sha256"] == letter["raw_sha256"]
    landed = sum(len(f.read_text().splitlines()) for f in (data_dir / "raw").rglob("*.ndjson"))
    assert landed == 15


def test_a_ticker_dated_2100_is_dead_lettered_at_ingest(
    broker, data_dir, scripted_exchange, ingestor_factory
):
    """Case (b), ingest side: an event time far from the receive time never becomes a tick."""
    year_2100 = 4_102_444_800 * NS
    day_old = time.time_ns() - 2 * 86_400 * NS
    frames = (good_frames(1, 5, 100.0) + [ticker_frame(6, 150.0, ts_ns=year_2100),
                                          ticker_frame(7, 151.0, ts_ns=day_old)] + good_frames(8, 5, 200.0))
    _, metrics = run_script(frames, scripted_exchange, ingestor_factory, data_dir, good=10)

    assert published_prices(broker.bootstrap) == sorted([100.0 + i for i in range(5)] +
                                                        [200.0 + i for i in range(5)])
    letters = dead_letters(data_dir)
    assert [d["reason"] for d in letters] == ["event_time_out_of_range"] * 2
    assert "ahead" in letters[0]["detail"] and "behind" in letters[1]["detail"]
    assert not any(p.name.startswith("2100") for p in (data_dir / "raw").rglob("*.ndjson"))
    assert metrics["deadlettered"] == 2 and metrics["landed"] == 10


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        ("[" * 200_000 + "]" * 200_000, "bad_json"),  # RecursionError in the JSON decoder
        (ticker_frame(6, 150.0, low_52_w="\ud800"), "bad_unicode"),  # a lone UTF-16 surrogate
        (ticker_frame(6, 150.0, product="\ud800BTC-USD"), "bad_unicode"),
    ],
    ids=["deeply-nested-json", "lone-surrogate-in-a-field", "lone-surrogate-in-the-product"],
)
def test_nested_json_and_lone_surrogates_are_dead_lettered_and_ingest_keeps_running(
    broker, data_dir, scripted_exchange, ingestor_factory, hostile, reason
):
    """Case (c): these made `cryptovol ingest` exit 1 ("cannot process frames: RecursionError" /
    "UnicodeEncodeError")."""
    frames = good_frames(1, 5, 100.0) + [hostile] + good_frames(7, 5, 200.0)
    _, metrics = run_script(frames, scripted_exchange, ingestor_factory, data_dir, good=10)

    assert published_prices(broker.bootstrap) == sorted([100.0 + i for i in range(5)] +
                                                        [200.0 + i for i in range(5)])
    [letter] = dead_letters(data_dir)
    assert letter["reason"] == reason
    assert letter["raw_sha256"] == hashlib.sha256(hostile.encode("utf-8", "surrogatepass")).hexdigest()
    assert metrics["deadlettered"] == 1 and metrics["landed"] == 10
