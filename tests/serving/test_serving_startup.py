"""Start-up refuses what it cannot serve correctly (clear message, process exits): a champion built
for another feature-set version, a mistyped on/off switch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from registry_helpers import WEIGHTS_V1, register_stub

MODEL = "cryptovol-spike"


@pytest.mark.slow  # ~20-70 s (a full server start); the version check itself is in test_serving_core
def test_champion_for_another_feature_set_refuses_to_start(tmp_path, bento_server_factory):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    register_stub(data_dir, MODEL, weights=WEIGHTS_V1, feature_set_version="0.9.0")
    with pytest.raises(RuntimeError) as failed:  # exited before ready (not a timeout)
        bento_server_factory(data_dir, timeout_s=120)
    message = str(failed.value)
    assert "before becoming ready" in message, message
    assert "feature-set version mismatch" in message, message
    assert "0.9.0" in message and "models:/cryptovol-spike/1" in message, message
    log_path = Path(re.search(r"log: (\S+)", message).group(1))
    assert "refusing to start: the champion cannot be served" in log_path.read_text()


def test_a_mistyped_switch_stops_the_service_naming_the_variable(tmp_path, bento_server_factory):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(RuntimeError) as failed:  # exited before ready (not a timeout)
        bento_server_factory(data_dir, env={"CRYPTOVOL_TRACE_PREDICTIONS": "ture"}, timeout_s=120)
    message = str(failed.value)
    assert "before becoming ready" in message, message
    log_path = Path(re.search(r"log: (\S+)", message).group(1))
    assert "CRYPTOVOL_TRACE_PREDICTIONS='ture': expected one of" in log_path.read_text()
