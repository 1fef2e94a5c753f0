"""The demo's first champion, made by the lineage graph: `ingest_and_featurize` for every landing
partition, then the `retrain` job (labels -> training_dataset -> models -> model_evaluation ->
champion_model), so the Dagster UI shows the whole chain materialized, with its MLflow links.

Why through the webserver's GraphQL API (`launchRun`, then poll `runOrError`) rather than
`materialize()` in this process: the runs then go through the demo instance's own run queue and
launcher, exactly like the runs the sensors request later (same DAGSTER_HOME, same code location
loaded by `dagster dev`, same per-run process and concurrency limits), and nothing of Dagster,
MLflow or XGBoost is imported into the launcher. Plain HTTP instead of `DagsterGraphQLClient`:
the multi-partition tags (`dagster/partition/date`, `.../product`) are set exactly as the UI sets
them, and the runs' materializations can be read back in the same call.

Without `dagster dev` (`--no-dagster`, the fault drill) the same jobs run in process in a child
(`python -m orchestration.demo.first_champion`) against the same DAGSTER_HOME instance, so the
runs still show in the UI the next time it starts.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptovol.config import Settings

LOCATION = "cryptovol"
REPOSITORY = "__repository__"
FEATURES_JOB = "ingest_and_featurize"
RETRAIN_JOB = "retrain"
TRIGGER_TAG = {"key": "cryptovol/trigger", "value": "demo-bootstrap"}
DONE = ("SUCCESS", "FAILURE", "CANCELED")

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status jobName assetMaterializations { assetKey { path } partition } }
  }
}
"""

ASSET_NODES = "{ assetNodes { assetKey { path } } }"

ACTIVE_RUNS = """
query Active($job: String!) {
  runsOrError(filter: {pipelineName: $job, statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) {
    ... on Runs { results { runId status } }
  }
}
"""


class GraphQLError(RuntimeError):
    pass


def graphql(url: str, query: str, variables: dict[str, Any] | None = None, timeout_s: float = 30) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (loopback)
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise GraphQLError(str(payload["errors"])[:2000])
    return payload["data"]


@dataclass
class RunOutcome:
    run_id: str
    job: str
    status: str
    materialized: list[str] = field(default_factory=list)
    seconds: float = 0.0


def partition_tags(day: str, product: str) -> list[dict[str, str]]:
    """The tags the UI sets on a run of one (date, product) partition."""
    return [
        {"key": "dagster/partition", "value": f"{day}|{product}"},
        {"key": "dagster/partition/date", "value": day},
        {"key": "dagster/partition/product", "value": product},
    ]


