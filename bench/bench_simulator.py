"""Benchmarks of the simulator: bulk generation, the per-event (streaming) path, landing files, and
the WebSocket server's throughput to one client.

Run: `.venv/bin/python -m bench.bench_simulator` (add `--ticks N` to change the bulk size).
The per-event path is the naive peer of the vectorized generator (the same ticks, one at a time),
so their ratio is measured side by side in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptovol.procs import ManagedProcess, free_port
from cryptovol.simulator import MarketSimulator, generate_landing_files, generate_ticks_frame
from cryptovol.simulator.frames import ticker_object

PRODUCTS = ("BTC-USD", "ETH-USD")
RATE_HZ = 4.0


def bench_bulk(n_ticks: int) -> float:
    # ~8.6 messages/s across the two products at 4 Hz each (the rate rises with volatility).
    duration = n_ticks / (RATE_HZ * len(PRODUCTS) * 1.07)
    t0 = time.perf_counter()
    frame = generate_ticks_frame(PRODUCTS, duration_s=duration, seed=1, rate_hz=RATE_HZ)
    elapsed = time.perf_counter() - t0
    rate = len(frame) / elapsed
    print(f"generate_ticks_frame: {len(frame):,} ticks ({duration / 86400:.1f} simulated days) "
          f"in {elapsed:.2f} s = {rate:,.0f} ticks/s")
    return rate


def bench_per_event(n_events: int) -> float:
    market = MarketSimulator(PRODUCTS, seed=1, rate_hz=RATE_HZ)
    t0 = time.perf_counter()
    for _ in range(n_events):
        event = market.next_event()
        ticker_object(event.product_id, event.state)
    elapsed = time.perf_counter() - t0
    rate = n_events / elapsed
    print(f"per-event stream path (next_event + ticker object): {n_events:,} in {elapsed:.2f} s "
          f"= {rate:,.0f} events/s")
    return rate


def bench_landing(duration_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = generate_landing_files(
            Path(tmp), PRODUCTS, datetime(2026, 1, 1, tzinfo=UTC), duration_s=duration_s, seed=1
        )
        elapsed = time.perf_counter() - t0
        lines = sum(len(p.read_text().splitlines()) for p in paths)
        size = sum(p.stat().st_size for p in paths)
    print(f"generate_landing_files: {lines:,} lines ({size / 1e6:.1f} MB) in {elapsed:.2f} s "
          f"= {lines / elapsed:,.0f} lines/s")


async def _client(url: str, n: int) -> tuple[int, float]:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=2**20) as ws:
        await ws.send(json.dumps({"type": "subscribe", "product_ids": list(PRODUCTS), "channel": "ticker"}))
        got, t0 = 0, time.perf_counter()
        while got < n:
            msg = json.loads(await ws.recv())
            if msg.get("channel") == "ticker" and msg["events"][0]["type"] == "update":
                got += 1
        return got, time.perf_counter() - t0


def bench_server(n_updates: int) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sim.log"
        cmd = [sys.executable, "-m", "cryptovol.cli", "simulate", "--port", str(port), "--rate", "max",
               "--max-updates", str(n_updates), "--seed", "1"]
        with ManagedProcess("simulator", cmd, log_path=log,
                            ready=lambda: "listening on" in log.read_text(errors="replace")) as proc:
            proc.start(timeout_s=60)
            got, elapsed = asyncio.run(_client(f"ws://127.0.0.1:{port}", n_updates))
    print(f"server --rate max -> one websockets client: {got:,} ticker frames in {elapsed:.2f} s "
          f"= {got / elapsed:,.0f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=5_000_000)
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"== cryptovol simulator benchmarks (load average {load}; {os.cpu_count()} cores) ==")
    bulk = bench_bulk(args.ticks)
    per_event = bench_per_event(200_000)
    print(f"vectorized bulk vs per-event path: {bulk / per_event:.1f}x")
    bench_landing(3 * 3600)
    bench_server(20_000)


if __name__ == "__main__":
    main()
