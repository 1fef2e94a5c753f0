"""`cryptovol dashboard`: the signal dashboard (live probability vs realized vol, alerts, champion
PR curve and calibration, threshold slider, drift summary, backtest charts) on one local page."""

from __future__ import annotations

import argparse

HELP = "serve the signal dashboard: live spike probability, alerts, PR curve, threshold slider, backtest"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050)")


def run(args: argparse.Namespace) -> int:
    from cryptovol.config import Settings
    from cryptovol.dashboard.app import serve

    settings = Settings.from_env()
    print(f"dashboard on http://{args.host}:{args.port}/ (data dir {settings.data_dir}; "
          f"readiness http://{args.host}:{args.port}/healthz)", flush=True)
    serve(args.host, args.port, settings)
    return 0
