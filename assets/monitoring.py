"""`drift_report`: Evidently drift of recent features against the champion's training window.

Materialized two ways, recorded alike (`report_metadata`): by this asset (the drift schedule or a
user), and by the drift monitor (`cryptovol drift --every S`, the demo), whose reports the
`drift_report_sensor` records as runless materializations.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from assets.metadata import path_value
from cryptovol.drift import DriftConfig
from orchestration.resources import LakeResource, MlflowResource

#: Defaults come from the core so the asset, the CLI and the demo judge drift identically.
_DEFAULTS = DriftConfig()


class DriftReportConfig(dg.Config):
    current_minutes: float = Field(
        default=_DEFAULTS.current_minutes,
        description="Length of the current window, ending at the newest feature row."
    )
    threshold: float = Field(
        default=_DEFAULTS.threshold,
        description="Per-column drift threshold (normalized Wasserstein distance)."
    )
    drift_share: float = Field(
        default=_DEFAULTS.drift_share,
        description="Dataset drift when at least this share of monitored columns drifted."
    )
    sample_every_s: float = Field(
        default=_DEFAULTS.sample_every_s,
        description="Decimate to one row per product per this many seconds before testing."
    )


def report_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """Asset metadata of one drift report's JSON summary (drift share first: the UI plots it)."""
    metadata = {
        "drift_share": dg.MetadataValue.float(float(summary["drift_share"])),
        "dataset_drift": dg.MetadataValue.bool(bool(summary["dataset_drift"])),
        "drifted_columns": ", ".join(summary.get("drifted_columns") or []) or "none",
        "n_reference": dg.MetadataValue.int(int(summary["n_reference"])),
        "n_current": dg.MetadataValue.int(int(summary["n_current"])),
        "reference_window": dg.MetadataValue.json(summary["reference_window"]),
        "current_window": dg.MetadataValue.json(summary["current_window"]),
        "generated_at": str(summary.get("generated_at", "")),
    }
    if summary.get("json_path"):
        metadata["json_path"] = path_value(summary["json_path"])
    if summary.get("html_path"):
        metadata["html_path"] = path_value(summary["html_path"])
    if summary.get("reference_source"):
        metadata["reference_source"] = str(summary["reference_source"])
    return metadata


@dg.asset(
    deps=["features", "champion_model"],
    group_name="monitoring",
    kinds={"evidently", "html"},
    description=(
        "Evidently data-drift report (HTML + JSON summary under `<data>/reports/drift/`): recent "
        "features vs the champion's training window. The drift sensor reads the JSON summaries."
    ),
)
def drift_report(
    context: dg.AssetExecutionContext, config: DriftReportConfig, lake: LakeResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from cryptovol.drift import DriftError, build_drift_report

    drift_config = DriftConfig(
        threshold=config.threshold,
        drift_share=config.drift_share,
        sample_every_s=config.sample_every_s,
        current_minutes=config.current_minutes,
    )
    settings = mlflow.settings_for(lake.settings())
    mlflow.activate(settings)
    try:
        # The run id in the summary tells the drift sensor this report is already recorded.
        result = build_drift_report(settings, drift_config, extra={"dagster_run_id": context.run_id})
    except DriftError as exc:
        raise dg.Failure(description=f"cannot compute a drift report: {exc}") from exc
    summary = result.summary
    metadata = report_metadata(summary)
    context.log.info(f"drift share {summary['drift_share']:.2f}; drifted: {metadata['drifted_columns']}")
    return dg.MaterializeResult(metadata=metadata)
