"""MLflow tracking set-up: one place that decides where runs and artifacts go.

Default: a SQLite store and an artifact directory under the data dir (`Settings`), so nothing
lands in `./mlruns` of whatever directory the CLI was started from. A real `mlflow server` works
by exporting `MLFLOW_TRACKING_URI`; the experiment then uses the server's artifact store unless it
was created here first.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptovol.config import Settings

DEFAULT_EXPERIMENT = "cryptovol-spike"


def configure_tracking(settings: Settings, experiment_name: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow at `settings`' store, create the experiment (artifacts under the data dir) and
    make it active. Returns the experiment id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        artifact_location = None
        if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
            settings.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
            artifact_location = settings.mlflow_artifacts_dir.resolve().as_uri()
        experiment_id = client.create_experiment(experiment_name, artifact_location=artifact_location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
