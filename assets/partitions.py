"""Partitions of the lake assets: one per (UTC day of event time, product).

Days come from CRYPTOVOL_START_DATE (default 2025-11-01) up to and including today (the ingestor
is still landing today's file); products from CRYPTOVOL_PRODUCTS, read when the code location
loads.
"""

from __future__ import annotations

import dagster as dg

from cryptovol.config import Settings, load_env

DATE_DIM = "date"
PRODUCT_DIM = "product"
START_DATE = load_env().start_date  # validated YYYY-MM-DD, default 2025-11-01

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, end_offset=1, timezone="UTC")
product_partitions = dg.StaticPartitionsDefinition(list(Settings.from_env().products))
day_product_partitions = dg.MultiPartitionsDefinition(
    {DATE_DIM: daily_partitions, PRODUCT_DIM: product_partitions}
)


def partition_key(day: str, product: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DATE_DIM: day, PRODUCT_DIM: product})


def day_and_product(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    """(YYYY-MM-DD, product) of the partition being materialized/checked."""
    keys = context.partition_key.keys_by_dimension
    return keys[DATE_DIM], keys[PRODUCT_DIM]
