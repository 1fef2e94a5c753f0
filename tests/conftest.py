"""Shared fixtures. Fixtures that start real processes live here (and only here): they pick free
ports, wait for readiness and always stop what they started."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptovol.broker import EmbeddedBroker
from cryptovol.config import Settings
from cryptovol.procs import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRYPTOVOL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir, exported as CRYPTOVOL_DATA_DIR for code and child processes."""
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
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
