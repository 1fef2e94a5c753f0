"""`cryptovol demo [--duration S]`: the closed loop on one machine (see cryptovol.demo.launcher)."""

from __future__ import annotations

import argparse

HELP = (
    "run the whole platform locally: broker, simulator (with a volatility regime change), ingest, "
    "featurize, Dagster, MLflow UI, BentoML service, scorer, drift monitor; Ctrl-C stops everything"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, metavar="S", help="run S seconds, then stop (default: until Ctrl-C)"
    )
    parser.add_argument("--products", help="comma-separated products (default: CRYPTOVOL_PRODUCTS)")
    parser.add_argument("--rate", type=float, default=4.0, help="simulated ticker messages/s per product")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed")
    parser.add_argument(
        "--regime-change-at", type=float, default=240.0, metavar="S",
        help="volatility regime change S seconds after the simulator starts (default 240; <0: none)",
    )
    parser.add_argument(
        "--regime-vol-mult", type=float, default=4.0, help="volatility multiplier of the new regime"
    )
    parser.add_argument(
        "--history-minutes", type=float, default=60.0,
        help="calm synthetic history written on a fresh data dir to train the first champion",
    )
    parser.add_argument("--drift-every", type=float, default=60.0, metavar="S", help="drift report interval")
    parser.add_argument(
        "--current-minutes", type=float, default=3.0, help="drift report: length of the current window"
    )
    parser.add_argument("--status-every", type=float, default=5.0, metavar="S", help="status line interval")
    parser.add_argument("--free-ports", action="store_true", help="always pick free ports (no defaults)")
    parser.add_argument("--no-dagster", action="store_true", help="do not start dagster dev")
    parser.add_argument("--no-mlflow-ui", action="store_true", help="do not start the MLflow UI")
    parser.add_argument("--no-service", action="store_true", help="do not start the BentoML service")


def run(args: argparse.Namespace) -> int:
    from cryptovol.config import Settings, parse_products
    from cryptovol.demo.launcher import DemoOptions, run_demo

    settings = Settings.from_env()
    options = DemoOptions(
        duration_s=args.duration,
        products=parse_products(args.products) if args.products else settings.products,
        rate_hz=args.rate,
        seed=args.seed,
        regime_change_at_s=args.regime_change_at if args.regime_change_at >= 0 else None,
        regime_vol_mult=args.regime_vol_mult,
        history_minutes=args.history_minutes,
        drift_every_s=args.drift_every,
        current_minutes=args.current_minutes,
        status_every_s=args.status_every,
        free_ports=args.free_ports,
        with_dagster=not args.no_dagster,
        with_mlflow_ui=not args.no_mlflow_ui,
        with_service=not args.no_service,
    )
    return run_demo(settings, options)
