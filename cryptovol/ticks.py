"""The tick record: one Coinbase Advanced Trade `ticker` update, typed and validated.

Everything downstream (Kafka `ticks.raw`, the featurizers, the service) speaks `Tick`. Parsing is
strict: a ticker that cannot become a valid `Tick` raises `TickError` with a reason that ends up in
the dead-letter topic/file, never a half-filled record.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from cryptovol.config import PRODUCT_ID_MAX_LEN, PRODUCT_ID_PATTERN, valid_product_id  # noqa: F401 (re-export)

#: Columns of the tabular form of ticks (`ticks_to_frame`), in order.
TICK_COLUMNS = (
    "product_id",
    "event_time_ns",
    "sequence",
    "price",
    "best_bid",
    "best_ask",
    "best_bid_qty",
    "best_ask_qty",
    "volume_24h",
    "receive_time_ns",
)


_TICK_ENCODER = json.JSONEncoder(separators=(",", ":"))

# The one rule for a product id is `cryptovol.config.valid_product_id` (re-exported here beside the
# tick record): product ids become directory names (landing files, lake partitions) and SQL
# literals, so every such place checks it first.

#: Integer fields of a tick must fit the int64 columns they land in.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: No exchange tick is older than this (2010-01-01 UTC): earlier event times are garbage.
MIN_EVENT_TIME_NS = 1_262_304_000 * 1_000_000_000
NS_PER_S = 1_000_000_000


class TickError(ValueError):
    """A message that cannot become a valid tick; `reason` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Tick(msgspec.Struct, frozen=True, gc=False):
    """One best-bid/ask + last-trade update for one product, at exchange event time (UTC ns).

    A frozen msgspec Struct rather than a dataclass: the streaming featurizer decodes every
    `ticks.raw` value straight into it (`TICK_DECODER`, types checked while parsing), and building
    a frozen dataclass cost more than parsing the JSON. Immutable, hashable, compared by value;
    `msgspec.structs.replace` makes modified copies. `gc=False`: it holds only scalars.
    """

    product_id: str
    event_time_ns: int
    sequence: int
    price: float
    best_bid: float
    best_ask: float
    best_bid_qty: float
    best_ask_qty: float
    volume_24h: float
    receive_time_ns: int

    @property
    def mid(self) -> float:
        return 0.5 * (self.best_bid + self.best_ask)

    @property
    def content_key(self) -> tuple:
        """Identity by content, for de-duplication across reconnects (sequence restarts)."""
        return (
            self.product_id,
            self.event_time_ns,
            self.price,
            self.best_bid,
            self.best_ask,
            self.best_bid_qty,
            self.best_ask_qty,
        )

    def to_json(self) -> bytes:
        # json (not msgspec): a missing quantity is NaN and must stay `NaN` on the wire, not `null`.
        return _TICK_ENCODER.encode({name: getattr(self, name) for name in TICK_COLUMNS}).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Tick:
        try:
            obj = json.loads(data)
            return cls(**{name: obj[name] for name in TICK_COLUMNS})
        except (ValueError, KeyError, TypeError) as exc:
            raise TickError("bad_tick_json", str(exc)) from exc


#: Strict JSON -> `Tick` (int fields must be JSON integers, float fields numbers, no booleans;
#: unknown keys ignored). Raises `msgspec.DecodeError`; `Tick.from_json` is the lenient reader.
TICK_DECODER = msgspec.json.Decoder(Tick)


def check_product_id(product: object) -> str:
    """`product` if valid, else `TickError("bad_product_id")` (the detail is bounded)."""
    if not valid_product_id(product):
        raise TickError("bad_product_id", repr(product)[:80])
    return product  # type: ignore[return-value]


def check_event_time(
    event_time_ns: int, reference_ns: int, *, max_ahead_s: float, max_behind_s: float | None
) -> None:
    """Event time within [reference - max_behind, reference + max_ahead]; else `TickError`.

    The reference is the receive time (ingest, and the tick's own `receive_time_ns` in consumers)
    or a consumer's wall clock (ahead only: replayed history is legitimately old). One tick dated
    2100 would otherwise move its product's watermark and make every later tick "late".
    """
    if event_time_ns < MIN_EVENT_TIME_NS or event_time_ns > INT64_MAX:
        raise TickError("event_time_out_of_range", f"event_time_ns={event_time_ns}")
    ahead = event_time_ns - reference_ns
    if ahead > max_ahead_s * NS_PER_S:
        raise TickError("event_time_out_of_range",
                        f"event time {ahead / NS_PER_S:.0f}s ahead of the reference (max {max_ahead_s:g}s)")
    if max_behind_s is not None and -ahead > max_behind_s * NS_PER_S:
        raise TickError("event_time_out_of_range",
                        f"event time {-ahead / NS_PER_S:.0f}s behind the reference (max {max_behind_s:g}s)")


