"""`cryptovol replay`: landing files or recorded data -> Kafka (or -> landing files)."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "replay landing files or recordings (.gz ok) into Kafka ticks.raw, or into landing files"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="files or directories: landing NDJSON, or recordings in a supported format "
        "(see cryptovol.recorded; the format is detected per file)",
    )
    parser.add_argument(
        "--speed", default="max",
        help="pace by event time: 1 = real time, 10 = 10x faster, max = as fast as possible (default)",
    )
    parser.add_argument("--topic", default=None, help="target topic (default ticks.raw)")
    parser.add_argument(
        "--to-landing", nargs="?", const="", default=None, metavar="DATA_DIR",
        help="write landing files under DATA_DIR/raw instead of publishing (default DATA_DIR: "
        "$CRYPTOVOL_DATA_DIR); ticks already in a day file are skipped",
    )
    parser.add_argument("--products", default=None, help="only these comma-separated products")
    parser.add_argument(
        "--assume-tz", default=None,
        help="zone of timestamps written without an offset (default: UTC, or the known zone of a "
        "recording, e.g. America/New_York for the Dec-2025 commit_6109133 files)",
    )
    parser.add_argument("--format", default=None, help="force a format instead of detecting it")
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad line instead of skipping it"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kafka.errors import KafkaError

    from cryptovol.config import TOPIC_RAW, Settings, parse_products
    from cryptovol.kafka_io import broker_reachable, port_open
    from cryptovol.recorded import RECORDING_SUFFIXES, RecordedFormatError, detect_format, expand_paths
    from cryptovol.replay import (
        ReplayStats,
        iter_records,
        load_records,
        parse_speed,
        replay_to_kafka,
        replay_to_landing,
    )
    from cryptovol.ticks import TickError

    settings = Settings.from_env()
    try:
        speed = parse_speed(args.speed)
        products = parse_products(args.products) if args.products else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = ReplayStats()
    progress = not args.no_progress
    try:  # check every input before touching Kafka or the lake
        files = expand_paths(args.paths)
        if not files:
            suffixes = ", ".join(RECORDING_SUFFIXES)
            raise FileNotFoundError(f"no recording files ({suffixes}) under {args.paths}")
        if not args.format:
            for path in files:
                detect_format(path)
    except (FileNotFoundError, RecordedFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.to_landing is None:
        bootstrap = settings.bootstrap_servers
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        if not (port_open(host or "127.0.0.1", int(port), timeout=2.0) and broker_reachable(bootstrap, 5.0)):
            print(f"error: Kafka broker at {bootstrap} is not reachable (start one with `cryptovol broker "
                  "start`, or set KAFKA_BOOTSTRAP_SERVERS)", file=sys.stderr)
            return 1
    try:
        options = {
            "products": products,
            "fmt": args.format,
            "assume_tz": args.assume_tz,
            "on_error": "raise" if args.strict else "skip",
            "stats": stats,
        }
        if args.to_landing is not None:
            records = load_records(files, **options)
            data_dir = Path(args.to_landing).expanduser().resolve() if args.to_landing else settings.data_dir
            replay_to_landing(records, data_dir / "raw", progress=progress, stats=stats)
            target = str(data_dir / "raw")
        else:
            target = args.topic or TOPIC_RAW
            replay_to_kafka(
                iter_records(files, **options),
                settings.bootstrap_servers,
                topic=target,
                speed=speed,
                progress=progress,
                partitions=settings.topic_partitions,
                stats=stats,
            )
    except (FileNotFoundError, RecordedFormatError, TickError, KafkaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {"target": target, **stats.as_dict()}
    print(f"replay summary: {json.dumps(summary, separators=(',', ':'))}", flush=True)
    return 1 if stats.publish_failures else 0
