"""The streaming scorer: `ticks.features` -> champion -> `predictions` (+ prediction Parquet).

A consumer group on the feature topic. Each poll is scored as one batch by the model
`ChampionLoader.current` holds at that moment (the same loader and hot swap as the BentoML
service), published to `predictions` keyed by product, and buffered for Parquet. A flush waits
for the producer, checks the delivery result of every send since the last flush, and only then
writes the Parquet part and commits; a failed delivery stops the scorer (`DeliveryFailed`)
without either: at-least-once, so a crash can re-score (never lose) the rows of the last batch.

Feature rows with missing keys, an unknown feature-set version, non-numeric or infinite features,
a product id that is not `cryptovol.ticks.valid_product_id` or integers outside their ranges
(event time near the scorer's clock, int64) go to the dead-letter topic and a JSON-lines file with
a reason and a bounded excerpt (counted); NaN features (warm-up rows) are scored, as the serving
contract allows.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptovol.config import TICK_MAX_AHEAD_S, TOPIC_DEADLETTER, TOPIC_FEATURES, TOPIC_PREDICTIONS, Settings
from cryptovol.deadletter import raw_fields
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET
from cryptovol.kafka_send import BurstSender
from cryptovol.runtime import Cadence, OrderedWriter, Runner
from cryptovol.scoring.sink import PREDICTION_COLUMNS, write_prediction_parts
from cryptovol.serving.champion import ChampionLoader, ServedModel
from cryptovol.serving.metrics import ServingMetrics
from cryptovol.ticks import INT64_MAX, INT64_MIN, TickError, check_event_time, valid_product_id

log = logging.getLogger(__name__)


PRODUCER_SETTINGS: dict[str, Any] = {"compression_type": "gzip", "linger_ms": 20, "batch_size": 65536}
#: Latency: fetches return after at most 10 ms on the embedded broker (see the featurizer's note).
CONSUMER_SETTINGS: dict[str, Any] = {"fetch_max_wait_ms": 10}


class BadFeatureRow(ValueError):
    """A feature message that cannot be scored; `reason` is a short code for the dead letter."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _int64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def parse_feature_message(
    value: bytes | str | dict, *, now_ns: int | None = None, max_ahead_s: float = TICK_MAX_AHEAD_S
) -> tuple[dict[str, Any], list[float]]:
    """One `ticks.features` message -> (keys, feature values in FEATURE_NAMES order).

    Accepts features at the top level or under `"features"`; null/NaN means "not warm yet" (NaN).
    Raises `BadFeatureRow` for anything else, whatever the input (never another exception).
    """
    try:
        obj = json.loads(value) if isinstance(value, bytes | str) else value
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFeatureRow("bad_json", str(exc)[:200]) from exc
    except RecursionError as exc:
        raise BadFeatureRow("bad_json", "nested too deeply") from exc
    if not isinstance(obj, dict):
        raise BadFeatureRow("bad_json", f"expected an object, got {type(obj).__name__}")
    version = obj.get("feature_set_version")
    if version is None:
        raise BadFeatureRow("missing_field", "feature_set_version")
    if version != FEATURE_SET.version:
        raise BadFeatureRow(
            "feature_set_mismatch", f"row has {version!r}, this scorer computes {FEATURE_SET.version!r}"
        )
    product = obj.get("product_id")
    if not isinstance(product, str) or not product:
        raise BadFeatureRow("missing_field", "product_id")
    if not valid_product_id(product):  # it becomes a Parquet partition directory
        raise BadFeatureRow("bad_product_id", repr(product)[:80])
    event_time = obj.get("event_time_ns")
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        raise BadFeatureRow("missing_field", "event_time_ns (integer UTC ns)")
    try:
        check_event_time(event_time, time.time_ns() if now_ns is None else now_ns,
                         max_ahead_s=max_ahead_s, max_behind_s=None)
    except TickError as exc:
        raise BadFeatureRow(exc.reason, exc.detail) from exc
    sequence = obj.get("sequence", -1)
    if isinstance(sequence, int) and not _int64(sequence):
        raise BadFeatureRow("bad_value", "sequence outside int64")
    source = obj.get("features") if isinstance(obj.get("features"), dict) else obj
    values: list[float] = []
    for name in FEATURE_NAMES:
        if name not in source:
            raise BadFeatureRow("missing_feature", name)
        raw = source[name]
        if raw is None:
            values.append(math.nan)
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise BadFeatureRow("non_numeric_feature", f"{name}={raw!r}"[:200])
        try:
            number = float(raw)
        except OverflowError as exc:  # a JSON integer beyond float range
            raise BadFeatureRow("non_finite_feature", f"{name} is out of range") from exc
        if math.isinf(number):
            raise BadFeatureRow("non_finite_feature", f"{name}={raw!r}"[:200])
        values.append(number)
    keys = {"product_id": product, "event_time_ns": event_time,
            "sequence": int(sequence) if isinstance(sequence, int) else -1}
    received = obj.get("receive_time_ns")
    if _int64(received) and received > 0:
        keys["receive_time_ns"] = received  # when the ingestor got the tick: end-to-end latency
    return keys, values


