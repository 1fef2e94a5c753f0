"""`cryptovol simulate`: a local Coinbase Advanced Trade WebSocket server with a seeded market."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptovol.runtime import StopSignal
    from cryptovol.simulator.server import SimulatorConfig

HELP = "serve a simulated Coinbase Advanced Trade ticker feed over WebSocket (seeded, with faults)"


def _rate(text: str) -> float | None:
    """`--rate 20` -> 20.0; `--rate max` or `0` -> None (as fast as possible)."""
    if text.strip().lower() in ("max", "0", "0.0"):
        return None
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"rate must be >= 0 or 'max', got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction within [0, 1], got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="listen port (default 8765; 0 = any free)")
    parser.add_argument(
        "--products", default="BTC-USD,ETH-USD", help="comma-separated products (default BTC-USD,ETH-USD)"
    )
    parser.add_argument(
        "--rate", type=_rate, default=4.0,
        help="mean ticker messages per second per product; rises with volatility; 0 or 'max' = as fast "
        "as possible (default 4)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of prices, timing and faults (default 0)")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: run)")
    parser.add_argument(
        "--max-updates", type=int, default=None,
        help="send exactly N ticker updates in total, then only heartbeats (connections stay open)",
    )
    parser.add_argument(
        "--record", type=Path, default=None,
        help="append every frame sent as a JSON line {frame, kind, connection} (flushed per line)",
    )
    parser.add_argument(
        "--regime-change-at", type=float, default=None,
        help="after S simulated seconds (the market clock starts at the first subscription), multiply "
        "baseline volatility by --regime-vol-mult for good",
    )
    parser.add_argument("--regime-vol-mult", type=float, default=4.0, help="regime multiplier (default 4)")
    parser.add_argument(
        "--drop-every", type=float, default=None,
        help="close each client connection S seconds after it opened",
    )
    parser.add_argument(
        "--malformed-rate", type=_fraction, default=0.0,
        help="fraction of ticker updates replaced by malformed frames (rotating kinds)",
    )
    parser.add_argument(
        "--skip-seq-rate", type=_fraction, default=0.0,
        help="fraction of ticker updates sent after skipping 1-3 sequence numbers",
    )
    parser.add_argument(
        "--resume-after", type=float, default=0.0, metavar="S",
        help="start the market S simulated seconds in, continuing a history written offline with the "
        "same seed and rate (cryptovol.simulator.synthetic); --regime-change-at still counts from the "
        "first subscription (default 0)",
    )
    parser.add_argument(
        "--start-time", default=None,
        help="ISO-8601 instant: event timestamps follow a simulated clock from here (default: wall clock)",
    )


def run(args: argparse.Namespace) -> int:
    from cryptovol.runtime import StopSignal

    # Handlers from the first moment: a background shell job inherits SIGINT ignored, and a stop
    # during start-up (imports, config) exits at once with 0; once serving, the server drains.
    with StopSignal(name="simulate") as signals:
        with signals.interruptible():
            prepared = _prepare(args)
        if isinstance(prepared, int):
            return prepared
        return _serve(prepared, signals)


def _prepare(args: argparse.Namespace) -> SimulatorConfig | int:
    """The validated config, or the exit code of a bad value (reported before listening)."""
    import logging

    from cryptovol.config import parse_products
    from cryptovol.simulator.server import SimulatorConfig
    from cryptovol.ticks import TickError, parse_timestamp_ns

    try:
        start_ns = parse_timestamp_ns(args.start_time) if args.start_time else None
        config = SimulatorConfig(
            host=args.host,
            port=args.port,
            products=parse_products(args.products),
            rate_hz=args.rate,
            seed=args.seed,
            duration_s=args.duration,
            max_updates=args.max_updates,
            record_path=args.record,
            regime_change_at_s=args.regime_change_at,
            regime_vol_mult=args.regime_vol_mult,
            drop_every_s=args.drop_every,
            malformed_rate=args.malformed_rate,
            skip_seq_rate=args.skip_seq_rate,
            start_time_ns=start_ns,
            resume_after_s=args.resume_after,
        )
    except (ValueError, TickError) as exc:
        print(f"error: {exc}")
        return 2

    logging.getLogger("websockets").setLevel(logging.WARNING)
    return config


def _serve(config: SimulatorConfig, signals: StopSignal) -> int:
    from cryptovol.simulator.server import serve_forever

    def ready(port: int) -> None:
        print(f"simulator listening on ws://{config.host}:{port}", flush=True)

    try:
        return serve_forever(config, ready, signals)
    except OSError as exc:
        print(f"error: cannot listen on {config.host}:{config.port}: {exc}", flush=True)
        return 1
