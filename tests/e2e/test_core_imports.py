"""The core package knows nothing of its adapters: importing every `cryptovol` module (the demo and
every CLI command included) loads no Dagster, BentoML or adapter package (orchestration, assets,
sensors, bento). Checked in a fresh interpreter, whose `sys.modules` shows what was pulled in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("dagster", "dagster_graphql", "dagster_mlflow", "dagster_webserver", "bentoml",
             "orchestration", "assets", "sensors", "bento")

SCRIPT = """
import importlib, json, pkgutil, sys
import cryptovol
names, failed = [], {}
for info in pkgutil.walk_packages(cryptovol.__path__, "cryptovol."):
    if info.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(info.name)
        names.append(info.name)
    except Exception as exc:  # reported, the test fails on it
        failed[info.name] = f"{type(exc).__name__}: {exc}"
forbidden = %r
loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({"imported": names, "failed": failed, "loaded": loaded}))
"""


def test_importing_every_core_module_loads_no_adapter_or_framework() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT % (FORBIDDEN,)], cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert "cryptovol.commands.demo" in result["imported"] and "cryptovol.demo.history" in result["imported"]
    assert len(result["imported"]) > 40
    assert result["loaded"] == [], f"the core pulled in adapter/framework modules: {result['loaded'][:20]}"


def test_no_core_source_imports_an_adapter_even_lazily() -> None:
    """Function-level imports too (the old demo launcher imported orchestration inside a method)."""
    import ast

    offenders = []
    for path in sorted((REPO / "cryptovol").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {m}" for m in modules
                          if m.split(".")[0] in FORBIDDEN]
    assert offenders == []
