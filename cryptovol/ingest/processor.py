"""What happens to one WebSocket frame: parse, validate, de-duplicate, land, publish, dead-letter.

`FrameProcessor` has no sockets and no threads, so every rule here is unit-testable with plain
strings. It writes landing lines before handing a tick to the publisher, so anything in Kafka is
also on disk (the landing files are the system of record; `cryptovol replay` rebuilds topics).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from cryptovol.config import TOPIC_DEADLETTER, TOPIC_RAW
from cryptovol.ingest.dedup import RecentKeys
from cryptovol.ingest.stats import IngestStats
from cryptovol.ingest.writers import DeadLetterWriter, LandingWriter, is_safe_product_id
from cryptovol.protocol import (
    HEARTBEATS,
    SUBSCRIPTIONS,
    TICKER,
    Frame,
    count_tickers,
    frame_tickers,
    parse_frame,
)
from cryptovol.ticks import Tick, TickError, format_timestamp_ns, landing_record, tick_from_ticker

log = logging.getLogger(__name__)

#: publish(topic, key, value): hands a record to the Kafka side (must not block).
PublishFn = Callable[[str, str | None, bytes], None]
#: publish_many([(topic, key, value), ...]): the same for a batch, in order.
PublishManyFn = Callable[[list[tuple[str, str | None, bytes]]], None]


def deadletter_record(
    reason: str, detail: str, raw: str, receive_time_ns: int, source: str, product_id: str | None = None
) -> dict[str, Any]:
    """The dead-letter line/message: why, the frame exactly as received, when, from where."""
    return {
        "reason": reason,
        "detail": detail,
        "raw": raw,
        "received_at": format_timestamp_ns(receive_time_ns),
        "source": source,
        "product_id": product_id,
    }


class FrameProcessor:
    """Turns frames into landing lines + Kafka records + dead letters, counting everything."""

    def __init__(
        self,
        *,
        landing: LandingWriter,
        deadletter: DeadLetterWriter,
        publish: PublishFn,
        stats: IngestStats,
        source: str,
        dedup: RecentKeys | None = None,
        raw_topic: str = TOPIC_RAW,
        deadletter_topic: str = TOPIC_DEADLETTER,
        batch_size: int = 1,
        publish_many: PublishManyFn | None = None,
    ) -> None:
        """`batch_size` > 1 holds up to that many landed ticks before one flush + publish (call
        `flush()` on a timer and before stopping); 1 flushes and publishes every frame."""
        self.landing = landing
        self.deadletter = deadletter
        self.publish = publish
        self.stats = stats
        self.source = source
        self.dedup = dedup or RecentKeys()
        self.raw_topic = raw_topic
        self.deadletter_topic = deadletter_topic
        self.batch_size = max(1, batch_size)
        self.publish_many = publish_many
        self._pending: list[Tick] = []
        self._last_sequence: int | None = None

    @property
    def pending(self) -> int:
        """Ticks landed (written, maybe not flushed) but not yet handed to Kafka."""
        return len(self._pending)

    def flush(self) -> None:
        """Flush the landing files, then hand the pending ticks to Kafka: on disk before Kafka."""
        if not self._pending:
            return
        self.landing.flush()
        records = [(self.raw_topic, t.product_id, t.to_json()) for t in self._pending]
        self._pending.clear()
        if self.publish_many is not None:
            self.publish_many(records)
        else:
            for record in records:
                self.publish(*record)

    def new_connection(self) -> None:
        """Sequence numbers restart on every connection; de-dup memory deliberately does not."""
        self._last_sequence = None

    def process(self, text: str | bytes, receive_time_ns: int) -> None:
        """Handle one frame; never raises for bad input (it is dead-lettered and counted)."""
        self.stats.frames += 1
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        try:
            frame = parse_frame(text)
        except TickError as exc:
            self.stats.received += 1
            self._dead(exc.reason, exc.detail, raw, receive_time_ns, None)
            return
        self._track_sequence(frame)
        if frame.kind == TICKER:
            self._pending.extend(self._tickers(frame, raw, receive_time_ns))
            if len(self._pending) >= self.batch_size:
                self.flush()
        elif frame.kind == HEARTBEATS:
            self.stats.heartbeats += 1
        elif frame.kind == "error":
            self.stats.server_errors += 1
            log.warning("exchange error frame: %s", raw[:500])
        elif frame.kind == SUBSCRIPTIONS:
            log.info("subscriptions: %s", json.dumps(frame.events)[:500])
        else:
            log.debug("ignoring frame on channel %r", frame.kind)

    def _track_sequence(self, frame: Frame) -> None:
        sequence = frame.sequence_num
        if sequence is None:
            return
        last = self._last_sequence
        if last is not None and sequence > last + 1:
            self.stats.gaps += 1
            self.stats.missing_messages += sequence - last - 1
            log.debug("sequence gap: %d -> %d", last, sequence)
        if last is None or sequence > last:
            self._last_sequence = sequence

    def _tickers(self, frame: Frame, raw: str, receive_time_ns: int) -> list[Tick]:
        """Validate, de-dup and land the frame's tickers; returns the ticks to publish."""
        try:
            event_time_ns = frame.timestamp_ns
            tickers = list(frame_tickers(frame))
        except TickError as exc:
            # The whole frame is unusable: one dead letter per ticker it carried (at least one).
            for _ in range(max(1, count_tickers(frame))):
                self.stats.received += 1
                self._dead(exc.reason, exc.detail, raw, receive_time_ns, None)
            return []
        accepted: list[Tick] = []
        sequence = frame.sequence_num if frame.sequence_num is not None else -1
        for event_type, ticker in tickers:
            self.stats.received += 1
            product = ticker.get("product_id") if isinstance(ticker, dict) else None
            try:
                tick = tick_from_ticker(
                    ticker, event_time_ns=event_time_ns, sequence=sequence, receive_time_ns=receive_time_ns
                )
                if not is_safe_product_id(tick.product_id):
                    raise TickError("bad_product_id", repr(tick.product_id)[:100])
            except TickError as exc:
                name = product if isinstance(product, str) else None
                self._dead(exc.reason, exc.detail, raw, receive_time_ns, name)
                continue
            if self.dedup.seen(tick.product_id, tick.content_key):
                self.stats.duplicates += 1
                continue
            record = landing_record(
                ticker,
                envelope_timestamp=frame.timestamp,
                sequence_num=sequence,
                event_type=event_type,
                receive_time_ns=receive_time_ns,
            )
            self.landing.write(tick.product_id, tick.event_time_ns, record)
            self.stats.landed += 1
            accepted.append(tick)
        return accepted

    def _dead(self, reason: str, detail: str, raw: str, receive_time_ns: int, product: str | None) -> None:
        record = deadletter_record(reason, detail, raw, receive_time_ns, self.source, product)
        self.deadletter.write(record, receive_time_ns)
        self.stats.count_deadletter(reason)
        key = product if product and is_safe_product_id(product) else None
        self.publish(self.deadletter_topic, key, json.dumps(record, separators=(",", ":")).encode())
