"""`cryptovol demo [--duration S]`: the closed loop on one machine.

The launcher lives next to the Dagster code (`orchestration/demo/`, it drives `dagster dev` and
its GraphQL API); the core never imports it. This command parses the options (so `--help` and
bad values behave like every other command) and then replaces itself with
`python -m orchestration.demo ...` (exec: same pid, so Ctrl-C and SIGTERM reach the launcher).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = (
    "run the whole platform locally: broker, simulator (with a volatility regime change), ingest, "
    "featurize, Dagster, MLflow UI, BentoML service, scorer, drift monitor; Ctrl-C stops everything"
)

#: The repository root holding `orchestration/` beside `cryptovol/`.
REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_MODULE = "orchestration.demo"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, metavar="S", help="run S seconds, then stop (default: until Ctrl-C)"
    )
    parser.add_argument("--products", help="comma-separated products (default: CRYPTOVOL_PRODUCTS)")
    parser.add_argument("--rate", type=float, default=4.0, help="simulated ticker messages/s per product")
    parser.add_argument("--seed", type=int, default=7, help="market seed (history and live simulator)")
    parser.add_argument(
        "--regime-change-at", type=float, default=120.0, metavar="S",
        help="volatility regime change S seconds after the live simulator starts, which is once the "
        "first champion is served (default 120; <0: none)",
    )
    parser.add_argument(
        "--regime-vol-mult", type=float, default=4.0, help="volatility multiplier of the new regime"
    )
    parser.add_argument(
        "--history-minutes", type=float, default=60.0,
        help="minutes of the same market written as history on a fresh data dir (first champion)",
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


def to_argv(args: argparse.Namespace) -> list[str]:
    """The parsed options back as command-line arguments (only those that differ from defaults)."""
    parser = argparse.ArgumentParser(add_help=False)
    configure(parser)
    argv: list[str] = []
    for action in parser._actions:
        value = getattr(args, action.dest, action.default)
        if not action.option_strings or value == action.default:
            continue
        flag = action.option_strings[0]
        argv += [flag] if isinstance(action, argparse._StoreTrueAction) else [f"{flag}={value}"]
    return argv


def launcher_command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", LAUNCHER_MODULE, *to_argv(args)]


def run(args: argparse.Namespace) -> int:
    if not (REPO_ROOT / "orchestration" / "demo" / "__main__.py").is_file():
        print(f"error: the demo launcher ({LAUNCHER_MODULE}) is not beside this package at {REPO_ROOT}; "
              "run `cryptovol demo` from a clone of the repository")
        return 2
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)
    cmd = launcher_command(args)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
    return 0  # not reached
