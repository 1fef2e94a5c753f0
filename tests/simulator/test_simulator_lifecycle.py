"""`SimulatorServer.run` on the shared lifecycle, in-process: the process's `StopSignal` stops it
from any thread, a stop that came before serving is kept, and an embedded run leaves signals alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cryptovol.runtime import StopSignal
from cryptovol.simulator.server import SimulatorConfig, SimulatorServer, serve_forever

CONFIG = SimulatorConfig(port=0, products=("BTC-USD",), rate_hz=20.0, seed=3)


class ServerThread:
    """`serve_forever` in a daemon thread (as tests and benchmarks embed it); records the port."""

    def __init__(self, signals: StopSignal) -> None:
        self.signals = signals
        self.listening = threading.Event()
        self.port: int | None = None
        self.result: int | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _ready(self, port: int) -> None:
        self.port = port
        self.listening.set()

    def _main(self) -> None:
        self.result = serve_forever(CONFIG, self._ready, self.signals)

    def start(self) -> ServerThread:
        self.thread.start()
        return self

    def join(self, timeout_s: float) -> int | None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"server still running {timeout_s}s after the stop"
        return self.result


def test_stop_signal_fired_from_another_thread_closes_clients_and_returns_zero():
    signals = StopSignal(name="test")
    server = ServerThread(signals).start()
    try:
        assert server.listening.wait(20), "server never listened"
        with connect(f"ws://127.0.0.1:{server.port}", open_timeout=20, close_timeout=5) as ws:
            ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "ticker"}))
            assert json.loads(ws.recv(timeout=15))["channel"] == "ticker"
            # What the main thread's handler does on SIGTERM; here from the test thread, not the loop's.
            signals._handle(signal.SIGTERM, None)
            assert server.join(15) == 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert signals.on_stop is None  # the loop's callback is gone before its loop closes
    finally:
        signals.event.set()
        if signals.on_stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                signals.on_stop()
        server.thread.join(15)


def test_a_stop_requested_before_serving_is_not_lost():
    signals = StopSignal()
    signals.event.set()  # a signal between start-up and serving
    server = ServerThread(signals).start()
    assert server.join(15) == 0
    assert not server.listening.is_set()  # stopped before it listened


def test_an_embedded_run_installs_no_signal_handlers():
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []
    sim = SimulatorServer(CONFIG)

    def ready(_port: int) -> None:
        seen.append(signal.getsignal(signal.SIGTERM))
        sim.stop()

    assert asyncio.run(asyncio.wait_for(sim.run(ready), timeout=20)) == 0
    assert seen == [before]
