"""Tick parsing: strict, with a specific reason for every way a ticker can be bad."""

from __future__ import annotations

import json

import pytest

from cryptovol.ticks import (
    Tick,
    TickError,
    format_timestamp_ns,
    landing_record,
    parse_timestamp_ns,
    tick_from_landing,
    tick_from_ticker,
    ticks_to_frame,
)

TICKER = {
    "type": "ticker", "product_id": "BTC-USD", "price": "67468.26", "volume_24_h": "3057.53218222",
    "best_bid": "67469.15", "best_ask": "67469.62", "best_bid_quantity": "0.00379643",
    "best_ask_quantity": "0.16458201",
}


def _parse(ticker: dict) -> Tick:
    return tick_from_ticker(ticker, event_time_ns=1, sequence=2, receive_time_ns=3)


def test_valid_ticker_becomes_typed_tick():
    tick = _parse(TICKER)
    assert tick.product_id == "BTC-USD"
    assert tick.price == 67468.26 and tick.best_bid == 67469.15 and tick.best_ask == 67469.62
    assert tick.mid == pytest.approx((67469.15 + 67469.62) / 2)
    assert Tick.from_json(tick.to_json()) == tick


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"best_bid": None}, "missing_field"),
        ({"product_id": ""}, "missing_field"),
        ({"price": "abc"}, "non_numeric"),
        ({"price": "nan"}, "non_numeric"),
        ({"price": "0"}, "non_positive"),
        ({"best_ask": "-1"}, "non_positive"),
        ({"best_bid": "67470", "best_ask": "67469"}, "crossed_book"),
        ({"best_bid_quantity": "-2"}, "negative"),
    ],
)
def test_bad_tickers_fail_with_specific_reason(change, reason):
    ticker = {**TICKER, **change}
    ticker = {k: v for k, v in ticker.items() if v is not None}
    with pytest.raises(TickError) as info:
        _parse(ticker)
    assert info.value.reason == reason


def test_missing_sizes_are_allowed_as_nan():
    tick = _parse({k: v for k, v in TICKER.items() if "quantity" not in k})
    assert tick.best_bid_qty != tick.best_bid_qty  # NaN


def test_timestamps_keep_nanoseconds_and_assume_utc_without_offset():
    ns = parse_timestamp_ns("2026-04-05T22:35:14.009945409Z")
    assert format_timestamp_ns(ns) == "2026-04-05T22:35:14.009945409Z"
    assert parse_timestamp_ns("2025-12-06T01:12:47.761914") == parse_timestamp_ns(
        "2025-12-06T01:12:47.761914+00:00"
    )
    eastern = parse_timestamp_ns("2025-11-30T23:56:11", assume_tz="America/New_York")
    assert format_timestamp_ns(eastern).startswith("2025-12-01T04:56:11")
    with pytest.raises(TickError):
        parse_timestamp_ns("yesterday-ish")


def test_landing_line_round_trips_to_the_same_tick():
    line = landing_record(
        TICKER, envelope_timestamp="2026-04-05T22:35:14.009945409Z", sequence_num=2,
        event_type="update", receive_time_ns=parse_timestamp_ns("2026-04-05T22:35:14.1Z"),
    )
    tick = tick_from_landing(json.loads(json.dumps(line)))
    assert tick.event_time_ns == parse_timestamp_ns("2026-04-05T22:35:14.009945409Z")
    assert tick.sequence == 2
    assert line["ticker"] == TICKER  # verbatim, so it can be re-parsed later
    frame = ticks_to_frame([tick])
    assert list(frame.columns)[:2] == ["product_id", "event_time_ns"]
    assert frame.loc[0, "price"] == 67468.26
