"""Lake maintenance that is not an asset: merging the small Parquet parts the streaming
featurizer and the scorer write on every flush (`cryptovol.compaction`).

The parts hold the same rows before and after a merge, so this is an op job, not a new
materialization of `features`; a schedule runs it hourly (CRYPTOVOL_COMPACT_CRON).
"""

import dagster as dg
from pydantic import Field

from cryptovol.config import COMPACT_OLDER_THAN_S
from orchestration.resources import LakeResource


class CompactConfig(dg.Config):
    older_than_s: float = Field(
        default=COMPACT_OLDER_THAN_S,
        description="Merge parts whose rows are all this much older than the product's newest part "
                    "(must exceed the featurizer's re-warm window).",
    )


@dg.op(description="Merge old feature and prediction parts into one per product and date.")
def compact_lake_parts(context: dg.OpExecutionContext, config: CompactConfig, lake: LakeResource) -> None:
    from cryptovol.compaction import CompactionBusyError, compact_feature_parts, compact_prediction_parts

    settings = lake.settings()
    metadata: dict[str, float | int] = {}
    for compact, root in ((compact_feature_parts, settings.features_dir),
                          (compact_prediction_parts, settings.predictions_dir)):
        try:
            result = compact(root, config.older_than_s)
        except CompactionBusyError as exc:
            context.log.warning(f"skipped: {exc}")
            continue
        context.log.info(result.summary())
        metadata.update({
            f"{result.kind}_files_before": result.files_before,
            f"{result.kind}_files_after": result.files_after,
            f"{result.kind}_rows": result.rows,
            f"{result.kind}_mb_saved": round((result.bytes_before - result.bytes_after) / 1e6, 3),
        })
    context.add_output_metadata(metadata)


@dg.job(description="Merge the featurizer's and the scorer's old small parts (same rows, fewer files).")
def compact_lake():
    compact_lake_parts()
