"""`cryptovol score`: score the live feature stream with the champion into `predictions`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

HELP = "score ticks.features with the champion model into the predictions topic and Parquet"

log = logging.getLogger("cryptovol.score")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group-id", default="scorer", help="consumer group (default: scorer)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C / SIGTERM)")
    parser.add_argument("--metrics-port", type=int, default=None, metavar="P",
                        help="serve Prometheus /metrics on port P (address: $CRYPTOVOL_METRICS_BIND_ADDRESS, "
                        "default 127.0.0.1)")
    parser.add_argument("--poll-s", type=float, default=None,
                        help="seconds between champion alias checks (default: CRYPTOVOL_MODEL_POLL_S or 10)")
    parser.add_argument("--wait-model", type=float, default=600.0, metavar="S",
                        help="how long to wait for a champion to exist before giving up (default 600)")


def run(args: argparse.Namespace) -> int:
    from cryptovol.config import Settings
    from cryptovol.runtime import close_metrics, serve_metrics
    from cryptovol.serving.champion import ChampionLoader, alert_on_rejection
    from cryptovol.serving.metrics import ServingMetrics

    settings = Settings.from_env()
    metrics = None
    server = None
    if args.metrics_port is not None:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        metrics = ServingMetrics("scorer", registry=registry)
        server = serve_metrics(args.metrics_port, registry)
    alert = alert_on_rejection(settings)

    def on_failure(version: str, exc: BaseException) -> None:
        if metrics:
            metrics.observe_reload_failure("champion")
        alert(version, exc)

    loader = ChampionLoader.from_settings(
        settings, poll_s=args.poll_s, on_failure=on_failure,
        on_swap=(lambda old, new: metrics.observe_swap("champion", old, new)) if metrics else None,
    )
    try:
        return _serve(args, settings, loader, metrics)
    finally:
        close_metrics(server)


def _serve(args: argparse.Namespace, settings, loader, metrics) -> int:
    from cryptovol.featureset import FeatureSchemaError
    from cryptovol.kafka_io import DeliveryFailed
    from cryptovol.runtime import StopSignal
    from cryptovol.scoring.scorer import StreamingScorer
    from cryptovol.serving.champion import ModelValidationError

    try:
        loader.start(strict=True)  # a champion for another feature set stops here with the reason
    except (FeatureSchemaError, ModelValidationError) as exc:
        print(f"error: the champion cannot be served: {exc}")
        return 1
    scorer = StreamingScorer(settings, loader, group_id=args.group_id, metrics=metrics)
    model = loader.current
    log.info("scoring %s -> predictions with %s", settings.bootstrap_servers,
             model.uri if model else f"models:/{settings.model_name}@champion (waiting for it)")
    try:
        with StopSignal(on_stop=scorer.stop, name="score"):
            stats = scorer.run(args.duration, wait_model_s=args.wait_model)
    except TimeoutError as exc:
        print(f"error: {exc}")
        return 1
    except DeliveryFailed as exc:
        print(f"error: {exc}; a restart re-scores from the last commit", file=sys.stderr)
        return 1
    finally:
        loader.stop()
    print(json.dumps(stats.as_dict()))
    return 0
