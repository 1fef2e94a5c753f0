"""Benchmarks of ingestion and replay, each beside its ceiling measured in the same run.

Run: `.venv/bin/python -m bench.bench_ingest` (`--n N` ticks, default 20,000).

- raw producer: kafka-python `make_producer` (acks=all) sending the same `Tick.to_json()` values,
  keyed by product, to the same embedded broker: the Kafka ceiling for both ingest and replay.
- bare client: a `websockets` client that only receives the simulator's frames (`--rate max`):
  the source ceiling for ingest.
- frame processing: `FrameProcessor` alone (parse, validate, de-dup, landing line), no Kafka.
- ingest: the real `cryptovol ingest` process against `cryptovol simulate --rate max`, from the
  first to the N-th tick acknowledged on ticks.raw (read from its Prometheus endpoint).
- replay: `cryptovol.replay` of the landing files that ingest wrote: read + sort, then publish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from cryptovol.broker import EmbeddedBroker
from cryptovol.ingest import DeadLetterWriter, FrameProcessor, IngestStats, LandingWriter
from cryptovol.kafka_io import ensure_topics, make_producer
from cryptovol.procs import ManagedProcess, free_port, http_ok, wait_until
from cryptovol.replay import REPLAY_PRODUCER_SETTINGS, load_records, replay_to_kafka

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTS = "BTC-USD,ETH-USD"


def start_simulator(tmp: Path, n: int, tag: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    log = tmp / f"sim-{tag}.log"
    proc = ManagedProcess(
        f"sim-{tag}",
        [sys.executable, "-m", "cryptovol.cli", "simulate", "--port", str(port), "--rate", "max",
         "--max-updates", str(n), "--seed", "1", "--products", PRODUCTS],
        log_path=log,
        cwd=REPO_ROOT,
        ready=lambda: "simulator listening on" in (log.read_text() if log.exists() else ""),
    )
    proc.start(timeout_s=60)
    return proc, f"ws://127.0.0.1:{port}"


def bench_bare_client(tmp: Path, n: int) -> float:
    from websockets.asyncio.client import connect

    sim, url = start_simulator(tmp, n, "bare")

    async def drain() -> float:
        async with connect(url, max_size=2**24, proxy=None) as ws:
            for channel in ("ticker", "heartbeats"):
                await ws.send(json.dumps({"type": "subscribe", "product_ids": PRODUCTS.split(","),
                                          "channel": channel}))
            got, start = 0, None
            while got < n:
                message = json.loads(await ws.recv())
                if message.get("channel") == "ticker":
                    start = start or time.perf_counter()
                    got += 1
            return got / (time.perf_counter() - start)

    try:
        rate = asyncio.run(drain())
    finally:
        sim.stop()
    print(f"bare websockets client <- simulate --rate max: {rate:,.0f} frames/s")
    return rate


def sample_values(tmp: Path, n: int) -> list[tuple[str, bytes]]:
    """(key, Tick JSON) pairs shaped like the ingestor's records (from the generator's landing data)."""
    from datetime import UTC, datetime

    from cryptovol.recorded import read_recorded
    from cryptovol.simulator import generate_landing_files

    paths = generate_landing_files(
        tmp / "sample", PRODUCTS.split(","), datetime(2026, 1, 1, tzinfo=UTC), duration_s=n / 8.0, seed=2
    )
    out = [(t.product_id, t.to_json()) for p in paths for t in read_recorded(p)]
    return (out * (n // max(1, len(out)) + 1))[:n]


#: producer settings of the ingestor (make_producer defaults) and of replay (bigger batches)
INGEST_PRODUCER: dict = {}
REPLAY_PRODUCER = REPLAY_PRODUCER_SETTINGS


def bench_raw_producer(bootstrap: str, values: list[tuple[str, bytes]], settings: dict, label: str) -> float:
    ensure_topics(bootstrap, ["bench.raw"])
    producer = make_producer(bootstrap, **settings)
    start = time.perf_counter()
    for key, value in values:
        producer.send("bench.raw", key=key, value=value)
    producer.flush()
    rate = len(values) / (time.perf_counter() - start)
    producer.close()
    size = sum(len(v) for _, v in values) / len(values)
    print(f"raw kafka-python producer (acks=all, {label}), {len(values):,} x {size:.0f} B: "
          f"{rate:,.0f} records/s")
    return rate


def bench_processor(tmp: Path, n: int) -> float:
    """Frames -> landing lines + queued records, no sockets, no Kafka."""
    template = {
        "channel": "ticker", "client_id": "", "sequence_num": 0,
        "events": [{"type": "update", "tickers": [{
            "type": "ticker", "product_id": "BTC-USD", "price": "67468.26", "volume_24_h": "3057.5",
            "low_24_h": "66600", "high_24_h": "67812", "low_52_w": "60001", "high_52_w": "126296",
            "price_percent_chg_24_h": "0.10", "best_bid": "67469.15", "best_ask": "67469.62",
            "best_bid_quantity": "0.0037", "best_ask_quantity": "0.1645"}]}],
    }
    base = 1_775_428_514_000_000_000
    frames = []
    for i in range(n):
        template["sequence_num"] = i
        ns = base + i * 1_000_000
        template["timestamp"] = f"2026-04-05T22:35:{14 + ns // 10**9 - base // 10**9:02d}.{ns % 10**9:09d}Z"
        frames.append(json.dumps(template))
    sink: list = []
    landing = LandingWriter(tmp / "proc" / "raw")
    proc = FrameProcessor(
        landing=landing, deadletter=DeadLetterWriter(tmp / "proc" / "dl"),
        publish=lambda *r: sink.append(r), stats=IngestStats(), source="bench",
    )
    start = time.perf_counter()
    for i, text in enumerate(frames):
        proc.process(text, base + i)
    rate = n / (time.perf_counter() - start)
    landing.close()
    print(f"FrameProcessor alone (parse, validate, de-dup, landing line, flush): {rate:,.0f} frames/s")
    return rate


def metric(url: str, name: str) -> float:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
            for line in response.read().decode().splitlines():
                if line.startswith((f"cryptovol_ingest_{name} ", f"cryptovol_ingest_{name}_total ")):
                    return float(line.split()[-1])
    except OSError:
        pass
    return 0.0


def bench_ingest(tmp: Path, bootstrap: str, n: int) -> tuple[float, Path]:
    data_dir = tmp / "ingest-data"
    mport = free_port()
    url = f"http://127.0.0.1:{mport}/metrics"
    ingest = ManagedProcess(
        "ingest",
        [sys.executable, "-m", "cryptovol.cli", "ingest", "--ws-url", "PLACEHOLDER",
         "--metrics-port", str(mport), "--log-interval", "5"],
        log_path=tmp / "ingest.log",
        env={"CRYPTOVOL_DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        cwd=REPO_ROOT,
        ready=lambda: http_ok(url),
    )
    sim, ws_url = start_simulator(tmp, n, "ingest")
    ingest.cmd[ingest.cmd.index("PLACEHOLDER")] = ws_url
    try:
        ingest.start(timeout_s=60)
        wait_until(lambda: metric(url, "published") > 0, timeout_s=60, interval_s=0.01, what="first publish")
        start, first = time.perf_counter(), metric(url, "published")
        wait_until(lambda: metric(url, "published") >= n, timeout_s=600, interval_s=0.05, what="published")
        elapsed = time.perf_counter() - start
    finally:
        ingest.stop()
        sim.stop()
    rate = (n - first) / elapsed
    print(f"cryptovol ingest <- simulate --rate max -> ticks.raw + landing: {rate:,.0f} ticks/s "
          f"({n:,} ticks)")
    return rate, data_dir / "raw"


def bench_replay(bootstrap: str, raw_dir: Path) -> tuple[float, float]:
    start = time.perf_counter()
    records = load_records([raw_dir])
    read_rate = len(records) / (time.perf_counter() - start)
    stats = replay_to_kafka(records, bootstrap, topic="bench.replay")
    print(f"replay: read+sort landing files {read_rate:,.0f} ticks/s; "
          f"publish {stats.rate_per_s:,.0f} ticks/s ({stats.published:,} ticks)")
    return read_rate, stats.rate_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="ticks per measurement (default 20,000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        broker = EmbeddedBroker(tmp / "run", port=free_port())
        broker.start()
        try:
            values = sample_values(tmp, args.n)
            # The machine is shared: each ceiling is measured before and after, and averaged.
            raw_ingest = [bench_raw_producer(broker.bootstrap, values, INGEST_PRODUCER, "ingest settings")]
            raw_replay = [bench_raw_producer(broker.bootstrap, values, REPLAY_PRODUCER, "replay settings")]
            source = bench_bare_client(tmp, args.n)
            proc = bench_processor(tmp, args.n)
            ingest, raw_dir = bench_ingest(tmp, broker.bootstrap, args.n)
            read_rate, replay = bench_replay(broker.bootstrap, raw_dir)
            for rates, settings, label in ((raw_ingest, INGEST_PRODUCER, "ingest settings"),
                                           (raw_replay, REPLAY_PRODUCER, "replay settings")):
                rates.append(bench_raw_producer(broker.bootstrap, values, settings, label))
        finally:
            broker.stop()
    ceiling_ingest = sum(raw_ingest) / 2
    ceiling_replay = sum(raw_replay) / 2
    print()
    print("| what | figure |")
    print("| --- | --- |")
    print(f"| raw kafka-python producer, ingest settings (ceiling, mean of before/after) | "
          f"{ceiling_ingest:,.0f} records/s |")
    print(f"| raw kafka-python producer, replay settings (ceiling, mean of before/after) | "
          f"{ceiling_replay:,.0f} records/s |")
    print(f"| bare websockets client <- simulator at max rate (source ceiling) | {source:,.0f} frames/s |")
    print(f"| FrameProcessor alone (no sockets, no Kafka) | {proc:,.0f} frames/s |")
    print(f"| cryptovol ingest end to end -> ticks.raw + landing | {ingest:,.0f} ticks/s = "
          f"{ingest / ceiling_ingest:.2f}x raw producer, {ingest / source:.2f}x bare client |")
    print(f"| replay: read + sort landing files | {read_rate:,.0f} ticks/s |")
    print(f"| replay: publish to Kafka | {replay:,.0f} ticks/s = "
          f"{replay / ceiling_replay:.2f}x raw producer |")


if __name__ == "__main__":
    main()
