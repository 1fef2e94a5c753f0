"""The cryptovol code location: every asset, check, job, schedule, sensor and resource.

`dagster dev` (workspace.yaml) and `dagster asset materialize -m orchestration.definitions` load
`defs`. Heavy libraries (MLflow, Evidently, Great Expectations, XGBoost) are imported inside the
asset bodies, so loading the code location stays fast.
"""

from __future__ import annotations

import dagster as dg

from assets.backtest import backtest
from assets.checks import ALL_CHECKS
from assets.features import features
from assets.ingest import raw_ticks
from assets.monitoring import drift_report
from assets.training import TRAINING_ASSETS
from orchestration.jobs import ALL_JOBS
from orchestration.resources import default_resources
from orchestration.schedules import ALL_SCHEDULES
from sensors.alerts import asset_check_failure_alerts, run_failure_alerts
from sensors.decisions import champion_kept_alerts
from sensors.drift import drift_report_sensor, drift_retrain_sensor
from sensors.landing import new_landing_files_sensor

ALL_ASSETS = [raw_ticks, features, *TRAINING_ASSETS, drift_report, backtest]


def build_definitions() -> dg.Definitions:
    """The code location, its resources read from the environment now (tests that set
    CRYPTOVOL_DATA_DIR or MLFLOW_TRACKING_URI after this module was imported build a fresh one)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=ALL_JOBS,
        schedules=ALL_SCHEDULES,
        sensors=[
            new_landing_files_sensor,
            drift_retrain_sensor,
            drift_report_sensor,
            run_failure_alerts,
            asset_check_failure_alerts,
            champion_kept_alerts,
        ],
        resources=default_resources(),
        # One process per run: on a 2-core box a subprocess per step costs more (imports of Great
        # Expectations, MLflow, XGBoost per step) than it gains, and SQLite stores prefer one writer.
        # Scale out by running more runs (QueuedRunCoordinator), or swap in multiprocess/k8s executors.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
