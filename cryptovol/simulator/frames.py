"""Coinbase Advanced Trade WebSocket frames, byte-for-byte in the exchange's shape.

Reference: the verbatim recording in `shared/data/coinbase_advtrade_ticker_2026-04_slices/guhankesav`
and the exchange documentation. Numbers are strings; prices are printed like the exchange prints
them (`"67470"`, `"67469.5"`, `"67469.15"`: no trailing zeros); envelopes are compact JSON with the
keys in the exchange's order.
"""

from __future__ import annotations

import json
from typing import Any

from cryptovol.simulator.price_process import ProductState
from cryptovol.ticks import format_timestamp_ns

#: The malformed-frame kinds `--malformed-rate` rotates through, in order.
MALFORMED_KINDS = (
    "invalid_json",
    "missing_best_bid",
    "non_numeric_price",
    "non_positive_price",
    "crossed_book",
)


def format_ticks(value: int, decimals: int = 2) -> str:
    """An integer number of ticks (cents) -> the exchange's decimal string, trailing zeros trimmed."""
    if decimals == 2 and value >= 0:  # the hot path: one call per price field per frame
        whole, frac = divmod(int(value), 100)
        if frac == 0:
            return str(whole)
        return f"{whole}.{frac // 10}" if frac % 10 == 0 else f"{whole}.{frac:02d}"
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(int(value)), 10**decimals)
    text = f"{sign}{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".")
    return text or "0"


def format_decimal(value: float, decimals: int = 8) -> str:
    """A float -> fixed decimals with trailing zeros trimmed (quantities, volumes, percentages)."""
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def ticker_object(product_id: str, state: ProductState) -> dict[str, str]:
    """The `tickers[]` element of a ticker event, keys in the exchange's order."""
    pct = (state.price_c - state.open_c) / state.open_c * 100.0
    return {
        "type": "ticker",
        "product_id": product_id,
        "price": format_ticks(state.price_c),
        "volume_24_h": format_decimal(state.volume_24h),
        "low_24_h": format_ticks(state.low_c),
        "high_24_h": format_ticks(state.high_c),
        "low_52_w": format_ticks(state.low_52w_c),
        "high_52_w": format_ticks(state.high_52w_c),
        "price_percent_chg_24_h": format_decimal(pct, 14),
        "best_bid": format_ticks(state.bid_c),
        "best_ask": format_ticks(state.ask_c),
        "best_bid_quantity": format_decimal(state.bid_qty),
        "best_ask_quantity": format_decimal(state.ask_qty),
    }


_second_cache: dict[int, str] = {}


def format_timestamp(ns: int) -> str:
    """`cryptovol.ticks.format_timestamp_ns`, memoizing the whole-second part (hot in the server)."""
    seconds, frac = divmod(int(ns), 1_000_000_000)
    base = _second_cache.get(seconds)
    if base is None:
        if len(_second_cache) > 4096:
            _second_cache.clear()
        base = _second_cache[seconds] = format_timestamp_ns(seconds * 1_000_000_000)[:-11]
    return f"{base}.{frac:09d}Z"


def dumps(obj: Any) -> str:
    """Compact JSON, as the exchange sends it."""
    return json.dumps(obj, separators=(",", ":"))


def envelope(channel: str, timestamp_ns: int, sequence_num: int, events: list[dict[str, Any]]) -> dict:
    return {
        "channel": channel,
        "client_id": "",
        "timestamp": format_timestamp(timestamp_ns),
        "sequence_num": int(sequence_num),
        "events": events,
    }


def ticker_frame(
    ticker: dict[str, str], *, event_type: str, timestamp_ns: int, sequence_num: int
) -> str:
    return dumps(envelope("ticker", timestamp_ns, sequence_num, [{"type": event_type, "tickers": [ticker]}]))


def subscriptions_frame(subscriptions: dict[str, list[str]], *, timestamp_ns: int, sequence_num: int) -> str:
    return dumps(envelope("subscriptions", timestamp_ns, sequence_num, [{"subscriptions": subscriptions}]))


def heartbeat_frame(counter: int, *, timestamp_ns: int, sequence_num: int, uptime_s: float) -> str:
    """Heartbeats as documented by the exchange: a Go-formatted `current_time`, counter as string."""
    ts = format_timestamp(timestamp_ns)  # 2026-04-05T22:35:14.009945409Z
    current_time = f"{ts[:10]} {ts[11:-1]} +0000 UTC m=+{uptime_s:.9f}"
    event = {"current_time": current_time, "heartbeat_counter": str(int(counter))}
    return dumps(envelope("heartbeats", timestamp_ns, sequence_num, [event]))


def error_frame(message: str, reason: str = "") -> str:
    """The exchange answers a request it cannot serve with an error frame (no sequence number)."""
    frame = {"type": "error", "message": message}
    if reason:
        frame["reason"] = reason
    return dumps(frame)


def malformed_ticker_frame(
    kind: str, ticker: dict[str, str], *, event_type: str, timestamp_ns: int, sequence_num: int
) -> str:
    """A ticker frame broken in one specific way; it carries no valid tick.

    Kinds (`MALFORMED_KINDS`): invalid JSON (a truncated frame), best_bid missing, a non-numeric
    price, a non-positive price, a crossed book (best_bid above best_ask).
    """
    bad = dict(ticker)
    if kind == "invalid_json":
        text = ticker_frame(
            ticker, event_type=event_type, timestamp_ns=timestamp_ns, sequence_num=sequence_num
        )
        return text[: len(text) // 2]
    if kind == "missing_best_bid":
        del bad["best_bid"]
    elif kind == "non_numeric_price":
        bad["price"] = "n/a"
    elif kind == "non_positive_price":
        bad["price"] = "0"
    elif kind == "crossed_book":
        bid, ask = bad["best_bid"], bad["best_ask"]
        # Bid strictly above ask: swap, and if they were equal push the bid one tick up.
        bad["best_bid"], bad["best_ask"] = ask, bid
        if float(ask) <= float(bid):
            bad["best_bid"] = format_ticks(round(float(bid) * 100) + 1)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")
    return ticker_frame(bad, event_type=event_type, timestamp_ns=timestamp_ns, sequence_num=sequence_num)
