"""A local WebSocket server speaking the Coinbase Advanced Trade market-data protocol.

It is the offline stand-in for `wss://advanced-trade-ws.coinbase.com` and the test double of the
ingestor. Protocol (as the exchange, see `frames.py`):

- the client sends `{"type": "subscribe", "product_ids": [...], "channel": "ticker"}` (or
  `"heartbeats"`, or `"unsubscribe"`); a `jwt` field is ignored;
- per newly subscribed product a `snapshot` ticker envelope with the current quote, then a
  `subscriptions` envelope listing what the connection is subscribed to (the order of the real
  recording: snapshot at sequence_num 0, subscriptions at 1), then `update` envelopes;
- `heartbeats` once per second when subscribed, in the documented exchange shape
  (`"current_time": "2026-04-05 22:35:14.009945409 +0000 UTC m=+12.5"`, `"heartbeat_counter": "3"`)
  and always on the wall clock; `sequence_num` counts every envelope sent on the connection from 0;
  a bad request gets `{"type": "error", "message": ..., "reason": ...}` (no sequence number).

Ticker and subscriptions timestamps follow the wall clock, or with `start_time_ns` a simulated
clock that starts there when the market starts and advances by the simulated inter-arrival times.

The market is global: one `MarketSimulator` drives all clients, started by the first subscription
(so a seeded run is reproducible regardless of when the client connects), and each update goes to
every connection subscribed to its product. An update counts toward `max_updates` when at least
one connection receives it.

Faults for drills: periodic connection drops, malformed ticker frames (replacing the real tick),
skipped sequence numbers. Every frame sent can be recorded to an NDJSON file, one line per frame:
`{"frame": <exact text>, "kind": "ticker"|"subscriptions"|"heartbeat"|"malformed"|"error",
"connection": <id from 0>}` (snapshots are kind "ticker" with event type "snapshot").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from cryptovol.simulator import frames
from cryptovol.simulator.price_process import MarketSimulator

if TYPE_CHECKING:
    from cryptovol.runtime import StopSignal

log = logging.getLogger("cryptovol.simulator")

#: The simulated message rate when the server runs "as fast as possible" (`rate_hz=None`).
MAX_MODE_SIM_RATE_HZ = 4.0
#: A connection whose outgoing queue grows past this is dropped (the exchange drops slow readers).
MAX_QUEUE = 100_000
#: In max-rate mode the market waits while a receiving connection has this many frames queued.
BACKPRESSURE_QUEUE = 512
CHANNELS = ("ticker", "heartbeats")
DROP_CLOSE_CODE = 1001


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything `cryptovol simulate` can set; see the CLI help for meanings."""

    host: str = "127.0.0.1"
    port: int = 8765
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    rate_hz: float | None = 4.0  # None: as fast as possible
    seed: int = 0
    duration_s: float | None = None
    max_updates: int | None = None
    record_path: Path | None = None
    regime_change_at_s: float | None = None
    regime_vol_mult: float = 4.0
    drop_every_s: float | None = None
    malformed_rate: float = 0.0
    skip_seq_rate: float = 0.0
    start_time_ns: int | None = None
    heartbeat_interval_s: float = 1.0
    #: Resume the market this many simulated seconds in (a history of them was written offline).
    resume_after_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("malformed_rate", "skip_seq_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.rate_hz is not None and self.rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0 (or None for max), got {self.rate_hz}")
        if self.drop_every_s is not None and self.drop_every_s <= 0:
            raise ValueError(f"drop_every_s must be > 0, got {self.drop_every_s}")
        if self.max_updates is not None and self.max_updates < 0:
            raise ValueError(f"max_updates must be >= 0, got {self.max_updates}")
        if not self.products:
            raise ValueError("no products configured")
        if self.resume_after_s < 0:
            raise ValueError(f"resume_after_s must be >= 0, got {self.resume_after_s}")


@dataclass
class _Outgoing:
    kind: str  # ticker | subscriptions | heartbeat | malformed | error
    build: Callable[[int], str]  # sequence_num -> frame text
    uses_seq: bool = True
    skippable: bool = False


@dataclass
class _Client:
    id: int
    ws: ServerConnection
    rng: random.Random
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    seq: int = 0
    tickers: dict[str, None] = field(default_factory=dict)  # ordered set
    closing: bool = False  # being closed by the server: receives no new market updates
    heartbeats: list[str] | None = None
    heartbeat_counter: int = 0
    tasks: list[asyncio.Task] = field(default_factory=list)


