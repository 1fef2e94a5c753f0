"""`cryptovol --help` lists every command with a one-line summary, as git does, and stays fast: it
imports no command module."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from cryptovol.cli import COMMANDS

CLI = str(Path(sys.executable).with_name("cryptovol"))


def test_help_lists_each_command_with_its_summary():
    result = subprocess.run([CLI, "--help"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name, (_module, summary) in COMMANDS.items():
        assert any(line.split() == [name, *summary.split()] for line in lines), (name, result.stdout)
    assert "see `cryptovol" not in result.stdout


def test_every_command_is_registered_with_a_short_summary_and_a_module():
    for name, (module, summary) in COMMANDS.items():
        assert 10 <= len(summary) <= 72 and "\n" not in summary, (name, summary)
        loaded = importlib.import_module(f"cryptovol.commands.{module}")
        assert callable(loaded.configure) and callable(loaded.run), name


def test_no_command_prints_help_and_exits_2():
    result = subprocess.run([CLI], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "COMMAND" in result.stdout
