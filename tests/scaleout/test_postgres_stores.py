"""Dagster and MLflow on PostgreSQL, for real: the scale-out configuration of README "Scaling past
one machine", run against a real PostgreSQL server and a real `mlflow server` process.

The Dagster instance is `infra/dagster/dagster.postgres.yaml` itself (copied into DAGSTER_HOME by
`orchestration.dev.prepare_dagster_home(postgres=True)`, DAGSTER_PG_* filled in); the MLflow server
runs with the flags of the compose `mlflow` service, only hosts, ports and paths replaced. The
project's Definitions run the public `ingest_and_featurize` and `retrain` jobs on that instance
with MLFLOW_TRACKING_URI at the server, and `cryptovol models promote/rollback` move the champion.
What a second machine relies on is checked where it lives: rows in PostgreSQL, model artifacts
uploaded through the server, nothing in local SQLite files.
"""

from __future__ import annotations

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

from cryptovol.simulator.synthetic import generate_landing_files

REPO = Path(__file__).resolve().parents[2]
DAGSTER_PG_TEMPLATE = REPO / "infra" / "dagster" / "dagster.postgres.yaml"
COMPOSE = REPO / "infra" / "compose" / "docker-compose.yml"
DOCKERFILE = REPO / "infra" / "compose" / "Dockerfile"
CONSTRAINTS = REPO / "constraints.txt"

#: Flags of the compose `mlflow` command that name that deployment's hosts, ports and paths: the
#: test supplies its own values (mlflow_server_factory). Every other flag is passed as it is.
CONNECTION_FLAGS = ("--backend-store-uri", "--artifacts-destination", "--host", "--port", "--allowed-hosts")

DAY, PRODUCT = "2025-12-01", "BTC-USD"
MODEL = "cryptovol-spike"


def dagster_pg_scheme() -> str:
    """The SQLAlchemy URL scheme the Dagster instance config names (driver included)."""
    config = yaml.safe_load(DAGSTER_PG_TEMPLATE.read_text())
    return config["storage"]["postgres"]["postgres_db"]["scheme"]


def compose_mlflow_service() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["mlflow"]


def compose_mlflow_flags() -> tuple[list[str], dict[str, str]]:
    """(flags other than CONNECTION_FLAGS, MLFLOW_* environment) of the compose `mlflow` service."""
    service = compose_mlflow_service()
    command = [str(part) for part in service["command"]]
    assert command[:2] == ["mlflow", "server"], command
    flags = []
    for part in command[2:]:
        assert part.startswith("--"), f"compose mlflow flags are written --flag[=value]: {part!r}"
        if part.split("=", 1)[0] not in CONNECTION_FLAGS:
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
    pinned = re.search(r"^dagster-postgres==(\S+)$", CONSTRAINTS.read_text(), re.M)
    assert pinned and f"DAGSTER_POSTGRES_VERSION={pinned.group(1)}" in DOCKERFILE.read_text()


def assert_dagster_state_in_postgres(
    pg, dagster: DagsterOnPostgres, results: list, latest: dg.AssetKey
) -> None:
    """Every run and materialization is in PostgreSQL, none in local SQLite files, and a new
    instance (another process, another machine) reads them from there."""
    runs = dict(pg.query(dagster.database, "SELECT run_id, status FROM runs"))
    assert runs == {r.run_id: "SUCCESS" for r in results}
    last = results[-1]
    materialized = {e.asset_key.to_string() for e in last.get_asset_materialization_events()}
    in_pg = {key for (key,) in pg.query(
        dagster.database,
        "SELECT DISTINCT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
        (last.run_id, "ASSET_MATERIALIZATION"),
    )}
    assert latest.to_string() in materialized and in_pg == materialized
    assert [p for p in dagster.home.rglob("*") if p.suffix in (".db", ".sqlite")] == []
    with dg.DagsterInstance.from_config(str(dagster.home)) as other:
        assert other.get_latest_materialization_event(latest).run_id == last.run_id
        assert {other.get_run_by_id(r.run_id).job_name for r in results} == {r.job_def.name for r in results}


