"""Lake maintenance that is not an asset: merging the streaming featurizer's small parts.

The stream parts are the same rows before and after a merge, so this is an op job, not a new
materialization of `features`; a schedule runs it hourly (CRYPTOVOL_COMPACT_CRON).
"""

import dagster as dg
from pydantic import Field

from orchestration.resources import LakeResource


class CompactConfig(dg.Config):
    older_than_s: float = Field(
        default=3600.0,
        description="Merge stream parts whose rows are all this much older than the product's newest "
                    "part (must exceed the featurizer's re-warm window).",
    )


@dg.op(description="Merge old part-stream-*.parquet files into one per product, date and partition.")
def compact_stream_parts_op(context: dg.OpExecutionContext, config: CompactConfig,
                            lake: LakeResource) -> None:
    from cryptovol.stream.compact import CompactionBusyError, compact_stream_parts

    features_dir = lake.settings().features_dir
    try:
        result = compact_stream_parts(features_dir, config.older_than_s)
    except CompactionBusyError as exc:
        context.log.warning(f"skipped: {exc}")
        return
    context.log.info(result.summary())
    context.add_output_metadata({
        "groups": len(result.groups),
        "files_before": result.files_before,
        "files_after": result.files_after,
        "rows": result.rows,
        "mb_before": round(result.bytes_before / 1e6, 3),
        "mb_after": round(result.bytes_after / 1e6, 3),
    })


@dg.job(description="Merge the streaming featurizer's old small Parquet parts (same rows, fewer files).")
def compact_stream_features():
    compact_stream_parts_op()
