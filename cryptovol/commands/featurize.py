"""`cryptovol featurize`: the streaming featurizer (a consumer-group member on ticks.raw)."""

from __future__ import annotations

import argparse
import sys

HELP = "streaming featurizer: ticks.raw -> ticks.features + feature Parquet (consumer group)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group-id", default="featurizer", help="consumer group (default: featurizer)")
    parser.add_argument(
        "--lateness-s", type=float, default=0.0,
        help="event-time lateness: ticks wait this long to be emitted in event-time order; a tick "
             "arriving behind its product's watermark (max event time seen - lateness) is "
             "dead-lettered as late_tick (default 0: in-order ticks leave at once; the batch "
             "featurizer applies the same rule, see cryptovol/eventtime.py)",
    )
    parser.add_argument(
        "--idle-release-s", type=float, default=5.0,
        help="emit a product's buffered ticks after this many wall-clock seconds without input (default 5)",
    )
    flush = parser.add_mutually_exclusive_group()
    flush.add_argument("--flush-every-s", type=float, default=1.0,
                       help="write Parquet + commit offsets this often (default 1)")
    flush.add_argument("--flush-rows", type=int, default=None,
                       help="write Parquet + commit once this many rows are pending "
                            "(and at least every 30 s)")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: run)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus /metrics on this port (address: "
                        "$CRYPTOVOL_METRICS_BIND_ADDRESS, default 127.0.0.1)")
    parser.add_argument("--log-every-s", type=float, default=10.0, help="progress log interval (default 10)")


def run(args: argparse.Namespace) -> int:
    from cryptovol.config import Settings, metrics_bind_address
    from cryptovol.kafka_io import DeliveryFailed, wait_for_broker
    from cryptovol.runtime.runner import StopSignal, close_metrics
    from cryptovol.stream.featurizer import FeaturizerConfig, StreamFeaturizer

    settings = Settings.from_env()
    try:
        wait_for_broker(settings.bootstrap_servers, timeout_s=30)
    except TimeoutError as exc:
        print(f"error: {exc} (start one with `cryptovol broker start` or set KAFKA_BOOTSTRAP_SERVERS)")
        return 1
    config = FeaturizerConfig(
        bootstrap_servers=settings.bootstrap_servers,
        features_dir=settings.features_dir,
        group_id=args.group_id,
        lateness_s=args.lateness_s,
        idle_release_s=args.idle_release_s,
        flush_every_s=args.flush_every_s if args.flush_rows is None else 30.0,  # safety valve
        flush_rows=args.flush_rows,
        duration_s=args.duration,
        log_every_s=args.log_every_s,
        topic_partitions=settings.topic_partitions,
        max_ahead_s=settings.tick_max_ahead_s,
        max_behind_s=settings.tick_max_behind_s,
    )
    featurizer = StreamFeaturizer(config)
    with StopSignal(featurizer.stop_event, name="featurize"):
        server = None
        if args.metrics_port:
            from cryptovol.stream.metrics import serve_stats

            server = serve_stats(args.metrics_port, "cryptovol_featurizer", featurizer.stats.as_dict)
            print(f"metrics on http://{metrics_bind_address()}:{args.metrics_port}/metrics", flush=True)
        try:
            featurizer.run()
        except DeliveryFailed as exc:
            print(f"error: {exc}; offsets not committed, a restart resumes from the last commit",
                  file=sys.stderr)
            return 1
        finally:
            close_metrics(server)
    return 0
