"""Resources: where the lake is, the query engine over it, MLflow (+ dagster-mlflow tracking of
the model runs), Kafka and the alert notifier.

Each value comes from the environment variable the rest of the platform reads (see
`cryptovol.config`), through `EnvVar` when it is set at load time (resolved at launch, shown as
an env var in the UI) and a working local default otherwise.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

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
    """Where MLflow data goes: tracking URI, experiment, registry model name, UI links.

    Used by every asset that reads or writes MLflow; the per-Dagster-run tracking of the model
    assets goes through `MlflowTrackingResource` (dagster-mlflow) on top of this configuration.
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
        """Point this process's MLflow client at the store and experiment (created with its
        artifacts under the data dir, never ./mlruns); returns the experiment id."""
        from cryptovol.models.tracking import configure_tracking

        return configure_tracking(self.settings_for(settings), self.experiment)

    def dagster_tags(self, context: Any) -> dict[str, str]:
        """`dagster_run_id` (the tag dagster-mlflow uses), `dagster_job`, `dagster_asset` (+ partition)."""
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


#: Tag telling the Dagster run's MLflow run (parent) from an asset's run (child): both carry
#: `dagster_run_id`.
RUN_TYPE_TAG = "cryptovol.run_type"
PARENT_RUN, ASSET_RUN = "dagster_run", "asset"
#: Environment recorded on the parent run (dagster-mlflow `env_to_tag`); unset variables are skipped.
ENV_TAGS = ("CRYPTOVOL_DATA_DIR", "CRYPTOVOL_PRODUCTS", "CRYPTOVOL_MODEL_NAME", "CRYPTOVOL_EXPERIMENT")


class MlflowTrackingResource(dg.ConfigurableResource):
    """dagster-mlflow's `mlflow_tracking` resource, configured like the rest of the platform.

    Per Dagster run, dagster-mlflow provides ONE MLflow run (the parent: named after the job,
    tagged `dagster_run_id` and the `env_to_tag` variables, found again by that tag when a step
    re-initializes the resource); each model asset logs a nested child run under it
    (`child_run`). What dagster-mlflow leaves to the user with assets is done here:

    - the experiment is created first, with its artifacts under the data dir (dagster-mlflow's
      `set_experiment` would create it with artifacts in ./mlruns of the working directory);
    - the parent is looked up by `dagster_run_id` AND `cryptovol.run_type=dagster_run`: the child
      runs carry the Dagster run id too, and dagster-mlflow's own lookup takes any run with it;
    - the parent is ended at teardown, FAILED if a step of the Dagster run failed
      (dagster-mlflow's `end_mlflow_on_run_finished` hook only exists for op jobs).
    """

    lake: LakeResource
    mlflow: MlflowResource
    env_to_tag: list[str] = Field(
        default=list(ENV_TAGS), description="Environment variables recorded as tags on the parent run."
    )

    _tracking: Any = PrivateAttr(default=None)
    _parent_run_id: str | None = PrivateAttr(default=None)

    @property
    def parent_run_id(self) -> str:
        """The MLflow run id of this Dagster run."""
        if self._parent_run_id is None:
            raise RuntimeError("MlflowTrackingResource tracks Dagster runs; this context has no run")
        return self._parent_run_id

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.dagster_run is None:  # a sensor or schedule evaluation: no run to track
            return
        import mlflow

        with warnings.catch_warnings():  # everything in dagster-mlflow is marked beta
            warnings.simplefilter("ignore", dg.BetaWarning)
            from dagster_mlflow import mlflow_tracking

        settings = self.mlflow.settings_for(self.lake.settings())
        experiment_id = self.mlflow.activate(settings)
        while mlflow.active_run() is not None:  # left active in this thread by an earlier crash
            mlflow.end_run(status="KILLED")
        job = context.dagster_run.job_name
        config = {
            "experiment_name": self.mlflow.experiment,
            "mlflow_tracking_uri": settings.mlflow_tracking_uri,
            "mlflow_run_id": self._find_parent(experiment_id, context.run_id),
            "env_to_tag": [name for name in self.env_to_tag if os.environ.get(name, "").strip()],
            "extra_tags": {RUN_TYPE_TAG: PARENT_RUN, "dagster_job": job},
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            self._tracking = mlflow_tracking.resource_fn(context.replace_config(config))
            next(self._tracking)  # dagster-mlflow's MlFlow: starts or resumes the parent run
        self._parent_run_id = mlflow.active_run().info.run_id

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        import mlflow

        if self._parent_run_id is None:
            return
        status = "FAILED" if self._step_failed(context) else "FINISHED"
        ended = False
        while (active := mlflow.active_run()) is not None and not ended:
            ended = active.info.run_id == self._parent_run_id
            mlflow.end_run(status=status if ended else "KILLED")
        if not ended:  # not active in this thread: end it by id
            mlflow.MlflowClient().set_terminated(self._parent_run_id, status=status)
        if self._tracking is not None:
            next(self._tracking, None)  # the rest of dagster-mlflow's resource (its error cleanup)

    @contextlib.contextmanager
    def child_run(self, context: dg.AssetExecutionContext, run_name: str) -> Iterator[Any]:
        """A nested MLflow run for one asset under this Dagster run's run, tagged with the Dagster
        run, job and asset; always ended (FAILED if the body raises)."""
        import mlflow

        parent = self.parent_run_id
        while (active := mlflow.active_run()) is not None and active.info.run_id != parent:
            mlflow.end_run(status="KILLED")  # a child left active by an earlier crash
        tags = {**self.mlflow.dagster_tags(context), RUN_TYPE_TAG: ASSET_RUN}
        with mlflow.start_run(run_name=run_name, nested=True, parent_run_id=parent, tags=tags) as run:
            yield run

    def run_metadata(self, run: Any) -> dict[str, Any]:
        """Asset metadata linking to the asset's MLflow run and to the Dagster run's parent run."""
        return {
            **self.mlflow.run_metadata(run),
            "mlflow_parent_run_id": self.parent_run_id,
            "mlflow_parent_run_url": dg.MetadataValue.url(
                self.mlflow.run_url(run.info.experiment_id, self.parent_run_id)
            ),
        }

    @staticmethod
    def _find_parent(experiment_id: str, dagster_run_id: str | None) -> str | None:
        import mlflow

        if not dagster_run_id:
            return None
        query = f"tags.dagster_run_id = '{dagster_run_id}' and tags.`{RUN_TYPE_TAG}` = '{PARENT_RUN}'"
        runs = mlflow.search_runs(
            [experiment_id],
            filter_string=query,
            max_results=1,
            output_format="list",
        )
        return runs[0].info.run_id if runs else None

    @staticmethod
    def _step_failed(context: dg.InitResourceContext) -> bool:
        if context.instance is None or not context.run_id:
            return False
        return bool(context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.STEP_FAILURE))


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
    total_timeout_s: float = Field(
        default=15.0, description="Most seconds per alert, retries included (CRYPTOVOL_ALERT_TIMEOUT_S)."
    )

    def notifier(self, settings: Settings) -> AlertNotifier:
        from cryptovol.alerts import alert_log_path

        return AlertNotifier(
            alert_log_path(settings), self.webhook_url or None,
            retries=self.retries, backoff_s=self.backoff_s, total_timeout_s=self.total_timeout_s,
        )


