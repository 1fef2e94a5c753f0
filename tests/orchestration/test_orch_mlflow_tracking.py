"""MLflow tracking of Dagster runs through dagster-mlflow, against the real SQLite MLflow store:
one parent MLflow run per Dagster run, one child run per asset, artifacts under the data dir,
every run ended with the right status."""

import uuid
from pathlib import Path

import dagster as dg

from orchestration.resources import (
    ASSET_RUN,
    PARENT_RUN,
    RUN_TYPE_TAG,
    MlflowTrackingResource,
    default_resources,
)


class ProbeConfig(dg.Config):
    fail: bool = False


def probe(name: str) -> dg.AssetsDefinition:
    """An asset that logs one child run the way the model assets do (metric + artifact)."""

    @dg.asset(name=name)
    def _probe(
        context: dg.AssetExecutionContext, config: ProbeConfig, mlflow_tracking: MlflowTrackingResource
    ) -> dg.MaterializeResult:
        import mlflow

        with mlflow_tracking.child_run(context, run_name=f"dagster-{name}") as run:
            mlflow.log_metric("value", 1.0)
            mlflow.log_text(name, "note.txt")
            if config.fail:
                raise RuntimeError(f"{name} failed on purpose")
        return dg.MaterializeResult(metadata=mlflow_tracking.run_metadata(run))

    return _probe


PROBES = [probe("probe_a"), probe("probe_b")]


def execute(run_id: str | None = None, fail_b: bool = False) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("probe_job", selection=dg.AssetSelection.assets(*PROBES))
    defs = dg.Definitions(assets=PROBES, jobs=[job], resources=default_resources())
    with dg.instance_for_test() as instance:
        return defs.resolve_job_def("probe_job").execute_in_process(
            instance=instance,
            run_id=run_id,
            raise_on_error=False,
            run_config={"ops": {"probe_b": {"config": {"fail": fail_b}}}},
        )


def runs_of(dagster_run_id: str) -> tuple[object, list]:
    """(parent run, child runs) tagged with this Dagster run id."""
    import mlflow

    runs = mlflow.search_runs(
        experiment_names=["cryptovol-spike"],
        filter_string=f"tags.dagster_run_id = '{dagster_run_id}'",
        output_format="list",
    )
    [parent] = [r for r in runs if r.data.tags.get(RUN_TYPE_TAG) == PARENT_RUN]
    children = [r for r in runs if r.data.tags.get(RUN_TYPE_TAG) == ASSET_RUN]
    assert len(runs) == 1 + len(children)
    return parent, children


def test_each_asset_logs_a_child_run_under_the_dagster_runs_run(data_dir: Path) -> None:
    import mlflow

    result = execute()
    assert result.success

    parent, children = runs_of(result.run_id)
    # the parent: dagster-mlflow's run for the Dagster run (named after the job, env tags)
    assert parent.info.run_name == "probe_job"
    assert parent.data.tags["dagster_run_id"] == result.run_id
    assert parent.data.tags["dagster_job"] == "probe_job"
    assert parent.data.tags["CRYPTOVOL_DATA_DIR"] == str(data_dir)
    assert "mlflow.parentRunId" not in parent.data.tags
    assert parent.info.status == "FINISHED"
    # one child per asset, nested under it, linked from the asset's metadata
    assert sorted(c.data.tags["dagster_asset"] for c in children) == ["probe_a", "probe_b"]
    for child in children:
        asset = child.data.tags["dagster_asset"]
        [materialization] = result.asset_materializations_for_node(asset)
        meta = {k: v.value for k, v in materialization.metadata.items()}
        assert meta["mlflow_run_id"] == child.info.run_id
        assert meta["mlflow_run_url"].endswith(f"/runs/{child.info.run_id}")
        assert meta["mlflow_parent_run_id"] == parent.info.run_id
        assert meta["mlflow_parent_run_url"].endswith(f"/runs/{parent.info.run_id}")
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["dagster_run_id"] == result.run_id
        assert child.info.status == "FINISHED"
        assert child.data.metrics == {"value": 1.0}
        # artifacts live under the data dir (never ./mlruns of the working directory)
        artifacts = Path(child.info.artifact_uri.removeprefix("file://"))
        assert artifacts.is_relative_to(data_dir / "mlflow" / "artifacts")
        assert (artifacts / "note.txt").read_text() == asset
    assert mlflow.active_run() is None


def test_a_failing_asset_fails_its_child_run_and_the_parent(data_dir: Path) -> None:
    import mlflow

    result = execute(fail_b=True)
    assert not result.success
    parent, children = runs_of(result.run_id)
    status = {c.data.tags["dagster_asset"]: c.info.status for c in children}
    assert status == {"probe_a": "FINISHED", "probe_b": "FAILED"}
    assert parent.info.status == "FAILED"
    assert mlflow.active_run() is None

    # the next Dagster run in this process starts cleanly with a parent of its own
    again = execute()
    assert again.success
    next_parent, _ = runs_of(again.run_id)
    assert next_parent.info.run_id != parent.info.run_id and next_parent.info.status == "FINISHED"


def test_a_resource_initialized_again_for_the_same_dagster_run_resumes_its_parent(data_dir: Path) -> None:
    """What a step-per-process executor or a resumed run does: the resource starts again for the
    same Dagster run id, finds the parent (not one of the children, which carry the Dagster run id
    as well) and nests the new children under it."""
    run_id = str(uuid.uuid4())
    assert execute(run_id=run_id).success
    first_parent, _ = runs_of(run_id)
    assert execute(run_id=run_id).success
    parent, children = runs_of(run_id)
    assert parent.info.run_id == first_parent.info.run_id
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"


def test_the_tracking_uri_comes_from_the_environment(data_dir: Path, monkeypatch) -> None:
    import mlflow

    uri = f"sqlite:///{data_dir}/elsewhere/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = execute()
    assert result.success
    mlflow.set_tracking_uri(uri)
    parent, children = runs_of(result.run_id)
    assert len(children) == 2 and parent.info.status == "FINISHED"
    assert (data_dir / "elsewhere" / "mlflow.db").exists()
