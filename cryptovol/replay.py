"""Replay recorded ticks (landing files or third-party recordings) into Kafka or into landing files.

Records are ordered by event time (stable, so equal times keep file order), which preserves the
event-time order of every product. The Kafka value is `Tick.to_json()` keyed by product, exactly
what the live ingestor publishes, so replaying our own landing files reproduces `ticks.raw`
record for record. `speed` paces by event time (1 = real time, 10 = ten times faster, None = as
fast as the broker takes them). A lake of landing files is read one UTC day at a time (all products
of the day, merged), so replaying months does not need months in memory.

`replay_to_landing` writes landing lines from any supported recording, so the batch pipeline can
run on real data; it skips ticks already present in the target day file (by content), so running
it twice, or over a day the ingestor already landed, adds nothing twice.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptovol.config import TOPIC_RAW
from cryptovol.recorded import ReadReport, RecordedTick, expand_paths, read_recorded_records
from cryptovol.ticks import landing_record, valid_product_id

log = logging.getLogger(__name__)

#: Replay sends in bulk: bigger batches than the live ingestor (same acks=all, same ordering).
REPLAY_PRODUCER_SETTINGS = {"linger_ms": 20, "batch_size": 256 * 1024}


@dataclass
class ReplayStats:
    files: int = 0
    read: int = 0  # ticks read from the inputs (after the product filter)
    bad_lines: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    published: int = 0
    publish_failures: int = 0
    landed: int = 0
    already_landed: int = 0  # skipped by replay_to_landing: the target file already had them
    first_event_ns: int | None = None
    last_event_ns: int | None = None
    elapsed_s: float = 0.0

    @property
    def rate_per_s(self) -> float:
        done = self.published or self.landed
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate_per_s"] = round(self.rate_per_s, 1)
        data["elapsed_s"] = round(self.elapsed_s, 3)
        return data


def parse_speed(text: str | float | None) -> float | None:
    """`"max"`/None/0 -> None (no pacing); `"10"`, `"10x"` -> 10.0."""
    if text is None:
        return None
    if isinstance(text, int | float):
        value = float(text)
    else:
        cleaned = text.strip().lower()
        if cleaned in ("max", "inf", ""):
            return None
        cleaned = cleaned.removesuffix("x")
        try:
            value = float(cleaned)
        except ValueError as exc:
            raise ValueError(f"speed must be a positive number or 'max', got {text!r}") from exc
    if value < 0:
        raise ValueError(f"speed must be positive, got {text!r}")
    return value or None


class Pacer:
    """Sleeps so that records go out at event-time spacing divided by `speed` (None: never sleeps)."""

    def __init__(self, speed: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.speed = speed
        self.clock = clock
        self._origin: tuple[int, float] | None = None

    def wait(self, event_time_ns: int) -> None:
        if self.speed is None:
            return
        if self._origin is None:
            self._origin = (event_time_ns, self.clock())
            return
        first_ns, start = self._origin
        due = start + (event_time_ns - first_ns) / 1e9 / self.speed
        delay = due - self.clock()
        if delay > 0.001:
            time.sleep(delay)


_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.ndjson(\.gz)?$")


def plan_batches(paths: Sequence[Path]) -> list[list[Path]]:
    """Groups of files that can be ordered one group after another.

    Landing files hold one UTC day of event time each (`<product>/<YYYY-MM-DD>.ndjson`), so a lake
    is ordered day by day, holding one day in memory at a time. Any other file may span any time,
    so as soon as one is present everything forms a single group.
    """
    days: dict[str, list[Path]] = {}
    for path in paths:
        match = _DAY_FILE.match(path.name)
        if match is None:
            return [list(paths)] if paths else []
        days.setdefault(match.group(1), []).append(path)
    return [days[day] for day in sorted(days)]


def iter_records(
    paths: Iterable[str | Path],
    *,
    products: Iterable[str] | None = None,
    fmt: str | None = None,
    assume_tz: str | None = None,
    on_error: Literal["raise", "skip"] = "skip",
    stats: ReplayStats | None = None,
) -> Iterator[RecordedTick]:
    """The records of `paths` (files or directories) in event-time order (stable: ties keep file
    order), reading one batch of files at a time (see `plan_batches`). Updates `stats` as it goes."""
    stats = stats if stats is not None else ReplayStats()
    wanted = {p.upper() for p in products} if products else None
    report = ReadReport()
    invalid = 0
    for batch in plan_batches(expand_paths(paths)):
        records: list[RecordedTick] = []
        for path in batch:
            reader = read_recorded_records(
                path, fmt=fmt, assume_tz=assume_tz, on_error=on_error, report=report
            )
            for r in reader:
                if not valid_product_id(r.tick.product_id):  # it would become a landing path
                    invalid += 1
                elif wanted is None or r.tick.product_id in wanted:
                    records.append(r)
        records.sort(key=lambda r: r.tick.event_time_ns)
        stats.files = report.files
        stats.bad_lines = report.bad_lines + invalid
        stats.errors = dict(report.errors)
        if invalid:
            stats.errors["bad_product_id"] = invalid
        if records:
            if stats.first_event_ns is None:
                stats.first_event_ns = records[0].tick.event_time_ns
            stats.last_event_ns = records[-1].tick.event_time_ns
        stats.read += len(records)
        yield from records
    if report.bad_lines:
        log.warning("skipped %d bad lines: %s", report.bad_lines, report.errors)


def load_records(
    paths: Iterable[str | Path],
    *,
    products: Iterable[str] | None = None,
    fmt: str | None = None,
    assume_tz: str | None = None,
    on_error: Literal["raise", "skip"] = "skip",
    stats: ReplayStats | None = None,
) -> list[RecordedTick]:
    """All records of `paths` in one list, sorted by event time (stable)."""
    records = list(
        iter_records(paths, products=products, fmt=fmt, assume_tz=assume_tz, on_error=on_error, stats=stats)
    )
    records.sort(key=lambda r: r.tick.event_time_ns)  # already ordered by batch: linear, a safety net
    return records


def _progress(total: int | None, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="tick", desc=desc, disable=not enabled, file=sys.stderr, mininterval=0.5)


def replay_to_kafka(
    records: Iterable[RecordedTick],
    bootstrap_servers: str,
    *,
    topic: str = TOPIC_RAW,
    speed: float | None = None,
    progress: bool = False,
    partitions: int = 3,
    stats: ReplayStats | None = None,
    flush_timeout_s: float = 60.0,
) -> ReplayStats:
    """Publish `records` (in the order given) to `topic` (created if missing), keyed by product,
    values `Tick.to_json()`. `records` may be a lazy iterator (`iter_records`)."""
    from kafka.errors import KafkaError

    from cryptovol.kafka_io import ensure_topics, make_producer

    stats = stats if stats is not None else ReplayStats()
    ensure_topics(bootstrap_servers, [topic], partitions=partitions)
    producer = make_producer(bootstrap_servers, **REPLAY_PRODUCER_SETTINGS)
    failures: list[BaseException] = []
    pacer = Pacer(speed)
    started = time.monotonic()
    sent = 0
    total = len(records) if isinstance(records, Sized) else None
    try:
        with _progress(total, progress, f"replay -> {topic}") as bar:
            for record in records:
                tick = record.tick
                pacer.wait(tick.event_time_ns)
                future = producer.send(topic, key=tick.product_id, value=tick.to_json())
                future.add_errback(failures.append)
                sent += 1
                if speed is not None:
                    bar.update(1)  # paced: show every tick
                elif sent % 1000 == 0:
                    bar.update(1000)
            if speed is None:
                bar.update(sent % 1000)
            producer.flush(timeout=flush_timeout_s)
    except KafkaError as exc:
        failures.append(exc)
        log.error("replay to %s failed: %s", topic, exc)
    finally:
        stats.elapsed_s += time.monotonic() - started  # reading (if lazy) + sending + delivery
        producer.close(timeout=5)
    stats.publish_failures += len(failures)
    stats.published += max(0, sent - len(failures))
    return stats


def replay_to_landing(
    records: Sequence[RecordedTick],
    raw_dir: Path,
    *,
    progress: bool = False,
    stats: ReplayStats | None = None,
) -> ReplayStats:
    """Write landing lines for `records` under `raw_dir/<product>/<day>.ndjson`, skipping known ticks."""
    from cryptovol.ingest.writers import LandingWriter, landing_path, utc_day
    from cryptovol.recorded import read_recorded

    stats = stats if stats is not None else ReplayStats()
    known: dict[Path, set[tuple]] = {}
    started = time.monotonic()
    with LandingWriter(raw_dir) as writer, _progress(len(records), progress, "replay -> landing") as bar:
        for index, record in enumerate(records):
            tick = record.tick
            if not valid_product_id(tick.product_id):  # never a path outside raw_dir
                stats.errors["bad_product_id"] = stats.errors.get("bad_product_id", 0) + 1
                continue
            path = landing_path(raw_dir, tick.product_id, utc_day(tick.event_time_ns))
            keys = known.get(path)
            if keys is None:
                keys = set()
                if path.exists():
                    writer.flush()
                    keys = {t.content_key for t in read_recorded(path, fmt="landing", on_error="skip")}
                known[path] = keys
            if tick.content_key in keys:
                stats.already_landed += 1
            else:
                keys.add(tick.content_key)
                line = landing_record(
                    record.ticker,
                    envelope_timestamp=record.envelope_timestamp,
                    sequence_num=tick.sequence,
                    event_type=record.event_type,
                    receive_time_ns=tick.receive_time_ns,
                )
                writer.write(tick.product_id, tick.event_time_ns, line)
                stats.landed += 1
            if index % 1000 == 999:
                writer.flush()
                bar.update(1000)
        bar.update(len(records) % 1000)
    stats.elapsed_s += time.monotonic() - started
    return stats
