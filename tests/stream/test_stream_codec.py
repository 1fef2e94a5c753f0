"""The featurizer's wire codecs: `ticks.raw` values -> `Tick` (fast path == reference path) and
feature rows -> `ticks.features` JSON (exact values, NaN as null, documented field order)."""

from __future__ import annotations

import json
import math

import msgspec
import numpy as np
import pytest

from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET
from cryptovol.simulator.synthetic import generate_ticks_frame
from cryptovol.stream.engine import SourceRecord, StreamEngine
from cryptovol.stream.featurizer import _decode_tick_checked, decode_tick, feature_messages
from cryptovol.ticks import Tick, TickError

GOOD = {"product_id": "BTC-USD", "event_time_ns": 1_767_225_600_000_000_000, "sequence": 7,
        "price": 87000.5, "best_bid": 87000.0, "best_ask": 87001.0, "best_bid_qty": 0.5,
        "best_ask_qty": 1.25, "volume_24h": 12345.0, "receive_time_ns": 1_767_225_600_100_000_000}


def _value(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def _outcome(decoder, value: bytes | None) -> tuple[str, object]:
    try:
        return "ok", decoder(value)
    except TickError as exc:
        return "error", exc.reason


@pytest.mark.parametrize("value", [
    _value(),
    _value(price=87000, best_bid=87000, volume_24h=0),        # JSON integers for float fields
    _value(extra_field="ignored"),
    _value(best_bid_qty=float("nan")),                          # `NaN` token: not strict JSON
    _value(event_time_ns="soon"),
    _value(sequence=1.5),
    _value(price=True),
    _value(price=-1.0),
    _value(best_ask_qty=-0.1),
    _value(best_bid=87002.0),                                   # crossed book
    _value(product_id=""),
    _value(product_id=5),
    json.dumps({"product_id": "BTC-USD"}).encode(),            # missing fields
    b"{not json",
    b"null",
    None,
])
def test_fast_decoder_agrees_with_the_reference_decoder(value):
    """Same tick or the same dead-letter reason, whichever path decodes it."""
    assert _outcome(decode_tick, value) == _outcome(_decode_tick_checked, value)


def test_decoded_ticks_keep_their_types_and_round_trip():
    tick = decode_tick(_value(price=87000, best_bid=87000))
    assert type(tick.price) is float and type(tick.best_bid) is float and type(tick.sequence) is int
    assert decode_tick(tick.to_json()) == tick
    assert msgspec.structs.replace(tick, sequence=8) != tick
    assert hash(tick) == hash(decode_tick(tick.to_json()))


def test_feature_messages_carry_exact_values_nulls_and_the_documented_fields():
    frame = generate_ticks_frame(("ETH-USD",), duration_s=400, seed=3, rate_hz=4.0)
    ticks = [Tick(*row) for row in frame.itertuples(index=False)]
    engine = StreamEngine(lateness_s=0.0)
    for i, tick in enumerate(ticks):
        engine.offer(SourceRecord(tick, 2, 100 + i))
    (batch,) = engine.release(force=True)
    messages = feature_messages(batch, emitted_at_ns=123)
    assert len(messages) == len(batch) == len(ticks)
    nulls = 0
    for i, raw in enumerate(messages):
        row = json.loads(raw)
        assert list(row) == ["product_id", "event_time_ns", "sequence", *FEATURE_NAMES,
                             "feature_set_version", "source_partition", "source_offset", "receive_time_ns",
                             "emitted_at_ns"]
        assert (row["product_id"], row["event_time_ns"], row["sequence"]) == (
            "ETH-USD", int(batch.event_time_ns[i]), int(batch.sequence[i]))
        assert (row["feature_set_version"], row["source_partition"], row["source_offset"],
                row["receive_time_ns"], row["emitted_at_ns"]) == (
            FEATURE_SET.version, 2, 100 + i, ticks[i].receive_time_ns, 123)
        for name in FEATURE_NAMES:
            expected = float(batch.features[name][i])
            if math.isnan(expected):
                assert row[name] is None, (i, name)
                nulls += 1
            else:
                assert row[name] == expected, (i, name)  # exact: shortest round-trip repr
    assert nulls > 0  # the warm-up rows exercised the NaN -> null path
    assert np.isfinite([json.loads(messages[-1])[n] for n in FEATURE_NAMES]).all()