#: Resource key of the IO manager that carries the training assets' values (orchestration.io_managers).
TRAINING_IO_MANAGER = "lake_io_manager"


def default_resources() -> dict[str, Any]:
    """Resources for the code location, built from the environment at load time (validated first:
    a bad variable fails the load naming it)."""
    from cryptovol.config import load_env
    from orchestration.io_managers import LakePickleIOManager

    env = load_env()

    lake = LakeResource(
        data_dir=env_or("CRYPTOVOL_DATA_DIR", "data"),
        products=env_or("CRYPTOVOL_PRODUCTS", ",".join(DEFAULT_PRODUCTS)),
    )
    mlflow = MlflowResource(
        tracking_uri=env_or("MLFLOW_TRACKING_URI", ""),
        experiment=env_or("CRYPTOVOL_EXPERIMENT", "cryptovol-spike"),
        model_name=env_or("CRYPTOVOL_MODEL_NAME", "cryptovol-spike"),
        ui_url=env_or("CRYPTOVOL_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
    )
    return {
        "lake": lake,
        "duckdb": DuckDBResource(database=env_or("CRYPTOVOL_DUCKDB_PATH", ":memory:")),
        "mlflow": mlflow,
        "mlflow_tracking": MlflowTrackingResource(lake=lake, mlflow=mlflow),
        TRAINING_IO_MANAGER: LakePickleIOManager(lake=lake),
        "kafka": KafkaResource(bootstrap_servers=env_or("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)),
        "alerts": AlertsResource(
            webhook_url=env_or("CRYPTOVOL_ALERT_WEBHOOK_URL", ""),
            retries=env.alert_retries,  # validated (cryptovol.config.PlatformEnv)
            backoff_s=env.alert_backoff_s,
            total_timeout_s=env.alert_timeout_s,
        ),
    }
