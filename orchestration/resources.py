"""Resources: where the lake is, the query engine over it, MLflow, Kafka and the alert notifier.

Each value comes from the environment variable the rest of the platform reads (see
`cryptovol.config`), through `EnvVar` when it is set at load time (resolved at launch, shown as
an env var in the UI) and a working local default otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from cryptovol.alerts import AlertNotifier
from cryptovol.config import DEFAULT_BOOTSTRAP, DEFAULT_PRODUCTS, Settings, parse_products


def env_or(name: str, default: str) -> str:
    """`EnvVar(name)` when the variable is set, else `default` (EnvVar itself has no default)."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


class LakeResource(dg.ConfigurableResource):
    """The data lake on local disk: landing files, feature Parquet, reports, models."""

    data_dir: str = Field(default="data", description="Root of the lake (CRYPTOVOL_DATA_DIR).")
    products: str = Field(
        default=",".join(DEFAULT_PRODUCTS), description="Comma-separated products (CRYPTOVOL_PRODUCTS)."
    )

    def settings(self) -> Settings:
        """`Settings.from_env()` with this resource's lake root and products."""
        data_dir = Path(self.data_dir).expanduser().resolve()
        base = Settings.from_env()
        tracking = base.mlflow_tracking_uri
        if not os.environ.get("MLFLOW_TRACKING_URI", "").strip():
            tracking = f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
        return replace(
            base, data_dir=data_dir, products=parse_products(self.products), mlflow_tracking_uri=tracking
        )


class DuckDBResource(dg.ConfigurableResource):
    """DuckDB, the query engine over the lake (views over the Parquet/NDJSON files)."""

    database: str = Field(
        default=":memory:", description="DuckDB database file, or :memory: (CRYPTOVOL_DUCKDB_PATH)."
    )
    threads: int = Field(default=2, description="DuckDB worker threads.")

    @contextlib.contextmanager
    def connect(self, settings: Settings) -> Iterator[Any]:
        """A connection with the lake views registered (`cryptovol.lake.connect`)."""
        from cryptovol import lake

        con = lake.connect(settings, database=self.database)
        try:
            con.execute(f"SET threads = {int(self.threads)}")
            yield con
        finally:
            con.close()


class MlflowResource(dg.ConfigurableResource):
    """An MLflow session: tracking URI, experiment, registry model name, and Dagster run tags.

    `session()` starts a run tagged `dagster_run_id` (the tag dagster-mlflow uses), `dagster_job`,
    `dagster_asset` (+ partition) so every MLflow run leads back to its Dagster run, and always
    ends it (MLflow keeps a run open per process otherwise).
    """

    tracking_uri: str = Field(
        default="", description="MLFLOW_TRACKING_URI; empty = sqlite:///<data>/mlflow/mlflow.db."
    )
    experiment: str = Field(
        default="cryptovol-spike", description="MLflow experiment (CRYPTOVOL_EXPERIMENT)."
    )
    model_name: str = Field(default="cryptovol-spike", description="Registered model (CRYPTOVOL_MODEL_NAME).")
    ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="MLflow UI base URL for links (CRYPTOVOL_MLFLOW_UI_URL).",
    )

    def settings_for(self, settings: Settings) -> Settings:
        """`settings` with this resource's tracking URI and model name."""
        uri = self.tracking_uri.strip() or settings.mlflow_tracking_uri
        return replace(settings, mlflow_tracking_uri=uri, model_name=self.model_name)

    def activate(self, settings: Settings) -> str:
        """Point this process's MLflow client at the store and experiment; returns the experiment id."""
        from cryptovol.models.tracking import configure_tracking

        return configure_tracking(self.settings_for(settings), self.experiment)

    @contextlib.contextmanager
    def session(self, context: Any, settings: Settings, run_name: str) -> Iterator[Any]:
        """An MLflow run for one asset materialization, tagged with the Dagster run; always ended."""
        import mlflow

        self.activate(settings)
        while mlflow.active_run() is not None:  # a run leaked by an earlier failure in this process
            mlflow.end_run(status="KILLED")
        with mlflow.start_run(run_name=run_name, tags=self.dagster_tags(context)) as run:
            yield run

    def dagster_tags(self, context: Any) -> dict[str, str]:
        tags = {"dagster_run_id": context.run_id, "dagster_job": context.job_name or ""}
        with contextlib.suppress(Exception):
            tags["dagster_asset"] = context.asset_key.to_user_string()
        if getattr(context, "has_partition_key", False):
            tags["dagster_partition"] = str(context.partition_key)
        return tags

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def run_metadata(self, run: Any) -> dict[str, Any]:
        """Asset metadata linking to an MLflow run: id + UI URL."""
        return {
            "mlflow_run_id": run.info.run_id,
            "mlflow_run_url": dg.MetadataValue.url(self.run_url(run.info.experiment_id, run.info.run_id)),
        }

    def model_url(self, version: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/models/{self.model_name}/versions/{version}"


class KafkaResource(dg.ConfigurableResource):
    """Where the brokers are (KAFKA_BOOTSTRAP_SERVERS)."""

    bootstrap_servers: str = Field(default=DEFAULT_BOOTSTRAP, description="Kafka bootstrap servers.")


class AlertsResource(dg.ConfigurableResource):
    """The alert notifier: JSON lines at <data>/alerts/alerts.jsonl, plus an optional webhook."""

    webhook_url: str = Field(
        default="", description="Slack-compatible webhook (CRYPTOVOL_ALERT_WEBHOOK_URL); empty = log only."
    )
    retries: int = Field(default=3, description="Webhook retries after the first attempt.")
    backoff_s: float = Field(default=0.5, description="First retry delay; doubles each retry.")

    def notifier(self, settings: Settings) -> AlertNotifier:
        from cryptovol.alerts import alert_log_path

        return AlertNotifier(
            alert_log_path(settings), self.webhook_url or None, retries=self.retries, backoff_s=self.backoff_s
        )


def default_resources() -> dict[str, Any]:
    """Resources for the code location, built from the environment at load time."""
    return {
        "lake": LakeResource(
            data_dir=env_or("CRYPTOVOL_DATA_DIR", "data"),
            products=env_or("CRYPTOVOL_PRODUCTS", ",".join(DEFAULT_PRODUCTS)),
        ),
        "duckdb": DuckDBResource(database=env_or("CRYPTOVOL_DUCKDB_PATH", ":memory:")),
        "mlflow": MlflowResource(
            tracking_uri=env_or("MLFLOW_TRACKING_URI", ""),
            experiment=env_or("CRYPTOVOL_EXPERIMENT", "cryptovol-spike"),
            model_name=env_or("CRYPTOVOL_MODEL_NAME", "cryptovol-spike"),
            ui_url=env_or("CRYPTOVOL_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
        ),
        "kafka": KafkaResource(bootstrap_servers=env_or("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)),
        "alerts": AlertsResource(
            webhook_url=env_or("CRYPTOVOL_ALERT_WEBHOOK_URL", ""),
            retries=int(os.environ.get("CRYPTOVOL_ALERT_RETRIES", "").strip() or 3),
            backoff_s=float(os.environ.get("CRYPTOVOL_ALERT_BACKOFF_S", "").strip() or 0.5),
        ),
    }
