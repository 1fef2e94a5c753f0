"""Pieces of the demo launcher that a user relies on without watching them: the status counters
and the clean-up of worker processes that outlive a crashed server."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import psutil

from cryptovol.demo.status import LineCounter, ParquetRowCounter, Rate
from cryptovol.procs import ManagedProcess, wait_until
from orchestration.demo.launcher import Piece, command_options


def test_line_counter_counts_only_complete_lines_incrementally(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "BTC-USD"
    raw.mkdir(parents=True)
    path = raw / "2026-01-01.ndjson"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3')  # the last line is still being written
    counter = LineCounter(tmp_path / "raw", "*/*.ndjson")
    assert counter.update() == 2
    with open(path, "a") as fh:
        fh.write('}\n{"a": 4}\n')
    assert counter.update() == 4
    (tmp_path / "raw" / "ETH-USD").mkdir()
    (tmp_path / "raw" / "ETH-USD" / "2026-01-01.ndjson").write_text("x\n")
    assert counter.update() == 5


def test_parquet_row_counter_reads_each_file_once(tmp_path: Path) -> None:
    part = tmp_path / "product=BTC-USD" / "date=2026-01-01"
    part.mkdir(parents=True)
    pd.DataFrame({"x": range(7)}).to_parquet(part / "part-stream-1.parquet")
    counter = ParquetRowCounter(tmp_path, "**/part-stream*.parquet")
    assert counter.update() == 7
    pd.DataFrame({"x": range(3)}).to_parquet(part / "part-stream-2.parquet")
    pd.DataFrame({"x": range(100)}).to_parquet(part / "part-batch.parquet")  # not a stream part
    assert counter.update() == 10


def test_rate_is_events_per_second_between_samples() -> None:
    rate = Rate(last_value=0, last_time=time.monotonic() - 2.0)
    assert 4.0 < rate.sample(10) <= 5.0


def test_command_options_know_which_commands_exist() -> None:
    assert "--every" in command_options("drift")
    assert "--duration" in command_options("demo")
    assert command_options("no_such_command") is None


def test_leftover_workers_of_a_crashed_server_are_killed(tmp_path: Path) -> None:
    # A "server" that starts a worker in its own session (as BentoML does) and then idles.
    pid_file = tmp_path / "worker.pid"
    script = (
        "import subprocess, sys, time\n"
        "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],"
        " start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(w.pid))\n"
        "time.sleep(300)\n"
    )
    server = ManagedProcess("server", [sys.executable, "-c", script], log_path=tmp_path / "server.log")
    server.start()
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout_s=30)
        worker = int(pid_file.read_text())
        piece = Piece("server", server, ready_timeout_s=10)
        piece.remember_tree()
        assert worker in piece.descendants

        server.kill()  # the crash: SIGKILL to the server's process group only
        assert psutil.pid_exists(worker), "the worker (own session) survives its parent's crash"
        assert piece.kill_leftovers() == 1
        wait_until(lambda: not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie",
                   timeout_s=10, what="the orphaned worker to die")
    finally:
        server.stop()
        if pid_file.exists() and pid_file.read_text().strip():
            try:
                psutil.Process(int(pid_file.read_text())).kill()
            except psutil.Error:
                pass


def test_demo_serves_the_real_bentoml_service_class():
    """The demo must start the service `bentoml serve` would (a stale target silently skipped it)."""
    import importlib

    from orchestration.demo.launcher import bento_service_target

    target = bento_service_target()
    assert target is not None
    module_name, _, class_name = target.partition(":")
    service = getattr(importlib.import_module(module_name), class_name)
    assert service.name == "cryptovol_spike"


def test_cryptovol_demo_hands_every_option_to_the_launcher_process() -> None:
    """`cryptovol demo` execs `python -m orchestration.demo` with the options it parsed."""
    import argparse

    from cryptovol.commands.demo import configure, launcher_command
    from orchestration.demo.__main__ import options_from

    parser = argparse.ArgumentParser()
    configure(parser)
    given = ["--duration", "600", "--regime-change-at", "-1", "--no-service", "--products", "ETH-USD",
             "--history-minutes", "20"]
    cmd = launcher_command(parser.parse_args(given))
    assert cmd[:3] == [sys.executable, "-m", "orchestration.demo"]
    options = options_from(parser.parse_args(cmd[3:]), ("BTC-USD", "ETH-USD"))
    assert options.duration_s == 600 and options.regime_change_at_s is None
    assert not options.with_service and options.with_dagster
    assert options.products == ("ETH-USD",) and options.history_minutes == 20
    assert launcher_command(parser.parse_args([]))[3:] == []
