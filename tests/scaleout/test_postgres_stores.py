"""Dagster and MLflow on PostgreSQL, for real: the scale-out configuration of README "Scaling past
one machine", run against a real PostgreSQL server and a real `mlflow server` process.

The Dagster instance is `infra/dagster/dagster.postgres.yaml` itself (copied into DAGSTER_HOME by
`orchestration.dev.prepare_dagster_home(postgres=True)`, DAGSTER_PG_* filled in); the MLflow server
runs with the flags of the compose `mlflow` service, only hosts, ports, paths and workers replaced. The
project's Definitions run the public `ingest_and_featurize` and `retrain` jobs on that instance
with MLFLOW_TRACKING_URI at the server, and `cryptovol models promote/rollback` move the champion.
What a second machine relies on is checked where it lives: rows in PostgreSQL, model artifacts
uploaded through the server, nothing in local SQLite files.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cryptovol.procs import wait_until
from cryptovol.simulator.synthetic import generate_landing_files

REPO = Path(__file__).resolve().parents[2]
DAGSTER_PG_TEMPLATE = REPO / "infra" / "dagster" / "dagster.postgres.yaml"
COMPOSE = REPO / "infra" / "compose" / "docker-compose.yml"
DOCKERFILE = REPO / "infra" / "compose" / "Dockerfile"
CONSTRAINTS = REPO / "constraints.txt"

#: Flags of the compose `mlflow` command that name that deployment's hosts, ports, paths and size:
#: the test supplies its own values (mlflow_server_factory). Every other flag is passed as it is.
SITE_FLAGS = ("--backend-store-uri", "--artifacts-destination", "--host", "--port", "--allowed-hosts",
              "--workers")

DAY, PRODUCT = "2025-12-01", "BTC-USD"
MODEL = "cryptovol-spike"


def dagster_pg_scheme() -> str:
    """The SQLAlchemy URL scheme the Dagster instance config names (driver included)."""
    config = yaml.safe_load(DAGSTER_PG_TEMPLATE.read_text())
    return config["storage"]["postgres"]["postgres_db"]["scheme"]


def compose_mlflow_service() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["mlflow"]


def compose_mlflow_flags() -> tuple[list[str], dict[str, str]]:
    """(flags other than SITE_FLAGS, MLFLOW_* environment) of the compose `mlflow` service."""
    service = compose_mlflow_service()
    command = [str(part) for part in service["command"]]
    assert command[:2] == ["mlflow", "server"], command
    flags = []
    for part in command[2:]:
        assert part.startswith("--"), f"compose mlflow flags are written --flag[=value]: {part!r}"
        if part.split("=", 1)[0] not in SITE_FLAGS:
            flags.append(part)
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()
           if k.startswith("MLFLOW_") and k != "MLFLOW_TRACKING_URI"}
    return flags, env


def compose_backend_store_uri() -> str:
    [uri] = [p.split("=", 1)[1] for p in compose_mlflow_service()["command"]
             if str(p).startswith("--backend-store-uri=")]
    return uri


@dataclass
class DagsterOnPostgres:
    instance: dg.DagsterInstance
    home: Path
    database: str


@pytest.fixture
def dagster_pg(
    postgres_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterOnPostgres]:
    """A Dagster instance from infra/dagster/dagster.postgres.yaml on a fresh database of the server."""
    from orchestration.dev import prepare_dagster_home

    pg = postgres_server
    home = tmp_path / "dagster-home"
    database = pg.create_database("dagster")
    env = {"DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USER": pg.user,
           "DAGSTER_PG_PASSWORD": pg.password, "DAGSTER_PG_DB": database, "DAGSTER_HOME": str(home)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    prepare_dagster_home(home=home, postgres=True)
    assert (home / "dagster.yaml").read_text() == DAGSTER_PG_TEMPLATE.read_text()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        yield DagsterOnPostgres(instance, home, database)


@pytest.fixture
def mlflow_pg(postgres_server, mlflow_server_factory, monkeypatch: pytest.MonkeyPatch):
    """`(server, database)`: an `mlflow server` with the compose service's flags on a fresh PostgreSQL
    database; MLFLOW_TRACKING_URI points at it (the platform's processes follow that variable)."""
    database = postgres_server.create_database("mlflow")
    flags, env = compose_mlflow_flags()
    server = mlflow_server_factory(postgres_server.url(database, scheme=dagster_pg_scheme()), *flags, env=env)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    return server, database


def cli(*args: str) -> str:
    """`cryptovol ...` as a user runs it (a separate process; MLFLOW_TRACKING_URI from the env)."""
    done = subprocess.run([sys.executable, "-m", "cryptovol.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, f"cryptovol {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def pg_aliases(pg, database: str) -> dict[str, str]:
    """The registry's aliases as stored in MLflow's PostgreSQL tables (what every server replica reads)."""
    rows = pg.query(database, "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (MODEL,))
    return {alias: str(version) for alias, version in rows}


def test_infra_configs_use_what_the_postgres_test_runs() -> None:
    """The compose stack and the Dockerfile name the driver, config and package the test runs with."""
    scheme = dagster_pg_scheme()
    assert scheme == "postgresql+psycopg2"  # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3
    uri = compose_backend_store_uri()
    assert uri.split("://", 1)[0] == scheme, (
        f"infra/compose mlflow --backend-store-uri must use {scheme}:// (the image ships psycopg2, and "
        f"SQLAlchemy 2.1 maps postgresql:// to psycopg 3): {uri}"
    )
    compose = yaml.safe_load(COMPOSE.read_text())
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "infra/dagster/dagster.postgres.yaml" in " ".join(compose["services"][name]["command"])
    referenced = set(re.findall(r"env: (DAGSTER_PG_\w+)", DAGSTER_PG_TEMPLATE.read_text()))
    assert referenced == {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                          "DAGSTER_PG_DB"}
    for name in ("dagster-webserver", "dagster-daemon"):
        assert referenced <= set(compose["services"][name]["environment"]), name
    # The image installs the `postgres` extra under constraints.txt: the driver versions the tests ran.
    assert re.search(r"^dagster-postgres==\S+$", CONSTRAINTS.read_text(), re.M)
    assert "-c constraints.txt '.[postgres]'" in DOCKERFILE.read_text()


def test_readme_scale_out_command_is_the_compose_one() -> None:
    """README "Scaling past one machine" shows the same mlflow server flags, environment and driver."""
    readme = (REPO / "README.md").read_text()
    [block] = re.findall(r"```bash\n([^`]*?mlflow server[^`]*?)```", readme)
    service = compose_mlflow_service()
    compose_flags = {str(p).split("=", 1)[0] for p in service["command"][2:]}
    assert set(re.findall(r"(--[a-z-]+)", block)) == compose_flags
    _, env = compose_mlflow_flags()
    for name, value in env.items():
        assert f"{name}={value}" in block
    assert f"--backend-store-uri={dagster_pg_scheme()}://" in block


def assert_dagster_state_in_postgres(pg, dagster: DagsterOnPostgres, runs: dict[str, str], last_run: str,
                                     job: dg.JobDefinition) -> None:
    """`runs` (run id -> job name) succeeded and are in PostgreSQL, `last_run` materialized every
    asset of `job` there, no local SQLite file exists, and a new instance (another process, another
    machine) reads the runs and the latest materializations from PostgreSQL."""
    statuses = dict(pg.query(dagster.database, "SELECT run_id, status FROM runs"))
    assert statuses == dict.fromkeys(runs, "SUCCESS")
    in_pg = {key for (key,) in pg.query(
        dagster.database,
        "SELECT DISTINCT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
        (last_run, "ASSET_MATERIALIZATION"),
    )}
    expected = job.asset_layer.selected_asset_keys
    assert in_pg == {key.to_string() for key in expected}
    assert [p for p in dagster.home.rglob("*") if p.suffix in (".db", ".sqlite")] == []
    with dg.DagsterInstance.from_config(str(dagster.home)) as other:
        assert {run_id: other.get_run_by_id(run_id).job_name for run_id in runs} == runs
        for key in expected:
            assert other.get_latest_materialization_event(key).run_id == last_run


def move_champion(pg, database: str, older: str, newer: str, *, cli_process: bool) -> None:
    """promote `older`, promote `newer`, roll back: the champion ends on `older` whatever the gate
    did before, and PostgreSQL's alias rows (what every server replica reads) follow each step.
    Through `cryptovol models ...` processes, or the same registry functions in this process."""
    from cryptovol.models import registry

    def promote(version: str) -> None:
        if cli_process:
            cli("models", "promote", version)
        else:
            registry.promote(MODEL, version, reason="test")

    promote(older)
    assert pg_aliases(pg, database)["champion"] == older
    promote(newer)
    after = pg_aliases(pg, database)
    assert (after["champion"], after["previous_champion"]) == (newer, older)
    if cli_process:
        cli("models", "rollback")
    else:
        registry.rollback(MODEL)
    assert pg_aliases(pg, database)["champion"] == older


def test_dagster_runs_and_mlflow_registry_live_in_postgres(
    data_dir: Path, postgres_server, dagster_pg: DagsterOnPostgres, mlflow_pg
) -> None:
    """The default-suite slice: one partition through Dagster on PostgreSQL; two model versions on
    the MLflow server (artifacts uploaded through it) and the champion moved by the registry code
    behind `cryptovol models promote/rollback` (the slow test runs the CLI itself)."""
    import mlflow

    from cryptovol.config import Settings
    from cryptovol.models.tracking import configure_tracking
    from orchestration.definitions import build_definitions

    defs = build_definitions()  # resources from this test's environment

    pg, (server, mlflow_db) = postgres_server, mlflow_pg
    start = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    generate_landing_files(data_dir, [PRODUCT], start, duration_s=120, seed=3)
    job = defs.resolve_job_def("ingest_and_featurize")
    ingest = job.execute_in_process(instance=dagster_pg.instance, partition_key=f"{DAY}|{PRODUCT}")
    assert ingest.success
    assert_dagster_state_in_postgres(pg, dagster_pg, {ingest.run_id: job.name}, ingest.run_id, job)

    # The platform's tracking set-up against a server leaves artifacts to the server's store.
    configure_tracking(Settings.from_env())
    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL)
    for index in range(2):
        with mlflow.start_run() as run:
            mlflow.log_text(f"model {index}", "model/MLmodel")
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
        client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    assert len(list(server.artifacts_dir.rglob("MLmodel"))) == 2
    assert not (data_dir / "mlflow").exists()
    move_champion(pg, mlflow_db, "1", "2", cli_process=False)
    assert dict(client.get_registered_model(MODEL).aliases) == pg_aliases(pg, mlflow_db)


def launch_and_wait(url: str, job: str, timeout_s: float = 600.0) -> str:
    """Launch `job` through the webserver's GraphQL API (queued, then started by the daemon in its
    own process, as in production) and wait for it to succeed; returns the run id."""
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    host, port = url.removeprefix("http://").split(":")
    client = DagsterGraphQLClient(host, port_number=int(port), timeout=60)
    run_id: list[str] = []

    def submitted() -> bool:  # the code location may still be loading
        with contextlib.suppress(DagsterGraphQLClientError):
            run_id.append(client.submit_job_execution(job, repository_location_name="cryptovol",
                                                      repository_name="__repository__"))
        return bool(run_id)

    wait_until(submitted, timeout_s=180, interval_s=2.0, what=f"the webserver to accept job {job}")
    status: list = []

    def finished() -> bool:
        status.append(client.get_run_status(run_id[0]))
        return status[-1] in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                              dg.DagsterRunStatus.CANCELED)

    wait_until(finished, timeout_s=timeout_s, interval_s=2.0, what=f"run {run_id[0]} of {job}")
    assert status[-1] == dg.DagsterRunStatus.SUCCESS, (job, status[-1])
    return run_id[0]


@pytest.mark.slow  # dagster dev + two daemon-launched retrains: ~65 s CPU, 5.5 min wall at load 10 on 2 cores
def test_retrain_graph_and_champion_on_dagster_and_mlflow_on_postgres(
    data_dir: Path, postgres_server, dagster_pg: DagsterOnPostgres, mlflow_pg, dagster_dev_factory
) -> None:
    """The production shape: `dagster dev` (webserver + daemon, the QueuedRunCoordinator of the
    yaml) on the PostgreSQL instance launches `retrain` twice in run worker processes; the champion
    then moves between the two runs' models with the CLI and loads by alias through the server."""
    import mlflow

    from orchestration.definitions import build_definitions

    defs = build_definitions()  # resources from this test's environment

    pg, (server, mlflow_db) = postgres_server, mlflow_pg
    start = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    generate_landing_files(data_dir, [PRODUCT], start, duration_s=1200, seed=11)
    ingest = defs.resolve_job_def("ingest_and_featurize").execute_in_process(
        instance=dagster_pg.instance, partition_key=f"{DAY}|{PRODUCT}"
    )
    assert ingest.success
    dagster = dagster_dev_factory(dagster_pg.home)
    first = launch_and_wait(dagster.url, "retrain")
    second = launch_and_wait(dagster.url, "retrain")
    retrain = defs.resolve_job_def("retrain")
    runs = {ingest.run_id: "ingest_and_featurize", first: "retrain", second: "retrain"}
    assert_dagster_state_in_postgres(pg, dagster_pg, runs, second, retrain)

    # Each retrain registered its versions on the server, tagged with its Dagster run; their
    # artifacts went through the server into --artifacts-destination, none under the data dir.
    client = mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    by_run: dict[str, list[int]] = {}
    for version in client.search_model_versions(f"name='{MODEL}'"):
        by_run.setdefault(version.tags.get("dagster_run_id", ""), []).append(int(version.version))
        artifact_uri = client.get_run(version.run_id).info.artifact_uri
        assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
    assert set(by_run) == {first, second}
    assert max(by_run[first]) < min(by_run[second])
    assert len(list(server.artifacts_dir.rglob("MLmodel"))) >= sum(len(v) for v in by_run.values())
    assert not (data_dir / "mlflow").exists()
    assert pg_aliases(pg, mlflow_db) == dict(client.get_registered_model(MODEL).aliases)
    assert pg_aliases(pg, mlflow_db)["challenger"] in {str(v) for v in by_run[second]}

    # The champion moves between the two runs' models with the CLI, through the server.
    older, newer = str(max(by_run[first])), str(max(by_run[second]))
    move_champion(pg, mlflow_db, older, newer, cli_process=True)

    # What serving does on any machine: load the champion by alias, artifacts through the server.
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert champion.metadata.run_id == client.get_model_version(MODEL, older).run_id
