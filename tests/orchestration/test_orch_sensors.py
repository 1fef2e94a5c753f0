"""Sensors evaluated against a real (ephemeral) Dagster instance with real cursors."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from cryptovol.alerts import DRIFT_DETECTED, read_alerts
from cryptovol.drift import DriftResult
from cryptovol.simulator.synthetic import generate_landing_files
from orchestration.definitions import defs
from orchestration.resources import AlertsResource, LakeResource
from sensors.drift import drift_retrain_sensor
from sensors.landing import new_landing_files_sensor

START = datetime(2025, 12, 1, 23, 58, tzinfo=UTC)  # crosses midnight: two days per product


def evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None, data_dir: Path):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"lake": LakeResource(data_dir=str(data_dir)), "alerts": AlertsResource()},
        definitions=defs,
    )
    return sensor.evaluate_tick(context)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_landing_sensor_requests_each_new_partition_once(data_dir: Path, instance) -> None:
    generate_landing_files(data_dir, ["BTC-USD", "ETH-USD"], START, duration_s=240, seed=1)

    first = evaluate(new_landing_files_sensor, instance, None, data_dir)
    keys = sorted(str(r.partition_key) for r in first.run_requests)
    assert keys == [
        "2025-12-01|BTC-USD",
        "2025-12-01|ETH-USD",
        "2025-12-02|BTC-USD",
        "2025-12-02|ETH-USD",
    ]
    assert len({r.run_key for r in first.run_requests}) == 4
    assert all(r.tags["cryptovol/landing_file"].endswith(".ndjson") for r in first.run_requests)
    cursor = json.loads(first.cursor)
    assert set(cursor) == {
        "BTC-USD/2025-12-01",
        "ETH-USD/2025-12-01",
        "BTC-USD/2025-12-02",
        "ETH-USD/2025-12-02",
    }

    again = evaluate(new_landing_files_sensor, instance, first.cursor, data_dir)
    assert again.run_requests == [] and again.skip_message

    # The ingestor appends to one file: only that partition is requested, with a new run key.
    grown = data_dir / "raw" / "ETH-USD" / "2025-12-02.ndjson"
    with grown.open("a") as fh:
        fh.write(grown.read_text().splitlines()[-1] + "\n")
    os.utime(grown, ns=(grown.stat().st_atime_ns, grown.stat().st_mtime_ns + 1_000_000))
    third = evaluate(new_landing_files_sensor, instance, again.cursor, data_dir)
    assert [str(r.partition_key) for r in third.run_requests] == ["2025-12-02|ETH-USD"]
    assert third.run_requests[0].run_key not in {r.run_key for r in first.run_requests}


def test_landing_sensor_ignores_files_outside_the_partitions(data_dir: Path, instance) -> None:
    (data_dir / "raw" / "DOGE-USD").mkdir(parents=True)
    (data_dir / "raw" / "DOGE-USD" / "2025-12-01.ndjson").write_text("{}\n")
    (data_dir / "raw" / "BTC-USD").mkdir(parents=True)
    (data_dir / "raw" / "BTC-USD" / "2019-01-01.ndjson").write_text("{}\n")  # before the start date
    result = evaluate(new_landing_files_sensor, instance, None, data_dir)
    assert result.run_requests == []
    # ...and does not look at them again.
    assert set(json.loads(result.cursor)) == {"DOGE-USD/2025-12-01", "BTC-USD/2019-01-01"}


def write_report(data_dir: Path, when: datetime, share: float) -> Path:
    """A drift summary as `cryptovol.drift` saves it (the sensor's input)."""
    columns = ["rv_30s", "rv_60s", "rv_300s", "ewma_vol", "spread_bps", "tick_rate_30s"]
    drifted = columns[: round(share * len(columns))]
    summary = {
        "generated_at": when.isoformat(),
        "drift_share": len(drifted) / len(columns),
        "drifted_columns": drifted,
        "dataset_drift": len(drifted) / len(columns) >= 0.5,
        "html_path": None,
    }
    json_path, _ = DriftResult(summary=summary).save(data_dir / "reports" / "drift", when=when)
    return json_path


def test_drift_sensor_retrains_once_per_persistent_drift_event(data_dir: Path, instance, monkeypatch) -> None:
    monkeypatch.setenv("CRYPTOVOL_DRIFT_MIN_SHARE", "0.5")
    monkeypatch.setenv("CRYPTOVOL_DRIFT_PERSISTENCE", "2")
    monkeypatch.setenv("CRYPTOVOL_RETRAIN_COOLDOWN_S", "0")
    t0 = datetime(2025, 12, 2, 12, tzinfo=UTC)
    alerts_log = data_dir / "alerts" / "alerts.jsonl"

    write_report(data_dir, t0, 0.0)
    write_report(data_dir, t0 + timedelta(minutes=30), 0.17)
    calm = evaluate(drift_retrain_sensor, instance, None, data_dir)
    assert calm.run_requests == []
    assert read_alerts(alerts_log) == []

    first_drift = write_report(data_dir, t0 + timedelta(minutes=60), 0.83)
    one = evaluate(drift_retrain_sensor, instance, calm.cursor, data_dir)
    assert one.run_requests == []  # one drifted report is not yet an event

    second_drift = write_report(data_dir, t0 + timedelta(minutes=90), 0.83)
    fired = evaluate(drift_retrain_sensor, instance, one.cursor, data_dir)
    assert len(fired.run_requests) == 1
    request = fired.run_requests[0]
    assert request.run_key == f"drift-retrain-{second_drift.stem}"
    assert request.tags["cryptovol/trigger"] == "drift"
    assert request.tags["cryptovol/drift_report"] == str(second_drift)
    assert float(request.tags["cryptovol/drift_share"]) == pytest.approx(0.8333, abs=1e-3)
    assert "rv_30s" in request.tags["cryptovol/drifted_columns"]
    assert first_drift.stem < second_drift.stem
    [alert] = read_alerts(alerts_log, kind=DRIFT_DETECTED)
    assert alert["details"]["report"] == str(second_drift) and alert["details"]["retrain_requested"]

    # Same reports again (same cursor or a new tick): nothing more.
    assert evaluate(drift_retrain_sensor, instance, fired.cursor, data_dir).run_requests == []
    write_report(data_dir, t0 + timedelta(minutes=120), 1.0)
    still = evaluate(drift_retrain_sensor, instance, fired.cursor, data_dir)
    assert still.run_requests == []
    assert len(read_alerts(alerts_log, kind=DRIFT_DETECTED)) == 1

    # Drift ends (calm report), then a new event starts: one more retrain.
    write_report(data_dir, t0 + timedelta(minutes=150), 0.0)
    write_report(data_dir, t0 + timedelta(minutes=180), 0.67)
    write_report(data_dir, t0 + timedelta(minutes=210), 0.67)
    new_event = evaluate(drift_retrain_sensor, instance, still.cursor, data_dir)
    assert len(new_event.run_requests) == 1
    assert len(read_alerts(alerts_log, kind=DRIFT_DETECTED)) == 2


def test_drift_sensor_respects_cooldown_after_a_retrain(data_dir: Path, instance, monkeypatch) -> None:
    monkeypatch.setenv("CRYPTOVOL_DRIFT_PERSISTENCE", "2")
    monkeypatch.setenv("CRYPTOVOL_RETRAIN_COOLDOWN_S", "3600")
    # A (nightly) retrain just produced a champion.
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="champion_model"))
    t0 = datetime(2025, 12, 2, 12, tzinfo=UTC)
    write_report(data_dir, t0, 0.83)
    write_report(data_dir, t0 + timedelta(minutes=30), 1.0)
    result = evaluate(drift_retrain_sensor, instance, None, data_dir)
    assert result.run_requests == []
    assert "cooldown" in result.skip_message
    # The drift event is still reported to humans.
    assert len(read_alerts(data_dir / "alerts" / "alerts.jsonl", kind=DRIFT_DETECTED)) == 1


