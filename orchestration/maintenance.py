"""Lake maintenance that is not an asset: compaction, checkpoint and vacuum of the feature and
prediction Delta tables (`cryptovol.delta.maintain`, the same as `cryptovol compact`).

Compaction rewrites files, never rows, so this is an op job, not a new materialization of
`features`; a schedule runs it hourly (CRYPTOVOL_COMPACT_CRON).
"""

import dagster as dg
from pydantic import Field

from cryptovol.delta import VACUUM_RETENTION_HOURS
from orchestration.resources import LakeResource


class MaintainConfig(dg.Config):
    retention_hours: float = Field(
        default=VACUUM_RETENTION_HOURS, ge=0,
        description="Vacuum keeps the files older table versions need for this long (time travel).",
    )


@dg.op(description="Compact small files, checkpoint and vacuum the feature and prediction tables.")
def maintain_lake_tables(context: dg.OpExecutionContext, config: MaintainConfig, lake: LakeResource) -> None:
    from cryptovol.delta import maintain

    settings = lake.settings()
    metadata: dict[str, float | int] = {}
    for kind, root in (("features", settings.features_dir), ("predictions", settings.predictions_dir)):
        result = maintain(root, kind, retention_hours=config.retention_hours)
        context.log.info(result.summary())
        metadata.update({
            f"{kind}_files_before": result.files_before,
            f"{kind}_files_after": result.files_after,
            f"{kind}_files_vacuumed": result.files_removed_by_vacuum,
            f"{kind}_table_version": -1 if result.version_after is None else result.version_after,
        })
    context.add_output_metadata(metadata)


@dg.job(description="Compact, checkpoint and vacuum the lake's Delta tables (same rows, fewer files).")
def compact_lake():
    maintain_lake_tables()
