"""Where a single-row request's server CPU goes: the service's real ASGI app, driven in-process.

`python -m bench.bench_serving_stack [--requests 3000] [--rounds 3]`

`bench_serving` measures latency over real sockets, which on a shared 2-core VM moves with the
hypervisor's CPU steal. This one measures what the service itself can change: process CPU time
per single-row `/predict` request, with 8 requests in flight, through the same ASGI app
`bentoml serve` runs (`SpikeService.to_asgi()`, BentoML's middlewares, adaptive batching, the
model in BentoML's thread pool; no sockets). It runs the default configuration, then the same
with spans on the prediction routes (`CRYPTOVOL_TRACE_PREDICTIONS=1`), then without each of
BentoML's other per-request middlewares in turn, and prints each beside the default as a ratio.
Removing a middleware needs BentoML's internal `ServiceAppFactory.middlewares`; the benchmark
does that in a child process per configuration, and the service itself never does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "serving"))

#: (label, extra environment, BentoML middleware classes left out)
CONFIGURATIONS: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("default (no spans on prediction routes)", {}, ()),
    ("spans on prediction routes (CRYPTOVOL_TRACE_PREDICTIONS=1)", {"CRYPTOVOL_TRACE_PREDICTIONS": "1"}, ()),
    ("default without the access log", {}, ("AccessLogMiddleware",)),
    ("default without BentoML's HTTP metrics", {}, ("RunnerTrafficMetricsMiddleware",)),
    ("default without the request timeout", {}, ("TimeoutMiddleware",)),
]


def _http_scope(path: str, body: bytes) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3000),
    }


async def _post(app, path: str, body: bytes) -> int:
    """One request through the ASGI app; its status code."""
    delivered = False
    finished = asyncio.Event()
    status = 0

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_http_scope(path, body), receive, send)
    finished.set()
    return status


async def _measure(app, bodies: list[bytes], requests: int, rounds: int, concurrency: int) -> list[float]:
    """CPU ms per request for each round (after one warm-up round)."""
    startup: asyncio.Queue = asyncio.Queue()
    events: asyncio.Queue = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                       startup.get, events.put))
    started = await events.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"service start-up failed: {started}")

    async def client(first: int) -> None:
        for i in range(first, requests, concurrency):
            status = await _post(app, "/predict", bodies[i % len(bodies)])
            if status != 200:
                raise RuntimeError(f"/predict answered {status}")

    cpu_ms = []
    for round_ in range(rounds + 1):
        cpu0 = time.process_time()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        if round_:  # round 0 warms up (imports, the dispatcher's estimates)
            cpu_ms.append((time.process_time() - cpu0) / requests * 1e3)
    await startup.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, timeout=30)
    return cpu_ms


def _child(args: argparse.Namespace) -> None:
    """Measure one configuration in this (fresh) process and print its figures as JSON."""
    from cryptovol.featureset import FEATURE_NAMES
    from cryptovol.serving.champion import probe_batch

    dropped = set(filter(None, args.drop.split(",")))
    if dropped:
        from _bentoml_impl.server.app import ServiceAppFactory

        stock = ServiceAppFactory.middlewares.fget
        ServiceAppFactory.middlewares = property(
            lambda self: [m for m in stock(self) if m.cls.__name__ not in dropped])
    from _bentoml_impl.loader import load
    from bentoml._internal.log import configure_server_logging

    configure_server_logging()  # as a `bentoml serve` worker does: the access log is written
    app = load("bento.service:SpikeService", standalone_load=True).to_asgi(is_main=True)
    rows = probe_batch(rows=65).iloc[:64]
    bodies = [json.dumps({"rows": rows.iloc[[i]][FEATURE_NAMES].to_dict("records")}).encode()
              for i in range(len(rows))]
    cpu_ms = asyncio.run(_measure(app, bodies, args.requests, args.rounds, args.concurrency))
    print("RESULT " + json.dumps({"cpu_ms": cpu_ms}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="single-row requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--drop", default=None, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.drop is not None:
        _child(args)
        return 0

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from registry_helpers import register_trained, tracking_uri

    with tempfile.TemporaryDirectory(prefix="bench-serving-stack-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        version = register_trained(data_dir, "cryptovol-spike", kind="xgboost")
        print(f"registered xgboost model version {version}; {args.rounds} x {args.requests} single-row "
              f"requests per configuration, concurrency {args.concurrency}, in-process ASGI")
        base_env = {**os.environ, "CRYPTOVOL_DATA_DIR": str(data_dir),
                    "MLFLOW_TRACKING_URI": tracking_uri(data_dir),
                    "BENTOML_HOME": str(Path(tmp) / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
        print("| configuration | server CPU per request (median of rounds) | rounds | vs default |")
        print("| --- | --- | --- | --- |")
        default_ms = None
        for label, env, dropped in CONFIGURATIONS:
            child = subprocess.run(
                [sys.executable, "-m", "bench.bench_serving_stack", "--requests", str(args.requests),
                 "--rounds", str(args.rounds), "--concurrency", str(args.concurrency),
                 "--drop", ",".join(dropped)],
                cwd=REPO_ROOT, env={**base_env, **env}, capture_output=True, text=True, timeout=900,
            )
            lines = [ln for ln in child.stdout.splitlines() if ln.startswith("RESULT ")]
            if child.returncode or not lines:
                print(f"{label}: failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
                return 1
            cpu_ms = json.loads(lines[-1].removeprefix("RESULT "))["cpu_ms"]
            median = statistics.median(cpu_ms)
            default_ms = default_ms or median
            print(f"| {label} | {median:.3f} ms | {' / '.join(f'{c:.3f}' for c in cpu_ms)} | "
                  f"{median / default_ms:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
