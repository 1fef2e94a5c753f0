"""Shared fixtures. Fixtures that start real processes live here (and only here): they pick free
ports, wait for readiness and always stop what they started."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import pytest

from cryptovol.broker import EmbeddedBroker
from cryptovol.config import Settings
from cryptovol.procs import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRYPTOVOL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(autouse=True)
def _restore_mlflow_uri_env() -> Iterator[None]:
    """`mlflow.set_tracking_uri` / `set_registry_uri` also write MLFLOW_TRACKING_URI /
    MLFLOW_REGISTRY_URI into os.environ, so without this one test's store leaks into the child
    processes of the next (a demo once found "champion v1" of an earlier test's registry)."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


#: Three hours of two products' ticks, 22:30 -> 01:30 UTC, so stream parts span two dates.
STREAM_PARTS_START_NS = 1_767_306_600 * 1_000_000_000  # 2026-01-01T22:30Z
STREAM_PARTS_DURATION_S = 3 * 3600


@pytest.fixture(scope="session")
def stream_parts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature Delta table as the streaming featurizer leaves it: ~350 commits of 25 ticks, one
    small file per product and date per flush. Built once; copy it before changing it."""
    import pandas as pd

    from cryptovol.simulator.synthetic import generate_ticks_frame
    from cryptovol.stream.engine import SourceRecord, StreamEngine
    from cryptovol.stream.sink import write_batches
    from cryptovol.ticks import Tick

    start = pd.Timestamp(STREAM_PARTS_START_NS, tz="UTC").to_pydatetime()
    frame = generate_ticks_frame(("BTC-USD", "ETH-USD"), start=start, duration_s=STREAM_PARTS_DURATION_S,
                                 seed=11, rate_hz=0.4)
    features_dir = tmp_path_factory.mktemp("stream-parts") / "features"
    engine = StreamEngine(lateness_s=0.0)
    for offset, row in enumerate(frame.itertuples(index=False)):
        engine.offer(SourceRecord(Tick(*row), 0, offset))
        if offset % 25 == 24:
            write_batches(features_dir, engine.release())
    write_batches(features_dir, engine.release(force=True))
    return features_dir


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir, exported as CRYPTOVOL_DATA_DIR for code and child processes."""
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings.from_env()


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedBroker]:
    """A real embedded Kafka-protocol broker on a free port (fresh per test: it starts in ~0.1 s).

    Exports KAFKA_BOOTSTRAP_SERVERS so code under test and its child processes find it.
    """
    instance = EmbeddedBroker(tmp_path / "broker-run", port=free_port())
    instance.start()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", instance.bootstrap)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def shared_data() -> Path:
    """The recorded market data beside the repo; skips (with the reason) where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"recorded data not found at {SHARED_DATA} (set CRYPTOVOL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def _mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite DB, made once per session (migrations take seconds)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(data_dir: Path, monkeypatch: pytest.MonkeyPatch, _mlflow_db_template: Path) -> Iterator[str]:
    """A real MLflow SQLite tracking/registry store with artifacts under the tmp data dir.

    Exports MLFLOW_TRACKING_URI, points the mlflow module at it and activates an experiment
    `tests` whose artifacts live in tmp (never ./mlruns); yields the URI. Each test gets its own
    copy of a migrated empty DB.
    """
    import shutil

    import mlflow

    uri = f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
    (data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_mlflow_db_template, data_dir / "mlflow" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # An active experiment with its artifacts in tmp (the default would be ./mlruns in the CWD).
    artifacts = data_dir / "mlflow" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    experiment_id = mlflow.MlflowClient().create_experiment("tests", artifact_location=artifacts.as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield uri
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


# --- Simulator (cryptovol simulate) -------------------------------------------------------------


@dataclass
class SimulatorHandle:
    """One running `cryptovol simulate` process: where to connect and what it recorded."""

    url: str
    port: int
    record_path: Path | None
    process: ManagedProcess

    def records(self) -> list[dict]:
        """The frames sent so far: `{"frame", "kind", "connection"}` dicts, in send order."""
        if self.record_path is None or not self.record_path.exists():
            return []
        lines = self.record_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self) -> int | None:
        return self.process.stop()


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


SIMULATOR_DEFAULTS: dict[str, object] = {"products": "BTC-USD,ETH-USD", "rate": 20, "seed": 7}


@pytest.fixture
def simulator_factory(tmp_path: Path) -> Iterator[Callable[..., SimulatorHandle]]:
    """`start(**options) -> SimulatorHandle`: runs the real `cryptovol simulate` CLI on a free port.

    Options are the CLI flags with underscores (`max_updates=50`, `drop_every=2`,
    `malformed_rate=0.2`, `start_time="2026-01-01T00:00:00Z"`, `products=["BTC-USD"]`, ...);
    defaults: products BTC-USD,ETH-USD, rate 20, seed 7. Every frame sent is recorded to a file in
    tmp (`record=False` turns that off). Waits for the "listening" line; stops every simulator it
    started at teardown.
    """
    started: list[SimulatorHandle] = []

    def start(**options: object) -> SimulatorHandle:
        index = len(started)
        opts = {**SIMULATOR_DEFAULTS, **options}
        record = opts.pop("record", tmp_path / f"simulator-{index}-record.ndjson")
        # Port 0: the simulator binds any free port and reports it (no race with other engineers).
        port = int(opts.pop("port", 0) or 0)
        host = str(opts.pop("host", "127.0.0.1"))
        cmd = [sys.executable, "-m", "cryptovol.cli", "simulate", "--host", host, "--port", str(port)]
        if record:
            cmd += ["--record", str(record)]
        for key, value in opts.items():
            if value is None:
                continue
            if isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        log_path = tmp_path / f"simulator-{index}.log"
        process = ManagedProcess(
            f"simulator-{index}",
            cmd,
            log_path=log_path,
            cwd=REPO_ROOT,
            ready=lambda: "simulator listening on" in _read_or_empty(log_path),
        )
        handle = SimulatorHandle(
            url=f"ws://{host}:{port}",
            port=port,
            record_path=Path(record) if record else None,
            process=process,
        )
        started.append(handle)
        process.start(timeout_s=60)
        if port == 0:
            found = re.search(r"simulator listening on ws://[^:\s]+:(\d+)", _read_or_empty(log_path))
            assert found, f"no listening line in {log_path}"
            handle.port = int(found.group(1))
            handle.url = f"ws://{host}:{handle.port}"
        return handle

    try:
        yield start
    finally:
        for handle in started:
            handle.process.stop()


@pytest.fixture
def simulator(simulator_factory: Callable[..., SimulatorHandle]) -> SimulatorHandle:
    """A running simulator with the defaults (BTC-USD,ETH-USD, rate 20 Hz, seed 7), recording frames."""
    return simulator_factory()


# --- Dagster (dagster dev) ---------------------------------------------------------------------


@dataclass
class DagsterHandle:
    """A running `dagster dev` (webserver + daemon) for this repo's workspace."""

    url: str
    port: int
    home: Path
    process: ManagedProcess