def parse_timestamp_ns(text: str, *, assume_tz: str = "UTC") -> int:
    """ISO-8601 (with `Z`, an offset, or none) -> UTC ns, keeping nanosecond precision.

    `assume_tz` is the zone of a timestamp written without an offset (some recordings).
    """
    if not isinstance(text, str) or len(text) > 64:
        raise TickError("bad_timestamp", repr(text)[:80])
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError) as exc:
        raise TickError("bad_timestamp", repr(text)) from exc
    if ts is pd.NaT:
        raise TickError("bad_timestamp", repr(text))
    if ts.tzinfo is None:
        ts = ts.tz_localize(assume_tz)
    return int(ts.tz_convert("UTC").value)


def format_timestamp_ns(ns: int) -> str:
    """UTC ns -> `2025-12-06T01:12:47.761914123Z` (the exchange's own format)."""
    seconds, frac = divmod(int(ns), 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def _number(ticker: dict[str, Any], field: str, *, positive: bool, required: bool = True) -> float:
    raw = ticker.get(field)
    if raw is None or raw == "":
        if not required:
            return math.nan
        raise TickError("missing_field", field)
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: a JSON integer > 1e308
        raise TickError("non_numeric", f"{field}={raw!r}") from exc
    if not math.isfinite(value):
        raise TickError("non_numeric", f"{field}={raw!r}")
    if positive and value <= 0:
        raise TickError("non_positive", f"{field}={raw!r}")
    if value < 0:
        raise TickError("negative", f"{field}={raw!r}")
    return value


def tick_from_ticker(
    ticker: dict[str, Any],
    *,
    event_time_ns: int,
    sequence: int,
    receive_time_ns: int,
) -> Tick:
    """Validate one ticker object (as inside `events[].tickers[]`) into a `Tick`."""
    if not isinstance(ticker, dict):
        raise TickError("bad_ticker", f"expected an object, got {type(ticker).__name__}")
    product = ticker.get("product_id")
    if not isinstance(product, str) or not product:
        raise TickError("missing_field", "product_id")
    bid = _number(ticker, "best_bid", positive=True)
    ask = _number(ticker, "best_ask", positive=True)
    if bid > ask:
        raise TickError("crossed_book", f"best_bid={bid} > best_ask={ask}")
    return Tick(
        product_id=product,
        event_time_ns=int(event_time_ns),
        sequence=int(sequence),
        price=_number(ticker, "price", positive=True),
        best_bid=bid,
        best_ask=ask,
        best_bid_qty=_number(ticker, "best_bid_quantity", positive=False, required=False),
        best_ask_qty=_number(ticker, "best_ask_quantity", positive=False, required=False),
        volume_24h=_number(ticker, "volume_24_h", positive=False, required=False),
        receive_time_ns=int(receive_time_ns),
    )


def ticks_to_frame(ticks: list[Tick]) -> pd.DataFrame:
    """Ticks -> a DataFrame with `TICK_COLUMNS` and stable dtypes (empty input allowed)."""
    if not ticks:
        return empty_tick_frame()
    frame = pd.DataFrame.from_records([msgspec.structs.astuple(t) for t in ticks], columns=list(TICK_COLUMNS))
    return frame.astype(TICK_DTYPES)


TICK_DTYPES: dict[str, Any] = {
    "product_id": "string",
    "event_time_ns": np.int64,
    "sequence": np.int64,
    "price": np.float64,
    "best_bid": np.float64,
    "best_ask": np.float64,
    "best_bid_qty": np.float64,
    "best_ask_qty": np.float64,
    "volume_24h": np.float64,
    "receive_time_ns": np.int64,
}


def empty_tick_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=TICK_DTYPES[c]) for c in TICK_COLUMNS})


# --- Landing-file lines -------------------------------------------------------------------------
# One NDJSON line per ticker, in data/raw/<product>/<YYYY-MM-DD>.ndjson (UTC day of the event):
#   {"ticker": {...the ticker object exactly as received...},
#    "timestamp": "<envelope timestamp, as received>", "sequence_num": <envelope sequence_num>,
#    "event_type": "snapshot" | "update", "received_at": "<receive time, ISO-8601 UTC, ns>"}
# Keeping the verbatim ticker means a line can always be re-parsed with newer code.


def landing_record(
    ticker: dict[str, Any],
    *,
    envelope_timestamp: str,
    sequence_num: int,
    event_type: str,
    receive_time_ns: int,
) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "timestamp": envelope_timestamp,
        "sequence_num": int(sequence_num),
        "event_type": event_type,
        "received_at": format_timestamp_ns(receive_time_ns),
    }


def tick_from_landing(obj: dict[str, Any]) -> Tick:
    """A landing-file line (already JSON-decoded) -> `Tick`; raises `TickError`."""
    try:
        ticker = obj["ticker"]
        timestamp = obj["timestamp"]
        sequence = obj.get("sequence_num", -1)
        received = obj.get("received_at") or timestamp
    except (KeyError, TypeError) as exc:
        raise TickError("bad_landing_line", str(exc)) from exc
    return tick_from_ticker(
        ticker,
        event_time_ns=parse_timestamp_ns(timestamp),
        sequence=sequence,
        receive_time_ns=parse_timestamp_ns(received),
    )
