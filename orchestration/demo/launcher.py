"""`cryptovol demo`: the whole closed loop on one machine, started and stopped by one command.

Order of start-up (each step waits for readiness, never sleeps):
  embedded broker -> MLflow UI (answers later) -> history: the market's first hour (fresh data
  dir only; its last minutes replayed into ticks.raw) -> streaming featurizer -> Dagster webserver
  + daemon -> first champion by the lineage graph (features for every landing partition, then the
  `retrain` job, launched through Dagster's GraphQL API) -> simulator continuing the history's
  market and clock (regime change `regime_change_at_s` later) -> ingestor -> drift monitor
  -> BentoML service -> scorer.
While running it prints a status line, writes a drift report every `drift_every_s` (the Dagster
drift sensors record it as a `drift_report` materialization and request a retrain when drift
persists) and restarts a process that died. Ctrl-C (or the end of `--duration`) stops every
process it started, in reverse order, and leaves the data on disk.

A piece whose code is not there yet (another engineer's command, the Dagster code location, the
service) is reported as skipped with the reason instead of crashing the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptovol.broker import EmbeddedBroker
from cryptovol.config import Settings
from cryptovol.kafka_io import ensure_topics, port_open
from cryptovol.procs import ManagedProcess, free_port, http_ok, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent

#: Preferred ports (used when free, else a free port is picked).
DEFAULT_PORTS = {
    "broker": 9092,
    "simulator": 8765,
    "mlflow": 5000,
    "dagster": 3000,
    "service": 3030,
    "dashboard": 8050,
    "ingest_metrics": 9101,
    "featurize_metrics": 9102,
    "score_metrics": 9103,
    "drift_metrics": 9104,
}


@dataclass
class DemoOptions:
    duration_s: float | None = None
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    rate_hz: float = 4.0
    seed: int = 7
    regime_change_at_s: float | None = 120.0
    regime_vol_mult: float = 4.0
    history_minutes: float = 60.0
    drift_every_s: float = 60.0
    current_minutes: float = 3.0
    status_every_s: float = 5.0
    model_poll_s: float = 5.0
    free_ports: bool = False
    with_dagster: bool = True
    with_mlflow_ui: bool = True
    with_service: bool = True
    restart_crashed: bool = True
    #: After `duration_s`, how long a retrain run already in flight may take to finish.
    finish_grace_s: float = 300.0
    #: ...and how long after it the demo still runs (the sensors alert the decision on their tick).
    decision_settle_s: float = 45.0
    #: Extra `cryptovol simulate` arguments (e.g. `--max-updates N --record PATH` for drills).
    simulator_args: tuple[str, ...] = ()


@dataclass
class Piece:
    """One started process of the demo, with how to restart it.

    `descendants` remembers the process tree (pid -> create time): some servers start workers in
    their own sessions (BentoML's), which outlive a crashed parent and keep its port; they are
    killed before a restart and at the end.
    """

    name: str
    process: ManagedProcess
    ready_timeout_s: float
    restarts: int = 0
    descendants: dict[int, float] = field(default_factory=dict)

    def remember_tree(self) -> None:
        import psutil

        if not self.process.alive():
            return
        try:
            root = psutil.Process(self.process.pid)
            for child in root.children(recursive=True):
                self.descendants[child.pid] = child.create_time()
        except psutil.Error:
            pass

    def kill_leftovers(self) -> int:
        """SIGKILL remembered descendants still alive (same pid *and* create time); returns how many."""
        import psutil

        killed = 0
        for pid, created in list(self.descendants.items()):
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) < 1e-3:
                    proc.kill()
                    killed += 1
            except psutil.Error:
                pass
            self.descendants.pop(pid, None)
        return killed


@dataclass
class DemoState:
    urls: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    regime_change_at: datetime | None = None


def command_options(name: str) -> set[str] | None:
    """Option strings a `cryptovol <name>` sub-command accepts; None when it does not exist yet."""
    module_name = f"cryptovol.commands.{name}"
    if importlib.util.find_spec(module_name) is None:
        return None
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=name, add_help=False)
    module.configure(parser)
    return {opt for action in parser._actions for opt in action.option_strings}


#: The BentoML service `bentoml serve` runs (bento/service.py, class SpikeService).
BENTO_SERVICE_TARGET = "bento.service:SpikeService"


def bento_service_target() -> str | None:
    """The service target when bento/service.py is there (importing it here would pull in BentoML)."""
    return BENTO_SERVICE_TARGET if (REPO_ROOT / "bento" / "service.py").is_file() else None


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryptovol.cli", *args]


def tool(name: str) -> str:
    """An executable installed next to this Python (the venv's bin), else from PATH."""
    candidate = BIN_DIR / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name) or name


class Demo:
    """Starts, watches and stops the demo's processes."""

    def __init__(
        self, settings: Settings, options: DemoOptions, out: Callable[[str], None] = print
    ) -> None:
        self.settings = settings
        self.options = options
        self.out = out
        self.state = DemoState()
        self.pieces: list[Piece] = []
        self.broker: EmbeddedBroker | None = None
        self.own_broker = False
        self.logs_dir = settings.run_dir / "demo"
        self.env: dict[str, str] = {}
        self._stop = threading.Event()
        self._last_tree_scan = 0.0
        self.resume_after_s: float | None = None
        self.history_end: datetime | None = None

    # --- helpers --------------------------------------------------------------------------------

    def port(self, name: str) -> int:
        if name not in self.state.ports:
            preferred = DEFAULT_PORTS.get(name)
            taken = set(self.state.ports.values())
            if (
                not self.options.free_ports
                and preferred
                and preferred not in taken
                and not port_open("127.0.0.1", preferred)
            ):
                self.state.ports[name] = preferred
            else:
                port = free_port()
                while port in taken:
                    port = free_port()
                self.state.ports[name] = port
        return self.state.ports[name]

    def skip(self, name: str, reason: str) -> None:
        self.state.skipped[name] = reason
        self.out(f"  - {name}: skipped ({reason})")

    def start_piece(
        self,
        name: str,
        cmd: list[str],
        *,
        ready: Callable[[], bool] | None,
        timeout_s: float = 60.0,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Piece:
        process = ManagedProcess(
            name, cmd, log_path=self.logs_dir / f"{name}.log",
            env={**self.env, **(env or {})}, cwd=cwd or REPO_ROOT, ready=ready,
        )
        started = time.monotonic()
        process.start(timeout_s=timeout_s)
        piece = Piece(name, process, timeout_s)
        piece.remember_tree()
        self.pieces.append(piece)
        when = f"ready in {time.monotonic() - started:.1f}s" if ready else "started"
        self.out(f"  + {name}: pid {process.pid}, {when} (log {process.log_path})")
        return piece

    # --- start-up -------------------------------------------------------------------------------

    def start(self) -> None:
        s, o = self.settings, self.options
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.out(f"cryptovol demo: data dir {s.data_dir}; logs {self.logs_dir}")
        self.start_broker()
        self.env = {
            "CRYPTOVOL_DATA_DIR": str(s.data_dir),
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "CRYPTOVOL_PRODUCTS": ",".join(o.products),
            "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
            "CRYPTOVOL_MODEL_NAME": s.model_name,
            "CRYPTOVOL_MODEL_POLL_S": f"{o.model_poll_s:g}",
            "DAGSTER_HOME": str(self.dagster_home()),
            "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(s.data_dir / "bentoml")),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "BENTOML_DO_NOT_TRACK": "true",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        os.environ.update({k: v for k, v in self.env.items() if k != "DAGSTER_HOME"})
        wait_mlflow = self.start_mlflow() if o.with_mlflow_ui else None
        needs_champion = self.prepare_history()
        self.start_cli_service("featurize", {"--flush-every-s": "1"})
        if o.with_dagster:
            self.start_dagster()
        if needs_champion:
            self.first_champion()
        if wait_mlflow is not None:
            wait_mlflow()
        # The live market starts once the platform is ready, so the regime change comes at the
        # same point of every run (however long the first training took) and calm reports precede it.
        self.start_live()
        self.start_drift_monitor()
        if o.with_service:
            self.start_service()
        self.start_scorer()
        self.start_dashboard()
        self.print_urls()

    def start_broker(self) -> None:
        run_dir = self.settings.run_dir
        existing = EmbeddedBroker(run_dir).status()
        if existing.running and existing.port:
            self.broker = EmbeddedBroker(run_dir, port=existing.port)
            self.out(f"  = broker: reusing the running embedded broker at {self.broker.bootstrap}")
        else:
            self.broker = EmbeddedBroker(run_dir, port=self.port("broker"))
            started = time.monotonic()
            self.broker.start()
            self.own_broker = True
            self.out(f"  + broker: Tansu at {self.broker.bootstrap}, ready in "
                     f"{time.monotonic() - started:.1f}s (memory-only)")
        ensure_topics(self.broker.bootstrap, partitions=self.settings.topic_partitions)
        self.state.urls["Kafka bootstrap"] = self.broker.bootstrap

    def start_mlflow(self) -> Callable[[], None]:
        """Start the MLflow UI without waiting; returns the wait (it needs ~10-60 s to answer).

        The tracking store's tables are created here first, so the UI and the bootstrap's training
        run, which start at the same time, never race on the schema migration.
        """
        port = self.port("mlflow")
        artifacts = self.settings.mlflow_artifacts_dir
        artifacts.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{port}"
        tracking = self.settings.mlflow_tracking_uri
        if tracking.startswith("sqlite:///"):
            Path(tracking.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            import logging

            import mlflow

            logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial tables..."
            mlflow.MlflowClient(tracking_uri=tracking).search_experiments(max_results=1)
        piece = self.start_piece(
            "mlflow-ui",
            [tool("mlflow"), "server", "--backend-store-uri", tracking,
             "--default-artifact-root", str(artifacts), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            # The job runner (GenAI evaluation jobs) starts a dozen worker processes: not needed.
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            ready=None, timeout_s=180,
        )
        piece.process.ready = lambda: http_ok(f"{url}/health")
        self.state.urls["MLflow UI"] = url

        def wait() -> None:
            started = time.monotonic()
            wait_until(lambda: piece.process.ready() or not piece.process.alive(), timeout_s=180,
                       interval_s=0.2, what="the MLflow UI to answer")
            if not piece.process.alive():
                raise RuntimeError(f"MLflow UI exited; log {piece.process.log_path}\n{piece.process.tail()}")
            self.out(f"  + mlflow-ui: ready after {time.monotonic() - started:.1f}s more")

        return wait

    def history_seconds(self) -> float:
        return self.options.history_minutes * 60.0

    def prepare_history(self) -> bool:
        """Before the live stream starts: is a first champion needed? On a fresh data dir, write the
        market's first `history_minutes` as landing files ending now; the simulator then resumes
        that market (`--resume-after`), so history and live stream are one market path."""
        from cryptovol.demo.history import has_landing_files, write_history
        from orchestration.demo.first_champion import champion_version

        o = self.options
        existing = champion_version(self.settings)
        if existing is not None:
            self.out(f"  = first champion: v{existing} already in the registry")
            return False
        if has_landing_files(self.settings):
            self.resume_after_s = None  # an old data dir: its history is not this market's start
            return True
        started = time.monotonic()
        self.history_end = datetime.now(UTC)
        write_history(
            self.settings, o.products, seconds=self.history_seconds(), seed=o.seed, rate_hz=o.rate_hz,
            regime_change_at_s=o.regime_change_at_s, regime_vol_mult=o.regime_vol_mult,
            end=self.history_end,
        )
        self.resume_after_s = self.history_seconds()
        self.out(f"  + history: the market's first {o.history_minutes:g} min (seed {o.seed}) written as "
                 f"landing files in {time.monotonic() - started:.1f}s; the simulator continues it")
        self.replay_history()
        return True

    def replay_history(self) -> None:
        """Publish the history's last minutes to ticks.raw before the live ticks: the streaming
        featurizer then starts warm, so its first live rows equal the batch rows (a cold stream
        would leave the first 5 live minutes without rv_300s, which the features check rightly
        rejects, and the drift monitor would have no calm report before the regime change).
        In process and only the tail (warm-up + margin), so the gap between history and live ticks
        stays a few seconds, well inside one feature segment (`MAX_GAP_S`)."""
        from cryptovol.featureset import HISTORY_S
        from cryptovol.replay import iter_records, replay_to_kafka

        started = time.monotonic()
        records = list(iter_records(sorted(self.settings.raw_dir.glob("*/*.ndjson"))))
        if not records:
            return
        cutoff = records[-1].tick.event_time_ns - int((HISTORY_S + 30) * 1e9)
        tail = [r for r in records if r.tick.event_time_ns >= cutoff]
        stats = replay_to_kafka(tail, self.broker.bootstrap, partitions=self.settings.topic_partitions)
        if stats.publish_failures:
            raise RuntimeError(f"replaying the history's tail into ticks.raw: {stats.publish_failures} "
                               "publish failures")
        self.out(f"  + history: its last {HISTORY_S + 30:.0f} s ({stats.published} ticks) replayed into "
                 f"ticks.raw in {time.monotonic() - started:.1f}s (the streaming featurizer starts warm)")

    def first_champion(self) -> None:
        """The lineage graph makes the first champion: through `dagster dev`'s GraphQL API when it
        runs, else the same jobs in process in a child (see orchestration.demo.first_champion)."""
        from orchestration.demo import first_champion

        started = time.monotonic()
        self.out("  * first champion: Dagster materializes features -> labels -> training_dataset -> "
                 "models -> model_evaluation -> champion_model ...")
        url = self.state.urls.get("Dagster UI")
        try:
            if url:
                runs = first_champion.via_graphql(url, self.settings, out=self.out)
            else:
                runs = self.first_champion_in_process()
        except Exception as exc:  # noqa: BLE001 (reported; the service is then skipped with the reason)
            self.skip("first champion", f"{exc}")
            return
        retrain = [r for r in runs if r.job == first_champion.RETRAIN_JOB]
        version = first_champion.champion_version(self.settings)
        self.out(f"  + first champion: v{version} after {len(runs)} Dagster run(s) in "
                 f"{time.monotonic() - started:.0f}s; materialized by the retrain run: "
                 f"{', '.join(retrain[0].materialized) if retrain else '-'}")

    def first_champion_in_process(self) -> list:
        from orchestration.demo.first_champion import RunOutcome

        out = self.logs_dir / "first_champion.json"
        out.unlink(missing_ok=True)
        process = ManagedProcess(
            "first-champion", [sys.executable, "-m", "orchestration.demo.first_champion", "--out", str(out)],
            log_path=self.logs_dir / "first_champion.log",
            env={**self.env, "DAGSTER_HOME": str(self.prepared_dagster_home())}, cwd=REPO_ROOT,
        )
        process.start()
        code = process.wait(timeout_s=1200)
        report = json.loads(out.read_text()) if out.exists() else {}
        if code != 0 or "runs" not in report:
            raise RuntimeError(f"{report.get('error', f'exit code {code}')}; see {process.log_path}")
        return [RunOutcome(**r) for r in report["runs"]]

    def start_live(self) -> None:
        """The simulator continuing the history's market (and, on a fresh data dir, its clock:
        `--start-time` = the history's end, so live event times follow the history without a
        gap however long the first training took), and the ingestor subscribed to it."""
        o = self.options
        opts = command_options("simulate")
        if opts is None:
            self.skip("simulator", "cryptovol/commands/simulate.py not there yet")
        else:
            port = self.port("simulator")
            cmd = cli("simulate", "--host", "127.0.0.1", "--port", str(port),
                      "--products", ",".join(o.products), "--rate", f"{o.rate_hz:g}",
                      "--seed", str(o.seed))
            if o.regime_change_at_s is not None and "--regime-change-at" in opts:
                cmd += ["--regime-change-at", f"{o.regime_change_at_s:g}"]
                if "--regime-vol-mult" in opts:
                    cmd += ["--regime-vol-mult", f"{o.regime_vol_mult:g}"]
            if self.resume_after_s and self.history_end is not None:
                cmd += ["--resume-after", f"{self.resume_after_s:g}",
                        "--start-time", _iso(self.history_end)]
            cmd += list(o.simulator_args)
            self.start_piece("simulator", cmd, ready=lambda: port_open("127.0.0.1", port))
            self.state.urls["Simulator (WebSocket)"] = f"ws://127.0.0.1:{port}"
        if "simulator" in self.state.skipped:
            self.skip("ingest", "no simulator to connect to")
        else:
            self.start_cli_service("ingest", {
                "--ws-url": f"ws://127.0.0.1:{self.state.ports['simulator']}",
                "--products": ",".join(o.products),
            })
            if o.regime_change_at_s is not None:
                # The market clock starts at the ingestor's subscription, i.e. about now.
                at = datetime.now(UTC) + timedelta(seconds=o.regime_change_at_s)
                market = (self.history_end or at - timedelta(seconds=o.regime_change_at_s)) \
                    + timedelta(seconds=o.regime_change_at_s)
                self.state.regime_change_at = at
                self.out(f"  * regime change: volatility x{o.regime_vol_mult:g} from about {_iso(at)} "
                         f"(event time {_iso(market)}; {o.regime_change_at_s:g} s after the live start)")

    def start_cli_service(
        self, name: str, options: dict[str, str] | None = None, *, metrics: bool = True,
        ready_timeout_s: float = 90,
    ) -> Piece | None:
        """`cryptovol <name> --opt value ...`, passing only the options the command offers, with a
        metrics endpoint (also its readiness probe) when it has one."""
        opts = command_options(name)
        if opts is None:
            self.skip(name, f"cryptovol/commands/{name}.py not there yet")
            return None
        cmd = cli(name)
        for flag, value in (options or {}).items():
            if flag in opts:
                cmd += [flag, value]
            else:
                self.out(f"    ({name} has no {flag}; not passed)")
        ready = None
        if metrics and "--metrics-port" in opts:
            port = self.port(f"{name}_metrics")
            cmd += ["--metrics-port", str(port)]
            url = f"http://127.0.0.1:{port}/metrics"
            ready = lambda: http_ok(url)  # noqa: E731
            self.state.urls[f"{name} metrics"] = url
        return self.start_piece(name, cmd, ready=ready, timeout_s=ready_timeout_s)

    def dagster_home(self) -> Path:
        """$DAGSTER_HOME, else the Dagster engineer's default (<data>/dagster)."""
        explicit = os.environ.get("DAGSTER_HOME", "").strip()
        if explicit:
            return Path(explicit)
        return self.settings.data_dir / "dagster"

    def prepared_dagster_home(self) -> Path:
        from orchestration import dev

        return dev.prepare_dagster_home(self.settings, home=self.dagster_home())

    def start_dagster(self) -> None:
        from orchestration import dev

        home = self.prepared_dagster_home()
        port = self.port("dagster")
        url = f"http://127.0.0.1:{port}"
        self.start_piece(
            "dagster", dev.dagster_dev_command(port, "127.0.0.1"),
            env={**dev.dagster_env(home), **self.dagster_settings(),
                 "CRYPTOVOL_MLFLOW_UI_URL": self.state.urls.get("MLflow UI", "")},
            ready=lambda: http_ok(f"{url}/server_info"), timeout_s=180,
        )
        self.state.urls["Dagster UI"] = url

    def dagster_settings(self) -> dict[str, str]:
        """Sensor/policy timings that fit a demo of minutes, unless the user set them.

        The cooldown is two report intervals: the demo compresses hours into minutes, and the
        first champion's run (minutes before the regime change) counts as a retrain for the
        cooldown; a longer one would defer the real regime change's retrain past the demo. The
        policy still retrains at most once per drift event.
        """
        o = self.options
        wanted = {
            "CRYPTOVOL_DRIFT_SENSOR_INTERVAL_S": "15",
            "CRYPTOVOL_ALERT_SENSOR_INTERVAL_S": "15",
            "CRYPTOVOL_DRIFT_PERSISTENCE": "2",
            "CRYPTOVOL_RETRAIN_COOLDOWN_S": f"{2 * o.drift_every_s:g}",
        }
        return {k: os.environ.get(k, v) for k, v in wanted.items()}

    def has_champion(self) -> bool:
        from orchestration.demo.first_champion import champion_version

        return champion_version(self.settings) is not None

    def start_service(self) -> None:
        target = bento_service_target()
        if target is None:
            self.skip("service", "bento/service.py (BentoML service) not there yet")
            return
        if not self.has_champion():
            self.skip("service", "no champion model in the registry (the first champion failed)")
            return
        port = self.port("service")
        url = f"http://127.0.0.1:{port}"
        self.start_piece(
            "service",
            [tool("bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            ready=lambda: http_ok(f"{url}/readyz"), timeout_s=180,
        )
        self.state.urls["BentoML Swagger UI"] = url
        self.state.urls["BentoML metrics"] = f"{url}/metrics"

    def start_dashboard(self) -> None:
        """`cryptovol dashboard`: the signal page (live probability vs realized vol, alerts and
        champion changes, PR curve, threshold slider, drift summary, backtest charts)."""
        if command_options("dashboard") is None:
            self.skip("dashboard", "cryptovol/commands/dashboard.py not there yet")
            return
        port = self.port("dashboard")
        url = f"http://127.0.0.1:{port}"
        self.start_piece("dashboard", cli("dashboard", "--host", "127.0.0.1", "--port", str(port)),
                         ready=lambda: http_ok(f"{url}/healthz"), timeout_s=90)
        self.state.urls["Signal dashboard"] = url

    def start_scorer(self) -> None:
        if command_options("score") is not None and not self.has_champion():
            self.skip("score", "no champion model in the registry")
            return
        self.start_cli_service("score", [])

    def start_drift_monitor(self) -> None:
        """`cryptovol drift --every S`: a report every S seconds (the Dagster drift sensor reads them)."""
        o = self.options
        self.start_cli_service("drift", {
            "--every": f"{o.drift_every_s:g}",
            "--current-minutes": f"{o.current_minutes:g}",
        }, ready_timeout_s=120)

    def print_urls(self) -> None:
        self.out("")
        self.out("cryptovol demo is up:")
        for name, url in self.state.urls.items():
            self.out(f"  {name:<24} {url}")
        if self.state.skipped:
            self.out("not running: " + "; ".join(f"{k} ({v})" for k, v in self.state.skipped.items()))
        self.out(f"  {'Drift reports':<24} {self.settings.reports_dir / 'drift'}")
        self.out(f"  {'Alert log':<24} {self.settings.data_dir / 'alerts' / 'alerts.jsonl'}")
        until = f"for {self.options.duration_s:g}s" if self.options.duration_s else "until Ctrl-C"
        self.out(f"running {until}; status every {self.options.status_every_s:g}s")
        self.out("")

    # --- running --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def run_loop(self) -> None:
        from cryptovol.demo.status import StatusBoard

        o = self.options
        board = StatusBoard(
            self.settings.data_dir,
            service_url=self.state.urls.get("BentoML Swagger UI"),
            mlflow_url=self.state.urls.get("MLflow UI"),
            scorer_metrics_url=self.state.urls.get("score metrics"),
            model_name=self.settings.model_name,
        )
        board.sample()
        started = time.monotonic()
        next_status = started + o.status_every_s
        tty = sys.stdout.isatty()
        grace_until: float | None = None
        waiting, next_check = False, 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if o.duration_s is not None and now - started >= o.duration_s:
                # A retrain already running finishes (bounded), so its gate decision is recorded
                # instead of a run killed half-way; then the decision alert (a sensor tick) follows.
                if grace_until is None:
                    waiting = self.retrain_in_flight()
                    grace_until = now + (o.finish_grace_s if waiting else 0.0)
                    if waiting:
                        self.out(f"duration reached; waiting up to {o.finish_grace_s:g}s for the running "
                                 "retrain to finish")
                elif waiting and now >= next_check:
                    next_check = now + 2.0
                    if not self.retrain_in_flight():
                        waiting = False
                        grace_until = min(grace_until, now + o.decision_settle_s)
                        self.out(f"retrain finished; {o.decision_settle_s:g}s more for its decision alert")
                if now >= grace_until:
                    break
            if now >= next_status:
                board.sample()
                text = f"[{now - started:6.0f}s] {board.line()}"
                self.out(("\r" + text) if tty else text)
                next_status = now + o.status_every_s
            self.watchdog()
            self._stop.wait(0.2)

    def retrain_in_flight(self) -> bool:
        from orchestration.demo.first_champion import RETRAIN_JOB, active_runs

        url = self.state.urls.get("Dagster UI")
        if not url:
            return False
        try:
            return bool(active_runs(url, RETRAIN_JOB))
        except Exception:  # noqa: BLE001 (a Dagster that does not answer has nothing to finish)
            return False

    def watchdog(self) -> None:
        """Restart a process that died (a crash must not end the demo); the broker too."""
        if not self.options.restart_crashed:
            return
        if self.own_broker and self.broker and not self.broker.status().running:
            self.out("! broker died: restarting it (memory-only: topics are recreated, "
                     "producers resend from their spools)")
            with contextlib.suppress(Exception):
                self.broker.start()
                ensure_topics(self.broker.bootstrap, partitions=self.settings.topic_partitions)
        now = time.monotonic()
        remember = now - self._last_tree_scan >= 5.0
        if remember:
            self._last_tree_scan = now
        for piece in self.pieces:
            proc = piece.process
            if proc.alive():
                if remember:
                    piece.remember_tree()
                continue
            if self._stop.is_set():
                continue
            leftovers = piece.kill_leftovers()
            if leftovers:
                self.out(f"! {piece.name}: killed {leftovers} orphaned worker process(es) of the crashed one")
            piece.restarts += 1
            self.out(f"! {piece.name} exited with {proc.proc.returncode}: restart #{piece.restarts} "
                     f"(log {proc.log_path})")
            try:
                proc.start(timeout_s=piece.ready_timeout_s)
            except (TimeoutError, RuntimeError) as exc:
                self.out(f"! {piece.name} failed to restart: {str(exc).splitlines()[0]}")

    # --- stopping -------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        for piece in reversed(self.pieces):
            piece.remember_tree()
            code = piece.process.stop(timeout_s=20)
            leftovers = piece.kill_leftovers()
            extra = f", {leftovers} leftover worker(s) killed" if leftovers else ""
            self.out(f"  - {piece.name} stopped (exit {code}{extra})")
        if self.own_broker and self.broker is not None:
            self.broker.stop()
            self.out("  - broker stopped")
        self.out(f"data left on disk under {self.settings.data_dir}")


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _print_flush(text: str) -> None:
    print(text, flush=True)


def run_demo(
    settings: Settings, options: DemoOptions, out: Callable[[str], None] = _print_flush
) -> int:
    """Start everything, run until `duration_s` or Ctrl-C/SIGTERM, stop everything. Returns 0/1."""
    demo = Demo(settings, options, out)

    def on_signal(signum: int, frame: object) -> None:
        demo.request_stop()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        demo.start()
        demo.run_loop()
    except KeyboardInterrupt:
        out("\nstopping (Ctrl-C) ...")
    except Exception as exc:  # noqa: BLE001 (report, stop what we started, exit non-zero)
        out(f"\ndemo failed: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            demo.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
    return code
