"""Failures -> alerts: a failed run and a failed asset check each emit one alert.

A partition whose runs keep failing alerts on the first failure only (until a run succeeds).

A check that keeps failing the same way on the same partition (e.g. today's partition is
re-validated every few minutes while the file grows) alerts once, when it starts failing, not on
every re-run: a failed evaluation whose previous evaluation (same check, same partition) also
failed with the same severity is recorded in the cursor but not sent again.
"""

import json
from typing import Any

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from cryptovol.alerts import CHECK_FAILED, RUN_FAILED
from orchestration.automation import env_int, sensor_status
from orchestration.resources import AlertsResource, LakeResource

#: Failed evaluations looked at per check and tick (newest first).
CHECK_HISTORY_LIMIT = 25


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=sensor_status(),
    minimum_interval_seconds=env_int("CRYPTOVOL_ALERT_SENSOR_INTERVAL_S", 30),
    description="Emits a run_failed alert (alert log + webhook) for every failed run.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, lake: LakeResource, alerts: AlertsResource):
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    if partition and _partition_already_failing(context.instance, run):
        # Today's partition is re-run whenever its file grows: alert when it starts failing only.
        return dg.SkipReason(f"{run.job_name} {partition} was already failing; not alerting again")
    steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    alerts.notifier(lake.settings()).notify(
        RUN_FAILED,
        f"Dagster run of {run.job_name} failed",
        severity="error",
        run_id=run.run_id,
        job=run.job_name,
        failed_steps=steps,
        error=(context.failure_event.message or "")[:2000],
        partition=partition,
        trigger=run.tags.get("cryptovol/trigger"),
    )
    return None


def _partition_already_failing(instance: dg.DagsterInstance, run: Any) -> bool:
    """Did the previous finished run of the same job and partition fail too?"""
    record = instance.get_run_record_by_id(run.run_id)
    previous = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=run.job_name,
            tags={"dagster/partition": run.tags["dagster/partition"]},
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            created_before=record.create_timestamp if record else None,
        ),
        limit=2,
    )
    previous = [r for r in previous if r.run_id != run.run_id]
    return bool(previous) and previous[0].status == dg.DagsterRunStatus.FAILURE


@dg.sensor(
    name="asset_check_failure_alerts",
    default_status=sensor_status(),
    minimum_interval_seconds=env_int("CRYPTOVOL_ALERT_SENSOR_INTERVAL_S", 30),
    description="Emits a check_failed alert for every failed asset-check evaluation (cursor per check).",
)
def asset_check_failure_alerts(
    context: dg.SensorEvaluationContext, lake: LakeResource, alerts: AlertsResource
):
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    storage = context.instance.event_log_storage
    notifier = alerts.notifier(lake.settings())
    sent = repeated = 0
    for check_key in sorted(context.repository_def.asset_graph.asset_check_keys, key=str):
        name = check_key.to_user_string()
        records = storage.get_asset_check_execution_history(
            check_key, limit=CHECK_HISTORY_LIMIT, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        new = sorted((r for r in records if r.id > cursor.get(name, 0)), key=lambda r: r.id)
        for record in new:
            cursor[name] = record.id
            evaluation = record.evaluation
            severity = evaluation.severity.value if evaluation else "ERROR"
            if _still_failing(storage, check_key, record, severity):
                repeated += 1
                continue
            metadata = {
                k: getattr(v, "value", v) for k, v in (evaluation.metadata if evaluation else {}).items()
            }
            notifier.notify(
                CHECK_FAILED,
                f"asset check {name} failed ({severity})",
                severity="error" if severity == "ERROR" else "warning",
                check=name,
                partition=record.partition,
                run_id=record.run_id,
                blocking=bool(evaluation and evaluation.blocking),
                details={k: str(v)[:500] for k, v in metadata.items()},
            )
            sent += 1
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if not sent and not repeated:
        return dg.SkipReason("no new failed asset checks")
    return dg.SkipReason(f"sent {sent} check_failed alert(s); {repeated} repeated failure(s) not re-sent")


def _still_failing(storage: Any, check_key: dg.AssetCheckKey, record: Any, severity: str) -> bool:
    """Did the evaluation before `record` (same check and partition) fail with the same severity?"""
    done = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
    previous = storage.get_asset_check_execution_history(
        check_key,
        limit=1,
        cursor=record.id,
        status=done,
        partition_filter=PartitionKeyFilter(key=record.partition),
    )
    if not previous or previous[0].status != AssetCheckExecutionRecordStatus.FAILED:
        return False
    before = previous[0].evaluation
    return (before.severity.value if before else "ERROR") == severity
