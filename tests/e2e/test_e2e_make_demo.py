"""`make demo DURATION=...` on a fresh data dir: starts everything, prints the URLs, runs
unattended, stops every process it started, exits 0 and leaves the data on disk."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cryptovol.procs import http_ok

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_make_demo_runs_unattended_and_cleans_up(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    data_dir = tmp_path / "data"
    env = {**os.environ, "CRYPTOVOL_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME",
                 "BENTOML_HOME"):
        env.pop(name, None)
    completed = subprocess.run(
        # `-o setup`: the installed venv is used as is (no reinstall from the package index).
        ["make", "-o", "setup", "demo", "DURATION=60"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=1500,
    )
    out = completed.stdout + completed.stderr
    assert completed.returncode == 0, out[-4000:]

    urls = dict(re.findall(r"^\s+(Dagster UI|MLflow UI|BentoML Swagger UI)\s+(http://\S+)$", out, re.M))
    assert set(urls) == {"Dagster UI", "MLflow UI", "BentoML Swagger UI"}, out[-4000:]
    status = [line for line in out.splitlines() if re.match(r"^\[\s*\d+s\] ticks", line)]
    assert status, out[-4000:]
    assert "champion v1" in status[-1]
    assert "demo failed" not in out

    # Everything it started is gone: the UIs no longer answer, no pid of the run is alive.
    for url in urls.values():
        assert not http_ok(url, timeout_s=1.0), f"{url} still answers after the demo stopped"
    for line in re.findall(r"\+ \S+: pid (\d+)", out):
        assert not Path(f"/proc/{line}").exists() or _zombie(int(line)), f"pid {line} still running"

    # The data stays on disk.
    assert list((data_dir / "raw").glob("*/*.ndjson"))
    assert list((data_dir / "features").glob("**/part-stream*.parquet"))
    assert list((data_dir / "predictions").glob("**/*.parquet"))
    assert (data_dir / "mlflow" / "mlflow.db").is_file()
    assert f"data left on disk under {data_dir}" in out


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
