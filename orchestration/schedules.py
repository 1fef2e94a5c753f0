"""Schedules: finish yesterday's partitions, retrain nightly, refresh the drift report, run the
freshness checks and merge old stream parts.

Cron strings are overridable (CRYPTOVOL_NIGHTLY_FEATURES_CRON, CRYPTOVOL_NIGHTLY_RETRAIN_CRON,
CRYPTOVOL_DRIFT_CRON, CRYPTOVOL_FRESHNESS_CRON, CRYPTOVOL_COMPACT_CRON); all times are UTC, like the
partitions.
"""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from assets.partitions import partition_key, product_partitions
from cryptovol.config import Settings, load_env
from orchestration.automation import schedule_status
from orchestration.jobs import drift_job, freshness_job, ingest_features_job, retrain_job
from orchestration.maintenance import compact_lake
from orchestration.resources import LakeResource, MlflowResource


def _cron(name: str, default: str) -> str:
    return load_env().value_of(name) or default  # validated: 5 fields


@dg.schedule(
    job=ingest_features_job,
    cron_schedule=_cron("CRYPTOVOL_NIGHTLY_FEATURES_CRON", "15 0 * * *"),
    execution_timezone="UTC",
    default_status=schedule_status(),
    description="After midnight UTC: validate and featurize the finished day for every product.",
)
def nightly_features_schedule(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    return [
        dg.RunRequest(
            run_key=f"nightly-{day}-{product}",
            partition_key=partition_key(day, product),
            tags={"cryptovol/trigger": "nightly"},
        )
        for product in product_partitions.get_partition_keys()
    ]


nightly_retrain_schedule = dg.ScheduleDefinition(
    name="nightly_retrain_schedule",
    job=retrain_job,
    cron_schedule=_cron("CRYPTOVOL_NIGHTLY_RETRAIN_CRON", "0 1 * * *"),
    execution_timezone="UTC",
    default_status=schedule_status(),
    tags={"cryptovol/trigger": "nightly"},
    description="Nightly retrain: labels -> dataset -> models -> evaluation -> champion_model.",
)


def champion_exists(settings: Settings) -> bool:
    """Is there a `champion` alias in the registry (the drift report's reference)?"""
    from cryptovol.models.registry import CHAMPION, alias_version
    from cryptovol.models.tracking import configure_tracking

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return False  # no store yet, so no champion (and no need to create one to find out)
    try:
        configure_tracking(settings)
        return alias_version(settings.model_name, CHAMPION) is not None
    except Exception:  # an unreachable tracking server is the drift run's problem, not ours
        return True


@dg.schedule(
    name="drift_report_schedule",
    job=drift_job,
    cron_schedule=_cron("CRYPTOVOL_DRIFT_CRON", "*/30 * * * *"),
    execution_timezone="UTC",
    default_status=schedule_status(),
    description="Recompute the drift report once a champion exists; the drift sensor decides on retraining.",
)
def drift_schedule(context: dg.ScheduleEvaluationContext, lake: LakeResource, mlflow: MlflowResource):
    settings = mlflow.settings_for(lake.settings())
    if not champion_exists(settings):
        return dg.SkipReason(
            f"no {settings.model_name}@champion yet: nothing to compare recent features with"
        )
    return dg.RunRequest(tags={"cryptovol/trigger": "schedule"})


freshness_schedule = dg.ScheduleDefinition(
    name="freshness_checks_schedule",
    job=freshness_job,
    cron_schedule=_cron("CRYPTOVOL_FRESHNESS_CRON", "*/15 * * * *"),
    execution_timezone="UTC",
    default_status=schedule_status(),
    description="Run the freshness checks (CRYPTOVOL_FRESHNESS_MAX_AGE_S) every 15 minutes.",
)

compact_schedule = dg.ScheduleDefinition(
    name="compact_lake_schedule",
    job=compact_lake,
    cron_schedule=_cron("CRYPTOVOL_COMPACT_CRON", "20 * * * *"),
    execution_timezone="UTC",
    default_status=schedule_status(),
    description="Hourly: merge the featurizer's and scorer's parts older than an hour (same rows).",
)

ALL_SCHEDULES = [nightly_features_schedule, nightly_retrain_schedule, drift_schedule, freshness_schedule,
                 compact_schedule]
