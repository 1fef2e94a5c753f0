"""Starting, readiness-waiting and stopping child processes: shared by `make demo` and the tests.

Every process runs in its own session (process group) so a stop takes its children with it, and
readiness is polled (a port, an HTTP endpoint, a file), never guessed with a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie (a finished child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll `predicate` until true; raise `TimeoutError` naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True when `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback)
            return 200 <= response.status < 300
    except (OSError, ValueError):
        return False


class ManagedProcess:
    """One child process with a log file, a readiness probe and a clean, bounded stop."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.ready = ready
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 60.0) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            # SIGINT ignored by a non-interactive parent would be inherited (dagster dev then
            # ignores SIGTERM too, see STACK.md): restore default handlers in the child.
            preexec_fn=_default_signals,
        )
        log.close()
        if self.ready is not None:
            try:
                wait_until(
                    lambda: self.ready() or not self.alive(),
                    timeout_s=timeout_s,
                    interval_s=0.1,
                    what=f"{self.name} to become ready",
                )
            except TimeoutError as exc:
                self.stop()
                raise TimeoutError(f"{exc}; log: {self.log_path}\n{self.tail()}") from exc
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before becoming ready; "
                    f"log: {self.log_path}\n{self.tail()}"
                )
        return self

    def send_signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            self.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Stragglers left in the group (children of the child) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def kill(self) -> None:
        """Hard kill (a crash, for fault drills)."""
        self.stop(timeout_s=5, sig=signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