@pytest.fixture
def dagster_dev_factory(data_dir: Path, tmp_path: Path) -> Iterator[Callable[..., DagsterHandle]]:
    """`start(home=None) -> DagsterHandle`: `dagster dev` (webserver + daemon) on a free port with
    DAGSTER_HOME `home` (default: <tmp data dir>/dagster with the SQLite instance config) and
    automation off, so schedules and sensors do not launch runs the test did not ask for. The rest
    of the environment is inherited (e.g. DAGSTER_PG_* for a PostgreSQL instance). Stops all at teardown."""
    from cryptovol.procs import http_ok
    from orchestration.dev import dagster_dev_command, dagster_env, prepare_dagster_home

    started: list[DagsterHandle] = []

    def start(home: Path | None = None) -> DagsterHandle:
        home = home or prepare_dagster_home(home=data_dir / "dagster")
        port = free_port()
        env = {**dagster_env(home), "CRYPTOVOL_DATA_DIR": str(data_dir),
               "CRYPTOVOL_DAGSTER_AUTOMATION": "off"}
        name = f"dagster-dev-{len(started)}" if started else "dagster-dev"
        process = ManagedProcess(
            name,
            dagster_dev_command(port),
            log_path=tmp_path / f"{name}.log",
            env=env,
            cwd=REPO_ROOT,
            ready=lambda: http_ok(f"http://127.0.0.1:{port}/server_info", timeout_s=2.0),
        )
        handle = DagsterHandle(url=f"http://127.0.0.1:{port}", port=port, home=home, process=process)
        started.append(handle)
        process.start(timeout_s=180)
        return handle

    try:
        yield start
    finally:
        for handle in started:
            handle.process.stop(timeout_s=30)


