"""`features`: feature Parquet per (day, product), computed by the batch featurizer.

The batch featurizer (`cryptovol.batch.featurize_day`) runs the same `compute_features` as the
streaming featurizer and the service, with the previous day's tail as warm-up context.
"""

import dagster as dg

from assets.metadata import path_value, preview, time_value
from assets.partitions import day_and_product, day_product_partitions
from cryptovol.featureset import FEATURE_SET
from orchestration.resources import LakeResource


@dg.asset(
    partitions_def=day_product_partitions,
    deps=["raw_ticks"],
    group_name="features",
    kinds={"parquet", "pandas"},
    description=(
        f"Feature set {FEATURE_SET.version} ({len(FEATURE_SET.names)} features) per tick: the batch "
        "featurizer (same code as the stream) replaces partition (P, D) of the feature Delta table "
        "`<data>/features` in one transaction; `table_version` is the version it created."
    ),
    metadata={"feature_set_version": FEATURE_SET.version, "features": ", ".join(FEATURE_SET.names)},
)
def features(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    import pandas as pd

    from cryptovol import lake as core_lake
    from cryptovol.batch import featurize_day

    day, product = day_and_product(context)
    result = featurize_day(lake.settings(), product, day)
    read = core_lake.read_features_at(lake.settings(), [product], day, day)
    head = read.frame.head(5) if result.rows else pd.DataFrame()
    metadata = {
        "rows": dg.MetadataValue.int(int(result.rows)),
        "warm_rows": dg.MetadataValue.int(int(result.warm_rows)),
        "context_rows": dg.MetadataValue.int(int(result.context_rows)),
        "skipped_lines": dg.MetadataValue.int(int(sum(result.invalid.values()))),
        "schema_version": FEATURE_SET.version,
        "first_event_time": time_value(result.first_event_ns),
        "last_event_time": time_value(result.last_event_ns),
        "seconds": dg.MetadataValue.float(round(float(result.seconds), 3)),
        "preview": preview(head.drop(columns=["feature_set_version"], errors="ignore")),
        "table_version": dg.MetadataValue.int(-1 if read.version is None else int(read.version)),
        "partition_rows": dg.MetadataValue.int(len(read.frame)),
    }
    if result.path is not None:
        metadata["path"] = path_value(lake.settings().features_dir)
    return dg.MaterializeResult(metadata=metadata)
