"""The closed loop on real processes: drift in the live market -> one retrain -> gate -> serving.

History (the market's first 45 minutes, synthetic landing files) -> Dagster in-process
materialization (raw_ticks, features, training graph) -> the first champion (the gate's choice,
a baseline if no learned model earns it) served by a real `bentoml serve`. Then the live path runs
as real processes: `cryptovol simulate` continuing the same market (`--resume-after`, fast-forwarded
simulated clock, volatility x4 after one simulated minute) -> `cryptovol ingest` -> embedded broker
-> `cryptovol featurize`. Every drift report becomes a `drift_report` materialization; the reports
on the live window show drift, the Dagster drift sensor requests exactly one retrain, the retrain
runs the promotion gate, the alert log records drift -> decision (champion_changed or
champion_kept), and the service reports the new champion if the gate promoted it. The control run
(same market, no regime change) triggers nothing.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from cryptovol.alerts import CHAMPION_CHANGED, DRIFT_DETECTED, read_alerts
from cryptovol.config import Settings
from cryptovol.drift import DriftConfig, build_drift_report
from cryptovol.procs import wait_until
from cryptovol.simulator.synthetic import generate_landing_files

pytestmark = pytest.mark.slow

PRODUCTS = ("BTC-USD", "ETH-USD")
SEED = 5
HISTORY_S = 45 * 60
REGIME_AT_S = 60
#: Live simulated ticks: ~17 simulated minutes (5 of them rv_300s warm-up for the stream).
LIVE_UPDATES = 16_000

#: Small but real training (as in tests/orchestration): 3 purged folds, fewer trees and draws.
FAST = {
    "training_dataset": {"config": {"n_folds": 3}},
    "xgboost_model": {"config": {"n_estimators": 60}},
    "model_evaluation": {"config": {"n_boot": 50}},
}


def _history_start() -> datetime:
    # Far enough in the past that the fast-forwarded live stream also ends before "now".
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(hours=3)


def _ingest_and_featurize(instance: dg.DagsterInstance, settings: Settings) -> None:
    """What the landing sensor requests: raw_ticks + features (+ checks) for every partition."""
    from assets.checks import SUITE_CHECKS
    from assets.features import features
    from assets.ingest import raw_ticks
    from assets.partitions import partition_key
    from cryptovol import lake
    from orchestration.resources import default_resources

    for product, day in lake.list_landing_partitions(settings.data_dir):
        result = dg.materialize(
            [raw_ticks, features, *SUITE_CHECKS], partition_key=partition_key(day, product),
            resources=default_resources(), instance=instance,
        )
        assert result.success


def _retrain(
    instance: dg.DagsterInstance, *, tags: dict[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    from orchestration.definitions import build_definitions

    defs = build_definitions()  # resources from this test's environment

    result = defs.resolve_job_def("retrain").execute_in_process(
        instance=instance, run_config={"ops": FAST}, tags=tags,
    )
    assert result.success
    return result


def _champion_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [materialization] = result.asset_materializations_for_node("champion_model")
    return {k: v.value for k, v in materialization.metadata.items()}


def _stream_rows(settings: Settings) -> int:
    from cryptovol.stream.sink import stream_row_count

    return stream_row_count(settings.features_dir)


def _run_live(settings, simulator_factory, ingestor_factory, featurizer_factory, start: datetime,
              regime_change_at_s: float | None) -> int:
    options = {"rate": "max", "seed": SEED, "start_time": start.isoformat().replace("+00:00", "Z"),
               "max_updates": LIVE_UPDATES, "record": False, "resume_after": HISTORY_S}
    if regime_change_at_s is not None:
        options.update(regime_change_at=regime_change_at_s, regime_vol_mult=4)
    simulator = simulator_factory(**options)
    featurizer = featurizer_factory("--lateness-s", "0", "--flush-every-s", "1")
    ingestor = ingestor_factory(simulator.url, "--products", ",".join(PRODUCTS))
    wait_until(lambda: ingestor.metrics().get("published", 0) >= LIVE_UPDATES,
               timeout_s=600, interval_s=1.0, what=f"{LIVE_UPDATES} live ticks published")
    landed = int(ingestor.metrics()["landed"])
    # Every published tick becomes a durable stream feature row.
    wait_until(lambda: _stream_rows(settings) >= landed, timeout_s=300, interval_s=1.0,
               what="the stream featurizer to catch up")
    ingestor.process.stop()
    featurizer.process.stop()
    simulator.stop()
    return landed


def _evaluate_drift_sensor(instance: dg.DagsterInstance, cursor: str | None, data_dir: Path):
    from orchestration.definitions import build_definitions

    defs = build_definitions()  # resources from this test's environment
    from orchestration.resources import AlertsResource, LakeResource
    from sensors.drift import drift_retrain_sensor

    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs,
        resources={"lake": LakeResource(data_dir=str(data_dir)), "alerts": AlertsResource()},
    )
    return drift_retrain_sensor.evaluate_tick(context)


def _version(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/version", timeout=5) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def loop_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Policy: two consecutive drifted reports make an event; no cooldown after the bootstrap run.
    monkeypatch.setenv("CRYPTOVOL_DRIFT_MIN_SHARE", "0.5")
    monkeypatch.setenv("CRYPTOVOL_DRIFT_PERSISTENCE", "2")
    monkeypatch.setenv("CRYPTOVOL_RETRAIN_COOLDOWN_S", "0")


def _bootstrap(instance, settings: Settings, regime_at_s: float | None) -> tuple[datetime, str]:
    """The market's first HISTORY_S seconds (the same process the live simulator then resumes)."""
    start = _history_start()
    generate_landing_files(
        settings.data_dir, PRODUCTS, start, duration_s=HISTORY_S, seed=SEED,
        regime_change_at_s=None if regime_at_s is None else HISTORY_S + regime_at_s, regime_vol_mult=4,
    )
    _ingest_and_featurize(instance, settings)
    first = _champion_metadata(_retrain(instance))
    assert first["champion_changed"] and first["champion_version"] != "none"
    return start + timedelta(seconds=HISTORY_S + 1), first["champion_version"]


