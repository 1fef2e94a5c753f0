"""Gate decisions -> alerts: a `retrain` run whose gate kept the champion alerts too.

The `champion_model` asset alerts when the alias moves (champion_changed); a refusal is as much a
decision a human wants to see after a drift retrain ("the challenger lost: still serving vN,
because ..."). This sensor reads the decision the asset recorded as metadata on its
materialization, so the alert says what the graph says.
"""

import dagster as dg

from orchestration.automation import env_int, sensor_status
from orchestration.jobs import CHAMPION_MODEL, retrain_job
from orchestration.resources import AlertsResource, LakeResource

CHAMPION_KEPT = "champion_kept"


def decision_metadata(instance: dg.DagsterInstance, run_id: str) -> dict | None:
    """The `champion_model` materialization metadata of one run, as plain values (None if none)."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == CHAMPION_MODEL:
            return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    return None


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    name="champion_kept_alerts",
    default_status=sensor_status(),
    minimum_interval_seconds=env_int("CRYPTOVOL_ALERT_SENSOR_INTERVAL_S", 30),
    description="Emits a champion_kept alert when a retrain's promotion gate keeps the champion.",
)
def champion_kept_alerts(context: dg.RunStatusSensorContext, lake: LakeResource, alerts: AlertsResource):
    run = context.dagster_run
    decision = decision_metadata(context.instance, run.run_id)
    if decision is None or decision.get("champion_changed", True):
        return dg.SkipReason("the champion moved (alerted by champion_model) or no gate ran")
    champion = decision.get("champion_version", "none")
    alerts.notifier(lake.settings()).notify(
        CHAMPION_KEPT,
        f"gate kept the champion v{champion}: challenger v{decision.get('registered_version')} not promoted",
        severity="info",
        champion=champion,
        challenger=decision.get("registered_version"),
        reason=str(decision.get("reason", ""))[:2000],
        dagster_run_id=run.run_id,
        trigger=run.tags.get("cryptovol/trigger"),
    )
    return None
