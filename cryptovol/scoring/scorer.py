"""The streaming scorer: `ticks.features` -> champion -> `predictions` (+ prediction Parquet).

A consumer group on the feature topic. Each poll is scored as one batch by the model
`ChampionLoader.current` holds at that moment (the same loader and hot swap as the BentoML
service), published to `predictions` keyed by product, and buffered for Parquet. Offsets are
committed only after the Parquet part is on disk and the producer has flushed: at-least-once, so a
crash can re-score (never lose) the rows of the last unflushed batch.

Feature rows with missing keys, an unknown feature-set version or non-numeric features go to the
dead-letter topic and a JSON-lines file with a reason (counted); NaN features (warm-up rows) are
scored, as the serving contract allows.
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

from cryptovol.config import TOPIC_DEADLETTER, TOPIC_FEATURES, TOPIC_PREDICTIONS, Settings
from cryptovol.featureset import FEATURE_NAMES, FEATURE_SET
from cryptovol.scoring.sink import PREDICTION_COLUMNS, write_prediction_parts
from cryptovol.serving.champion import ChampionLoader, ServedModel
from cryptovol.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)


PRODUCER_SETTINGS: dict[str, Any] = {"compression_type": "gzip", "linger_ms": 20, "batch_size": 65536}


class BadFeatureRow(ValueError):
    """A feature message that cannot be scored; `reason` is a short code for the dead letter."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_feature_message(value: bytes | str | dict) -> tuple[dict[str, Any], list[float]]:
    """One `ticks.features` message -> (keys, feature values in FEATURE_NAMES order).

    Accepts features at the top level or under `"features"`; null/NaN means "not warm yet" (NaN).
    """
    try:
        obj = json.loads(value) if isinstance(value, bytes | str) else value
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFeatureRow("bad_json", str(exc)[:200]) from exc
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
    event_time = obj.get("event_time_ns")
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        raise BadFeatureRow("missing_field", "event_time_ns (integer UTC ns)")
    sequence = obj.get("sequence", -1)
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
            raise BadFeatureRow("non_numeric_feature", f"{name}={raw!r}")
        if math.isinf(raw):
            raise BadFeatureRow("non_finite_feature", f"{name}={raw!r}")
        values.append(float(raw))
    keys = {"product_id": product, "event_time_ns": event_time,
            "sequence": int(sequence) if isinstance(sequence, int) else -1}
    received = obj.get("receive_time_ns")
    if isinstance(received, int) and not isinstance(received, bool) and received > 0:
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
        self._buffer_since = time.monotonic()
        self._deadletter_path = settings.deadletter_dir / "scorer.jsonl"

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
        consumer = make_consumer(bootstrap, group_id=self.group_id,
                                 max_poll_records=self.max_poll_records)
        scorer = self

        class FlushOnRevoke(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                # Commit what we scored before the partitions move (not on close: done already).
                if revoked and not scorer._closing:
                    try:
                        scorer._flush(producer, consumer, commit_sync=False)
                    except Exception:
                        log.exception("flush before rebalance failed; rows will be re-scored")

            def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("scorer assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))

        consumer.subscribe([TOPIC_FEATURES], listener=FlushOnRevoke())
        try:
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                batch = consumer.poll(timeout_ms=200)
                records = [r for recs in batch.values() for r in recs]
                if records:
                    self._score_records(records, producer)
                    if on_batch is not None:
                        on_batch(self.stats)
                if self._buffer and (len(self._buffer) >= self.flush_rows
                                     or time.monotonic() - self._buffer_since >= self.flush_s):
                    self._flush(producer, consumer)
            self._flush(producer, consumer)
        finally:
            self._closing = True
            try:
                consumer.close(autocommit=False)
            finally:
                producer.close(timeout=10)
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
        for record in records:
            try:
                k, v = parse_feature_message(record.value)
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
            producer.send(TOPIC_PREDICTIONS, key=k["product_id"].encode(),
                          value=json.dumps(row, separators=(",", ":")).encode())
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.append(row)
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
        payload = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        letter = {
            "source": "scorer",
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "reason": exc.reason,
            "detail": exc.detail,
            "payload": payload,
            "at": datetime.now(UTC).isoformat(),
        }
        data = json.dumps(letter, default=_json_default, separators=(",", ":"))
        producer.send(TOPIC_DEADLETTER, key=record.key, value=data.encode())
        self._deadletter_path.parent.mkdir(parents=True, exist_ok=True)
        with self._deadletter_path.open("a", encoding="utf-8") as fh:
            fh.write(data + "\n")
        self.stats.dead_lettered += 1
        self.stats.dead_letter_reasons[exc.reason] += 1
        if self.metrics is not None:
            self.metrics.observe_rejection(exc.reason)

    def _flush(self, producer: Any, consumer: Any, *, commit_sync: bool = True) -> None:
        """Parquet part on disk + producer flushed, then commit: nothing committed is lost.

        Inside a rebalance listener kafka-python 3 refuses blocking calls, so that caller commits
        asynchronously (`commit_sync=False`), as the featurizer does.
        """
        if self._buffer:
            frame = pd.DataFrame(self._buffer, columns=list(PREDICTION_COLUMNS))
            files = write_prediction_parts(frame, self.settings.predictions_dir)
            self.stats.parquet_rows += len(frame)
            self.stats.parquet_files += len(files)
            self._buffer = []
        producer.flush(timeout=30)
        if consumer.assignment():
            if commit_sync:
                consumer.commit()
            else:
                consumer.commit_async()
            self.stats.commits += 1


def predictions_glob(settings: Settings) -> Path:
    return settings.predictions_dir / "**" / "*.parquet"
