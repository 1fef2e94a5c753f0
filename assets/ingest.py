"""`raw_ticks`: the ingestor's NDJSON landing files, one partition per (UTC day, product).

Materializing a partition validates the landing file with the same parser the stream uses and
records what is there (rows, event-time span, gaps, dead-lettered lines, the file). The file
itself is the system of record: nothing is rewritten.
"""

import dagster as dg

from assets.metadata import path_value, time_value
from assets.partitions import day_and_product, day_product_partitions
from orchestration.resources import LakeResource


@dg.asset(
    partitions_def=day_product_partitions,
    group_name="ingest",
    kinds={"ndjson", "python"},
    description=(
        "Ticker updates landed by `cryptovol ingest` as NDJSON (`<data>/raw/<product>/<day>.ndjson`), "
        "parsed with the stream's parser; invalid lines are skipped and counted by reason "
        "(dead-lettered), never fatal."
    ),
    metadata={"layout": "<data>/raw/<product>/<YYYY-MM-DD>.ndjson"},
)
def raw_ticks(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    from cryptovol import lake as core_lake

    day, product = day_and_product(context)
    settings = lake.settings()
    path = core_lake.landing_path(settings, product, day)
    if not path.exists():
        raise dg.Failure(
            description=f"no landing file for {product} on {day}: {path} does not exist",
            metadata={"expected_path": path_value(path)},
        )
    summary = core_lake.landing_summary(settings, product, day)
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(summary.rows),
            "dead_lettered": dg.MetadataValue.int(summary.dead_lettered),
            "dead_letter_reasons": dg.MetadataValue.json(summary.dead_letter_reasons),
            "first_event_time": time_value(summary.first_event_ns),
            "last_event_time": time_value(summary.last_event_ns),
            "gaps_over_max": dg.MetadataValue.int(summary.gaps),
            "largest_gap_s": dg.MetadataValue.float(float(summary.largest_gap_s)),
            "path": path_value(path),
            "bytes": dg.MetadataValue.int(path.stat().st_size),
        }
    )
