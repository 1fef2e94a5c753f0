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

#: name -> module under cryptovol.commands (kept in build order).
COMMANDS: dict[str, str] = {
    "broker": "broker",
    "simulate": "simulate",
    "ingest": "ingest",
    "replay": "replay",
    "featurize": "featurize",
    "features": "features",
    "compact": "compact",
    "sql": "sql",
    "train": "train",
    "models": "models",
    "score": "score",
    "drift": "drift",
    "demo": "demo",
}


def _available() -> dict[str, str]:
    found = {}
    for name, module in COMMANDS.items():
        if importlib.util.find_spec(f"cryptovol.commands.{module}") is not None:
            found[name] = module
    return found


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, str | None]:
    parser = argparse.ArgumentParser(
        prog="cryptovol",
        description="Crypto volatility-spike platform: ingest, features, models, serving.",
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
            sub.add_parser(name, help=f"see `cryptovol {name} --help`")
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
    module = importlib.import_module(f"cryptovol.commands.{_available()[chosen]}")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
