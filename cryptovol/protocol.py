"""The Coinbase Advanced Trade WebSocket protocol, client side: messages out, frames in.

Frames arrive as `{"channel", "client_id", "timestamp", "sequence_num", "events": [...]}`; ticker
events carry `type` ("snapshot" | "update") and `tickers[]`. Errors arrive as
`{"type": "error", "message": ...}`. `parse_frame` turns text into a `Frame` (or raises `TickError`
with a dead-letter reason); `frame_tickers` yields the tickers with their event type. Turning a
ticker into a `Tick` stays in `cryptovol.ticks.tick_from_ticker`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptovol.ticks import TickError, parse_timestamp_ns

#: Channels the ingestor subscribes to: market data plus the keep-alive.
TICKER = "ticker"
HEARTBEATS = "heartbeats"
SUBSCRIPTIONS = "subscriptions"


def subscribe_message(products: Iterable[str], channel: str, jwt: str | None = None) -> dict[str, Any]:
    """`{"type": "subscribe", "product_ids": [...], "channel": ...}` (one channel per message)."""
    message: dict[str, Any] = {"type": "subscribe", "product_ids": list(products), "channel": channel}
    if jwt:
        message["jwt"] = jwt
    return message


def unsubscribe_message(products: Iterable[str], channel: str, jwt: str | None = None) -> dict[str, Any]:
    message = subscribe_message(products, channel, jwt)
    message["type"] = "unsubscribe"
    return message


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded server message. `kind` is the channel, or "error" for error frames."""

    kind: str
    timestamp: str | None
    sequence_num: int | None
    events: list[dict[str, Any]]
    message: dict[str, Any]

    @property
    def timestamp_ns(self) -> int:
        """Envelope timestamp in UTC ns; `TickError("bad_timestamp")` when absent or invalid."""
        if not isinstance(self.timestamp, str):
            raise TickError("bad_timestamp", f"envelope timestamp {self.timestamp!r}")
        return parse_timestamp_ns(self.timestamp)


#: A `\\uD800`-`\\uDFFF` escape: the only way a lone surrogate (which no file or topic can hold)
#: gets into a decoded frame. Only frames that contain one pay for the full check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_frame(text: str | bytes) -> Frame:
    """Decode one WebSocket message; raises `TickError` (`bad_json`, `bad_envelope`, `bad_unicode`).

    Never raises anything else, whatever the input: nesting too deep for the decoder is `bad_json`,
    a lone UTF-16 surrogate (valid JSON, but not encodable as UTF-8) is `bad_unicode`.
    """
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TickError("bad_json", str(exc)[:200]) from exc
    except RecursionError as exc:
        raise TickError("bad_json", "nested too deeply") from exc
    if _SURROGATE_ESCAPE.search(text if isinstance(text, str) else text.decode("utf-8", "replace")):
        try:
            json.dumps(message, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TickError("bad_unicode", "lone UTF-16 surrogate in a string") from exc
        except RecursionError as exc:
            raise TickError("bad_json", "nested too deeply") from exc
    if not isinstance(message, dict):
        raise TickError("bad_envelope", f"expected a JSON object, got {type(message).__name__}")
    if message.get("type") == "error":
        return Frame("error", None, None, [], message)
    channel = message.get("channel")
    if not isinstance(channel, str):
        raise TickError("bad_envelope", "no channel")
    sequence = message.get("sequence_num")
    if sequence is not None and (not isinstance(sequence, int) or isinstance(sequence, bool)):
        raise TickError("bad_envelope", f"sequence_num={sequence!r}")
    events = message.get("events")
    if events is None:
        events = []
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise TickError("bad_envelope", "events is not a list of objects")
    return Frame(channel, message.get("timestamp"), sequence, events, message)


def frame_tickers(frame: Frame) -> Iterator[tuple[str, Any]]:
    """(event type, ticker object) for every ticker of a ticker frame, in order."""
    if frame.kind != TICKER:
        return
    for event in frame.events:
        event_type = event.get("type", "update")
        tickers = event.get("tickers")
        if tickers is None:
            continue
        if not isinstance(tickers, list):
            raise TickError("bad_envelope", "tickers is not a list")
        for ticker in tickers:
            yield event_type, ticker


def count_tickers(frame: Frame) -> int:
    """How many tickers a ticker frame holds (0 for other channels); never raises."""
    if frame.kind != TICKER:
        return 0
    return sum(len(e["tickers"]) for e in frame.events if isinstance(e.get("tickers"), list))
