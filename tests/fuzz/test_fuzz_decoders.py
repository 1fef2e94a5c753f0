"""Property tests over every decoder that reads outside input: the WebSocket frame parser and the
ingest frame processor, the `ticks.raw` tick decoder and the `ticks.features` record decoder.

The property is the same everywhere: any input either decodes into a value that satisfies every
range rule, or is refused with the decoder's own error type (a dead-letter reason). Nothing else
is ever raised, and the processor never loses count of a frame. Inputs are mutations of valid
messages (fields replaced by arbitrary JSON, lone surrogates, huge numbers, deep nesting) and
arbitrary text and bytes.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET
from cryptovol.ingest import DeadLetterWriter, FrameProcessor, IngestStats, LandingWriter
from cryptovol.protocol import parse_frame
from cryptovol.scoring.scorer import BadFeatureRow, parse_feature_message
from cryptovol.stream.featurizer import TickBounds, decode_tick
from cryptovol.ticks import INT64_MAX, INT64_MIN, TickError, format_timestamp_ns, valid_product_id

NOW_NS = time.time_ns()
NS = 1_000_000_000

ODD_STRINGS = st.sampled_from([
    "\ud800", "a\udfffb", "../../etc", "BTC-USD/../x", "", " ", "NaN", "Infinity", "-1", "1e400",
    "9" * 5000, "BTC-USD\x00", "btc-usd", "BTC-" + "U" * 60, "２０２６", "2100-01-01T00:00:00Z",
])
ODD_NUMBERS = st.sampled_from([
    math.nan, math.inf, -math.inf, 0, -1, 2**63, -(2**63) - 1, 10**30, 10**400, 1e308, -0.0, 5e-324,
])
JSON_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
               | ODD_STRINGS | ODD_NUMBERS)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)


def dumps(obj: object) -> str:
    try:
        return json.dumps(obj)
    except (ValueError, OverflowError):  # e.g. an integer too long to print: send something else
        return json.dumps(str(type(obj)))


def mutate(base: dict, data: st.DataObject) -> dict:
    """`base` with some keys replaced by arbitrary values, some removed, maybe one added."""
    out = dict(base)
    for key in data.draw(st.lists(st.sampled_from(sorted(base)), max_size=4, unique=True)):
        if data.draw(st.booleans()):
            out[key] = data.draw(JSON_VALUES)
        else:
            out.pop(key)
    return out


def ticker(price: float = 100.0) -> dict:
    return {"type": "ticker", "product_id": "BTC-USD", "price": f"{price:.2f}", "volume_24_h": "10",
            "best_bid": f"{price - 0.5:.2f}", "best_ask": f"{price + 0.5:.2f}",
            "best_bid_quantity": "1", "best_ask_quantity": "2"}


def frame(tickers: list, ts_ns: int = NOW_NS, seq: object = 1) -> dict:
    return {"channel": "ticker", "client_id": "", "timestamp": format_timestamp_ns(ts_ns),
            "sequence_num": seq, "events": [{"type": "update", "tickers": tickers}]}


@st.composite
def frames(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["mutated-frame", "mutated-ticker", "text", "bytes", "nested"]))
    if kind == "mutated-frame":
        return dumps(mutate(frame([ticker()]), draw(st.data())))
    if kind == "mutated-ticker":
        return dumps(frame([ticker(), mutate(ticker(101.0), draw(st.data()))]))
    if kind == "text":
        return draw(st.text(max_size=200) | ODD_STRINGS)
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    depth = draw(st.integers(1, 50_000))
    return draw(st.sampled_from(["[", '{"a":'])) * depth


@given(frames())
@example("[" * 100_000)
@example(dumps(frame([{**ticker(), "low_52_w": "\ud800"}])))
def test_parse_frame_returns_a_frame_or_a_tick_error(text: str | bytes):
    try:
        parsed = parse_frame(text)
    except TickError as exc:
        assert exc.reason in {"bad_json", "bad_envelope", "bad_unicode"}
        return
    json.dumps(parsed.message, ensure_ascii=False).encode("utf-8")  # always encodable once accepted


@given(st.lists(frames(), min_size=1, max_size=5))
def test_the_frame_processor_never_raises_and_accounts_for_every_ticker(texts: list[str | bytes]):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stats, published = IngestStats(), []
        landing, dead = LandingWriter(root / "raw"), DeadLetterWriter(root / "deadletter")
        proc = FrameProcessor(landing=landing, deadletter=dead, publish=lambda *r: published.append(r),
                              stats=stats, source="fuzz", products=["BTC-USD"])
        for text in texts:
            proc.process(text, NOW_NS)
        proc.flush()
        landing.close()
        dead.close()
        assert stats.received == stats.landed + stats.duplicates + stats.deadlettered
        for path in root.rglob("*.ndjson"):  # everything written is UTF-8 JSON, bounded dead letters
            assert path.resolve().is_relative_to(root.resolve())
            for line in path.read_bytes().splitlines():
                record = json.loads(line.decode("utf-8"))
                if "deadletter" in path.parts:
                    assert len(line) < 16_384 and record["reason"]
        assert all(t in ("ticks.raw", "ticks.deadletter") for t, _, _ in published)


def tick_dict(i: int = 0) -> dict:
    return {"product_id": "BTC-USD", "event_time_ns": NOW_NS - NS + i, "sequence": i, "price": 100.0,
            "best_bid": 99.5, "best_ask": 100.5, "best_bid_qty": 1.0, "best_ask_qty": math.nan,
            "volume_24h": 10.0, "receive_time_ns": NOW_NS - NS + i + 1000}


@st.composite
def tick_values(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "text", "bytes"]))
    if kind == "mutated":
        return dumps(mutate(tick_dict(), draw(st.data()))).encode("utf-8", "surrogatepass")
    if kind == "text":
        return draw(st.text(max_size=100)).encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=100))


BOUNDS = TickBounds(now_ns=NOW_NS)


@given(tick_values())
@example(json.dumps({**tick_dict(), "event_time_ns": 4_102_444_800 * NS}).encode())
@example(json.dumps({**tick_dict(), "sequence": 10**30}).encode())
def test_decode_tick_accepts_only_ticks_within_every_range_rule(value: bytes):
    try:
        tick = decode_tick(value, BOUNDS)
    except TickError as exc:
        assert exc.reason
        return
    assert valid_product_id(tick.product_id)
    assert all(INT64_MIN <= v <= INT64_MAX for v in (tick.event_time_ns, tick.sequence, tick.receive_time_ns))
    assert all(math.isfinite(v) and v > 0 for v in (tick.price, tick.best_bid, tick.best_ask))
    assert all(math.isnan(v) or (math.isfinite(v) and v >= 0)
               for v in (tick.best_bid_qty, tick.best_ask_qty, tick.volume_24h))
    assert tick.best_bid <= tick.best_ask
    assert abs(tick.event_time_ns - tick.receive_time_ns) <= BOUNDS.max_behind_s * NS
    assert tick.event_time_ns <= NOW_NS + BOUNDS.max_ahead_s * NS


def feature_dict() -> dict:
    row = {"product_id": "BTC-USD", "event_time_ns": NOW_NS - NS, "sequence": 3,
           "feature_set_version": FEATURE_SET.version, "receive_time_ns": NOW_NS - NS + 1000}
    row.update({name: 0.5 for name in FEATURE_NAMES})
    return row


@st.composite
def feature_values(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 3)):
        return dumps(mutate(feature_dict(), draw(st.data()))).encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=100))


@given(feature_values())
@example(json.dumps({**feature_dict(), "product_id": "../../x"}).encode())
@example(json.dumps({**feature_dict(), FEATURE_NAMES[0]: 10**400}).encode())
def test_the_feature_record_decoder_accepts_only_scorable_rows(value: bytes):
    try:
        keys, values = parse_feature_message(value, now_ns=NOW_NS)
    except BadFeatureRow as exc:
        assert exc.reason
        return
    assert valid_product_id(keys["product_id"])
    assert INT64_MIN <= keys["event_time_ns"] <= NOW_NS + 60 * NS
    assert INT64_MIN <= keys["sequence"] <= INT64_MAX
    assert len(values) == len(FEATURE_NAMES) and all(math.isnan(v) or math.isfinite(v) for v in values)