def _record_reports(instance: dg.DagsterInstance, data_dir: Path, cursor: str | None = None) -> str | None:
    """One drift_report_sensor tick, its events written as the sensor daemon writes them."""
    from orchestration.definitions import build_definitions

    defs = build_definitions()  # resources from this test's environment
    from orchestration.resources import LakeResource
    from sensors.drift import drift_report_sensor

    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs,
        resources={"lake": LakeResource(data_dir=str(data_dir))},
    )
    tick = drift_report_sensor.evaluate_tick(context)
    for event in tick.asset_events:
        instance.report_runless_asset_event(event)
    return tick.cursor


def _kept_alert(instance: dg.DagsterInstance, run_id: str, data_dir: Path) -> None:
    """champion_kept_alerts on the retrain run's success event."""
    from orchestration.resources import AlertsResource, LakeResource
    from sensors.decisions import champion_kept_alerts

    run = instance.get_run_by_id(run_id)
    [success] = [e.dagster_event for e in instance.all_logs(run_id)
                 if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_SUCCESS]
    champion_kept_alerts(dg.build_run_status_sensor_context(
        sensor_name="champion_kept_alerts", dagster_instance=instance, dagster_run=run,
        dagster_event=success,
        resources={"lake": LakeResource(data_dir=str(data_dir)), "alerts": AlertsResource()},
    ))


def _two_reports(settings: Settings) -> list[dict]:
    """Two consecutive reports (as the monitor writes them), on the last 10 and 8 live minutes."""
    return [build_drift_report(settings, DriftConfig(current_minutes=m)).summary for m in (10, 8)]


