"""`cryptovol backtest`: does the spike signal pay? Overlay backtest vs buy-and-hold and the baselines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "backtest a risk overlay driven by the spike signal vs buy-and-hold and the baselines"


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("data (default: the landing files under the data dir)")
    src.add_argument("--real-data", type=Path, metavar="DIR",
                     help="the shared data dir: its Dec-2025 series (walk-forward test folds) and its "
                          "2026-04 slices (later regime), or any folder of recordings")
    src.add_argument("--input", type=Path, nargs="+", metavar="PATH",
                     help="explicit recording/landing files or folders (overrides --real-data)")
    src.add_argument("--products", default="BTC-USD", help="comma-separated products (default BTC-USD)")
    src.add_argument("--min-segment-s", type=float, default=900.0, help="drop shorter segments")
    src.add_argument("--folds", type=int, default=5, help="purged walk-forward folds")
    src.add_argument("--models", default="logistic,xgboost",
                     help="learned kinds; the one chosen on validation drives the champion overlay")
    bt = parser.add_argument_group("backtest")
    bt.add_argument("--fee-bps", type=float, default=5.0, help="fee per unit traded (default 5 bps)")
    bt.add_argument("--slippage-bps", type=float, default=1.0, help="slippage beyond half the spread")
    bt.add_argument("--no-spread", action="store_true", help="do not charge half the recorded spread")
    bt.add_argument("--cut-to", type=float, default=0.0, help="exposure while the overlay's alert is on")
    bt.add_argument("--hold-s", type=float, default=None,
                    help="stay cut this long after the last alert (default: the label horizon, 60 s)")
    bt.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    bt.add_argument("--block", type=int, default=300, help="bootstrap block length in rows (1 s each)")
    bt.add_argument("--seed", type=int, default=0)
    out = parser.add_argument_group("output")
    out.add_argument("--report", type=Path, help="write the Markdown report (e.g. docs/BACKTEST.md); "
                                                  "charts go to images/ beside it")
    out.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    out.add_argument("--no-champion", action="store_true",
                     help="do not load the registered champion for the later-regime slices")


def _sources(args: argparse.Namespace, settings) -> tuple[list[Path], dict[str, list[Path]], str]:
    """(recordings for the walk-forward folds, {name: later-regime recordings}, description)."""
    from cryptovol.models.dataset import MAIN_REAL_SERIES, OUT_OF_PERIOD_SERIES

    if args.input:
        return list(args.input), {}, ", ".join(map(str, args.input))
    if args.real_data:
        main = args.real_data / MAIN_REAL_SERIES
        paths = [main if main.is_dir() else args.real_data]
        slices = args.real_data / OUT_OF_PERIOD_SERIES
        oop = {p.name: [p] for p in sorted(slices.iterdir()) if p.is_dir()} if slices.is_dir() else {}
        return paths, oop, str(paths[0])
    return [settings.raw_dir], {}, f"landing files under {settings.raw_dir}"


def run(args: argparse.Namespace) -> int:
    from cryptovol.backtest.engine import CostModel
    from cryptovol.backtest.publish import backtest_dir, publish_backtest
    from cryptovol.backtest.run import BacktestConfig
    from cryptovol.backtest.signals import registered_champion
    from cryptovol.config import Settings, parse_products
    from cryptovol.models.dataset import build_training_set, load_recorded_ticks
    from cryptovol.models.training import TrainConfig
    from cryptovol.models.walkforward import WalkForwardConfig

    settings = Settings.from_env()
    products = parse_products(args.products)
    train_paths, oop_paths, source = _sources(args, settings)
    try:
        ticks, info = load_recorded_ticks(train_paths, products=products)
    except FileNotFoundError as exc:
        print(f"error: {exc}. Pass --real-data ../shared/data or record data first", file=sys.stderr)
        return 1
    training_set = build_training_set(ticks, min_segment_s=args.min_segment_s)
    if training_set.n_rows < 200:
        print(f"error: only {training_set.n_rows} usable rows in {source}; need longer recordings",
              file=sys.stderr)
        return 1
    oop = {}
    for name, paths in oop_paths.items():
        oop_ticks, _ = load_recorded_ticks(paths, products=products)
        oop[name] = build_training_set(oop_ticks, min_segment_s=0.0)
    learned = tuple(k.strip() for k in args.models.split(",") if k.strip())
    train_config = TrainConfig(walk_forward=WalkForwardConfig(n_folds=args.folds), learned_kinds=learned,
                               regression_view=False, latency_repeats=1, seed=args.seed)
    config = BacktestConfig(costs=CostModel(fee_bps=args.fee_bps, slippage_bps=args.slippage_bps,
                                            spread=not args.no_spread),
                            cut_to=args.cut_to, hold_s=args.hold_s, block=args.block, n_boot=args.n_boot,
                            seed=args.seed)
    champion = None if args.no_champion or not oop else registered_champion(settings)
    argv = sys.argv[1:]
    command = ("cryptovol " + " ".join(argv[argv.index("backtest"):]) if "backtest" in argv
               else "cryptovol backtest")
    print(f"backtest on {training_set.n_rows} rows from {source}"
          + (f" and {len(oop)} later-regime recordings" if oop else ""))
    published = publish_backtest(training_set, settings=settings, config=config, train_config=train_config,
                                 out_of_period=oop or None, registered_champion=champion,
                                 report=args.report, command=command, mlflow_log=not args.no_mlflow)
    for section in published.result.sections:
        print(f"{section.title} ({section.hours:.2f} h):")
        for line in section.verdict.values():
            print(f"  {line}")
    print(f"charts and summary in {backtest_dir(settings)}")
    if args.report:
        print(f"report written to {args.report}")
    if published.run_id:
        print(f"MLflow run {published.run_id} at {settings.mlflow_tracking_uri}")
    return 0