def launch(url: str, job: str, tags: list[dict[str, str]]) -> str:
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
        "executionMetadata": {"tags": [TRIGGER_TAG, *tags]},
    }
    result = graphql(url, LAUNCH, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise GraphQLError(f"launching {job} failed: {json.dumps(result)[:2000]}")
    return result["run"]["runId"]


def wait_runs(url: str, run_ids: dict[str, str], timeout_s: float) -> list[RunOutcome]:
    """Poll until every run is finished; run_ids maps run id -> job name."""
    started = time.monotonic()
    outcomes: dict[str, RunOutcome] = {}
    while len(outcomes) < len(run_ids):
        if time.monotonic() - started > timeout_s:
            pending = [r for r in run_ids if r not in outcomes]
            raise TimeoutError(f"Dagster runs not finished after {timeout_s:.0f}s: {pending}")
        for run_id, job in run_ids.items():
            if run_id in outcomes:
                continue
            run = graphql(url, RUN, {"runId": run_id})["runOrError"]
            if run.get("status") in DONE:
                keys = ["/".join(m["assetKey"]["path"]) + (f"[{m['partition']}]" if m["partition"] else "")
                        for m in run.get("assetMaterializations") or []]
                outcomes[run_id] = RunOutcome(run_id, job, run["status"], keys,
                                              round(time.monotonic() - started, 1))
        time.sleep(1.0)
    return [outcomes[r] for r in run_ids]


def wait_location(url: str, timeout_s: float = 180) -> None:
    """`/server_info` answers before the code location has loaded; wait for the asset graph."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if graphql(url, ASSET_NODES)["assetNodes"]:
                return
        except (OSError, GraphQLError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"the Dagster code location did not load within {timeout_s:.0f}s")


def active_runs(url: str, job: str) -> list[str]:
    """Ids of the job's runs that are queued or running."""
    result = graphql(url, ACTIVE_RUNS, {"job": job}, timeout_s=10)["runsOrError"]
    return [r["runId"] for r in result.get("results", [])]


def landing_partitions(settings: Settings) -> list[tuple[str, str]]:
    from cryptovol import lake

    return sorted(lake.list_landing_partitions(settings.data_dir))


def via_graphql(
    url: str, settings: Settings, *, out: Callable[[str], None] = print, timeout_s: float = 900
) -> list[RunOutcome]:
    """Features for every landing partition, then `retrain`; raises if a run did not succeed."""
    wait_location(url)
    features = {launch(url, FEATURES_JOB, partition_tags(day, product)): FEATURES_JOB
                for product, day in landing_partitions(settings)}
    out(f"    dagster: {len(features)} {FEATURES_JOB} run(s) launched (one per day x product)")
    outcomes = wait_runs(url, features, timeout_s)
    failed = [o for o in outcomes if o.status != "SUCCESS"]
    if failed:
        raise RuntimeError(f"{FEATURES_JOB} runs failed: {[(o.run_id, o.status) for o in failed]}")
    retrain = launch(url, RETRAIN_JOB, [])
    out(f"    dagster: {RETRAIN_JOB} run {retrain} launched")
    [outcome] = wait_runs(url, {retrain: RETRAIN_JOB}, timeout_s)
    if outcome.status != "SUCCESS":
        raise RuntimeError(f"{RETRAIN_JOB} run {retrain} ended {outcome.status}: see {url}/runs/{retrain}")
    return [*outcomes, outcome]


def in_process(settings: Settings) -> list[RunOutcome]:
    """The same jobs, executed in this process on the DAGSTER_HOME instance (no webserver)."""
    import dagster as dg

    from assets.partitions import partition_key
    from orchestration.definitions import defs

    tags = {TRIGGER_TAG["key"]: TRIGGER_TAG["value"]}
    outcomes = []
    with dg.DagsterInstance.get() as instance:
        for product, day in landing_partitions(settings):
            started = time.monotonic()
            result = defs.resolve_job_def(FEATURES_JOB).execute_in_process(
                instance=instance, partition_key=partition_key(day, product), tags=tags,
                raise_on_error=False,
            )
            outcomes.append(_outcome(result, FEATURES_JOB, started))
            if not result.success:
                raise RuntimeError(f"{FEATURES_JOB} {day}|{product} failed (run {result.run_id})")
        started = time.monotonic()
        result = defs.resolve_job_def(RETRAIN_JOB).execute_in_process(
            instance=instance, tags=tags, raise_on_error=False
        )
        outcomes.append(_outcome(result, RETRAIN_JOB, started))
        if not result.success:
            raise RuntimeError(f"{RETRAIN_JOB} failed (run {result.run_id})")
    return outcomes


def _outcome(result: Any, job: str, started: float) -> RunOutcome:
    keys = [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()]
    return RunOutcome(result.run_id, job, "SUCCESS" if result.success else "FAILURE", keys,
                      round(time.monotonic() - started, 1))


def champion_version(settings: Settings) -> str | None:
    """The version the `champion` alias points at, or None (no registry, no model, no alias)."""
    from pathlib import Path

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    try:
        import mlflow

        from cryptovol.models.registry import alias_version
    except ImportError:
        return None
    # An explicit client for the registry in that store: `mlflow.set_registry_uri` exports
    # MLFLOW_REGISTRY_URI, so one inherited from a parent process could point somewhere else.
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return alias_version(settings.model_name, "champion", client=client)
    except Exception:  # noqa: BLE001 (no database yet is "no champion")
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="materialize the graph in process for the first champion")
    parser.add_argument("--out", required=True, help="write the run outcomes here (JSON)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        outcomes = in_process(settings)
        report: dict[str, Any] = {"runs": [o.__dict__ for o in outcomes]}
        code = 0
    except Exception as exc:  # noqa: BLE001 (reported to the launcher through the file)
        report, code = {"error": str(exc)}, 1
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