@pytest.fixture
def dagster_dev(dagster_dev_factory: Callable[..., DagsterHandle]) -> DagsterHandle:
    """`dagster dev` on a free port with DAGSTER_HOME under the tmp data dir (automation off, so
    schedules and sensors do not launch runs the test did not ask for). Stopped at teardown."""
    return dagster_dev_factory()


# --- BentoML service (bentoml serve bento.service:SpikeService) --------------------------------


@dataclass
class BentoServer:
    """One running `bentoml serve bento.service:SpikeService`."""

    url: str
    port: int
    data_dir: Path
    process: ManagedProcess

    def log(self) -> str:
        return _read_or_empty(self.process.log_path)


@pytest.fixture(scope="module")
def bento_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., BentoServer]]:
    """`start(data_dir, env=None, wait="ready") -> BentoServer`: a real `bentoml serve` of the
    cryptovol service on a free port, reading the MLflow SQLite store under `data_dir`.

    wait="ready" polls /readyz (a model is loaded), "health" polls /healthz (up, maybe not ready),
    None returns at once. Module-scoped (start-up takes ~6-10 s): share one server per module.
    BENTOML_HOME is a tmp dir; every server started is stopped at teardown.
    """
    from cryptovol.procs import http_ok

    started: list[BentoServer] = []

    def start(data_dir: Path, env: dict[str, str] | None = None, wait: str | None = "ready",
              timeout_s: float = 120.0) -> BentoServer:
        index = len(started)
        port = free_port()
        home = tmp_path_factory.mktemp(f"bentoml-home-{index}")
        full_env = {
            "CRYPTOVOL_DATA_DIR": str(data_dir),
            "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}",
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **(env or {}),
        }
        url = f"http://127.0.0.1:{port}"
        probe = {"ready": "/readyz", "health": "/healthz"}.get(wait or "")
        process = ManagedProcess(
            f"bento-{index}",
            [str(Path(sys.executable).with_name("bentoml")), "serve", "bento.service:SpikeService",
             "--host", "127.0.0.1", "--port", str(port)],
            log_path=home / "serve.log",
            env=full_env,
            cwd=REPO_ROOT,
            ready=(lambda: http_ok(url + probe, timeout_s=2.0)) if probe else None,
        )
        server = BentoServer(url=url, port=port, data_dir=data_dir, process=process)
        started.append(server)
        process.start(timeout_s=timeout_s)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.process.stop(timeout_s=20)


# --- Streaming featurizer (cryptovol featurize) -----------------------------------------------------


@dataclass
class CliProcessHandle:
    """One running `cryptovol <command>` process that ends with a `<command> summary: {...}` line."""

    SUMMARY_MARKER: ClassVar[str] = ""

    name: str
    metrics_url: str
    log_path: Path
    process: ManagedProcess

    def log(self) -> str:
        return _read_or_empty(self.log_path)

    def summary(self) -> dict:
        """The counters of the final summary line (after a clean stop)."""
        lines = [ln for ln in self.log().splitlines() if self.SUMMARY_MARKER in ln]
        if not lines:
            raise AssertionError(f"{self.name} printed no summary; log:\n{self.process.tail()}")
        return json.loads(lines[-1].split(self.SUMMARY_MARKER, 1)[1])


