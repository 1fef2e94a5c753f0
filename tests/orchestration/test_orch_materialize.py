"""The whole asset graph materialized in-process on a small synthetic day, with real outputs on
disk and in MLflow (SQLite store in tmp), and a blocking check that stops downstream assets."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.checks import FRESHNESS_CHECKS, SUITE_CHECKS
from assets.features import features
from assets.ingest import raw_ticks
from assets.monitoring import drift_report
from assets.partitions import partition_key
from assets.training import TRAINING_ASSETS
from cryptovol import lake
from cryptovol.alerts import CHAMPION_CHANGED, CHECK_FAILED, RUN_FAILED, read_alerts
from cryptovol.lake import read_landing_day
from cryptovol.models.dataset import build_training_set
from cryptovol.simulator.synthetic import generate_landing_files
from orchestration.definitions import defs
from orchestration.resources import default_resources
from sensors.alerts import asset_check_failure_alerts, run_failure_alerts

DAY = "2025-12-01"
PRODUCTS = ("BTC-USD", "ETH-USD")
START = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)

#: Small but real: 3 purged folds, fewer trees and bootstrap draws. On first training the gate's
#: candidate (learned or the best baseline) becomes champion.
FAST_TRAINING = {
    "ops": {
        "training_dataset": {"config": {"n_folds": 3}},
        "xgboost_model": {"config": {"n_estimators": 60, "regression_view": False}},
        "model_evaluation": {"config": {"n_boot": 100}},
        "drift_report": {"config": {"current_minutes": 5.0}},
    }
}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [materialization] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in materialization.metadata.items()}


def ingest(instance: dg.DagsterInstance, product: str, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_ticks, features, *SUITE_CHECKS],
        partition_key=partition_key(DAY, product),
        resources=default_resources(),
        instance=instance,
        **kwargs,
    )


@pytest.mark.slow  # ~1 min idle, 2-3 min on a loaded 2-core box (3 MLflow models, Evidently)
def test_whole_graph_materializes_on_a_synthetic_day(data_dir: Path, instance) -> None:
    import mlflow

    generate_landing_files(data_dir, PRODUCTS, START, duration_s=1200, seed=11)

    for product in PRODUCTS:
        result = ingest(instance, product)
        assert result.success
        landing = data_dir / "raw" / product / f"{DAY}.ndjson"
        raw_meta = metadata(result, "raw_ticks")
        assert raw_meta["rows"] == len(landing.read_text().splitlines())
        assert raw_meta["dead_lettered"] == 0
        assert raw_meta["path"] == str(landing.resolve())
        assert raw_meta["first_event_time"].startswith("2025-12-01T10:00")
        feature_meta = metadata(result, "features")
        parquet = lake.read_features(data_dir, [product], DAY, DAY)
        assert feature_meta["rows"] == len(parquet) == feature_meta["partition_rows"] == raw_meta["rows"]
        assert feature_meta["schema_version"] == parquet["feature_set_version"].iloc[0]
        assert feature_meta["table_version"] == parquet.attrs["lake_version"]
        assert "| product_id" in feature_meta["preview"]
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"raw_ticks_suite": True, "features_suite": True}

    result = dg.materialize(
        [*TRAINING_ASSETS, drift_report],
        resources=default_resources(),
        instance=instance,
        run_config=FAST_TRAINING,
    )
    assert result.success
    run_id = result.run_id

    labels = pickle.loads(Path(metadata(result, "labels")["value_path"]).read_bytes()).labels
    assert {"fwd_rv", "vol_ratio"} <= set(labels.columns) and labels["fwd_rv"].notna().all()
    assert metadata(result, "training_dataset")["purge_gap_s"] == 60.0
    # the feature table version the labels read is recorded, and time travel re-reads those rows
    table_version = metadata(result, "labels")["feature_table_version"]
    assert table_version == lake.feature_table_version(data_dir)
    assert len(lake.read_features(data_dir, as_of_version=table_version)) == metadata(result, "labels")[
        "feature_rows"]

    # The Dagster run is one MLflow run (dagster-mlflow); every model asset logged a child run under
    # it, tagged with this Dagster run, and links to it.
    experiment = mlflow.get_experiment_by_name("cryptovol-spike")
    runs = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.dagster_run_id = '{run_id}'")
    assert len(runs) == 4
    [parent] = runs.loc[runs["tags.cryptovol.run_type"] == "dagster_run", "run_id"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent]
    assert sorted(children["tags.dagster_asset"]) == ["baseline_model", "logistic_model", "xgboost_model"]
    assert set(runs["status"]) == {"FINISHED"}
    for asset in ("baseline_model", "logistic_model", "xgboost_model"):
        meta = metadata(result, asset)
        assert meta["mlflow_run_id"] in set(children["run_id"])
        assert meta["mlflow_run_id"] in meta["mlflow_run_url"]
        assert meta["mlflow_parent_run_id"] == parent
        assert 0.0 <= meta["test_pr_auc"] <= 1.0
        assert set(runs.loc[runs["run_id"] == meta["mlflow_run_id"], "tags.dagster_asset"]) == {asset}

    evaluation = metadata(result, "model_evaluation")
    assert evaluation["chosen_kind"] in ("logistic", "xgboost")
    candidate = evaluation["candidate_kind"]
    assert candidate == (evaluation["chosen_kind"] if evaluation["learned_cleared_gate"]
                         else evaluation["best_baseline"])
    champion = metadata(result, "champion_model")
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("cryptovol-spike", "champion")
    assert champion["champion_version"] == str(version.version) == champion["registered_version"]
    assert version.tags["dagster_run_id"] == run_id
    assert version.tags["cryptovol.model_kind"] == candidate == champion["candidate_kind"]
    assert champion["promoted"] is True
    assert "Model card" in version.description and candidate in version.description
    # both the learned challenger and the best baseline are registered and servable
    assert set(champion["registered_versions"]) == {evaluation["chosen_kind"], evaluation["best_baseline"]}
    [alert] = read_alerts(data_dir / "alerts" / "alerts.jsonl", kind=CHAMPION_CHANGED)
    assert str(alert["details"]["champion"]) == str(version.version) and alert["details"]["previous"] is None

    drift = metadata(result, "drift_report")
    summary = json.loads(Path(drift["json_path"]).read_text())
    assert summary["drift_share"] == pytest.approx(drift["drift_share"])
    assert Path(drift["html_path"]).stat().st_size > 0
    assert summary["reference_source"].startswith("champion training window")


def test_model_asset_runs_are_tracked_in_mlflow_with_the_dagster_run(data_dir: Path, instance) -> None:
    """The default-suite slice of the training graph: labels -> training_dataset -> logistic_model."""
    import mlflow

    generate_landing_files(data_dir, ["BTC-USD"], START, duration_s=1200, seed=4)
    assert ingest(instance, "BTC-USD").success
    by_name = {a.key.to_user_string(): a for a in TRAINING_ASSETS}
    result = dg.materialize(
        [by_name["labels"], by_name["training_dataset"], by_name["logistic_model"]],
        resources=default_resources(),
        instance=instance,
        run_config={
            "ops": {
                "training_dataset": {"config": {"n_folds": 2}},
                "logistic_model": {"config": {"C": 0.5, "search": False}},
            }
        },
    )
    assert result.success
    dataset = metadata(result, "training_dataset")
    assert dataset["train_rows"] > 0 and dataset["validation_rows"] > 0 and dataset["test_rows"] > 0
    assert dataset["purge_gap_s"] == 60.0
    # The asset's matrix (from the feature lake, handed on by the IO manager) is exactly what
    # `cryptovol train` builds from the same ticks: one core path (`cryptovol.models.dataset`).
    stored = pickle.loads(Path(dataset["value_path"]).read_bytes()).training_set
    from_ticks = build_training_set(read_landing_day(data_dir, "BTC-USD", DAY), stored.label_config)
    assert len(from_ticks.frame) == dataset["rows"] > 0
    pd.testing.assert_frame_equal(
        stored.frame.loc[:, list(from_ticks.frame.columns)], from_ticks.frame, check_dtype=False
    )
    meta = metadata(result, "logistic_model")
    run = mlflow.get_run(meta["mlflow_run_id"])
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert run.data.tags["dagster_asset"] == "logistic_model"
    assert run.data.params["logistic.C"] == "0.5"
    assert run.info.status == "FINISHED"  # the asset ended its MLflow run
    assert run.info.artifact_uri.startswith((data_dir / "mlflow" / "artifacts").as_uri())
    # ... nested under the Dagster run's MLflow run from dagster-mlflow, which was ended too
    parent = mlflow.get_run(run.data.tags["mlflow.parentRunId"])
    assert meta["mlflow_parent_run_id"] == parent.info.run_id
    assert parent.data.tags["dagster_run_id"] == result.run_id
    assert parent.data.tags["cryptovol.run_type"] == "dagster_run"
    assert parent.info.status == "FINISHED"
    assert mlflow.active_run() is None
    assert meta["mlflow_run_url"].endswith(f"/runs/{run.info.run_id}")
    assert meta["model_uri"].startswith("models:/")
    assert "| logistic" in meta["kinds"]
    # the run logged its input data as an MLflow dataset (source, window, row counts)
    [dataset_input] = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["rows"] == str(dataset["rows"]) and tags["source"].startswith("feature lake")


def test_failing_blocking_check_stops_downstream_and_alerts(data_dir: Path, instance) -> None:
    generate_landing_files(data_dir, ["BTC-USD"], START, duration_s=120, seed=5)
    landing = data_dir / "raw" / "BTC-USD" / f"{DAY}.ndjson"
    lines = landing.read_text().splitlines()
    # A replayed old line at the end: event time jumps back by ~2 minutes (an ERROR expectation).
    landing.write_text("\n".join([*lines, lines[5]]) + "\n")

    result = ingest(instance, "BTC-USD", raise_on_error=False)

    assert not result.success
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "raw_ticks_suite"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "event_time_backstep_s" in evaluation.metadata["failures"].value
    assert len(result.asset_materializations_for_node("raw_ticks")) == 1
    assert result.asset_materializations_for_node("features") == []
    assert not (data_dir / "features").exists()

    # The failed check and the failed run each become one alert. (Contexts are opened with `with`:
    # the resources include generator resources, e.g. the dagster-mlflow tracking with a teardown.)
    resources = default_resources()
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        asset_check_failure_alerts.evaluate_tick(context)
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=default_resources(), cursor=context.cursor
    ) as again:
        asset_check_failure_alerts.evaluate_tick(again)
    alerts_log = data_dir / "alerts" / "alerts.jsonl"
    [check_alert] = read_alerts(alerts_log, kind=CHECK_FAILED)
    assert check_alert["details"]["check"] == "raw_ticks:raw_ticks_suite"
    assert check_alert["details"]["partition"] == f"{DAY}|BTC-USD"
    assert check_alert["severity"] == "error"

    # Re-validating the same broken partition fails again, but is not alerted again.
    rerun = ingest(instance, "BTC-USD", raise_on_error=False)
    assert not rerun.success
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=default_resources(), cursor=again.cursor
    ) as third:
        skipped = asset_check_failure_alerts.evaluate_tick(third)
    assert "1 repeated failure(s) not re-sent" in skipped.skip_message
    assert len(read_alerts(alerts_log, kind=CHECK_FAILED)) == 1

    run = instance.get_run_by_id(result.run_id)
    [failure] = [
        e for e in instance.all_logs(result.run_id) if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE
    ]
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources=default_resources(),
    ).for_run_failure() as run_context:
        run_failure_alerts(run_context)
    [run_alert] = read_alerts(alerts_log, kind=RUN_FAILED)
    assert run_alert["details"]["run_id"] == result.run_id
    assert run_alert["severity"] == "error"
    rerun_failure = next(
        e for e in instance.all_logs(rerun.run_id) if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE
    )
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_event=rerun_failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(rerun.run_id),
        resources=default_resources(),
    ).for_run_failure() as rerun_context:
        run_failure_alerts(rerun_context)
    assert len(read_alerts(alerts_log, kind=RUN_FAILED)) == 1  # still failing: no second alert


def test_freshness_checks_report_stale_and_fresh_data(data_dir: Path, instance) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    generate_landing_files(
        data_dir, ["BTC-USD"], now.replace(second=0) - pd.Timedelta(minutes=3), duration_s=60, seed=2
    )
    freshness = FRESHNESS_CHECKS
    job = dg.define_asset_job("fresh", selection=dg.AssetSelection.checks(*freshness))
    check_defs = dg.Definitions(
        assets=[raw_ticks, features], asset_checks=freshness, jobs=[job], resources=default_resources()
    )
    result = check_defs.resolve_job_def("fresh").execute_in_process(instance=instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["raw_ticks_freshness"].passed
    assert 60 < evaluations["raw_ticks_freshness"].metadata["age_s"].value < 3600
    assert not evaluations["features_freshness"].passed  # nothing featurized yet
    assert evaluations["features_freshness"].severity == dg.AssetCheckSeverity.WARN


@pytest.mark.slow  # ~1-2 min: the training graph and `cryptovol train` on the same landing files
def test_cli_and_dagster_run_the_same_lifecycle(data_dir: Path, instance, monkeypatch) -> None:
    """Same data -> same learned challenger, best baseline, candidate, metrics and gate decision,
    whether trained by `cryptovol train` or by materializing the Dagster training assets."""
    import mlflow

    from cryptovol.cli import main

    generate_landing_files(data_dir, ["BTC-USD"], START, duration_s=2400, seed=8, rate_hz=2)
    assert ingest(instance, "BTC-USD").success
    result = dg.materialize(
        TRAINING_ASSETS,
        resources=default_resources(),
        instance=instance,
        run_config={"ops": {"training_dataset": {"config": {"n_folds": 3}},
                            "xgboost_model": {"config": {"n_estimators": 60}}}},
    )
    assert result.success
    dagster_uri = f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
    cli_uri = f"sqlite:///{data_dir / 'cli-mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cli_uri)  # a fresh registry: both are first trainings
    assert main(["train", "--folds", "3", "--xgb-trees", "60", "--products", "BTC-USD", "--quiet"]) == 0

    def champion_of(uri: str):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        version = client.get_model_version_by_alias("cryptovol-spike", "champion")
        return version, client.get_run(version.run_id)

    dagster_version, dagster_run = champion_of(dagster_uri)
    cli_version, cli_run = champion_of(cli_uri)
    gate_tags = {k: v for k, v in dagster_version.tags.items()
                 if k.startswith(("cryptovol.gate.", "cryptovol.evidence.", "cryptovol.model_kind",
                                  "cryptovol.role"))}
    assert gate_tags["cryptovol.gate.promote"] == "True"
    assert {k: cli_version.tags.get(k) for k in gate_tags} == gate_tags
    evaluation = metadata(result, "model_evaluation")
    assert cli_run.data.params["chosen_kind"] == evaluation["chosen_kind"]
    assert cli_run.data.params["best_baseline"] == evaluation["best_baseline"]
    assert cli_version.tags["cryptovol.model_kind"] == evaluation["candidate_kind"]
    # every kind's walk-forward metrics agree (the Dagster model assets each logged their own)
    stored = pickle.loads(Path(evaluation["value_path"]).read_bytes()).evaluation
    for kind in ("persistence", "ewma", "har", "logistic", "xgboost"):
        for metric in ("pr_auc_mean", "pr_auc_pooled", "brier_pooled"):
            assert cli_run.data.metrics[f"{kind}.{metric}"] == pytest.approx(
                stored.summary.loc[kind, metric], rel=1e-9), (kind, metric)
    assert dagster_run.data.tags["dagster_run_id"] == result.run_id


SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.slow  # several minutes: a week of real ticks through every partition and the retrain job
def test_real_data_through_the_graph_matches_cryptovol_train(data_dir: Path, instance, monkeypatch) -> None:
    """The Dec-2025 BTC-USD recording landed, featurized and trained in Dagster ends with a champion
    chosen by the gate, and `cryptovol train --real-data` decides the same on the same files."""
    if not (SHARED_DATA / "coinbase_advtrade_ticker_btcusd_2025-12").is_dir():
        pytest.skip(f"real data not found under {SHARED_DATA} (the shared data dir is not mounted)")
    import mlflow

    from cryptovol.cli import main
    from orchestration.real_data import materialize_real_data

    result = materialize_real_data(SHARED_DATA, instance=instance)
    assert result.success
    champion = metadata(result, "champion_model")
    assert champion["promoted"] is True and champion["champion_version"] != "none"
    dataset = metadata(result, "training_dataset")
    assert dataset["rows"] > 5000

    cli_uri = f"sqlite:///{data_dir / 'cli-mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cli_uri)
    assert main(["train", "--real-data", str(SHARED_DATA), "--quiet"]) == 0
    client = mlflow.MlflowClient(tracking_uri=cli_uri, registry_uri=cli_uri)
    cli_champion = client.get_model_version_by_alias("cryptovol-spike", "champion")
    kind = cli_champion.tags["cryptovol.model_kind"]
    assert kind == champion["champion_kind"] == champion["candidate_kind"]
    assert cli_champion.tags["cryptovol.gate.reason"] == champion["reason"]
    assert int(client.get_run(cli_champion.run_id).data.params["rows"]) == dataset["rows"]


def test_a_training_asset_without_its_upstream_value_fails_clearly(data_dir: Path, instance) -> None:
    """Values travel through the lake IO manager: `training_dataset` alone, before `labels` was ever
    materialized, stops with a message naming what to materialize (nothing is read by path)."""
    by_name = {a.key.to_user_string(): a for a in TRAINING_ASSETS}
    result = dg.materialize(
        [by_name["labels"], by_name["training_dataset"]], resources=default_resources(), instance=instance,
        selection=[by_name["training_dataset"].key], raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "labels has no stored value" in str(failure.event_specific_data.error)
    assert "materialize it first" in str(failure.event_specific_data.error)
    assert not (data_dir / "assets" / "training_dataset.pkl").exists()