class SimulatorServer:
    """The server; `await run()` serves until `stop()`, the given `StopSignal`, or the duration."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        # The regime change counts from the first subscription, also for a resumed market.
        regime_at = config.regime_change_at_s
        self.market = MarketSimulator(
            config.products,
            seed=config.seed,
            rate_hz=config.rate_hz or MAX_MODE_SIM_RATE_HZ,
            regime_change_at_s=None if regime_at is None else config.resume_after_s + regime_at,
            regime_vol_mult=config.regime_vol_mult,
            start_at_s=config.resume_after_s,
        )
        self.clients: dict[int, _Client] = {}
        self.updates_sent = 0
        self.malformed_sent = 0
        self.port: int | None = None
        self._ids = itertools.count()
        self._fault_rng = random.Random(f"faults-{config.seed}")
        self._started = asyncio.Event()
        self._has_subscribers = asyncio.Event()
        self._stop = asyncio.Event()
        self._record: IO[str] | None = None
        self._t0: float | None = None  # loop time of the market start
        self._sim_now_s = 0.0
        self._boot = time.monotonic()
        self._failed = False

    # -- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    async def run(
        self, ready: Callable[[int], None] | None = None, signals: StopSignal | None = None
    ) -> int:
        """Serve until stopped. The process owns the signals (`cryptovol simulate` passes its
        `StopSignal`); without one (embedded in a thread) only `stop()` or the duration end it."""
        if signals is None:
            return await self._serve(ready)
        loop = asyncio.get_running_loop()
        previous = signals.on_stop
        # The handler runs on the main thread between bytecodes; the thread-safe call wakes the
        # loop out of its select(). Restored before the loop closes, so a late signal cannot hit it.
        signals.on_stop = lambda: loop.call_soon_threadsafe(self.stop)
        try:
            if signals.is_set():  # a stop that came between start-up and serving is not lost
                return 0
            return await self._serve(ready)
        finally:
            signals.on_stop = previous

    async def _serve(self, ready: Callable[[int], None] | None) -> int:
        cfg = self.config
        if cfg.record_path is not None:
            Path(cfg.record_path).parent.mkdir(parents=True, exist_ok=True)
            self._record = open(cfg.record_path, "a", encoding="utf-8")  # noqa: SIM115
        market_task = asyncio.create_task(self._guarded_market_loop(), name="market")
        try:
            async with serve(self._handle, cfg.host, cfg.port, max_size=2**20) as server:
                self.port = _bound_port(server, cfg.port)
                if ready is not None:
                    ready(self.port)
                if cfg.duration_s is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=cfg.duration_s)
                else:
                    await self._stop.wait()
                await self._close_all("simulator shutting down")
        finally:
            market_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await market_task
            if self._record is not None:
                self._record.flush()
                self._record.close()
                self._record = None
        return 1 if self._failed else 0

    async def _close_all(self, reason: str) -> None:
        clients = list(self.clients.values())
        await asyncio.gather(*(self._close_client(c, 1001, reason, drain_s=2.0) for c in clients))

    # -- clock ----------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        """Event time: the simulated clock with --start-time, wall-clock UTC otherwise."""
        if self.config.start_time_ns is None:
            return time.time_ns()
        return self.config.start_time_ns + round(self._sim_now_s * 1e9)

    def _advance_clock(self) -> None:
        if self._t0 is not None and self.config.rate_hz is not None:
            loop_now = asyncio.get_running_loop().time()
            self._sim_now_s = max(self._sim_now_s, loop_now - self._t0)

    # -- connections ----------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        conn_id = next(self._ids)
        client = _Client(id=conn_id, ws=ws, rng=random.Random(f"seq-{self.config.seed}-{conn_id}"))
        self.clients[client.id] = client
        log.info("connection %d opened from %s", client.id, ws.remote_address)
        writer = asyncio.create_task(self._writer(client), name=f"writer-{client.id}")
        client.tasks.append(writer)
        if self.config.drop_every_s is not None:
            client.tasks.append(asyncio.create_task(self._dropper(client), name=f"drop-{client.id}"))
        try:
            async for message in ws:
                self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            self.clients.pop(client.id, None)
            self._refresh_subscribers()
            for task in client.tasks:
                task.cancel()
            for task in client.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            log.info("connection %d closed", client.id)

    async def _writer(self, client: _Client) -> None:
        """The only place that sends: assigns sequence numbers in send order and records frames."""
        while True:
            item: _Outgoing = await client.queue.get()
            seq = client.seq
            skip_rate = self.config.skip_seq_rate
            if item.skippable and skip_rate > 0 and client.rng.random() < skip_rate:
                seq += client.rng.randint(1, 3)
            text = item.build(seq)
            if item.uses_seq:
                client.seq = seq + 1
            try:
                await client.ws.send(text)
            except ConnectionClosed:
                return
            finally:
                client.queue.task_done()
            self._write_record(text, item.kind, client.id)

    async def _dropper(self, client: _Client) -> None:
        await asyncio.sleep(self.config.drop_every_s)
        log.info("dropping connection %d (--drop-every %ss)", client.id, self.config.drop_every_s)
        await self._close_client(client, DROP_CLOSE_CODE, "simulated connection drop")

    async def _close_client(self, client: _Client, code: int, reason: str, drain_s: float = 10.0) -> None:
        """Stop feeding the client, let the updates already queued go out, then close.

        Every update counted toward `max_updates` thus reaches a client: a drop loses the updates
        published while the client is away (as on the exchange), never ones already promised.
        """
        client.closing = True
        self._refresh_subscribers()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.queue.join(), timeout=drain_s)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.ws.close(code, reason), timeout=5.0)

    async def _heartbeats(self, client: _Client) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.heartbeat_interval_s
        next_at = loop.time() + interval
        while client.heartbeats is not None:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
            if client.heartbeats is None:
                return
            client.heartbeat_counter += 1
            counter, ts = client.heartbeat_counter, time.time_ns()
            uptime = time.monotonic() - self._boot
            self._enqueue(
                client,
                _Outgoing(
                    "heartbeat",
                    lambda seq, c=counter, t=ts, u=uptime: frames.heartbeat_frame(
                        c, timestamp_ns=t, sequence_num=seq, uptime_s=u
                    ),
                ),
            )

    def _enqueue(self, client: _Client, item: _Outgoing) -> None:
        if client.queue.qsize() >= MAX_QUEUE:
            log.warning("connection %d is not reading (%d frames queued): dropping it", client.id, MAX_QUEUE)
            asyncio.ensure_future(client.ws.close(1008, "slow consumer"))
            return
        client.queue.put_nowait(item)

    def _write_record(self, text: str, kind: str, connection: int) -> None:
        if self._record is None:
            return
        line = json.dumps({"frame": text, "kind": kind, "connection": connection}, separators=(",", ":"))
        self._record.write(line + "\n")
        self._record.flush()

    # -- requests -------------------------------------------------------------------------------
    def _error(self, client: _Client, message: str, reason: str = "") -> None:
        text = frames.error_frame(message, reason)
        self._enqueue(client, _Outgoing("error", lambda _seq, t=text: t, uses_seq=False))

    def _on_message(self, client: _Client, message: str | bytes) -> None:
        try:
            request = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            self._error(client, "Failed to parse message", "request is not valid JSON")
            return
        if not isinstance(request, dict):
            self._error(client, "Failed to parse message", "request must be a JSON object")
            return
        kind = request.get("type")
        if kind not in ("subscribe", "unsubscribe"):
            self._error(client, f"unknown message type {kind!r}", "expected 'subscribe' or 'unsubscribe'")
            return
        channel = request.get("channel")
        if channel not in CHANNELS:
            self._error(
                client, "Failure to subscribe", f"unsupported channel {channel!r}; use one of {CHANNELS}"
            )
            return
        products = request.get("product_ids", [])
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            self._error(client, "Failure to subscribe", "product_ids must be a list of strings")
            return
        if channel == "ticker":
            if not products:
                self._error(client, "Failure to subscribe", "ticker channel requires product_ids")
                return
            unknown = [p for p in products if p not in self.market.products]
            if unknown:
                self._error(
                    client, "Failure to subscribe",
                    f"unknown product_ids {unknown}; this simulator serves {list(self.market.products)}",
                )
                return
        if kind == "subscribe":
            self._subscribe(client, channel, products)
        else:
            self._unsubscribe(client, channel, products)
        self._enqueue_subscriptions(client)

    def _subscribe(self, client: _Client, channel: str, products: list[str]) -> None:
        if channel == "heartbeats":
            starting = client.heartbeats is None
            client.heartbeats = products or ["heartbeats"]
            if starting:
                client.tasks.append(asyncio.create_task(self._heartbeats(client), name=f"hb-{client.id}"))
            return
        if not self._started.is_set():
            self._t0 = asyncio.get_running_loop().time()
            self._started.set()
        self._advance_clock()
        for product in products:
            if product in client.tickers:
                continue
            client.tickers[product] = None
            ticker = frames.ticker_object(product, self.market.state(product))
            ts = self._now_ns()
            self._enqueue(
                client,
                _Outgoing(
                    "ticker",
                    lambda seq, tk=ticker, t=ts: frames.ticker_frame(
                        tk, event_type="snapshot", timestamp_ns=t, sequence_num=seq
                    ),
                ),
            )
        self._refresh_subscribers()

    def _unsubscribe(self, client: _Client, channel: str, products: list[str]) -> None:
        if channel == "heartbeats":
            client.heartbeats = None
            return
        for product in products:
            client.tickers.pop(product, None)
        self._refresh_subscribers()

    def _enqueue_subscriptions(self, client: _Client) -> None:
        subs: dict[str, list[str]] = {}
        if client.tickers:
            subs["ticker"] = list(client.tickers)
        if client.heartbeats is not None:
            subs["heartbeats"] = list(client.heartbeats)
        ts = self._now_ns()
        self._enqueue(
            client,
            _Outgoing(
                "subscriptions",
                lambda seq, s=subs, t=ts: frames.subscriptions_frame(s, timestamp_ns=t, sequence_num=seq),
            ),
        )

    def _refresh_subscribers(self) -> None:
        if any(c.tickers and not c.closing for c in self.clients.values()):
            self._has_subscribers.set()
        else:
            self._has_subscribers.clear()

    # -- the market -----------------------------------------------------------------------------
    def _limit_reached(self) -> bool:
        limit = self.config.max_updates
        return limit is not None and self.updates_sent >= limit

    async def _guarded_market_loop(self) -> None:
        """A crashed market must not leave a server that silently sends only heartbeats."""
        try:
            await self._market_loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("market loop failed; stopping the simulator")
            self._failed = True
            self.stop()

    async def _market_loop(self) -> None:
        cfg = self.config
        await self._started.wait()
        loop = asyncio.get_running_loop()
        assert self._t0 is not None
        while not self._limit_reached():
            event = self.market.next_event()
            live_t = event.t_s - cfg.resume_after_s  # seconds since the first subscription
            if cfg.rate_hz is not None:
                delay = self._t0 + live_t - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await self._has_subscribers.wait()
                await asyncio.sleep(0)
            self._sim_now_s = max(self._sim_now_s, live_t)
            targets = self._targets(event.product_id)
            if not targets:
                continue
            if cfg.rate_hz is None:
                while any(c.queue.qsize() > BACKPRESSURE_QUEUE for c in targets):
                    await asyncio.sleep(0.001)
                targets = self._targets(event.product_id)
                if not targets:
                    continue
            self._publish(event.product_id, frames.ticker_object(event.product_id, event.state), targets)
        log.info("max updates reached (%d): sending heartbeats only", self.updates_sent)

    def _targets(self, product: str) -> list[_Client]:
        return [c for c in self.clients.values() if product in c.tickers and not c.closing]

    def _publish(self, product: str, ticker: dict[str, str], targets: list[_Client]) -> None:
        ts = self._now_ns()
        malformed = self.config.malformed_rate > 0 and self._fault_rng.random() < self.config.malformed_rate
        if malformed:
            bad_kind = frames.MALFORMED_KINDS[self.malformed_sent % len(frames.MALFORMED_KINDS)]
            self.malformed_sent += 1
            item = _Outgoing(
                "malformed",
                lambda seq, k=bad_kind: frames.malformed_ticker_frame(
                    k, ticker, event_type="update", timestamp_ns=ts, sequence_num=seq
                ),
                skippable=True,
            )
        else:
            item = _Outgoing(
                "ticker",
                lambda seq: frames.ticker_frame(
                    ticker, event_type="update", timestamp_ns=ts, sequence_num=seq
                ),
                skippable=True,
            )
        for client in targets:
            self._enqueue(client, item)
        self.updates_sent += 1


def _bound_port(server: Server, requested: int) -> int:
    for sock in server.sockets:
        return int(sock.getsockname()[1])
    return requested


def serve_forever(
    config: SimulatorConfig,
    ready: Callable[[int], None] | None = None,
    signals: StopSignal | None = None,
) -> int:
    """Run the server in a fresh event loop until stopped; returns the exit code."""
    return asyncio.run(SimulatorServer(config).run(ready, signals))