def move_champion_with_the_cli(pg, database: str, older: str, newer: str) -> None:
    """promote `older`, promote `newer`, roll back: the champion ends on `older` whatever the gate
    did before, and PostgreSQL's alias rows (what every server replica reads) follow each step."""
    cli("models", "promote", older)
    assert pg_aliases(pg, database)["champion"] == older
    cli("models", "promote", newer)
    after = pg_aliases(pg, database)
    assert (after["champion"], after["previous_champion"]) == (newer, older)
    cli("models", "rollback")
    assert pg_aliases(pg, database)["champion"] == older


def test_dagster_runs_and_mlflow_registry_live_in_postgres(
    data_dir: Path, postgres_server, dagster_pg: DagsterOnPostgres, mlflow_pg
) -> None:
    """The default-suite slice: one partition through Dagster on PostgreSQL; two model versions on
    the MLflow server (artifacts uploaded through it) and the champion moved by the CLI."""
    import mlflow

    from cryptovol.config import Settings
    from cryptovol.models.tracking import configure_tracking
    from orchestration.definitions import defs
    from orchestration.jobs import FEATURES

    pg, (server, mlflow_db) = postgres_server, mlflow_pg
    start = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    generate_landing_files(data_dir, [PRODUCT], start, duration_s=120, seed=3)
    ingest = defs.resolve_job_def("ingest_and_featurize").execute_in_process(
        instance=dagster_pg.instance, partition_key=f"{DAY}|{PRODUCT}"
    )
    assert ingest.success
    assert_dagster_state_in_postgres(pg, dagster_pg, [ingest], FEATURES)

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
    move_champion_with_the_cli(pg, mlflow_db, "1", "2")
    assert dict(client.get_registered_model(MODEL).aliases) == pg_aliases(pg, mlflow_db)


@pytest.mark.slow  # two full retrains through MLflow over HTTP: ~1 min idle, ~3 min on a loaded 2-core box
def test_retrain_graph_and_champion_on_dagster_and_mlflow_on_postgres(
    data_dir: Path, postgres_server, dagster_pg: DagsterOnPostgres, mlflow_pg
) -> None:
    import mlflow

    from orchestration.definitions import defs
    from orchestration.jobs import CHAMPION_MODEL

    pg, (server, mlflow_db) = postgres_server, mlflow_pg
    start = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    generate_landing_files(data_dir, [PRODUCT], start, duration_s=1200, seed=11)
    instance = dagster_pg.instance
    ingest = defs.resolve_job_def("ingest_and_featurize").execute_in_process(
        instance=instance, partition_key=f"{DAY}|{PRODUCT}"
    )
    retrain = defs.resolve_job_def("retrain")
    first = retrain.execute_in_process(instance=instance)
    second = retrain.execute_in_process(instance=instance)
    assert ingest.success and first.success and second.success
    assert_dagster_state_in_postgres(pg, dagster_pg, [ingest, first, second], CHAMPION_MODEL)

    # Each retrain registered its versions on the server, tagged with its Dagster run; their
    # artifacts went through the server into --artifacts-destination, none under the data dir.
    client = mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    by_run: dict[str, list[int]] = {}
    for version in client.search_model_versions(f"name='{MODEL}'"):
        by_run.setdefault(version.tags.get("dagster_run_id", ""), []).append(int(version.version))
        artifact_uri = client.get_run(version.run_id).info.artifact_uri
        assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
    assert set(by_run) == {first.run_id, second.run_id}
    assert max(by_run[first.run_id]) < min(by_run[second.run_id])
    assert len(list(server.artifacts_dir.rglob("MLmodel"))) >= sum(len(v) for v in by_run.values())
    assert not (data_dir / "mlflow").exists()
    assert pg_aliases(pg, mlflow_db) == dict(client.get_registered_model(MODEL).aliases)
    assert pg_aliases(pg, mlflow_db)["challenger"] in {str(v) for v in by_run[second.run_id]}

    # The champion moves between the two runs' models with the CLI, through the server.
    older, newer = str(max(by_run[first.run_id])), str(max(by_run[second.run_id]))
    move_champion_with_the_cli(pg, mlflow_db, older, newer)

    # What serving does on any machine: load the champion by alias, artifacts through the server.
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert champion.metadata.run_id == client.get_model_version(MODEL, older).run_id
