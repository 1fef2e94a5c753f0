"""`bentoml build` packages the service offline (slow: ~15-20 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bentoml_build_packages_service_and_core_offline(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    result = subprocess.run([bentoml, "build", "-f", "bento/bentofile.yaml", "."], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (bento_dir,) = [p for p in (tmp_path / "bentoml" / "bentos" / "cryptovol-spike").iterdir()
                    if p.name != "latest"]
    meta = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert meta["service"] == "bento.service:SpikeService"
    assert {api["name"] for api in meta["schema"]["routes"]} >= {"predict", "predict_ticks"}
    src = bento_dir / "src"
    for path in ("bento/service.py", "cryptovol/serving/champion.py", "cryptovol/features.py",
                 "cryptovol/models/pyfunc.py"):
        assert (src / path).is_file(), path
    assert not (src / "tests").exists() and not (src / "data").exists()
