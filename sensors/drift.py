"""Drift reports -> the lineage graph and retraining.

- `drift_report_sensor` records every report the drift monitor writes (`cryptovol drift`, the
  demo) as a runless `drift_report` materialization with its drift share as metadata, so the graph
  shows each report, not only those the asset computed itself.
- `drift_retrain_sensor` feeds each new report to `cryptovol.retrain_policy` and launches the
  `retrain` job when the policy says so (once per drift event, persistence + cooldown).

Reports are the JSON summaries under `<data>/reports/drift/` (written by the `drift_report` asset
and by `cryptovol drift`); a report's id is its file stem (a sortable UTC timestamp). The policy
state is the sensor cursor. The latest `champion_model` materialization counts as a retrain for
the cooldown, so a nightly retrain also delays a drift-triggered one.
"""

import json
import time
from pathlib import Path
from typing import Any

import dagster as dg

from assets.monitoring import report_metadata
from cryptovol.alerts import DRIFT_DETECTED
from cryptovol.retrain_policy import Decision, DriftObservation, PolicyState, RetrainPolicy, decide
from orchestration.automation import env_int, sensor_status
from orchestration.jobs import CHAMPION_MODEL, DRIFT_REPORT, retrain_job
from orchestration.resources import AlertsResource, LakeResource

#: At most this many unseen reports are evaluated per tick (the newest ones).
MAX_REPORTS_PER_TICK = 20


def drift_reports_dir(reports_dir: Path) -> Path:
    return Path(reports_dir) / "drift"


def unseen_reports(directory: Path, last_report_id: str | None) -> list[Path]:
    """Report JSON files newer than `last_report_id`, oldest first (latest.json excluded)."""
    paths = sorted(
        p for p in Path(directory).glob("*.json") if p.stem != "latest" and not p.name.startswith(".")
    )
    if last_report_id is not None:
        paths = [p for p in paths if p.stem > last_report_id]
    return paths[-MAX_REPORTS_PER_TICK:]


def run_tags(summary: dict[str, Any], path: Path, decision: Decision) -> dict[str, str]:
    """The drift report, as run tags (Dagster tag values are strings)."""
    columns = ",".join(summary.get("drifted_columns") or [])
    return {
        "cryptovol/trigger": "drift",
        "cryptovol/drift_report": str(path),
        "cryptovol/drift_share": f"{float(summary.get('drift_share', 0.0)):.4f}",
        "cryptovol/drifted_columns": columns[:240],
        "cryptovol/dataset_drift": str(bool(summary.get("dataset_drift"))).lower(),
        "cryptovol/drift_generated_at": str(summary.get("generated_at", "")),
        "cryptovol/policy_reason": decision.reason[:240],
    }


def evaluate_reports(
    policy: RetrainPolicy,
    state: PolicyState,
    directory: Path,
    *,
    now: float,
    last_retrain_at: float | None,
) -> tuple[PolicyState, list[tuple[Path, dict[str, Any], Decision]]]:
    """Feed every unseen report to the policy; -> (new state, [(path, summary, decision)])."""
    outcomes = []
    for path in unseen_reports(directory, state.last_report_id):
        try:
            summary = json.loads(path.read_text())
            share = float(summary["drift_share"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written or foreign file: the writer is atomic, so it is not ours
        decision = decide(
            policy, state, DriftObservation(path.stem, share), now=now, last_retrain_at=last_retrain_at
        )
        state = decision.state
        outcomes.append((path, summary, decision))
    return state, outcomes


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=env_int("CRYPTOVOL_DRIFT_SENSOR_INTERVAL_S", 60),
    default_status=sensor_status(),
    description="Requests a retrain when drift persists (CRYPTOVOL_DRIFT_MIN_SHARE, _PERSISTENCE, "
    "CRYPTOVOL_RETRAIN_COOLDOWN_S); alerts when a drift event starts.",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, alerts: AlertsResource):
    settings = lake.settings()
    policy = RetrainPolicy.from_env()
    state = PolicyState.from_json(context.cursor)
    latest = context.instance.get_latest_materialization_event(CHAMPION_MODEL)
    last_retrain_at = latest.timestamp if latest is not None else None
    now = time.time()
    state, outcomes = evaluate_reports(
        policy, state, drift_reports_dir(settings.reports_dir), now=now, last_retrain_at=last_retrain_at
    )
    notifier = alerts.notifier(settings)
    requests = []
    for path, summary, decision in outcomes:
        context.log.info(f"drift report {path.name}: share {summary.get('drift_share')}: {decision.reason}")
        if decision.event_started:
            notifier.notify(
                DRIFT_DETECTED,
                f"feature drift: {float(summary['drift_share']):.0%} of monitored columns drifted",
                severity="warning",
                report=str(path),
                html=summary.get("html_path"),
                drift_share=summary.get("drift_share"),
                drifted_columns=summary.get("drifted_columns"),
                retrain_requested=decision.retrain,
                policy=decision.reason,
            )
        if decision.retrain:
            requests.append(
                dg.RunRequest(run_key=f"drift-retrain-{path.stem}", tags=run_tags(summary, path, decision))
            )
    if not requests:
        reason = outcomes[-1][2].reason if outcomes else "no new drift report"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=state.to_json())
    return dg.SensorResult(run_requests=requests, cursor=state.to_json())


def report_materializations(
    directory: Path, last_report_id: str | None
) -> tuple[str | None, list[dg.AssetMaterialization]]:
    """One `drift_report` materialization per unseen report; -> (new cursor, events).

    A report written by a Dagster run of the asset (its summary names the run) is already a
    materialization and is skipped; a half-written or foreign file is skipped too.
    """
    events = []
    cursor = last_report_id
    for path in unseen_reports(directory, last_report_id):
        cursor = path.stem
        try:
            summary = json.loads(path.read_text())
            if summary.get("dagster_run_id"):
                continue
            metadata = report_metadata(summary)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        flag = "dataset drift" if summary.get("dataset_drift") else "no dataset drift"
        events.append(
            dg.AssetMaterialization(
                asset_key=DRIFT_REPORT,
                description=f"drift monitor report {path.stem}: share {float(summary['drift_share']):.2f}, "
                f"{flag}",
                metadata={**metadata, "report_id": path.stem, "recorded_by": "drift_report_sensor"},
            )
        )
    return cursor, events


@dg.sensor(
    minimum_interval_seconds=env_int("CRYPTOVOL_DRIFT_SENSOR_INTERVAL_S", 60),
    default_status=sensor_status(),
    description="Records every drift report the drift monitor writes (<data>/reports/drift/*.json) as a "
    "drift_report materialization with its drift share.",
)
def drift_report_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    directory = drift_reports_dir(lake.settings().reports_dir)
    cursor, events = report_materializations(directory, context.cursor or None)
    if not events:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new drift monitor report"), cursor=cursor)
    return dg.SensorResult(asset_events=events, cursor=cursor)
