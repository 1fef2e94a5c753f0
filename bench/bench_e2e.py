"""End-to-end latency: exchange tick -> served prediction, beside a bare chain with the same hops.

Run: `.venv/bin/python -m bench.bench_e2e [--seconds 40] [--warmup 15] [--rates 1,10,100]`

For each rate (a multiple of the simulator's live-like default, 4 ticker updates/s per product,
two products), on a fresh embedded broker and data dir:

- pipeline: the real processes `cryptovol simulate --rate R`, `cryptovol ingest`, `cryptovol
  featurize`, `cryptovol score` (a small real XGBoost champion in a SQLite MLflow store). Latency
  per prediction = `scored_at_ns` - the tick's exchange event time (`since event`), and -
  the ingestor's receive time (`since received`), read from the `predictions` topic for ticks whose
  event time lies in the measured window (after `--warmup`). The scorer's
  `cryptovol_end_to_end_latency_seconds` histogram records the same per prediction.
- bare chain: the same simulator, then three bare processes with the same Kafka hops and client
  settings and no work: WebSocket -> producer (ingest's settings) -> Kafka -> consumer + producer
  (the featurizer's settings, flush + commit every second) -> Kafka -> consumer (the scorer's poll);
  latency = the last consumer's receive time - the frame's event time (and - its WebSocket receive
  time, carried in a record header).

Both run one after the other at the same rate (never at the same time: 2 cores). Printed: p50,
p95, p99 and max in ms for each, side by side, and pipeline/bare ratios of p95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The simulator's default rate per product (`cryptovol simulate --rate`), our "live" rate.
LIVE_RATE_HZ = 4.0
PRODUCTS = "BTC-USD,ETH-USD"
BARE_TOPICS = ("bare.raw", "bare.features")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryptovol.cli", *args]


def _hop(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.bench_e2e", "--hop", *args]


def _percentiles(ms: np.ndarray) -> dict[str, float]:
    if len(ms) == 0:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"n": int(len(ms)), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(ms.max())}


# -- the bare chain's hops (child processes) --------------------------------------------------------

def hop_ws(bootstrap: str, ws_url: str) -> None:
    """WebSocket frames -> `bare.raw`, as they come (the receive time in a header)."""
    import websockets

    from cryptovol.kafka_io import make_producer
    from cryptovol.protocol import HEARTBEATS, TICKER, subscribe_message

    producer = make_producer(bootstrap)
    products = PRODUCTS.split(",")

    async def main() -> None:
        async with websockets.connect(ws_url, max_size=None) as ws:
            for channel in (TICKER, HEARTBEATS):
                await ws.send(json.dumps(subscribe_message(products, channel)))
            async for frame in ws:
                rx = time.time_ns()
                data = frame.encode() if isinstance(frame, str) else frame
                producer.send(BARE_TOPICS[0], value=data, headers=[("rx", str(rx).encode())])

    try:
        asyncio.run(main())
    finally:
        producer.close(timeout=5)


def hop_relay(bootstrap: str) -> None:
    """`bare.raw` -> `bare.features` with the featurizer's consumer/producer settings and cadence."""
    from kafka import OffsetAndMetadata, TopicPartition

    from cryptovol.kafka_io import make_consumer, make_producer
    from cryptovol.stream.featurizer import CONSUMER_SETTINGS, PRODUCER_SETTINGS, FeaturizerConfig

    consumer = make_consumer(bootstrap, BARE_TOPICS[0], group_id="bare-relay",
                             max_poll_records=FeaturizerConfig.max_poll_records, **CONSUMER_SETTINGS)
    producer = make_producer(bootstrap, **PRODUCER_SETTINGS)
    last_flush = time.monotonic()
    offsets: dict[int, int] = {}
    while True:
        batch = consumer.poll(timeout_ms=FeaturizerConfig.poll_timeout_ms)
        for tp, records in batch.items():
            for rec in records:
                producer.send(BARE_TOPICS[1], value=rec.value, headers=rec.headers)
            offsets[tp.partition] = records[-1].offset + 1
        if time.monotonic() - last_flush >= FeaturizerConfig.flush_every_s:
            producer.flush()
            if offsets:
                consumer.commit({TopicPartition(BARE_TOPICS[0], p): OffsetAndMetadata(o, "", -1)
                                 for p, o in offsets.items()})
            last_flush = time.monotonic()


def hop_sink(bootstrap: str, out_path: str) -> None:
    """`bare.features` -> one line per ticker frame: event, ws-receive and arrival time (ns)."""
    from cryptovol.kafka_io import make_consumer
    from cryptovol.scoring.scorer import CONSUMER_SETTINGS
    from cryptovol.ticks import parse_timestamp_ns

    consumer = make_consumer(bootstrap, BARE_TOPICS[1], group_id="bare-sink", max_poll_records=2000,
                             **CONSUMER_SETTINGS)
    with open(out_path, "a", encoding="utf-8") as out:
        while True:
            batch = consumer.poll(timeout_ms=200)
            now = time.time_ns()
            for records in batch.values():
                for rec in records:
                    frame = json.loads(rec.value)
                    if frame.get("channel") != "ticker":
                        continue
                    rx = int(dict(rec.headers)["rx"])
                    for event in frame.get("events", []):
                        for _ in event.get("tickers", []):
                            out.write(f"{parse_timestamp_ns(frame['timestamp'])} {rx} {now}\n")
            out.flush()


