"""Asset checks: the Great Expectations suites (blocking on ERROR) and data freshness.

The suites live in `cryptovol.validation`; a failed ERROR-severity expectation fails the check
with ERROR severity, which (`blocking=True`) stops downstream assets in the same run. WARN-only
failures are reported with WARN severity and do not block. Freshness compares the newest event
time in the lake with now (CRYPTOVOL_FRESHNESS_MAX_AGE_S, default 2 h).
"""

import time
import warnings
from typing import Any

import dagster as dg

from assets.features import features
from assets.ingest import raw_ticks
from assets.metadata import path_value, time_value
from assets.partitions import day_and_product, day_product_partitions
from orchestration.resources import DuckDBResource, LakeResource

# Per-partition checks (partitions_def on a check) are a Dagster preview feature; we rely on it so
# each (day, product) gets its own check status in the UI.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")


def freshness_max_age_s() -> float:
    from cryptovol.config import load_env

    return load_env().freshness_max_age_s


def suite_result(report: Any, path: Any) -> dg.AssetCheckResult:
    """A `cryptovol.validation.ValidationReport` -> check result (ERROR blocks, WARN reports)."""
    failed = report.errors + report.warnings
    metadata = {
        "suite": report.suite,
        "rows": dg.MetadataValue.int(report.row_count),
        "errors": dg.MetadataValue.int(len(report.errors)),
        "warnings": dg.MetadataValue.int(len(report.warnings)),
        "expectations": dg.MetadataValue.int(len(report.results)),
        "path": path_value(path),
        "failures": dg.MetadataValue.md(
            "\n\n".join(f"```\n{r.describe()}\n```" for r in failed) if failed else "none"
        ),
    }
    if report.errors:
        first = report.errors[0]
        metadata["first_failure"] = f"{first.expectation} on {first.column}: {first.unexpected_count} rows"
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=report.message()[:2000],
        )
    if report.warnings:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=report.message()[:2000],
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata)


@dg.asset_check(
    asset=raw_ticks,
    blocking=True,
    partitions_def=day_product_partitions,
    description="Great Expectations suite `raw_ticks` (fields, prices, bid <= ask, monotone time, "
    "sequence gaps, unique keys); an ERROR failure blocks `features`.",
)
def raw_ticks_suite(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    from cryptovol import lake as core_lake
    from cryptovol.validation import validate_raw_ticks

    day, product = day_and_product(context)
    settings = lake.settings()
    ticks = core_lake.read_landing_day(settings, product, day)
    return suite_result(validate_raw_ticks(ticks), core_lake.landing_path(settings, product, day))


@dg.asset_check(
    asset=features,
    blocking=True,
    partitions_def=day_product_partitions,
    description="Great Expectations suite `features` (feature-set schema and version, unique keys, "
    "no NaN after warm-up, value ranges); an ERROR failure blocks everything downstream.",
)
def features_suite(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    from cryptovol import lake as core_lake
    from cryptovol.validation import validate_features

    day, product = day_and_product(context)
    settings = lake.settings()
    frame = core_lake.read_features(settings, products=[product], start=day, end=day)
    return suite_result(validate_features(frame), core_lake.features_partition_dir(settings, product, day))


def _freshness(newest_ns: int | None, what: str, max_age_s: float, where: str) -> dg.AssetCheckResult:
    if newest_ns is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"no {what} newer than {max_age_s:.0f} s found ({where})",
            metadata={"max_age_s": dg.MetadataValue.float(max_age_s), "looked_at": where},
        )
    age_s = time.time() - newest_ns / 1e9
    return dg.AssetCheckResult(
        passed=age_s <= max_age_s,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"newest {what} is {age_s:.0f} s old (limit {max_age_s:.0f} s)",
        metadata={
            "newest_event_time": time_value(newest_ns),
            "age_s": dg.MetadataValue.float(round(age_s, 3)),
            "max_age_s": dg.MetadataValue.float(max_age_s),
            "looked_at": where,
        },
    )


@dg.asset_check(
    asset=raw_ticks,
    description="The newest landed tick is not older than CRYPTOVOL_FRESHNESS_MAX_AGE_S (default 2 h).",
)
def raw_ticks_freshness(lake: LakeResource) -> dg.AssetCheckResult:
    from cryptovol import lake as core_lake

    settings = lake.settings()
    max_age_s = freshness_max_age_s()
    since_ns = int((time.time() - max_age_s) * 1e9)
    newest_file: dict[str, str] = {}
    for product, day in core_lake.list_landing_partitions(settings):
        newest_file[product] = max(day, newest_file.get(product, day))
    newest = None
    for product, day in newest_file.items():
        # Only the end of the newest file per product is read (files grow all day).
        tail = core_lake.read_landing_tail(
            core_lake.landing_path(settings, product, day), since_ns, product=product
        )
        if len(tail):
            newest = max(newest or 0, int(tail["event_time_ns"].max()))
    where = ", ".join(f"{p}/{d}.ndjson" for p, d in sorted(newest_file.items())) or str(settings.raw_dir)
    return _freshness(newest, "landed tick", max_age_s, where)


@dg.asset_check(
    asset=features,
    description="The newest feature row is not older than CRYPTOVOL_FRESHNESS_MAX_AGE_S (default 2 h); "
    "DuckDB reads the answer from the Parquet statistics.",
)
def features_freshness(lake: LakeResource, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    settings = lake.settings()
    with duckdb.connect(settings) as con:
        newest = _newest(con, "features")
    return _freshness(newest, "feature row", freshness_max_age_s(), str(settings.features_dir))


def _newest(con: Any, view: str) -> int | None:
    row = con.execute(f"SELECT max(event_time_ns) FROM {view}").fetchall()
    return int(row[0][0]) if row and row[0][0] is not None else None


SUITE_CHECKS = [raw_ticks_suite, features_suite]
FRESHNESS_CHECKS = [raw_ticks_freshness, features_freshness]
ALL_CHECKS = [*SUITE_CHECKS, *FRESHNESS_CHECKS]
