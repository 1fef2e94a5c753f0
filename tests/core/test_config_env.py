"""Configuration is input too: every environment variable is validated once, at start, by
`cryptovol.config.load_env()`; a bad value stops a real `cryptovol` process (exit 2) with a message
on stderr naming the variable and the form it accepts, before the command does anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptovol.config import ConfigError, PlatformEnv, Settings, load_env

CLI = str(Path(sys.executable).with_name("cryptovol"))
SECRET = "https-ish://hooks.example/T000/B000/very-secret-token"


def run_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTOVOL_", "KAFKA_", "MLFLOW_"))}
    full = {**base, "CRYPTOVOL_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run([CLI, *(args or ("broker", "status"))], env=full, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("env", "expected"), [
    # bad int
    ({"CRYPTOVOL_TOPIC_PARTITIONS": "three"},
     "CRYPTOVOL_TOPIC_PARTITIONS='three': expected an integer from 1 to 1024"),
    ({"CRYPTOVOL_MAX_BATCH": "0"}, "CRYPTOVOL_MAX_BATCH='0': expected an integer from 1 to 1000000"),
    ({"CRYPTOVOL_SERVICE_WORKERS": "99999999999999999999"}, "CRYPTOVOL_SERVICE_WORKERS="),
    ({"CRYPTOVOL_MODEL_POLL_S": "nan"},
     "CRYPTOVOL_MODEL_POLL_S='nan': expected seconds, a number in (0, 86400]"),
    # bad flag
    ({"KAFKA_ENABLE_IDEMPOTENCE": "ture"}, "KAFKA_ENABLE_IDEMPOTENCE='ture': expected one of 1/true/yes/on"),
    ({"CRYPTOVOL_SHADOW": "maybe"},
     "CRYPTOVOL_SHADOW='maybe': expected one of 1/true/yes/on or 0/false/no/off"),
    # bad URL / address
    ({"CRYPTOVOL_MLFLOW_UI_URL": "javascript:alert(1)"}, "CRYPTOVOL_MLFLOW_UI_URL='javascript:alert(1)': "
                                                         "expected an http:// or https:// URL"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS='localhost': expected host:port"),
    ({"CRYPTOVOL_METRICS_BIND_ADDRESS": "0.0.0.0; rm -rf /"}, "CRYPTOVOL_METRICS_BIND_ADDRESS="),
    # bad path / name
    ({"CRYPTOVOL_BROKER_BIN": "/no/such/tansu"},
     "CRYPTOVOL_BROKER_BIN='/no/such/tansu': expected the path of an executable Tansu binary"),
    ({"KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "KAFKA_SSL_CAFILE='/no/such/ca.pem': expected the path of a "
                                              "readable PEM file"),
    ({"CRYPTOVOL_PRODUCTS": "BTC-USD,../../etc"}, "CRYPTOVOL_PRODUCTS='BTC-USD,../../etc': expected "
                                                  "comma-separated product ids"),
    ({"CRYPTOVOL_NIGHTLY_RETRAIN_CRON": "every night"}, "CRYPTOVOL_NIGHTLY_RETRAIN_CRON='every night': "
                                                        "expected a 5-field cron expression"),
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else None)
def test_a_bad_value_stops_the_cli_naming_the_variable_and_its_form(tmp_path, env, expected):
    result = run_cli(tmp_path, env)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "", (result.stdout, result.stderr)
    assert not (tmp_path / "data").exists()  # stopped before doing anything


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_cli(tmp_path, {"CRYPTOVOL_DATA_DIR": str(not_a_dir)})
    assert result.returncode == 2
    assert f"CRYPTOVOL_DATA_DIR='{not_a_dir}': expected a directory path" in result.stderr
    assert "exists and is not a directory" in result.stderr


def test_every_bad_variable_is_listed_and_secrets_are_never_echoed(tmp_path):
    result = run_cli(tmp_path, {"CRYPTOVOL_ALERT_WEBHOOK_URL": SECRET, "CRYPTOVOL_ALERT_RETRIES": "-1"})
    assert result.returncode == 2
    assert "CRYPTOVOL_ALERT_WEBHOOK_URL=<secret, not shown>: expected an http:// or https:// URL" in (
        result.stderr)
    assert "CRYPTOVOL_ALERT_RETRIES='-1': expected an integer from 0 to 10" in result.stderr
    assert "very-secret-token" not in result.stderr + result.stdout


def test_good_values_and_blank_ones_run_the_command(tmp_path, monkeypatch):
    result = run_cli(tmp_path, {"CRYPTOVOL_TOPIC_PARTITIONS": " 4 ", "CRYPTOVOL_SHADOW": "",
                                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert "bad configuration" not in result.stderr, result.stderr
    monkeypatch.setenv("CRYPTOVOL_TOPIC_PARTITIONS", " 4 ")
    monkeypatch.setenv("CRYPTOVOL_SHADOW", "  ")
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(tmp_path))
    env = load_env()
    assert env.topic_partitions == 4 and env.shadow is False
    assert Settings.from_env(env).topic_partitions == 4


def test_every_variable_read_in_the_tree_is_declared():
    """A new `os.environ` read of a CRYPTOVOL_/KAFKA_ variable without a PlatformEnv field fails here."""
    import re

    root = Path(__file__).resolve().parents[2]
    names: set[str] = set()
    for folder in ("cryptovol", "bento", "orchestration", "assets", "sensors"):
        for path in (root / folder).rglob("*.py"):
            names |= set(re.findall(r"\b((?:CRYPTOVOL|KAFKA)_[A-Z0-9_]+)\b", path.read_text()))
    declared = set(PlatformEnv.variables())
    # Names that are not variables: constants and prefixes.
    ignored = {n for n in names if not n.endswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))}
    missing = sorted(names - declared - ignored - {"CRYPTOVOL_BIND_ADDRESS"})
    assert not missing, f"read but not validated in cryptovol.config.PlatformEnv: {missing}"


def test_load_env_raises_config_error(monkeypatch):
    monkeypatch.setenv("CRYPTOVOL_ALERT_TIMEOUT_S", "0")
    with pytest.raises(ConfigError, match=r"CRYPTOVOL_ALERT_TIMEOUT_S='0': expected seconds"):
        load_env()


def test_metrics_servers_bind_to_the_configured_address(monkeypatch):
    """Loopback by default; CRYPTOVOL_METRICS_BIND_ADDRESS=0.0.0.0 (compose) lets Prometheus in."""
    import urllib.request

    from cryptovol.ingest.metrics import start_metrics_server
    from cryptovol.ingest.stats import IngestStats
    from cryptovol.procs import free_port
    from cryptovol.stream.metrics import serve_stats

    starters = {
        "featurizer": lambda port: serve_stats(port, "cryptovol_test", lambda: {"seen": 1.0}),
        "ingest": lambda port: start_metrics_server(IngestStats(), port),
    }
    for address in ("", "0.0.0.0"):
        monkeypatch.setenv("CRYPTOVOL_METRICS_BIND_ADDRESS", address)
        for name, start in starters.items():
            port = free_port()
            server = start(port)
            try:
                assert server.server_address[0] == (address or "127.0.0.1"), name
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    assert response.status == 200 and b"cryptovol_" in response.read()
            finally:
                server.shutdown()
                server.server_close()