# -- one measured run -----------------------------------------------------------------------------

class Stack:
    """Processes started for one run, stopped in reverse order whatever happens."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.env = env
        self.procs = []

    def start(self, name: str, cmd: list[str], ready=None, timeout_s: float = 120.0):
        from cryptovol.procs import ManagedProcess

        proc = ManagedProcess(name, cmd, log_path=self.run_dir / f"{name}.log", env=self.env, cwd=REPO_ROOT,
                              ready=ready)
        self.procs.append(proc)
        proc.start(timeout_s=timeout_s)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout_s=20)


def _start_simulator(stack: Stack, rate: float) -> str:
    import re

    log = stack.run_dir / "simulator.log"
    stack.start("simulator", _cli("simulate", "--port", "0", "--rate", f"{rate:g}", "--products", PRODUCTS,
                                  "--seed", "3"),
                ready=lambda: "listening on" in (log.read_text() if log.exists() else ""))
    port = re.search(r"listening on ws://[^:\s]+:(\d+)", log.read_text()).group(1)
    return f"ws://127.0.0.1:{port}"


def _broker(run_dir: Path):
    from cryptovol.broker import EmbeddedBroker
    from cryptovol.procs import free_port

    broker = EmbeddedBroker(run_dir / "broker", port=free_port())
    broker.start()
    return broker


def run_pipeline(root: Path, mlflow_uri: str, rate: float, warmup_s: float, seconds: float) -> dict:
    from cryptovol.config import TOPIC_FEATURES, TOPIC_PREDICTIONS
    from cryptovol.kafka_io import read_topic
    from cryptovol.procs import free_port, http_ok

    run_dir = root / f"pipeline-{rate:g}"
    run_dir.mkdir(parents=True)
    broker = _broker(run_dir)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
           "CRYPTOVOL_DATA_DIR": str(run_dir / "data"), "MLFLOW_TRACKING_URI": mlflow_uri,
           "CRYPTOVOL_PRODUCTS": PRODUCTS}
    stack = Stack(run_dir, env)
    try:
        ports = {name: free_port() for name in ("score", "featurize", "ingest")}

        def metrics(name: str):
            return lambda: http_ok(f"http://127.0.0.1:{ports[name]}/metrics")

        stack.start("score", _cli("score", "--metrics-port", str(ports["score"]), "--poll-s", "60"),
                    ready=metrics("score"))
        stack.start("featurize", _cli("featurize", "--metrics-port", str(ports["featurize"])),
                    ready=metrics("featurize"))
        url = _start_simulator(stack, rate)
        stack.start("ingest", _cli("ingest", "--ws-url", url, "--metrics-port", str(ports["ingest"])),
                    ready=metrics("ingest"))
        time.sleep(warmup_s)  # the measured window: a fixed span of event time, not a readiness wait
        before = _scrape(ports["score"])
        t0 = time.time_ns()
        time.sleep(seconds)
        t1 = time.time_ns()
        time.sleep(1.0)
        scorer_hist = _histogram_p95_ms(before, _scrape(ports["score"]))
        time.sleep(2.0)  # let the window's last ticks reach the predictions topic before reading it
    finally:
        stack.stop()
    try:
        rows = [json.loads(r.value) for r in read_topic(broker.bootstrap, TOPIC_PREDICTIONS)]
        feats = [json.loads(r.value) for r in read_topic(broker.bootstrap, TOPIC_FEATURES)]
    finally:
        broker.stop()
    # where the time goes: the featurizer's emitted_at_ns per row (feature row produced)
    feats = [f for f in feats if t0 <= f["event_time_ns"] < t1]
    featurized = np.array([f["emitted_at_ns"] - f["event_time_ns"] for f in feats], dtype=np.float64) / 1e6
    rows = [r for r in rows if t0 <= r["event_time_ns"] < t1]
    ev = np.array([r["scored_at_ns"] - r["event_time_ns"] for r in rows], dtype=np.float64) / 1e6
    rx = np.array([r["scored_at_ns"] - r["receive_time_ns"] for r in rows if "receive_time_ns" in r],
                  dtype=np.float64) / 1e6
    return {"event": _percentiles(ev), "received": _percentiles(rx), "featurized": _percentiles(featurized),
            "ticks_per_s": len(rows) / (seconds or 1), "scorer_histogram_p95_ms": scorer_hist}


def _scrape(port: int) -> list[tuple[float, float]]:
    """The scorer's `since=event` end-to-end histogram: [(upper bound s, cumulative count)]."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return []
    buckets = []
    for line in text.splitlines():
        if line.startswith("cryptovol_end_to_end_latency_seconds_bucket") and 'since="event"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    return buckets