_Handle = TypeVar("_Handle", bound=CliProcessHandle)


def _start_cli_process(
    handle_cls: type[_Handle], role: str, tmp_path: Path, started: list[_Handle],
    args: Callable[[int], list[str]],
) -> _Handle:
    """Start `cryptovol <args(metrics_port)>` with its Prometheus endpoint on a free port, ready when
    /metrics answers; the handle is appended to `started` (the fixture stops them at teardown)."""
    from cryptovol.procs import http_ok

    name = f"{role}-{len(started)}"
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    url = f"http://127.0.0.1:{port}/metrics"
    process = ManagedProcess(
        name, [sys.executable, "-m", "cryptovol.cli", *args(port)], log_path=log_path, cwd=REPO_ROOT,
        ready=lambda: http_ok(url, timeout_s=1.0),
    )
    handle = handle_cls(name, url, log_path, process)
    started.append(handle)
    process.start(timeout_s=60)
    return handle


@dataclass
class FeaturizerHandle(CliProcessHandle):
    """One running `cryptovol featurize` process (its data dir and broker come from the env)."""

    SUMMARY_MARKER: ClassVar[str] = "featurize summary: "


@pytest.fixture
def featurizer_factory(tmp_path: Path) -> Iterator[Callable[..., FeaturizerHandle]]:
    """`start(*extra_args) -> FeaturizerHandle`: the real `cryptovol featurize` CLI as a child process
    with a Prometheus endpoint on a free port (ready when /metrics answers). Needs the `broker` and
    `data_dir` fixtures (it inherits KAFKA_BOOTSTRAP_SERVERS and CRYPTOVOL_DATA_DIR). Stops every
    featurizer it started at teardown (SIGTERM, then SIGKILL)."""
    started: list[FeaturizerHandle] = []

    def start(*extra_args: str) -> FeaturizerHandle:
        return _start_cli_process(
            FeaturizerHandle, "featurizer", tmp_path, started,
            lambda port: ["featurize", "--metrics-port", str(port), "--log-every-s", "1", *extra_args],
        )

    try:
        yield start
    finally:
        for handle in started:
            handle.process.stop(timeout_s=20)


# --- Ingestor (cryptovol ingest) ------------------------------------------------------------------


@dataclass
class IngestorHandle(CliProcessHandle):
    """One running `cryptovol ingest` process (data dir and broker come from the env)."""

    SUMMARY_MARKER: ClassVar[str] = "ingest summary: "

    def metrics(self) -> dict[str, float]:
        """Current counters from its Prometheus endpoint, e.g. `{"landed": 12.0, ...}` ({} if down)."""
        import urllib.request

        prefix = "cryptovol_ingest_"
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:  # noqa: S310 (loopback)
                text = response.read().decode()
        except OSError:
            return {}
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(prefix) and "{" not in line:
                name, _, value = line.partition(" ")
                values[name[len(prefix):].removesuffix("_total")] = float(value)
        return values


@pytest.fixture
def ingestor_factory(tmp_path: Path) -> Iterator[Callable[..., IngestorHandle]]:
    """`start(ws_url, *extra_args) -> IngestorHandle`: the real `cryptovol ingest` CLI as a child
    process with a Prometheus endpoint on a free port (ready when /metrics answers). Use with the
    `data_dir` and `broker` fixtures (it inherits CRYPTOVOL_DATA_DIR and KAFKA_BOOTSTRAP_SERVERS).
    Stops every ingestor it started at teardown (SIGTERM, then SIGKILL)."""
    started: list[IngestorHandle] = []

    def start(ws_url: str, *extra_args: str) -> IngestorHandle:
        return _start_cli_process(
            IngestorHandle, "ingestor", tmp_path, started,
            lambda port: ["ingest", "--ws-url", ws_url, "--metrics-port", str(port), "--log-interval", "2",
                          *extra_args],
        )

    try:
        yield start
    finally:
        for handle in started:
            handle.process.stop(timeout_s=30)


