"""`dagster dev` from workspace.yaml: the UI's GraphQL API shows the lineage and runs assets."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryptovol.procs import wait_until
from cryptovol.simulator.synthetic import generate_landing_files

SNAPSHOT = json.loads((Path(__file__).parent / "asset_graph.json").read_text())
EXPECTED_EDGES = {(dep, key) for key, spec in SNAPSHOT["assets"].items() for dep in spec["deps"]}

ASSET_NODES = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status assetMaterializations { assetKey { path } partition } }
  }
}
"""


BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}
"""

MATERIALIZED = """
{ assetOrError(assetKey: {path: ["raw_ticks"]}) {
    ... on Asset { assetMaterializations(limit: 20) { partition runId } } } }
"""


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


# ~50 s on a busy 2-core box (dagster dev comes up in 15-40 s; the run is in-process, ~10 s).
def test_dagster_dev_serves_lineage_and_materializes(dagster_dev, data_dir: Path) -> None:
    url = dagster_dev.url
    nodes: list[dict] = []

    def location_loaded() -> bool:
        nodes[:] = graphql(url, ASSET_NODES)["assetNodes"]
        return bool(nodes)

    wait_until(location_loaded, timeout_s=120, interval_s=1.0, what="the code location to load")
    edges = {
        ("/".join(dep["path"]), "/".join(node["assetKey"]["path"]))
        for node in nodes
        for dep in node["dependencyKeys"]
    }
    keys = {"/".join(node["assetKey"]["path"]) for node in nodes}
    assert edges == EXPECTED_EDGES
    assert {"raw_ticks", "features", "champion_model", "drift_report"} <= keys

    # Land two minutes around midnight (two daily files), then launch raw_ticks for the first
    # day's partition through the API.
    generate_landing_files(
        data_dir, ["BTC-USD"], datetime(2025, 12, 1, 23, 59, tzinfo=UTC), duration_s=120, seed=3
    )
    partition = "2025-12-01|BTC-USD"
    params = {
        "selector": {
            "repositoryLocationName": "cryptovol",
            "repositoryName": "__repository__",
            "jobName": "ingest_and_featurize",
            "assetSelection": [{"path": ["raw_ticks"]}],
            "assetCheckSelection": [],
        },
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": partition},
                {"key": "dagster/partition/date", "value": "2025-12-01"},
                {"key": "dagster/partition/product", "value": "BTC-USD"},
            ]
        },
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    state: dict = {}

    def finished() -> bool:
        state.update(graphql(url, RUN, {"runId": run_id})["runOrError"])
        return state.get("status") in ("SUCCESS", "FAILURE", "CANCELED")

    started = time.monotonic()
    wait_until(finished, timeout_s=180, interval_s=1.0, what=f"run {run_id} to finish")
    assert state["status"] == "SUCCESS", (state, dagster_dev.process.tail(60))
    assert [(m["assetKey"]["path"], m["partition"]) for m in state["assetMaterializations"]] == [
        (["raw_ticks"], partition)
    ]
    assert time.monotonic() - started < 180


@pytest.mark.slow  # a second dagster dev start plus the backfill daemon's pace: ~1.5-2.5 min
def test_backfill_over_days_through_the_api(dagster_dev, data_dir: Path) -> None:
    url = dagster_dev.url
    wait_until(
        lambda: bool(graphql(url, ASSET_NODES)["assetNodes"]),
        timeout_s=120,
        interval_s=1.0,
        what="the code location to load",
    )
    generate_landing_files(
        data_dir, ["BTC-USD"], datetime(2025, 12, 1, 23, 59, tzinfo=UTC), duration_s=120, seed=3
    )
    # A backfill over both days (what the UI's "Materialize > backfill" launches).
    days = ["2025-12-01|BTC-USD", "2025-12-02|BTC-USD"]
    backfill = graphql(
        url, BACKFILL, {"params": {"assetSelection": [{"path": ["raw_ticks"]}], "partitionNames": days}}
    )["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
    status: dict = {}

    def backfill_done() -> bool:
        status.update(
            graphql(url, BACKFILL_STATUS, {"id": backfill["backfillId"]})["partitionBackfillOrError"]
        )
        return status.get("status") not in (None, "REQUESTED", "CANCELING", "FAILING")

    wait_until(backfill_done, timeout_s=240, interval_s=2.0, what="the backfill to finish")
    assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (status, dagster_dev.process.tail(60))
    materialized = graphql(url, MATERIALIZED)["assetOrError"]["assetMaterializations"]
    assert sorted(m["partition"] for m in materialized) == days
    assert len({m["runId"] for m in materialized}) == 2  # one run per partition
