"""Snapshot of the asset graph: keys, dependencies, groups, partitioning and checks.

An accidental change to the lineage shows up here; an intended one updates asset_graph.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from orchestration.definitions import defs

SNAPSHOT = json.loads((Path(__file__).parent / "asset_graph.json").read_text())


def current_graph() -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "partitioned": node.partitions_def is not None,
        }
    checks = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {"blocking": spec.blocking}
    return {"assets": assets, "checks": checks}


def test_asset_graph_matches_snapshot() -> None:
    current = current_graph()
    assert current["assets"] == SNAPSHOT["assets"]
    assert current["checks"] == SNAPSHOT["checks"]


def test_every_asset_is_described_with_kinds() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 20, key
        assert node.kinds, key


def test_jobs_schedules_and_sensors_are_defined() -> None:
    repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs()} >= {
        "ingest_and_featurize",
        "retrain",
        "drift_monitoring",
        "freshness_checks",
        "compact_lake",
    }
    assert {s.name for s in repo.schedule_defs} == {
        "nightly_features_schedule",
        "nightly_retrain_schedule",
        "drift_report_schedule",
        "freshness_checks_schedule",
        "compact_lake_schedule",
    }
    assert {s.name for s in repo.sensor_defs} == {
        "new_landing_files_sensor",
        "drift_retrain_sensor",
        "drift_report_sensor",
        "run_failure_alerts",
        "asset_check_failure_alerts",
        "champion_kept_alerts",
    }
    retrain = repo.get_job("retrain")
    assert {k.to_user_string() for k in retrain.asset_layer.selected_asset_keys} == {
        "labels",
        "training_dataset",
        "baseline_model",
        "logistic_model",
        "xgboost_model",
        "model_evaluation",
        "champion_model",
        "backtest",
    }
    ingest = repo.get_job("ingest_and_featurize")
    assert isinstance(ingest.partitions_def, dg.MultiPartitionsDefinition)


def test_label_window_defaults_to_the_last_days_in_the_lake() -> None:
    from assets.training import LabelsConfig

    days = ["2025-12-01", "2025-12-05", "2025-12-09"]
    assert LabelsConfig().window(days) == ("2025-12-03", "2025-12-09")
    assert LabelsConfig(lookback_days=1).window(days) == ("2025-12-09", "2025-12-09")
    assert LabelsConfig(lookback_days=0).window(days) == (None, "2025-12-09")
    assert LabelsConfig(start_date="2025-12-02", end_date="2025-12-04").window(days) == (
        "2025-12-02",
        "2025-12-04",
    )
    assert LabelsConfig().window([]) == (None, None)
