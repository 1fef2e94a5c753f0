"""What happens to one WebSocket frame: parse, validate, de-duplicate, land, publish, dead-letter.

`FrameProcessor` has no sockets and no threads, so every rule here is unit-testable with plain
strings. It writes landing lines before handing a tick to the publisher, so anything in Kafka is
also on disk (the landing files are the system of record; `cryptovol replay` rebuilds topics).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from cryptovol.config import TICK_MAX_AHEAD_S, TICK_MAX_BEHIND_S, TOPIC_DEADLETTER, TOPIC_RAW
from cryptovol.deadletter import raw_fields
from cryptovol.ingest.dedup import RecentKeys
from cryptovol.ingest.stats import IngestStats
from cryptovol.ingest.writers import DeadLetterWriter, LandingWriter
from cryptovol.protocol import (
    HEARTBEATS,
    SUBSCRIPTIONS,
    TICKER,
    Frame,
    count_tickers,
    frame_tickers,
    parse_frame,
)
from cryptovol.ticks import (
    Tick,
    TickError,
    check_event_time,
    check_product_id,
    format_timestamp_ns,
    landing_record,
    tick_from_ticker,
    valid_product_id,
)

log = logging.getLogger(__name__)

#: publish(topic, key, value): hands a record to the Kafka side (must not block).
PublishFn = Callable[[str, str | None, bytes], None]
#: publish_many([(topic, key, value), ...]): the same for a batch, in order.
PublishManyFn = Callable[[list[tuple[str, str | None, bytes]]], None]

#: Per-ticker errors listed in one frame's dead-letter record (the rest are only counted).
MAX_LISTED_ERRORS = 20


def deadletter_record(
    reason: str,
    detail: str,
    raw: str | bytes,
    receive_time_ns: int,
    source: str,
    product_id: str | None = None,
    *,
    tickers: int = 1,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The dead-letter line/message for one frame: why, a bounded excerpt of it with its size and
    SHA-256 (`cryptovol.deadletter.raw_fields`), when, from where, and how many of its tickers it
    stands for (`errors` lists each bad ticker's reason when there were several)."""
    record: dict[str, Any] = {
        "reason": reason,
        "detail": str(detail)[:500],
        **raw_fields(raw),
        "received_at": format_timestamp_ns(receive_time_ns),
        "source": source,
        "product_id": product_id if valid_product_id(product_id) else None,
        "tickers": tickers,
    }
    if errors:
        record["errors"] = errors[:MAX_LISTED_ERRORS]
    return record


