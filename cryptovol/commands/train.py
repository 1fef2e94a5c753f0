"""`cryptovol train`: the model lifecycle (`cryptovol.models.lifecycle.run_lifecycle`, the same
steps the Dagster `retrain` job runs): walk-forward evaluation, MLflow tracking, registration of the
learned challenger and the best baseline, and the promotion gate. Progress goes to stderr."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

HELP = "train and evaluate spike models (baselines, logistic, XGBoost), register and gate the challenger"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("data (default: the landing files under the data dir)")
    src.add_argument("--real-data", type=Path, metavar="DIR",
                     help="recorded data: the shared data dir (uses its Dec-2025 series and, for the "
                          "out-of-period check, its 2026-04 slices) or any folder of recordings")
    src.add_argument("--input", type=Path, nargs="+", metavar="PATH",
                     help="explicit recording/landing files or folders (overrides --real-data)")
    src.add_argument("--out-of-period", type=Path, nargs="*", metavar="PATH",
                     help="recordings scored by the champion after training, never trained on "
                          "(default with --real-data: each 2026-04 slice)")
    src.add_argument("--from-lake", action="store_true",
                     help="train on the feature Delta table (data/features) instead of recomputing "
                          "features from landing files; the table version read is logged")
    src.add_argument("--as-of-version", type=int, default=None, metavar="N",
                     help="with the lake: read the feature table as of version N (time travel: the "
                          "cryptovol.feature_table_version tag of an earlier run re-reads its rows)")
    src.add_argument("--products", default="BTC-USD", help="comma-separated products (default BTC-USD)")
    src.add_argument("--min-segment-s", type=float, default=900.0,
                     help="drop segments shorter than this (default 900 s)")
    mdl = parser.add_argument_group("models and validation")
    mdl.add_argument("--folds", type=int, default=5)
    mdl.add_argument("--scheme", choices=["expanding", "rolling"], default="expanding")
    mdl.add_argument("--embargo-s", type=float, default=60.0, help="purge gap, >= label horizon")
    mdl.add_argument("--horizon-s", type=int, default=60)
    mdl.add_argument("--quantile", type=float, default=0.9, help="spike = ratio above this training quantile")
    mdl.add_argument("--label", choices=["relative", "absolute"], default="relative")
    mdl.add_argument("--models", default="logistic,xgboost", help="learned model kinds")
    mdl.add_argument("--alert-rate", type=float, default=None,
                     help="choose the decision threshold for this alert rate (default: best F1)")
    mdl.add_argument("--xgb-trees", type=int, default=None, help="XGBoost boosting rounds (default 400)")
    mdl.add_argument("--n-jobs", type=int, default=2)
    reg = parser.add_argument_group("tracking, registry and the promotion gate")
    reg.add_argument("--margin", type=float, default=None,
                     help="the bootstrap lower bound of the pooled PR-AUC gain must exceed this "
                          "(default 0.01)")
    reg.add_argument("--recent-margin", type=float, default=None,
                     help="non-inferiority margin on the most recent test block (default 0.05 PR-AUC)")
    reg.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    reg.add_argument("--experiment", default=None, help="MLflow experiment (default cryptovol-spike)")
    reg.add_argument("--no-register", action="store_true", help="track only; do not register or gate")
    reg.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="extra MLflow run tag")
    out = parser.add_argument_group("reports")
    out.add_argument("--report", type=Path, help="write the model report (e.g. docs/MODEL_REPORT.md)")
    out.add_argument("--model-card", type=Path,
                     help="write the champion's model card (e.g. docs/model_card.md)")
    out.add_argument("--images", type=Path, default=None,
                     help="where the report's plots go (default: images/ next to the report)")


def _sources(args: argparse.Namespace, settings) -> tuple[list[Path], dict[str, list[Path]], str]:
    from cryptovol.models.dataset import MAIN_REAL_SERIES, OUT_OF_PERIOD_SERIES

    oop: dict[str, list[Path]] = {}
    if args.input:
        train_paths, source = list(args.input), ", ".join(map(str, args.input))
    elif args.real_data:
        root = args.real_data
        main = root / MAIN_REAL_SERIES
        train_paths = [main if main.is_dir() else root]
        source = str(train_paths[0])
        slices = root / OUT_OF_PERIOD_SERIES
        if args.out_of_period is None and slices.is_dir():
            oop = {p.name: [p] for p in sorted(slices.iterdir()) if p.is_dir()}
    else:
        train_paths, source = [settings.raw_dir], f"landing files under {settings.raw_dir}"
    for path in args.out_of_period or []:
        oop[path.stem.split(".")[0]] = [path]
    return train_paths, oop, source


def _progress(quiet: bool):
    import time

    if quiet:
        return None
    start = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return progress


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cryptovol.config import Settings, parse_products
    from cryptovol.labels import LabelConfig
    from cryptovol.models.dataset import build_training_set, load_recorded_ticks
    from cryptovol.models.gate import GateConfig
    from cryptovol.models.lifecycle import run_lifecycle
    from cryptovol.models.training import TrainConfig
    from cryptovol.models.walkforward import WalkForwardConfig

    settings = Settings.from_env()
    products = parse_products(args.products)
    progress = _progress(args.quiet)
    train_paths, oop_paths, source = _sources(args, settings)
    label = LabelConfig(kind=args.label, horizon_s=args.horizon_s, quantile=args.quantile)
    lake_tags: dict[str, str] = {}
    if args.from_lake or args.as_of_version is not None:
        from cryptovol.lake_training import lake_training_set

        try:
            training_set, version = lake_training_set(settings, products, label, args.min_segment_s,
                                                      as_of_version=args.as_of_version)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        source = training_set.info["source"]
        lake_tags = {"cryptovol.feature_table_version": str(version)}
        print(f"training set: {training_set.n_rows} rows from the feature table at version {version} "
              f"(re-read them with --as-of-version {version})")
    else:
        if progress:
            progress(f"reading recordings: {source}")
        try:
            ticks, read_info = load_recorded_ticks(train_paths, products=products)
        except FileNotFoundError as exc:
            print(f"error: {exc}. Record or simulate data first (`cryptovol simulate`, `cryptovol ingest`) "
                  "or pass --real-data ../shared/data", file=sys.stderr)
            return 1
        if progress:
            progress(f"features and labels for {len(ticks)} ticks")
        training_set = build_training_set(ticks, label, min_segment_s=args.min_segment_s)
        training_set.info["source"] = source
        training_set.info["files"] = read_info["files"]
        kept, total = training_set.info["segments_kept"], training_set.info["segments_total"]
        print(f"training set: {training_set.n_rows} rows from {read_info['files']} files "
              f"({kept} of {total} segments kept)")
    if training_set.n_rows < 200:
        print(f"error: only {training_set.n_rows} usable rows; need longer recordings "
              f"(segments >= {args.min_segment_s:.0f} s) or a lower --min-segment-s", file=sys.stderr)
        return 1
    oop_sets = {}
    for name, paths in oop_paths.items():
        oop_ticks, _ = load_recorded_ticks(paths, products=products)
        # Later-regime slices are 10-20 min long: keep them whole (warm-up still applies).
        oop_sets[name] = build_training_set(oop_ticks, label, min_segment_s=0.0)
    learned = tuple(k.strip() for k in args.models.split(",") if k.strip())
    gate = GateConfig()
    if args.margin is not None:
        gate = replace(gate, min_pr_auc_gain=args.margin)
    if args.recent_margin is not None:
        gate = replace(gate, recent_margin=args.recent_margin)
    xgb = {"n_jobs": args.n_jobs, **({"n_estimators": args.xgb_trees} if args.xgb_trees else {})}
    config = TrainConfig(
        label=label,
        walk_forward=WalkForwardConfig(n_folds=args.folds, scheme=args.scheme, embargo_s=args.embargo_s),
        learned_kinds=learned,
        target_alert_rate=args.alert_rate,
        gate=gate,
        model_params={"xgboost": xgb},
    )
    tags = {**lake_tags, **dict(t.split("=", 1) for t in args.tag if "=" in t)}
    result = run_lifecycle(training_set, settings=settings, config=config, run_tags=tags or None,
                           experiment_name=args.experiment, register=not args.no_register,
                           out_of_period=oop_sets or None, progress=progress, source=source)
    print(result.summary_line())
    print(f"MLflow run {result.run_id} at {settings.mlflow_tracking_uri}")
    argv = sys.argv[1:]
    command = "cryptovol " + " ".join(argv[argv.index("train"):]) if "train" in argv else "cryptovol train"
    if args.report:
        from cryptovol.models.plots import write_plots
        from cryptovol.models.report import render_report

        args.report.parent.mkdir(parents=True, exist_ok=True)
        image_dir = args.images or args.report.parent / "images"
        written = write_plots(result.evaluation, image_dir)
        images = {p.stem: os.path.relpath(p, args.report.parent) for p in written}
        args.report.write_text(render_report(result, command=command, images=images))
        print(f"report written to {args.report} (plots in {image_dir})")
    if args.model_card:
        from cryptovol.models.report import render_model_card

        champion_kind = next((k for k, v in result.versions.items() if v == result.champion_after), None)
        args.model_card.parent.mkdir(parents=True, exist_ok=True)
        args.model_card.write_text(render_model_card(result, champion_kind))
        print(f"model card written to {args.model_card}")
    return 0