def test_regime_change_triggers_one_retrain_and_the_service_follows_the_gate(
    data_dir, broker, instance, loop_env, simulator_factory, ingestor_factory, featurizer_factory,
    bento_server_factory,
) -> None:
    settings = Settings.from_env()
    live_start, v1 = _bootstrap(instance, settings, REGIME_AT_S)
    server = bento_server_factory(data_dir, env={"CRYPTOVOL_MODEL_POLL_S": "1"})
    assert _version(server.url)["model_version"] == v1

    _run_live(settings, simulator_factory, ingestor_factory, featurizer_factory, live_start,
              regime_change_at_s=REGIME_AT_S)

    reports = _two_reports(settings)
    _record_reports(instance, data_dir)
    recorded = instance.fetch_materializations(dg.AssetKey("drift_report"), limit=10).records
    assert sorted(r.asset_materialization.metadata["drift_share"].value for r in recorded) == sorted(
        s["drift_share"] for s in reports)
    for summary in reports:
        assert summary["dataset_drift"] is True, summary["drifted_columns"]
        assert summary["reference_source"].startswith("champion training window")
        assert summary["reference_window"]["end_ns"] <= summary["current_window"]["start_ns"]
        assert summary["current_window"]["start_ns"] > int(live_start.timestamp() * 1e9)
        assert {"rv_30s", "rv_60s"} <= set(summary["drifted_columns"])

    tick = _evaluate_drift_sensor(instance, None, data_dir)
    assert len(tick.run_requests) == 1
    request = tick.run_requests[0]
    assert request.tags["cryptovol/trigger"] == "drift"
    assert request.tags["cryptovol/drift_report"] == reports[1]["json_path"]
    [drift_alert] = read_alerts(data_dir / "alerts" / "alerts.jsonl", kind=DRIFT_DETECTED)
    assert drift_alert["details"]["retrain_requested"] is True
    # The same event does not retrain twice.
    build_drift_report(settings, DriftConfig(current_minutes=6))
    assert _evaluate_drift_sensor(instance, tick.cursor, data_dir).run_requests == []

    # The retrain the sensor asked for: the landing sensor's refresh of the features, then the job.
    _ingest_and_featurize(instance, settings)
    retrain = _retrain(instance, tags=request.tags)
    decision = _champion_metadata(retrain)
    assert int(decision["registered_version"]) > int(v1)
    assert decision["reason"]
    _kept_alert(instance, retrain.run_id, data_dir)
    alerts = read_alerts(data_dir / "alerts" / "alerts.jsonl")
    after_drift = [a["kind"] for a in alerts if a["created_at"] > drift_alert["created_at"]]
    changes = [a["details"]["champion"] for a in alerts if a["kind"] == CHAMPION_CHANGED]
    if decision["champion_changed"]:
        new = decision["champion_version"]
        assert after_drift == [CHAMPION_CHANGED] and changes == [v1, new]
        wait_until(lambda: _version(server.url)["model_version"] == new, timeout_s=120,
                   interval_s=1.0, what=f"the service to hot-swap to v{new}")
    else:
        assert decision["champion_version"] == v1
        assert after_drift == ["champion_kept"] and changes == [v1]
        assert _version(server.url)["model_version"] == v1


def test_calm_market_triggers_no_retrain(
    data_dir, broker, instance, loop_env, simulator_factory, ingestor_factory, featurizer_factory,
) -> None:
    settings = Settings.from_env()
    live_start, _ = _bootstrap(instance, settings, None)
    _run_live(settings, simulator_factory, ingestor_factory, featurizer_factory, live_start,
              regime_change_at_s=None)

    for summary in _two_reports(settings):
        assert summary["dataset_drift"] is False, summary["drifted_columns"]
    tick = _evaluate_drift_sensor(instance, None, data_dir)
    assert tick.run_requests == []
    assert read_alerts(data_dir / "alerts" / "alerts.jsonl", kind=DRIFT_DETECTED) == []