def test_nightly_schedules_target_yesterday_and_drift_waits_for_a_champion(data_dir: Path) -> None:
    from orchestration.resources import default_resources
    from orchestration.schedules import drift_schedule, nightly_features_schedule

    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2025, 12, 3, 0, 15, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    requests = nightly_features_schedule.evaluate_tick(context).run_requests
    assert sorted(str(r.partition_key) for r in requests) == ["2025-12-02|BTC-USD", "2025-12-02|ETH-USD"]

    # `with`: the resources include generator resources (dagster-mlflow tracking has a teardown)
    with dg.build_schedule_context(resources=default_resources()) as schedule_context:
        skipped = drift_schedule.evaluate_tick(schedule_context)
    assert skipped.run_requests == [] and "no cryptovol-spike@champion" in skipped.skip_message


def test_drift_alert_survives_a_failing_webhook(
    data_dir: Path, instance, monkeypatch, webhook_factory
) -> None:
    monkeypatch.setenv("CRYPTOVOL_DRIFT_PERSISTENCE", "1")
    monkeypatch.setenv("CRYPTOVOL_RETRAIN_COOLDOWN_S", "0")
    hook = webhook_factory([500, 500, 500])
    write_report(data_dir, datetime(2025, 12, 2, 12, tzinfo=UTC), 1.0)
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "lake": LakeResource(data_dir=str(data_dir)),
            "alerts": AlertsResource(webhook_url=hook.url, retries=2, backoff_s=0.01),
        },
        definitions=defs,
    )
    result = drift_retrain_sensor.evaluate_tick(context)
    assert len(result.run_requests) == 1  # the retrain is still requested
    assert len(hook.bodies) == 3  # first attempt + 2 retries
    kinds = [a["kind"] for a in read_alerts(data_dir / "alerts" / "alerts.jsonl")]
    assert kinds == [DRIFT_DETECTED, "alert_delivery_failed"]


