"""`cryptovol compact`: merge the streaming featurizer's and the scorer's old small Parquet parts."""

from __future__ import annotations

import argparse

HELP = "merge old small Parquet parts of the feature and prediction lakes (safe while they run)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Merge the parts the streaming featurizer (data/features, part-stream-*.parquet) and the "
        "scorer (data/predictions) write on every flush: per product and date, parts whose rows are "
        "all older than --older-than seconds behind the product's newest become one part. Same "
        "rows for every reader; safe while the featurizer and the scorer run. Dagster runs it hourly."
    )
    from cryptovol.config import COMPACT_OLDER_THAN_S

    parser.add_argument("--older-than", type=float, default=COMPACT_OLDER_THAN_S, metavar="SECONDS",
                        help="merge parts this much older than the newest (default %(default)g)")
    parser.add_argument("--only", choices=("features", "predictions"), default=None,
                        help="compact one tree only")
    parser.add_argument("--dry-run", action="store_true", help="print what would be merged, change nothing")


def run(args: argparse.Namespace) -> int:
    from cryptovol.compaction import CompactionBusyError, compact_feature_parts, compact_prediction_parts
    from cryptovol.config import Settings

    settings = Settings.from_env()
    jobs = {"features": (compact_feature_parts, settings.features_dir),
            "predictions": (compact_prediction_parts, settings.predictions_dir)}
    for kind, (compact, root) in jobs.items():
        if args.only not in (None, kind):
            continue
        try:
            result = compact(root, args.older_than, dry_run=args.dry_run)
        except (ValueError, CompactionBusyError) as exc:
            print(f"error: {exc}")
            return 2
        for group in result.groups if args.dry_run else []:
            where = "" if group.partition is None else f" partition {group.partition}"
            print(f"{kind:<12} {group.product:<10} {group.date}{where}: {len(group.files)} parts")
        print(result.summary())
    return 0
