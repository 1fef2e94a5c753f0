"""`python -m orchestration.demo [options]`: what `cryptovol demo` (and `make demo`) executes.

The options are the core command's (`cryptovol.commands.demo.configure`), so both accept the same.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def options_from(args: argparse.Namespace, default_products: tuple[str, ...]):
    from cryptovol.config import parse_products
    from orchestration.demo.launcher import DemoOptions

    return DemoOptions(
        duration_s=args.duration,
        products=parse_products(args.products) if args.products else default_products,
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


def main(argv: list[str] | None = None) -> int:
    from cryptovol.commands.demo import HELP, configure

    parser = argparse.ArgumentParser(prog="cryptovol demo", description=HELP)
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "BENTOML_DO_NOT_TRACK"):
        os.environ.setdefault(name, "true")
    # Children run from the repo root: a relative data dir must mean the caller's directory.
    os.environ["CRYPTOVOL_DATA_DIR"] = str(Path(os.environ.get("CRYPTOVOL_DATA_DIR") or "data").resolve())
    from cryptovol.config import ConfigError, Settings
    from orchestration.demo.launcher import run_demo

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    return run_demo(settings, options_from(args, settings.products))


if __name__ == "__main__":
    raise SystemExit(main())
