"""`cryptovol` command line: one sub-command per module in `cryptovol.commands`.

Sub-command modules are imported lazily, so `cryptovol broker status` does not pay for importing
MLflow, Evidently or Dagster. Each module exposes `HELP`, `configure(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

#: name -> (module under cryptovol.commands, one-line summary for `cryptovol --help`), in build order.
#: The summaries live here, not in the modules, so listing them imports no command (`--help` stays fast).
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("broker", "Start, stop or inspect the embedded Kafka-protocol broker"),
    "simulate": ("simulate", "Serve a simulated Coinbase ticker feed over WebSocket"),
    "ingest": ("ingest", "Ingest live tickers into landing NDJSON and Kafka ticks.raw"),
    "replay": ("replay", "Replay landing files or recordings into Kafka or landing"),
    "featurize": ("featurize", "Stream ticks.raw into ticks.features and the feature table"),
    "features": ("features", "Build feature rows from landing files, or list partitions"),
    "compact": ("compact", "Compact, checkpoint and vacuum the lake's Delta tables"),
    "lake": ("lake", "Migrate a Parquet lake into the Delta tables; table versions"),
    "sql": ("sql", "Run SQL on the lake with DuckDB"),
    "train": ("train", "Train, evaluate, register and gate spike models"),
    "backtest": ("backtest", "Backtest a risk overlay driven by the spike signal vs the baselines"),
    "models": ("models", "List model versions, promote a champion, or roll back"),
    "score": ("score", "Score ticks.features with the champion into predictions"),
    "drift": ("drift", "Report feature and prediction drift with Evidently"),
    "dashboard": ("dashboard", "Serve the signal dashboard (probabilities, alerts, PR curve, backtest)"),
    "demo": ("demo", "Run the whole platform locally until Ctrl-C"),
}


def _available() -> dict[str, str]:
    found = {}
    for name, (module, _summary) in COMMANDS.items():
        if importlib.util.find_spec(f"cryptovol.commands.{module}") is not None:
            found[name] = module
    return found


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, str | None]:
    parser = argparse.ArgumentParser(
        prog="cryptovol",
        description="Crypto volatility-spike platform: ingest, features, models, serving.",
        epilog="`cryptovol COMMAND --help` shows a command's options. Configuration: environment "
        "variables (README, Configuration); a bad value stops every command with a message naming it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    available = _available()
    chosen = next((a for a in argv if a in available), None)
    for name, module_name in available.items():
        if name == chosen:
            module = importlib.import_module(f"cryptovol.commands.{module_name}")
            module.configure(sub.add_parser(name, help=module.HELP, description=module.HELP))
        else:
            sub.add_parser(name, help=COMMANDS[name][1])
    return parser, chosen


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Nothing outside the repo's .venv and data dir unless asked: no telemetry settings in ~/.config.
    for name in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "BENTOML_DO_NOT_TRACK"):
        os.environ.setdefault(name, "true")
    parser, chosen = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if not chosen:
        parser.print_help()
        return 2
    from cryptovol.config import ConfigError, load_env

    try:
        load_env()  # every variable, validated once, before any command starts work
    except ConfigError as exc:
        print(f"cryptovol {chosen}: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"cryptovol.commands.{_available()[chosen]}")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
