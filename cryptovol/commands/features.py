"""`cryptovol features build|list`: the batch featurizer over the landing files."""

from __future__ import annotations

import argparse

HELP = "build feature rows from landing files (batch featurizer) or list feature partitions"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build",
        help="featurize landing partitions",
        description=(
            "Featurize landing files into the feature Delta table (data/features): each (product, "
            "day) is replaced in one transaction. Without options: only partitions whose features "
            "are missing or older than the "
            "landing file. With --date/--product: exactly those partitions. --all: everything."
        ),
    )
    build.add_argument("--date", action="append", default=[], metavar="YYYY-MM-DD",
                       help="UTC day to build (repeatable)")
    build.add_argument("--product", action="append", default=[], metavar="P",
                       help="product to build, e.g. BTC-USD (repeatable)")
    build.add_argument("--all", action="store_true", help="rebuild every landing partition")
    build.add_argument("--lateness-s", type=float, default=0.0,
                       help="the event-time rule's lateness, as given to `cryptovol featurize` "
                            "(default 0; see cryptovol/eventtime.py)")
    sub.add_parser("list", help="list landing and feature partitions")


def run(args: argparse.Namespace) -> int:
    from cryptovol import batch, lake
    from cryptovol.config import Settings

    settings = Settings.from_env()
    if args.action == "list":
        return _list(settings)
    try:
        days = [lake.day_str(d) for d in args.date]
    except ValueError as exc:
        print(f"error: bad --date: {exc}")
        return 2
    explicit = bool(args.date or args.product)
    parts = batch.select_partitions(
        settings, products=args.product or None, days=days or None,
        only_stale=not (explicit or args.all),
    )
    if not parts:
        if explicit or args.all or not lake.list_landing_partitions(settings):
            print(f"no landing files match under {settings.raw_dir} "
                  f"(products={args.product or 'any'}, dates={days or 'any'})")
            return 1
        print("features are up to date (use --all to rebuild everything)")
        return 0
    total = 0
    seconds = 0.0
    for product, day in parts:
        result = batch.featurize_day(settings, product, day, lateness_s=args.lateness_s)
        total += result.rows
        seconds += result.seconds
        print(result.summary())
    rate = total / seconds if seconds > 0 else 0.0
    print(f"built {len(parts)} partition(s), {total:,} rows in {seconds:.2f} s ({rate:,.0f} rows/s)")
    return 0


def _list(settings) -> int:
    from cryptovol import lake

    landing = lake.list_landing_partitions(settings)
    featured = set(lake.list_feature_partitions(settings))
    if not landing and not featured:
        print(f"no landing files under {settings.raw_dir}")
        return 1
    paths = lake.LakePaths.of(settings)
    version = lake.feature_table_version(settings)
    print(f"{'product':<10} {'date':<10}  landing  features (table version {version})")
    for product, day in sorted(set(landing) | featured, key=lambda p: (p[1], p[0])):
        has_landing = "yes" if (product, day) in set(landing) else "no"
        state = ("batch" if paths.feature_part(product, day).exists() else "stream") \
            if (product, day) in featured else "-"
        print(f"{product:<10} {day:<10}  {has_landing:<7}  {state}")
    return 0