# --- Alert webhook (a Slack-like HTTP endpoint) --------------------------------------------------


class WebhookServer:
    """A webhook on loopback (free port) that answers a scripted sequence of status codes and
    records every JSON body it receives (then answers 200)."""

    def __init__(self, statuses: list[int]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        self.port = free_port()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"error")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/cryptovol"


@pytest.fixture
def webhook_factory() -> Iterator[Callable[[list[int]], WebhookServer]]:
    """`make([500, 200]) -> WebhookServer` (started); every server is shut down at teardown."""
    servers: list[WebhookServer] = []

    def make(statuses: list[int]) -> WebhookServer:
        server = WebhookServer(statuses)
        server.thread.start()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.server.shutdown()
            server.server.server_close()


# --- PostgreSQL (a real server from the binaries in the pgserver wheel) --------------------------


@dataclass
class PostgresServer:
    """A running PostgreSQL on loopback with password (SCRAM) auth over TCP, as a remote one is used."""

    host: str
    port: int
    user: str
    password: str
    process: ManagedProcess | None = None

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):  # -> psycopg2 connection
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=database, connect_timeout=5)

    def query(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def create_database(self, prefix: str) -> str:
        """A new empty database `<prefix>_<random>`: tests share the server, never a database."""
        import uuid

        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return name


def _postgres_bin_dir() -> Path:
    """The PostgreSQL 16 binaries shipped inside the pgserver wheel (a dev dependency)."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver is not installed: run `make setup` (it is in the dev extras)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _as_postgres_user(root: Path, bin_dir: Path) -> list[str]:
    """Command prefix that drops root (PostgreSQL refuses to run as root) to `nobody`; [] otherwise.
    Gives `nobody` the data root; if it cannot run the binaries, opens their folders for reading
    the way pgserver itself does when run as root."""
    import pwd
    import subprocess

    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    os.chown(root, nobody.pw_uid, nobody.pw_gid)
    prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]

    def runnable() -> bool:  # both load their libraries and find themselves (postgres checks its path)
        runs = [subprocess.run([*prefix, str(bin_dir / exe), "--version"], capture_output=True, text=True,
                               timeout=30) for exe in ("initdb", "postgres")]
        return all(r.returncode == 0 and "denied" not in r.stdout + r.stderr for r in runs)

    if not runnable():
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir.parent, 0o055)
        if not runnable():
            raise RuntimeError(f"user nobody cannot run the PostgreSQL binaries in {bin_dir}")
    return prefix


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL 16 on a free loopback port for the whole session (initdb + start ~2 s):
    user `cryptovol` with a random password, SCRAM auth over TCP, no unix socket; each test makes
    its own database with `create_database`. Runs as `nobody` under root. Fast shutdown and the
    data dir removed at session end. fsync is off: the data is thrown away."""
    import secrets
    import shutil
    import signal
    import subprocess
    import tempfile

    bin_dir = _postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="cryptovol-pg-"))  # /tmp: `nobody` can reach it, pytest's tmp not
    process: ManagedProcess | None = None
    try:
        as_user = _as_postgres_user(root, bin_dir)
        password = secrets.token_hex(16)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        shutil.chown(pwfile, user=root.owner(), group=root.group())
        initdb = subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "cryptovol",
             f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
             "--no-instructions"],
            capture_output=True, text=True, timeout=120,
        )
        pwfile.unlink()
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")
        port = free_port()
        server = PostgresServer("127.0.0.1", port, "cryptovol", password)

        def ready() -> bool:
            try:
                server.connect().close()
                return True
            except Exception:  # noqa: BLE001 (not accepting connections yet)
                return False

        process = ManagedProcess(
            "postgres",
            [*as_user, str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off"],
            log_path=root / "postgres.log",
            ready=ready,
        )
        server.process = process
        process.start(timeout_s=60)
        yield server
    finally:
        if process is not None:
            process.stop(timeout_s=30, sig=signal.SIGINT)  # SIGINT = fast shutdown (ends open sessions)
        shutil.rmtree(root, ignore_errors=True)


# --- MLflow tracking server (mlflow server) ----------------------------------------------------


@dataclass
class MlflowServer:
    """One running `mlflow server` that stores artifacts itself (clients upload through it)."""

    url: str
    port: int
    backend_store_uri: str
    artifacts_dir: Path
    process: ManagedProcess


@pytest.fixture
def mlflow_server_factory(tmp_path: Path) -> Iterator[Callable[..., MlflowServer]]:
    """`start(backend_store_uri, *extra_args, env=None) -> MlflowServer`: a real `mlflow server` on a
    free loopback port with `--artifacts-destination` in tmp and one worker (the default 4 each
    import the server: seconds of CPU on 2 cores), plus `extra_args` (e.g. the compose service's
    flags); ready when /health answers (the store's migrations ran). Stops all at teardown."""
    from cryptovol.procs import http_ok

    started: list[MlflowServer] = []

    def start(backend_store_uri: str, *extra_args: str, env: dict[str, str] | None = None) -> MlflowServer:
        index = len(started)
        port = free_port()
        artifacts = tmp_path / f"mlflow-server-{index}" / "artifacts"
        artifacts.mkdir(parents=True)
        url = f"http://127.0.0.1:{port}"
        process = ManagedProcess(
            f"mlflow-server-{index}",
            [str(Path(sys.executable).with_name("mlflow")), "server",
             f"--backend-store-uri={backend_store_uri}", f"--artifacts-destination={artifacts}",
             "--host=127.0.0.1", f"--port={port}", f"--allowed-hosts=127.0.0.1:{port},localhost:{port}",
             "--workers=1", *extra_args],
            log_path=tmp_path / f"mlflow-server-{index}" / "server.log",
            env={"MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})},
            cwd=tmp_path,
            ready=lambda: http_ok(f"{url}/health", timeout_s=2.0),
        )
        server = MlflowServer(url, port, backend_store_uri, artifacts, process)
        started.append(server)
        process.start(timeout_s=180)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.process.stop(timeout_s=20)


# --- Scripted exchange (a WebSocket server that sends exactly the frames a test gives) ------------


class ScriptedExchange:
    """A loopback WebSocket server (free port, own thread) that answers the first connection's
    subscriptions with `frames`, in order, then keeps it alive with heartbeats; later connections
    get heartbeats only. For feeding a real `cryptovol ingest` inputs the simulator never sends."""

    def __init__(self, frames: list[str]) -> None:
        import threading

        from websockets.sync.server import serve

        self.frames = list(frames)
        self.sent = 0
        self._connections = 0
        self._stop = threading.Event()
        self._server = serve(self._handle, "127.0.0.1", 0, max_size=2**24)
        self.port = self._server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-ws", daemon=True)
        self._thread.start()

    def _handle(self, ws) -> None:  # noqa: ANN001 (websockets ServerConnection)
        import time

        self._connections += 1
        first = self._connections == 1
        try:
            for _ in range(2):  # the ingestor subscribes to ticker and heartbeats
                ws.recv(timeout=10)
            if first:
                for text in self.frames:
                    ws.send(text)
                    self.sent += 1
            counter = 0
            while not self._stop.is_set():
                counter += 1
                ws.send(json.dumps({"channel": "heartbeats", "client_id": "", "timestamp":
                                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sequence_num": 0,
                                    "events": [{"heartbeat_counter": counter}]}))
                self._stop.wait(0.5)
        except Exception:  # noqa: BLE001 (the client went away)
            return

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._thread.join(10)


@pytest.fixture
def scripted_exchange() -> Iterator[Callable[[list[str]], ScriptedExchange]]:
    """`start(frames) -> ScriptedExchange` (`.url`, `.sent`); stops every server at teardown."""
    started: list[ScriptedExchange] = []

    def start(frames: list[str]) -> ScriptedExchange:
        server = ScriptedExchange(frames)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
