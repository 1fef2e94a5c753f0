"""`python -m bento [bentoml serve options]`: serve the spike service from the repo root with
BENTOML_HOME under the data dir (BentoML's default is ~/bentoml) and telemetry off.

Equivalent to `BENTOML_HOME=<data>/bentoml bentoml serve bento.service:SpikeService ...`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from cryptovol.config import Settings

    settings = Settings.from_env()
    home = os.environ.setdefault("BENTOML_HOME", str(settings.data_dir / "bentoml"))
    Path(home).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = list(sys.argv[1:] if argv is None else argv)
    bentoml = Path(sys.executable).with_name("bentoml")
    command = [str(bentoml) if bentoml.exists() else "bentoml", "serve", "bento.service:SpikeService", *args]
    os.execvp(command[0], command)  # replaces this process: signals go straight to bentoml
    return 0  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