def _encode(record: dict[str, Any]) -> bytes:
    """ASCII JSON: always encodable, whatever a detail string holds."""
    return json.dumps(record, separators=(",", ":")).encode()


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
        products: Iterable[str] | None = None,
        max_ahead_s: float = TICK_MAX_AHEAD_S,
        max_behind_s: float = TICK_MAX_BEHIND_S,
    ) -> None:
        """`batch_size` > 1 holds up to that many landed ticks before one flush + publish (call
        `flush()` on a timer and before stopping); 1 flushes and publishes every frame.

        `products`: the subscribed products; a ticker for any other is dead-lettered
        (`unsubscribed_product`), so nothing is remembered for it. `max_ahead_s`/`max_behind_s`
        bound a tick's event time around its receive time (`event_time_out_of_range`)."""
        self.landing = landing
        self.deadletter = deadletter
        self.publish = publish
        self.stats = stats
        self.source = source
        self.dedup = dedup if dedup is not None else RecentKeys()  # an empty one is falsy
        self.raw_topic = raw_topic
        self.deadletter_topic = deadletter_topic
        self.batch_size = max(1, batch_size)
        self.publish_many = publish_many
        self.products = frozenset(products) if products is not None else None
        self.max_ahead_s = max_ahead_s
        self.max_behind_s = max_behind_s
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
        """Handle one frame; never raises for bad input (it is dead-lettered and counted).

        Only I/O errors (`OSError`: disk full, permissions) escape: the caller must stop rather
        than drop data. Anything else a frame provokes is a bug's symptom, but still one frame's
        problem: it is dead-lettered (`unprocessable`) and the ingestor goes on.
        """
        self.stats.frames += 1
        try:
            self._process(text, receive_time_ns)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 (see the docstring)
            log.exception("frame could not be processed; dead-lettered")
            self.stats.received += 1
            self._dead("unprocessable", f"{type(exc).__name__}: {exc}"[:300], text, receive_time_ns, None)

    def _process(self, text: str | bytes, receive_time_ns: int) -> None:
        try:
            frame = parse_frame(text)
        except TickError as exc:
            self.stats.received += 1
            self._dead(exc.reason, exc.detail, text, receive_time_ns, None)
            return
        self._track_sequence(frame)
        if frame.kind == TICKER:
            self._pending.extend(self._tickers(frame, text, receive_time_ns))
            if len(self._pending) >= self.batch_size:
                self.flush()
        elif frame.kind == HEARTBEATS:
            self.stats.heartbeats += 1
        elif frame.kind == "error":
            self.stats.server_errors += 1
            log.warning("exchange error frame: %s", str(text[:500]))
        elif frame.kind == SUBSCRIPTIONS:
            log.info("subscriptions: %s", str(frame.events)[:500])
        else:
            log.debug("ignoring frame on channel %r", frame.kind[:100])

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

    def _tickers(self, frame: Frame, raw: str | bytes, receive_time_ns: int) -> list[Tick]:
        """Validate, de-dup and land the frame's tickers; returns the ticks to publish.

        Bad tickers cost one dead-letter record per frame (not one copy of the frame per ticker).
        """
        try:
            event_time_ns = frame.timestamp_ns
            check_event_time(event_time_ns, receive_time_ns,
                             max_ahead_s=self.max_ahead_s, max_behind_s=self.max_behind_s)
            sequence = frame.sequence_num if frame.sequence_num is not None else -1
            if not -(2**63) <= sequence < 2**63:
                raise TickError("bad_envelope", f"sequence_num={sequence} out of range")
            tickers = list(frame_tickers(frame))
        except TickError as exc:
            # The whole frame is unusable: one dead letter standing for every ticker it carried.
            count = max(1, count_tickers(frame))
            self.stats.received += count
            self._dead(exc.reason, exc.detail, raw, receive_time_ns, None, count=count)
            return []
        accepted: list[Tick] = []
        errors: list[dict[str, Any]] = []
        for index, (event_type, ticker) in enumerate(tickers):
            self.stats.received += 1
            product = ticker.get("product_id") if isinstance(ticker, dict) else None
            try:
                tick = tick_from_ticker(
                    ticker, event_time_ns=event_time_ns, sequence=sequence, receive_time_ns=receive_time_ns
                )
                check_product_id(tick.product_id)
                if self.products is not None and tick.product_id not in self.products:
                    raise TickError("unsubscribed_product", tick.product_id)
            except TickError as exc:
                name = product if valid_product_id(product) else None
                errors.append({"index": index, "reason": exc.reason, "detail": exc.detail[:200],
                               "product_id": name})
                continue
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # never for valid input
                errors.append({"index": index, "reason": "bad_ticker",
                               "detail": f"{type(exc).__name__}: {exc}"[:200], "product_id": None})
                continue
            if self.dedup.seen(tick.product_id, tick.content_key):
                self.stats.duplicates += 1
                continue
            record = landing_record(
                ticker,
                envelope_timestamp=frame.timestamp,
                sequence_num=sequence,
                event_type=str(event_type)[:32],
                receive_time_ns=receive_time_ns,
            )
            self.landing.write(tick.product_id, tick.event_time_ns, record)
            self.stats.landed += 1
            accepted.append(tick)
        if errors:
            first = errors[0]
            self._dead(first["reason"], first["detail"], raw, receive_time_ns, first["product_id"],
                       count=len(errors), errors=errors if len(errors) > 1 else None,
                       reasons=[e["reason"] for e in errors])
        return accepted

    def _dead(
        self,
        reason: str,
        detail: str,
        raw: str | bytes,
        receive_time_ns: int,
        product: str | None,
        *,
        count: int = 1,
        errors: list[dict[str, Any]] | None = None,
        reasons: list[str] | None = None,
    ) -> None:
        """One bounded dead-letter record (file, then topic) standing for `count` tickers."""
        record = deadletter_record(reason, detail, raw, receive_time_ns, self.source, product,
                                   tickers=count, errors=errors)
        self.deadletter.write(record, receive_time_ns)
        for r in reasons or [reason] * count:
            self.stats.count_deadletter(r)
        self.stats.deadletter_records += 1
        self.publish(self.deadletter_topic, record["product_id"], _encode(record))
