"""Launch the Dagster UI + daemon for cryptovol: prepare DAGSTER_HOME, build the `dagster dev` command.

    python -m orchestration.dev [--port 3000] [--host 127.0.0.1]

DAGSTER_HOME defaults to `<CRYPTOVOL_DATA_DIR>/dagster` (an existing DAGSTER_HOME is respected)
and gets `infra/dagster/dagster.yaml` (SQLite storage) unless it already has a dagster.yaml.
Other launchers (`cryptovol demo`, tests) use `prepare_dagster_home` + `dagster_dev_command` and
start the command with `cryptovol.procs.ManagedProcess` (which resets SIGINT so SIGTERM works).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from cryptovol.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTANCE_TEMPLATES = REPO_ROOT / "infra" / "dagster"
WORKSPACE = REPO_ROOT / "workspace.yaml"


def dagster_home(settings: Settings | None = None) -> Path:
    """$DAGSTER_HOME if set, else <data>/dagster."""
    explicit = os.environ.get("DAGSTER_HOME", "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    return (settings or Settings.from_env()).data_dir / "dagster"


def prepare_dagster_home(
    settings: Settings | None = None, *, home: Path | None = None, postgres: bool = False
) -> Path:
    """Create DAGSTER_HOME with a dagster.yaml (kept if present); returns its path."""
    home = Path(home) if home else dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        template = "dagster.postgres.yaml" if postgres else "dagster.yaml"
        shutil.copyfile(INSTANCE_TEMPLATES / template, target)
    return home


def dagster_dev_command(port: int = 3000, host: str = "127.0.0.1") -> list[str]:
    """`dagster dev` (webserver + daemon) on this repo's workspace.yaml."""
    dagster = Path(sys.executable).with_name("dagster")
    exe = [str(dagster)] if dagster.exists() else [sys.executable, "-m", "dagster"]
    return [*exe, "dev", "-w", str(WORKSPACE), "--host", host, "--port", str(port)]


def dagster_env(home: Path) -> dict[str, str]:
    """Environment for the child: DAGSTER_HOME, the repo on PYTHONPATH, no telemetry."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--postgres", action="store_true", help="start from the PostgreSQL template")
    parser.add_argument("--print", action="store_true", help="print the command and env, do not run")
    args = parser.parse_args(argv)
    home = prepare_dagster_home(postgres=args.postgres)
    cmd = dagster_dev_command(args.port, args.host)
    env = dagster_env(home)
    if args.print:
        print(" ".join(f"{k}={v}" for k, v in env.items()), " ".join(cmd))
        return 0
    os.environ.update(env)
    os.chdir(REPO_ROOT)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    raise SystemExit(main())
