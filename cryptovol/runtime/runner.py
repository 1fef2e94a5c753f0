"""One lifecycle for the long-running processes (ingest, featurize, score, drift monitor, simulator).

Each process used to hand-write the same three things; they live here once:

- `StopSignal`: SIGINT/SIGTERM ask for a graceful stop (an event is set, an optional callback
  runs: the asyncio processes, ingest and simulator, wake their loop from it); the previous
  handlers come back on exit. A block marked `interruptible()` (a long report whose output is
  written atomically, a start-up with nothing to undo) is left at once instead.
- `serve_metrics`: a Prometheus `/metrics` endpoint bound to CRYPTOVOL_METRICS_BIND_ADDRESS.
- `Runner`: the poll -> work -> durable -> commit loop of a consumer process and its cadence.
  A `Step` supplies the work; the runner decides *when* to make it durable and guarantees the
  order: `make_durable()` (producer flushed, every delivery checked, files written or handed to
  a `background.OrderedWriter`) and only if it returned, `commit()` of what is written; the last
  flush before a clean stop (`final=True`) waits for every write. A step that raises is never
  committed: the exception leaves the loop and the step is closed, so a restart redoes the
  uncommitted work (at-least-once topics, exactly-once files by key, as each step documents).
- `every`: a fixed-cadence periodic job (the drift monitor), stoppable between rounds.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

log = logging.getLogger(__name__)

#: The server `serve_metrics` returns: `server_address`, `shutdown()`, `server_close()`.
MetricsServer = WSGIServer

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """SIGINT/SIGTERM -> `event.set()` (+ `on_stop()`), installed as a context manager.

    Installing from a thread other than the main one is a no-op (Python allows signal handlers
    only there): an embedded run (tests, benchmarks) is stopped through the event instead.
    """

    def __init__(
        self,
        event: threading.Event | None = None,
        *,
        on_stop: Callable[[], None] | None = None,
        name: str = "",
    ) -> None:
        self.event = event or threading.Event()
        self.on_stop = on_stop
        self.name = name
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._interruptible = 0

    def install(self) -> StopSignal:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> StopSignal:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self.event.wait(timeout)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A signal inside this block exits at once (`SystemExit(0)`) instead of waiting for it:
        for work that takes long and leaves nothing half-done (files renamed into place)."""
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        log.info("%ssignal %s: finishing and stopping", f"{self.name}: " if self.name else "",
                 signal.Signals(signum).name)
        self.event.set()
        if self.on_stop is not None:
            self.on_stop()
        if self._interruptible:
            raise SystemExit(0)


def serve_metrics(port: int, registry: Any, host: str | None = None) -> MetricsServer:
    """Serve `registry` on `http://host:port/metrics` in a daemon thread (host default:
    CRYPTOVOL_METRICS_BIND_ADDRESS, loopback unless configured). A busy port raises `OSError`
    here, before the process starts any work. Stop with `shutdown()` + `server_close()`."""
    from prometheus_client import start_http_server

    from cryptovol.config import metrics_bind_address

    host = host or metrics_bind_address()
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server


def close_metrics(server: MetricsServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


class Step(Protocol):
    """What one consumer process supplies to `Runner`."""

    def work(self) -> None:
        """Poll once (bounded wait) and process what came: produce, buffer, dead-letter."""

    def pending(self) -> int:
        """Rows processed but not yet durable (the row trigger of the cadence)."""

    def make_durable(self, final: bool = False) -> None:
        """Flush the producer, check every delivery, write the files (or queue their write on a
        background writer; `final`: the last flush before a clean stop, wait for every write).
        Raise if any of it failed."""

    def commit(self) -> None:
        """Commit the consumer offsets of the rows `make_durable` wrote (only of written ones)."""

    def report(self, final: bool) -> None:
        """A progress line (`final`: the summary after close)."""

    def close(self) -> None:
        """Close the clients (called once, whatever happened)."""


@dataclass(frozen=True)
class Cadence:
    """When the runner makes the work durable and commits."""

    every_s: float = 1.0
    #: ... or as soon as this many rows are pending
    rows: int | None = None
    #: True: the time trigger counts from the last flush and fires even with nothing pending (the
    #: offsets of dead-lettered records get committed too). False: it counts from the first row
    #: pending and fires only when there is one (no idle commits).
    idle: bool = True

    def due(self, since_flush_s: float, pending: int, since_pending_s: float) -> bool:
        if self.rows is not None and pending >= self.rows:
            return True
        if self.idle:
            return since_flush_s >= self.every_s
        return pending > 0 and since_pending_s >= self.every_s


class Runner:
    """poll -> work -> (on cadence) durable -> commit, until stopped, then a last durable + commit.

    The last flush runs only after a clean stop (signal, `stop` event, `duration_s`): after an
    exception nothing more is made durable or committed, the step is closed and the exception
    propagates (the command turns it into its exit code).
    """

    def __init__(
        self,
        step: Step,
        *,
        cadence: Cadence = Cadence(),
        stop: threading.Event | None = None,
        duration_s: float | None = None,
        report_every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.step = step
        self.cadence = cadence
        self.stop = stop or threading.Event()
        self.duration_s = duration_s
        self.report_every_s = report_every_s
        self.clock = clock
        self.flushes = 0

    def flush(self, final: bool = False) -> None:
        """Durable first; commit only if that returned."""
        self.step.make_durable(final)
        self.step.commit()
        self.flushes += 1

    def run(self) -> None:
        step, cadence, clock = self.step, self.cadence, self.clock
        started = last_flush = last_report = clock()
        pending_since: float | None = None
        try:
            while not self.stop.is_set():
                if self.duration_s is not None and clock() - started >= self.duration_s:
                    break
                step.work()
                now = clock()
                pending = step.pending()
                if pending and pending_since is None:
                    pending_since = now
                since_pending = 0.0 if pending_since is None else now - pending_since
                if cadence.due(now - last_flush, pending, since_pending):
                    self.flush()
                    last_flush, pending_since = now, None
                if self.report_every_s is not None and clock() - last_report >= self.report_every_s:
                    step.report(False)
                    last_report = clock()
            self.flush(final=True)
        finally:
            try:
                step.close()
            finally:
                step.report(True)


def every(
    job: Callable[[], object],
    *,
    every_s: float,
    stop: threading.Event,
    duration_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run `job` every `every_s` seconds (the time a round takes counts towards the interval)
    until `stop` is set or `duration_s` has passed (checked between rounds). Returns the rounds."""
    started = clock()
    rounds = 0
    while not stop.is_set():
        round_started = clock()
        job()
        rounds += 1
        remaining = None if duration_s is None else duration_s - (clock() - started)
        if stop.is_set() or (remaining is not None and remaining <= 0):
            break
        pause = max(0.0, every_s - (clock() - round_started))
        stop.wait(pause if remaining is None else min(pause, remaining))
    return rounds
