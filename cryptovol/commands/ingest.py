"""`cryptovol ingest`: Coinbase Advanced Trade WebSocket -> landing NDJSON + Kafka `ticks.raw`."""

from __future__ import annotations

import argparse
import logging
import sys

HELP = "ingest live tickers into data/raw/<product>/<day>.ndjson and Kafka ticks.raw"


def configure(parser: argparse.ArgumentParser) -> None:
    from cryptovol.config import COINBASE_WS_URL

    parser.add_argument(
        "--ws-url", default=COINBASE_WS_URL,
        help=f"WebSocket URL (default {COINBASE_WS_URL}; e.g. ws://127.0.0.1:8765 for `cryptovol simulate`)",
    )
    parser.add_argument(
        "--products", default=None,
        help="comma-separated product ids (default: $CRYPTOVOL_PRODUCTS or BTC-USD,ETH-USD)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="stop after S seconds (default: run until signalled)"
    )
    parser.add_argument(
        "--log-interval", type=float, default=10.0, help="seconds between progress lines (default 10)"
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=15.0,
        help="reconnect when nothing (not even a heartbeat) arrives for S seconds (default 15)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve Prometheus /metrics on PORT (default: off; address: $CRYPTOVOL_METRICS_BIND_ADDRESS, "
        "default 127.0.0.1)",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=10.0,
        help="on stop, seconds allowed to deliver queued records before spooling them (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from urllib.parse import urlparse

    from cryptovol.config import Settings, parse_products
    from cryptovol.ingest import IngestConfig, IngestFailed, SpoolBusyError, run_ingest

    settings = Settings.from_env()
    if args.products:
        try:
            settings = replace(settings, products=parse_products(args.products))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if urlparse(args.ws_url).scheme not in ("ws", "wss"):
        print(f"error: --ws-url must be a ws:// or wss:// URL, got {args.ws_url!r}", file=sys.stderr)
        return 2
    config = IngestConfig(
        ws_url=args.ws_url,
        products=settings.products,
        duration_s=args.duration,
        log_interval_s=args.log_interval,
        idle_timeout_s=args.idle_timeout,
        drain_timeout_s=args.drain_timeout,
        metrics_port=args.metrics_port,
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        stats = run_ingest(config, settings)
    except SpoolBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except IngestFailed as exc:
        print(f"ingest summary: {exc.stats.to_json()}", flush=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ingest summary: {stats.to_json()}", flush=True)
    return 0
