"""`cryptovol simulate` argument handling (in-process: no server needs to start for these)."""

from __future__ import annotations

import socket

import pytest

from cryptovol.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--malformed-rate", "1.5"],
        ["simulate", "--skip-seq-rate", "-0.1"],
        ["simulate", "--rate", "fast"],
        ["simulate", "--rate", "-3"],
    ],
)
def test_invalid_flags_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "simulate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--start-time", "yesterday-ish"], "bad_timestamp"),
        (["simulate", "--products", " , "], "no products"),
        (["simulate", "--drop-every", "0"], "drop_every_s"),
    ],
)
def test_invalid_values_are_reported_before_listening(argv, message, capsys):
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert message in out and "listening" not in out


def test_port_in_use_is_a_clear_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["simulate", "--port", str(port), "--duration", "1"]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().out


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--host", "--port", "--products", "--rate", "--seed", "--duration", "--max-updates", "--record",
        "--regime-change-at", "--regime-vol-mult", "--drop-every", "--malformed-rate", "--skip-seq-rate",
        "--start-time",
    ):
        assert flag in text
