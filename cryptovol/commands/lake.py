"""`cryptovol lake migrate|versions|archive-features`: the lake's Delta tables as a whole."""

from __future__ import annotations

import argparse

HELP = "migrate a Parquet lake into the Delta tables, show table versions, archive the feature table"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = sub.add_parser(
        "migrate", help="convert the old Parquet layout into the Delta tables",
        description=(
            "Convert data/features/product=P/date=D/*.parquet and data/predictions/... (the layout "
            "before Delta) into the feature and prediction Delta tables, by the old readers' rules "
            "(batch part + newer stream rows, one row per key; the latest score per key), one "
            "transaction per partition; old files move to data/pre-delta/. Re-running is safe."),
    )
    migrate.add_argument("--dry-run", action="store_true", help="print what would be migrated")
    sub.add_parser("versions", help="the tables' current versions and recent commits")
    sub.add_parser(
        "archive-features", help="move the feature table aside (feature-set version change)",
        description=("The explicit migration to a new feature set: the feature table of the old "
                     "version moves to data/archive/features-<version>-v<table version>/ (still a "
                     "readable Delta table); then `cryptovol features build --all` and the featurizer "
                     "write a new table under the new version."),
    )


def run(args: argparse.Namespace) -> int:
    from cryptovol.config import Settings

    settings = Settings.from_env()
    if args.action == "migrate":
        return _migrate(settings, args.dry_run)
    if args.action == "versions":
        return _versions(settings)
    return _archive(settings)


def _migrate(settings, dry_run: bool) -> int:
    from cryptovol.delta_migrate import migrate, table_rows

    before = table_rows(settings.data_dir)
    results = migrate(settings.data_dir, dry_run=dry_run)
    after = table_rows(settings.data_dir)
    for result in results:
        for line in result.details:
            print(f"{result.table:<12} {line}")
        print(result.summary())
        if not dry_run and after[result.table] - before[result.table] != result.rows_committed:
            print(f"error: {result.table} grew by {after[result.table] - before[result.table]} rows, "
                  f"{result.rows_committed} were committed")
            return 1
    return 0


def _versions(settings) -> int:
    from cryptovol import delta

    for kind, root in (("features", settings.features_dir), ("predictions", settings.predictions_dir)):
        table = delta.open_table(root)
        if table is None:
            print(f"{kind:<12} no table at {root}")
            continue
        extra = f", feature set {delta.feature_set_version_of(table)}" if kind == "features" else ""
        print(f"{kind:<12} version {table.version()}, {len(table.file_uris())} files{extra}")
        for entry in table.history(5):
            print(f"  v{entry.get('version')}: {entry.get('operation')} {entry.get('timestamp')}")
    return 0


def _archive(settings) -> int:
    import os

    from cryptovol import delta

    table = delta.open_table(settings.features_dir)
    if table is None:
        print(f"no feature table at {settings.features_dir}")
        return 1
    target = (settings.data_dir / "archive"
              / f"features-{delta.feature_set_version_of(table)}-v{table.version()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(settings.features_dir, target)
    built = settings.data_dir / "lake_state" / "batch-built"
    if built.exists():
        os.replace(built, target / "_cryptovol_batch_built")  # `_` names: not table data
    print(f"feature table moved to {target}; rebuild with `cryptovol features build --all`")
    return 0
