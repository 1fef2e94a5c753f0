"""`cryptovol compact`: maintenance of the feature and prediction Delta tables (compaction,
checkpoint, vacuum), through the tables themselves (`cryptovol.delta.maintain`)."""

from __future__ import annotations

import argparse

HELP = "compact, checkpoint and vacuum the feature and prediction Delta tables (safe while they run)"


def configure(parser: argparse.ArgumentParser) -> None:
    from cryptovol.delta import VACUUM_RETENTION_HOURS

    parser.description = (
        "The streaming featurizer and the scorer commit a small file per flush. Per table: "
        "optimize.compact() rewrites small files into large ones (same rows, one transaction), a "
        "checkpoint is written, and vacuum deletes files no version newer than --retention-hours "
        "needs. Time travel (`cryptovol train --as-of-version`) works for versions within the "
        "retention. Safe while the writers run. Dagster's compact_lake job runs it hourly."
    )
    parser.add_argument("--retention-hours", type=float, default=VACUUM_RETENTION_HOURS, metavar="HOURS",
                        help="keep files older versions need for this long (default %(default)g)")
    parser.add_argument("--only", choices=("features", "predictions"), default=None,
                        help="maintain one table only")
    parser.add_argument("--dry-run", action="store_true", help="print the tables' state, change nothing")


def run(args: argparse.Namespace) -> int:
    from cryptovol.config import Settings
    from cryptovol.delta import maintain

    settings = Settings.from_env()
    if args.retention_hours < 0:
        print("error: --retention-hours must be >= 0")
        return 2
    for kind, root in (("features", settings.features_dir), ("predictions", settings.predictions_dir)):
        if args.only not in (None, kind):
            continue
        print(maintain(root, kind, retention_hours=args.retention_hours, dry_run=args.dry_run).summary())
    return 0
