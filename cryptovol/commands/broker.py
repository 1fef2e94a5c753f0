"""`cryptovol broker start|stop|status`: the embedded Kafka-protocol broker."""

from __future__ import annotations

import argparse

from cryptovol.broker import BrokerError, EmbeddedBroker
from cryptovol.config import Settings
from cryptovol.kafka_io import ensure_topics

HELP = "start, stop or inspect the embedded Kafka-protocol broker (Tansu, memory-only)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=9092, help="listen port (default 9092)")
    parser.add_argument(
        "--no-topics", action="store_true", help="do not create the platform topics on start"
    )


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    broker = EmbeddedBroker(settings.run_dir, port=args.port)
    try:
        if args.action == "start":
            status = broker.start()
            if not args.no_topics:
                ensure_topics(broker.bootstrap, partitions=settings.topic_partitions)
            print(f"broker running: pid {status.pid}, bootstrap {broker.bootstrap}, "
                  f"log {status.log_file}")
            print("note: the embedded broker keeps data in memory only; "
                  "`cryptovol replay` rebuilds topics from the landing files")
        elif args.action == "stop":
            print("broker stopped" if broker.stop() else "broker was not running")
        else:
            status = broker.status()
            if status.running:
                print(f"running: pid {status.pid}, bootstrap {status.bootstrap}")
            else:
                print("not running")
                return 1
    except BrokerError as exc:
        print(f"error: {exc}")
        return 1
    return 0