def _json_default(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


@dataclass
class ScorerStats:
    consumed: int = 0
    scored: int = 0
    published: int = 0
    dead_lettered: int = 0
    parquet_rows: int = 0
    parquet_files: int = 0
    commits: int = 0
    dead_letter_reasons: Counter = field(default_factory=Counter)
    model_versions: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not isinstance(v, Counter)}
        out["dead_letter_reasons"] = dict(self.dead_letter_reasons)
        out["model_versions"] = dict(self.model_versions)
        return out


class StreamingScorer:
    """Consume feature rows, score them with the current champion, publish and persist them."""

    def __init__(
        self,
        settings: Settings,
        loader: ChampionLoader,
        *,
        group_id: str = "scorer",
        metrics: ServingMetrics | None = None,
        flush_rows: int = 5000,
        flush_s: float = 2.0,
        max_poll_records: int = 2000,
    ) -> None:
        self.settings = settings
        self.loader = loader
        self.group_id = group_id
        self.metrics = metrics
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.max_poll_records = max_poll_records
        self.stats = ScorerStats()
        self._stop = threading.Event()
        self._closing = False
        self._buffer: list[dict[str, Any]] = []
        self._deadletter_path = settings.deadletter_dir / "scorer.jsonl"
        self._sends: BurstSender | None = None  # every send since the last good flush (ledger)
        self._writer: OrderedWriter[dict] | None = None  # the lake writes of one run()
        self._next_offsets: dict[Any, int] = {}  # TopicPartition -> offset after the last record taken

    def stop(self) -> None:
        self._stop.set()

    # -- the loop ---------------------------------------------------------------------------

    def run(self, duration_s: float | None = None, *, wait_model_s: float = 600.0,
            on_batch: Callable[[ScorerStats], None] | None = None) -> ScorerStats:
        from kafka import ConsumerRebalanceListener

        from cryptovol.kafka_io import ensure_topics, make_consumer, make_producer, wait_for_broker

        deadline = None if duration_s is None else time.monotonic() + duration_s
        self._wait_for_model(wait_model_s, deadline)
        bootstrap = self.settings.bootstrap_servers
        wait_for_broker(bootstrap)
        ensure_topics(bootstrap, partitions=self.settings.topic_partitions)
        # gzip + batching were chosen while kafka-python computed CRC32C in pure Python; with the
        # native `crc32c` the featurizer measured gzip as a net cost and dropped it (see
        # docs/BENCHMARKS.md, stream). Not re-measured here for the scorer's small rows.
        producer = make_producer(bootstrap, **PRODUCER_SETTINGS)
        self._sends = BurstSender(producer)
        self._writer = OrderedWriter("score-lake")
        consumer = make_consumer(bootstrap, group_id=self.group_id,
                                 max_poll_records=self.max_poll_records, **CONSUMER_SETTINGS)
        scorer = self

        class FlushOnRevoke(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                # Commit what we scored before the partitions move (not on close: done already).
                if revoked and not scorer._closing:
                    try:
                        scorer._flush(producer, consumer, commit_sync=False)
                    except Exception:
                        log.exception("flush before rebalance failed; rows will be re-scored")
                scorer._next_offsets = {}

            def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("scorer assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))

        consumer.subscribe([TOPIC_FEATURES], listener=FlushOnRevoke())
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        Runner(_ScorerStep(self, producer, consumer, on_batch), stop=self._stop, duration_s=remaining,
               cadence=Cadence(self.flush_s, self.flush_rows, idle=False)).run()
        return self.stats

    def _wait_for_model(self, wait_s: float, deadline: float | None) -> None:
        until = time.monotonic() + wait_s
        while self.loader.current is None:
            if self._stop.is_set() or time.monotonic() > until or (deadline and time.monotonic() > deadline):
                raise TimeoutError(
                    f"no model at models:/{self.loader.model_name}@{self.loader.alias} after "
                    f"{wait_s:.0f}s; train and promote one first (`cryptovol train`)"
                )
            self._stop.wait(min(self.loader.poll_s, 1.0))
            self.loader.refresh()

    def _score_records(self, records: list[Any], producer: Any) -> None:
        received_ns = time.time_ns()
        started = time.perf_counter()
        self.stats.consumed += len(records)
        keys: list[dict[str, Any]] = []
        values: list[list[float]] = []
        now_ns = time.time_ns()
        for record in records:
            try:
                k, v = parse_feature_message(record.value, now_ns=now_ns,
                                             max_ahead_s=self.settings.tick_max_ahead_s)
            except BadFeatureRow as exc:
                self._dead_letter(producer, record, exc)
                continue
            keys.append(k)
            values.append(v)
        if not keys:
            return
        model: ServedModel = self.loader.require()  # one snapshot for the whole batch
        frame = pd.DataFrame(np.asarray(values, dtype=np.float64), columns=FEATURE_NAMES)
        out = model.predict(frame)
        latency_s = time.perf_counter() - started
        scored_at = received_ns + int(latency_s * 1e9)
        probs = out["spike_probability"].to_numpy(dtype=np.float64)
        flags = out["spike_flag"].to_numpy(dtype=bool)
        by_product: dict[str, list[bytes]] = {}
        for k, p, f in zip(keys, probs.tolist(), flags.tolist(), strict=True):
            row = {
                **k,
                "spike_probability": p,
                "spike_flag": f,
                "model_name": model.name,
                "model_version": model.version,
                "model_alias": model.alias,
                "feature_set_version": FEATURE_SET.version,
                "scored_at_ns": scored_at,
                "scoring_latency_s": latency_s,
            }
            by_product.setdefault(k["product_id"], []).append(json.dumps(row, separators=(",", ":")).encode())
            self._buffer.append(row)
        for product, values in by_product.items():  # per-product order kept: one burst per key
            self._sends.send_many(TOPIC_PREDICTIONS, product.encode(), values)
        self.stats.scored += len(keys)
        self.stats.published += len(keys)
        self.stats.model_versions[model.version] += len(keys)
        if self.metrics is not None:
            self.metrics.observe_predictions(flags, latency_s, "stream")
            self.metrics.observe_end_to_end(
                [scored_at - k["event_time_ns"] for k in keys],
                [scored_at - k["receive_time_ns"] for k in keys if "receive_time_ns" in k],
            )

    def _dead_letter(self, producer: Any, record: Any, exc: BadFeatureRow) -> None:
        raw = record.value
        letter = {
            "source": "scorer",
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "reason": exc.reason,
            "detail": str(exc.detail)[:500],
            **raw_fields(raw if isinstance(raw, bytes | bytearray) or raw is None else str(raw)),
            "at": datetime.now(UTC).isoformat(),
        }
        data = json.dumps(letter, default=_json_default, separators=(",", ":"))
        self._sends.send(TOPIC_DEADLETTER, record.key, data.encode())
        self._deadletter_path.parent.mkdir(parents=True, exist_ok=True)
        with self._deadletter_path.open("a", encoding="utf-8") as fh:
            fh.write(data + "\n")
        self.stats.dead_lettered += 1
        self.stats.dead_letter_reasons[exc.reason] += 1
        if self.metrics is not None:
            self.metrics.observe_rejection(exc.reason)

    def _flush(self, producer: Any, consumer: Any, *, commit_sync: bool = True) -> None:
        """Producer flushed and every delivery checked, then the Delta write (waited for), then the
        commit: nothing committed is lost, and the table holds no row whose prediction was not
        delivered.

        Inside a rebalance listener kafka-python 3 refuses blocking calls, so that caller commits
        asynchronously (`commit_sync=False`), as the featurizer does.
        """
        self._make_durable(producer, final=True)
        self._commit(consumer, commit_sync=commit_sync)

    def _make_durable(self, producer: Any, *, final: bool = False) -> None:
        """Flush + check, then hand the rows to the background writer with the offsets they cover
        (`final`: wait for it); polling goes on while the lake write runs."""
        from kafka import OffsetAndMetadata

        producer.flush(timeout=30)
        self._sends.check()
        rows, self._buffer = self._buffer, []
        offsets = {tp: OffsetAndMetadata(nxt, "", -1) for tp, nxt in self._next_offsets.items()}
        self._writer.submit(lambda: self._write(rows), offsets)
        if final:
            self._writer.wait()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """On the writer thread: one Delta transaction for a flush's predictions."""
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
        files = write_prediction_parts(frame, self.settings.predictions_dir)
        self.stats.parquet_rows += len(frame)
        self.stats.parquet_files += len(files)

    def _commit(self, consumer: Any, *, commit_sync: bool = True) -> None:
        """Commit the offsets whose predictions are written, nothing further."""
        assigned = consumer.assignment()
        offsets = {tp: om for tp, om in self._writer.written().items() if tp in assigned}
        if offsets:
            if commit_sync:
                consumer.commit(offsets)
            else:
                consumer.commit_async(offsets)
            self.stats.commits += 1


class _ScorerStep:
    """The scorer as a `cryptovol.runtime.Step`: poll and score, durable (producer + Parquet), commit."""

    def __init__(self, scorer: StreamingScorer, producer: Any, consumer: Any,
                 on_batch: Callable[[ScorerStats], None] | None) -> None:
        self.scorer, self.producer, self.consumer, self.on_batch = scorer, producer, consumer, on_batch

    def work(self) -> None:
        batch = self.consumer.poll(timeout_ms=200)
        records = [r for recs in batch.values() for r in recs]
        for tp, recs in batch.items():
            if recs:
                self.scorer._next_offsets[tp] = recs[-1].offset + 1
        if records:
            self.scorer._score_records(records, self.producer)
            if self.on_batch is not None:
                self.on_batch(self.scorer.stats)
        if self.scorer._writer.ready():  # a flush's rows are written: commit them now, even when idle
            self.scorer._commit(self.consumer)

    def pending(self) -> int:
        return len(self.scorer._buffer)

    def make_durable(self, final: bool = False) -> None:
        self.scorer._make_durable(self.producer, final=final)

    def commit(self) -> None:
        self.scorer._commit(self.consumer)

    def report(self, final: bool) -> None:
        return None  # the command prints the final stats

    def close(self) -> None:
        self.scorer._closing = True
        try:
            self.consumer.close(autocommit=False)
        finally:
            try:
                self.producer.close(timeout=10)
            finally:
                self.scorer._writer.close()  # a queued write finishes whole; its offsets stay uncommitted


def predictions_glob(settings: Settings) -> Path:
    return settings.predictions_dir / "**" / "*.parquet"