def monitor_report(data_dir: Path, when: datetime, share: float, **extra) -> Path:
    """A drift summary with every key `cryptovol.drift` writes (what `cryptovol drift --every` saves)."""
    window = {"start": when.isoformat(), "end": when.isoformat(), "start_ns": 0, "end_ns": 1}
    summary = {
        "generated_at": when.isoformat(), "reference_window": window, "current_window": window,
        "n_reference": 3600, "n_current": 180, "drift_share": share, "drifted_columns": ["rv_30s"],
        "dataset_drift": share >= 0.5, "per_feature": {}, "prediction_drift": None,
        "live_pr_auc": None, "html_path": None, "reference_source": "champion training window", **extra,
    }
    json_path, _ = DriftResult(summary=summary).save(data_dir / "reports" / "drift", when=when)
    return json_path


def test_every_monitor_report_becomes_a_drift_report_materialization(data_dir: Path, instance) -> None:
    from sensors.drift import drift_report_sensor

    t0 = datetime(2025, 12, 2, 12, tzinfo=UTC)
    calm = monitor_report(data_dir, t0, 0.07)
    drifted = monitor_report(data_dir, t0 + timedelta(minutes=1), 0.86)
    # A report the drift_report asset computed in a Dagster run is already materialized by it.
    monitor_report(data_dir, t0 + timedelta(minutes=2), 0.5, dagster_run_id="abc")
    (data_dir / "reports" / "drift" / "20251202T120300_000000Z.json").write_text("{half written")

    first = evaluate(drift_report_sensor, instance, None, data_dir)
    # What the sensor daemon does with a tick's asset events (dagster/_daemon/sensor.py).
    for event in first.asset_events:
        instance.report_runless_asset_event(event)
    records = instance.fetch_materializations(dg.AssetKey("drift_report"), limit=10).records
    seen = sorted(
        (r.asset_materialization.metadata["report_id"].value,
         r.asset_materialization.metadata["drift_share"].value,
         r.asset_materialization.metadata["dataset_drift"].value)
        for r in records
    )
    assert seen == [(calm.stem, pytest.approx(0.07), False), (drifted.stem, pytest.approx(0.86), True)]
    assert all(r.run_id == "" for r in records)  # runless: recorded by the sensor, not a run
    assert first.cursor == "20251202T120300_000000Z"

    # The next tick records only what is new.
    assert evaluate(drift_report_sensor, instance, first.cursor, data_dir).asset_events == []
    later = monitor_report(data_dir, t0 + timedelta(minutes=5), 0.0)
    second = evaluate(drift_report_sensor, instance, first.cursor, data_dir)
    assert [e.metadata["report_id"].value for e in second.asset_events] == [later.stem]


@pytest.mark.parametrize("changed", [False, True])
def test_a_retrain_whose_gate_kept_the_champion_alerts(data_dir: Path, instance, changed: bool) -> None:
    """The decision comes from the run's real champion_model materialization in the event log."""
    from sensors.decisions import CHAMPION_KEPT, champion_kept_alerts

    @dg.asset(name="champion_model")
    def decided() -> dg.MaterializeResult:  # what the champion_model asset records after its gate
        return dg.MaterializeResult(metadata={
            "champion_changed": changed, "promoted": changed, "champion_version": "2" if changed else "1",
            "registered_version": "2", "reason": "challenger lower bound +0.001 below the margin 0.01",
        })

    result = dg.materialize([decided], instance=instance, tags={"cryptovol/trigger": "drift"})
    run = instance.get_run_by_id(result.run_id)
    success = [e for e in instance.all_logs(run.run_id) if e.dagster_event and
               e.dagster_event.event_type == dg.DagsterEventType.RUN_SUCCESS][0]
    context = dg.build_run_status_sensor_context(
        sensor_name="champion_kept_alerts", dagster_instance=instance, dagster_run=run,
        dagster_event=success.dagster_event,
        resources={"lake": LakeResource(data_dir=str(data_dir)), "alerts": AlertsResource()},
    )
    champion_kept_alerts(context)
    kept = read_alerts(data_dir / "alerts" / "alerts.jsonl", kind=CHAMPION_KEPT)
    if changed:
        assert kept == []  # champion_model itself alerts champion_changed
    else:
        [alert] = kept
        assert alert["details"]["champion"] == "1" and alert["details"]["challenger"] == "2"
        assert alert["details"]["trigger"] == "drift" and "below the margin" in alert["details"]["reason"]
