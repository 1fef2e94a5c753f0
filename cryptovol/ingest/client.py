"""The ingestor: WebSocket session loop + frame processor + Kafka publisher thread + counters.

One asyncio task reads the socket and hands every frame to `FrameProcessor` (landing file first,
then a non-blocking queue put to the `Publisher` thread). The session loop reconnects with
exponential backoff and jitter and resubscribes; a connection that goes quiet for `idle_timeout_s`
(no ticker and no heartbeat) is treated as dead. Stopping (SIGINT/SIGTERM through
`cryptovol.runtime.StopSignal`, `--duration`, or `Ingestor.stop()`) closes the socket, flushes the
files, lets the publisher deliver or spool what is queued, and returns the final `IngestStats`.
The ingestor has no poll/commit loop (its durability is the landing file's fsync cadence and the
spool), so of the shared lifecycle it takes the signals and the metrics server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import websockets
from websockets.asyncio.client import connect

from cryptovol.config import COINBASE_WS_URL, DEFAULT_PRODUCTS, TOPIC_DEADLETTER, TOPIC_RAW, Settings
from cryptovol.ingest.dedup import RecentKeys, seed_from_landing
from cryptovol.ingest.processor import FrameProcessor
from cryptovol.ingest.publisher import Backoff, Publisher
from cryptovol.ingest.spool import Spool
from cryptovol.ingest.stats import IngestStats
from cryptovol.ingest.writers import DeadLetterWriter, LandingWriter
from cryptovol.protocol import HEARTBEATS, TICKER, subscribe_message
from cryptovol.runtime import StopSignal, close_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    ws_url: str = COINBASE_WS_URL
    products: tuple[str, ...] = DEFAULT_PRODUCTS
    duration_s: float | None = None  # stop by itself after this long
    log_interval_s: float = 10.0
    idle_timeout_s: float = 15.0  # heartbeats arrive every second; silence this long = dead link
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 10.0
    dedup_capacity: int = 4096  # recent content keys kept per product
    # Landing lines are flushed (then published) per small batch: at most `batch_size` ticks or
    # `flush_interval_s` after the first one, whichever comes first. At the real feed's rate that
    # is every frame; under a burst it saves a write syscall + queue hand-off per tick.
    batch_size: int = 64
    flush_interval_s: float = 0.005
    drain_timeout_s: float = 10.0  # on stop: time allowed to deliver queued records
    metrics_port: int | None = None
    metrics_host: str | None = None  # None: CRYPTOVOL_METRICS_BIND_ADDRESS (default 127.0.0.1)


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


class Ingestor:
    """Owns the files, the publisher thread and the session loop for one ingest run."""

    def __init__(self, config: IngestConfig, settings: Settings, stats: IngestStats | None = None) -> None:
        self.config = config
        self.settings = settings
        self.stats = stats or IngestStats()
        self._stop = asyncio.Event()
        self._metrics_server = None
        self._publisher: Publisher | None = None
        self._processor: FrameProcessor | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._landing: LandingWriter | None = None
        self._deadletter: DeadLetterWriter | None = None
        #: why the run stopped by itself (None after a normal stop)
        self.failure: str | None = None

    def stop(self) -> None:
        """Ask the run to finish (safe from signal handlers on the loop)."""
        self._stop.set()

    async def run(self) -> IngestStats:
        settings, config = self.settings, self.config
        spool = Spool(settings.spool_dir)
        publisher = Publisher(
            settings.bootstrap_servers,
            spool,
            self.stats,
            topics=[TOPIC_RAW, TOPIC_DEADLETTER],
            partitions=settings.topic_partitions,
        )
        landing = LandingWriter(settings.raw_dir, fsync_interval_s=settings.fsync_interval_s)
        self._landing = landing
        deadletter = DeadLetterWriter(settings.deadletter_dir)
        self._deadletter = deadletter
        recent = RecentKeys(config.dedup_capacity)
        seeded = seed_from_landing(recent, settings.raw_dir, config.products)
        if seeded:
            log.info("de-dup memory seeded with the last %d landed ticks", seeded)
        processor = FrameProcessor(
            landing=landing,
            deadletter=deadletter,
            publish=publisher.publish,
            stats=self.stats,
            source=config.ws_url,
            dedup=recent,
            batch_size=config.batch_size,
            publish_many=publisher.publish_many,
            products=config.products,
            max_ahead_s=settings.tick_max_ahead_s,
            max_behind_s=settings.tick_max_behind_s,
        )
        self._processor = processor
        try:
            self._start_metrics()  # before any thread runs: a busy port fails here, cleanly
        except OSError:
            spool.close()
            landing.close()
            deadletter.close()
            raise
        publisher.start()
        self._publisher = publisher
        loop = asyncio.get_running_loop()
        # The handler runs on this (main) thread between bytecodes; the thread-safe call wakes
        # the loop out of its select().
        signals = StopSignal(on_stop=lambda: loop.call_soon_threadsafe(self.stop), name="ingest").install()
        if config.duration_s is not None:
            loop.call_later(config.duration_s, self.stop)
        log.info(
            "ingesting %s from %s -> %s (landing %s)",
            ",".join(config.products), config.ws_url, settings.bootstrap_servers, settings.raw_dir,
        )
        session = asyncio.create_task(self._sessions(processor), name="ws-sessions")
        progress = asyncio.create_task(self._progress(), name="progress")
        try:
            await self._stop.wait()
        finally:
            for task in (session, progress):
                task.cancel()
            _, stuck = await asyncio.wait({session, progress}, timeout=15)
            if stuck:  # never hang the shutdown: files and the spool still get closed below
                log.warning("tasks did not stop in time: %s", [t.get_name() for t in stuck])
            self._flush_pending()
            landing.close()
            deadletter.close()
            await asyncio.to_thread(publisher.stop, config.drain_timeout_s)
            self._stop_metrics()
            signals.restore()
        if self.stats.spool_pending:
            log.warning(
                "%d records remain in the spool %s; they are delivered on the next start",
                self.stats.spool_pending, spool.path,
            )
        return self.stats

    async def _sessions(self, processor: FrameProcessor) -> None:
        backoff = Backoff(self.config.backoff_base_s, self.config.backoff_cap_s)
        proxy = None if _is_loopback(self.config.ws_url) else True
        opened = 0
        while not self._stop.is_set():
            received_any = connected = False
            try:
                async with connect(
                    self.config.ws_url,
                    open_timeout=10,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=2,
                    max_size=2**24,
                    proxy=proxy,
                ) as ws:
                    connected = True
                    if opened:
                        self.stats.reconnects += 1
                    opened += 1
                    processor.new_connection()
                    for channel in (TICKER, HEARTBEATS):
                        await ws.send(json.dumps(subscribe_message(self.config.products, channel)))
                    log.info("connected to %s (session %d)", self.config.ws_url, opened)
                    while not self._stop.is_set():
                        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                        # that races with a completed recv(), and the loop would never stop.
                        async with asyncio.timeout(self.config.idle_timeout_s):
                            text = await ws.recv()
                        try:
                            processor.process(text, time.time_ns())
                        except Exception as exc:  # noqa: BLE001 (bad input never gets here: only I/O)
                            # Cannot land (disk full, permissions...): stop rather than drop data.
                            self._fail(f"cannot process frames: {exc!r}")
                            return
                        if processor.pending and self._flush_timer is None:
                            self._flush_timer = asyncio.get_running_loop().call_later(
                                self.config.flush_interval_s, self._flush_pending
                            )
                        if not received_any:
                            received_any = True
                            backoff.reset()
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                if connected:
                    log.warning("no message for %.0fs; reconnecting", self.config.idle_timeout_s)
                else:
                    self.stats.connect_failures += 1
                    log.warning("connecting to %s timed out", self.config.ws_url)
            except websockets.exceptions.InvalidURI as exc:
                self._fail(f"invalid WebSocket URL: {exc}")
                return
            except (OSError, websockets.exceptions.WebSocketException) as exc:
                if not connected:
                    self.stats.connect_failures += 1
                log.warning("websocket session ended: %s", exc or type(exc).__name__)
            if self._stop.is_set():
                return
            delay = backoff.next_delay()
            log.info("reconnecting in %.2fs", delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    async def _progress(self) -> None:
        """Progress line every `log_interval_s`; and a watchdog on the publisher thread."""
        last = time.monotonic()
        tick_s = min(1.0, self.config.log_interval_s, max(0.05, self.settings.fsync_interval_s))
        while True:
            await asyncio.sleep(tick_s)
            if self._publisher is not None and not self._publisher.is_alive():
                self._fail(f"kafka publisher stopped: {self._publisher.error!r}")
                return
            if self._landing is not None:
                try:  # the fsync cadence also holds when no new frame arrives to trigger a flush
                    self._landing.sync_if_due()
                    if self._deadletter is not None:
                        self._deadletter.sync()
                except OSError as exc:
                    self._fail(f"cannot sync landing files: {exc!r}")
                    return
            if time.monotonic() - last >= self.config.log_interval_s:
                last = time.monotonic()
                log.info("ingest progress: %s", self.stats.to_json())

    def _flush_pending(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._processor is None:
            return
        try:
            self._processor.flush()
        except Exception as exc:  # noqa: BLE001 (I/O: disk full, permissions...)
            self._fail(f"cannot flush landing files: {exc!r}")

    def _fail(self, reason: str) -> None:
        log.error("ingest stopping: %s", reason)
        self.failure = reason
        self.stop()

    def _start_metrics(self) -> None:
        if self.config.metrics_port is None:
            return
        from cryptovol.config import metrics_bind_address
        from cryptovol.ingest.metrics import start_metrics_server

        host = self.config.metrics_host or metrics_bind_address()
        self._metrics_server = start_metrics_server(self.stats, self.config.metrics_port, host)

    def _stop_metrics(self) -> None:
        close_metrics(self._metrics_server)
        self._metrics_server = None


class IngestFailed(RuntimeError):
    """The ingestor stopped by itself because it could not go on safely (the message says why)."""

    def __init__(self, reason: str, stats: IngestStats) -> None:
        super().__init__(reason)
        self.stats = stats


def run_ingest(config: IngestConfig, settings: Settings | None = None) -> IngestStats:
    """Run until stopped (signal or `config.duration_s`); returns the final counters.

    Raises `IngestFailed` (with the counters) when it had to stop by itself.
    """
    ingestor = Ingestor(config, settings or Settings.from_env())
    stats = asyncio.run(ingestor.run())
    if ingestor.failure:
        raise IngestFailed(ingestor.failure, stats)
    return stats


def landing_files(raw_dir: Path, products: Sequence[str] | None = None) -> list[Path]:
    """Landing files under `raw_dir`, optionally for some products only (sorted)."""
    root = Path(raw_dir)
    if not root.is_dir():
        return []
    dirs = [root / p for p in products] if products else [d for d in root.iterdir() if d.is_dir()]
    return sorted(f for d in dirs if d.is_dir() for f in d.glob("*.ndjson"))