def _histogram_p95_ms(before: list, after: list) -> float:
    """p95 (ms, as the upper bound of its bucket) of what the scorer observed between two scrapes:
    a cross-check of the topic-based figures (rows scored in the window, give or take a second)."""
    if not after:
        return float("nan")
    base = dict(before)
    counts = [(le, n - base.get(le, 0.0)) for le, n in after]
    total = counts[-1][1]
    if total <= 0:
        return float("nan")
    return next(le for le, n in counts if n >= 0.95 * total) * 1e3


def run_bare(root: Path, rate: float, warmup_s: float, seconds: float) -> dict:
    from cryptovol.kafka_io import ensure_topics

    run_dir = root / f"bare-{rate:g}"
    run_dir.mkdir(parents=True)
    broker = _broker(run_dir)
    out = run_dir / "sink.txt"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    stack = Stack(run_dir, env)
    try:
        ensure_topics(broker.bootstrap, list(BARE_TOPICS))
        stack.start("sink", _hop("sink", broker.bootstrap, str(out)))
        stack.start("relay", _hop("relay", broker.bootstrap))
        url = _start_simulator(stack, rate)
        stack.start("ws", _hop("ws", broker.bootstrap, url))
        time.sleep(warmup_s)
        t0 = time.time_ns()
        time.sleep(seconds)
        t1 = time.time_ns()
        time.sleep(3.0)
    finally:
        stack.stop()
        broker.stop()
    rows = np.array([[int(x) for x in line.split()] for line in out.read_text().splitlines()] or
                    np.zeros((0, 3)), dtype=np.int64).reshape(-1, 3)
    rows = rows[(rows[:, 0] >= t0) & (rows[:, 0] < t1)]
    return {"event": _percentiles((rows[:, 2] - rows[:, 0]) / 1e6),
            "received": _percentiles((rows[:, 2] - rows[:, 1]) / 1e6),
            "ticks_per_s": len(rows) / (seconds or 1)}


def _register_champion(root: Path) -> str:
    sys.path.insert(0, str(REPO_ROOT / "tests" / "serving"))
    from registry_helpers import register_trained, tracking_uri

    data_dir = root / "models"
    data_dir.mkdir()
    register_trained(data_dir, "cryptovol-spike", kind="xgboost")
    return tracking_uri(data_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="measured window per run (default 40)")
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds after the ingestor is up before the window opens (default 15)")
    parser.add_argument("--rates", default="1,10,100", help="multiples of the live rate (default 1,10,100)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare chain")
    parser.add_argument("--hop", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hop:
        name, *rest = args.hop
        {"ws": hop_ws, "relay": hop_relay, "sink": hop_sink}[name](*rest)
        return

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mults = [float(x) for x in args.rates.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        uri = _register_champion(root)
        print(f"champion trained and registered in {time.perf_counter() - t:.1f} s", flush=True)
        for mult in mults:
            rate = LIVE_RATE_HZ * mult
            pipe = run_pipeline(root, uri, rate, args.warmup, args.seconds)
            bare = None if args.no_bare else run_bare(root, rate, args.warmup, args.seconds)
            results.append((mult, rate, pipe, bare))
            _print_one(mult, rate, pipe, bare)
    print("\nsummary (ms; pipeline = simulate -> ingest -> featurize -> score; bare = same hops, no work)")
    print(f"{'rate':>14} {'since':>9} | {'pipe p50':>8} {'p95':>7} {'p99':>7} {'max':>7} | "
          f"{'bare p50':>8} {'p95':>7} {'p99':>7} | {'p95 ratio':>9}")
    for mult, rate, pipe, bare in results:
        for since in ("event", "received"):
            p = pipe[since]
            b = bare[since] if bare else _percentiles(np.zeros(0))
            ratio = p["p95"] / b["p95"] if b["n"] and b["p95"] > 0 else float("nan")
            print(f"{mult:>4g}x {2 * rate:>5g} t/s {since:>9} | {p['p50']:8.1f} {p['p95']:7.1f} "
                  f"{p['p99']:7.1f} {p['max']:7.1f} | {b['p50']:8.1f} {b['p95']:7.1f} {b['p99']:7.1f} | "
                  f"{ratio:9.2f}")


def _fmt(p: dict) -> str:
    return f"n={p['n']} p50 {p['p50']:.1f} p95 {p['p95']:.1f} p99 {p['p99']:.1f} max {p['max']:.1f} ms"


def _print_one(mult: float, rate: float, pipe: dict, bare: dict | None) -> None:
    print(f"\n{mult:g}x live ({rate:g} updates/s per product): pipeline {pipe['ticks_per_s']:.0f} "
          f"predictions/s; since event {_fmt(pipe['event'])}; since received {_fmt(pipe['received'])}; "
          f"scorer histogram p95 <= {pipe['scorer_histogram_p95_ms']:.0f} ms; event -> feature row "
          f"produced {_fmt(pipe['featurized'])}", flush=True)
    if bare:
        print(f"   bare chain {bare['ticks_per_s']:.0f} ticks/s; since event {_fmt(bare['event'])}; "
              f"since received {_fmt(bare['received'])}", flush=True)


if __name__ == "__main__":
    main()
