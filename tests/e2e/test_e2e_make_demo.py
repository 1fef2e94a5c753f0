"""`make demo DURATION=600` on a fresh data dir closes the loop the README promises, and the lineage
graph shows it: the first champion materialized by Dagster, every drift report recorded as a
`drift_report` materialization, no drift before the regime change, then drift -> one retrain ->
a gate decision, each step in the alert log; then everything it started stops by itself.

~13-16 minutes (the 10-minute run plus start-up), so it is slow-marked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from cryptovol.alerts import DRIFT_DETECTED, read_alerts
from cryptovol.procs import http_ok, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: The gate decides either way; both outcomes are alerted.
DECISIONS = ("champion_changed", "champion_kept")
MODEL_ASSETS = ("training_dataset", "baseline_model", "logistic_model", "xgboost_model", "champion_model",
                "backtest")

MATERIALIZATIONS = """
query M($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 200) { runId timestamp
        metadataEntries { label ... on FloatMetadataEntry { floatValue } ... on UrlMetadataEntry { url } } } }
  }
}
"""
RUNS = """
{ runsOrError(filter: {pipelineName: "retrain"}) {
    ... on Runs { results { runId status tags { key value } } } } }
"""


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_make_demo_closes_the_loop_through_the_lineage_graph(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    data_dir = tmp_path / "data"
    env = {**os.environ, "CRYPTOVOL_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME",
                 "BENTOML_HOME"):
        env.pop(name, None)
    # `-o setup`: the installed venv is used as is (no reinstall from the package index).
    demo = subprocess.Popen(
        ["make", "-o", "setup", "demo", "DURATION=600"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    out = lambda: "".join(lines)  # noqa: E731
    alerts_log = data_dir / "alerts" / "alerts.jsonl"
    try:
        wait_until(lambda: "cryptovol demo is up" in out() or demo.poll() is not None,
                   timeout_s=900, interval_s=1.0, what="the demo to start")
        urls = dict(re.findall(r"^\s+(Dagster UI|MLflow UI|BentoML Swagger UI|Signal dashboard)\s+(http://\S+)$",
                               out(), re.M))
        wanted = {"Dagster UI", "MLflow UI", "BentoML Swagger UI", "Signal dashboard"}
        assert set(urls) == wanted, out()[-4000:]
        regime = re.search(r"regime change: volatility x\S+ from about (\S+) \(event time (\S+);", out())
        assert regime, out()[-4000:]
        # Wall clock (alerts) and market event time (report windows): the live market continues
        # the history's clock, which lags the wall clock by the time the first training took.
        regime_at, regime_event = when(regime.group(1)), when(regime.group(2))
        dagster = urls["Dagster UI"]

        # The loop completes while the demo runs: drift, then the gate's decision.
        def decided() -> bool:
            drift = read_alerts(alerts_log, kind=DRIFT_DETECTED)
            return bool(drift) and any(
                a["kind"] in DECISIONS and when(a["created_at"]) > when(drift[0]["created_at"])
                for a in read_alerts(alerts_log)
            )

        wait_until(lambda: decided() or demo.poll() is not None, timeout_s=900, interval_s=2.0,
                   what="drift -> retrain -> decision in the alert log")
        assert decided(), (read_alerts(alerts_log), out()[-4000:])
        # Ask the graph while the demo's Dagster still runs (the reports written by then).
        reports = sorted(p for p in (data_dir / "reports" / "drift").glob("*.json") if p.stem != "latest")
        materialized = {
            key: graphql(dagster, MATERIALIZATIONS, {"path": [key]})["assetOrError"]["assetMaterializations"]
            for key in (*MODEL_ASSETS, "drift_report")
        }
        retrains = graphql(dagster, RUNS)["runsOrError"]["results"]
        # The signal dashboard shows the live demo: scored predictions and the retrain's backtest.
        dashboard = urls["Signal dashboard"]
        signal = http_json(f"{dashboard}/api/signal?minutes=60")
        backtest = http_json(f"{dashboard}/api/backtest")
        demo.wait(timeout=900)
        reader.join(timeout=30)
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.wait(timeout=120)
    text = out()
    assert demo.returncode == 0, text[-4000:]
    assert "demo failed" not in text

    # The lineage graph: the first champion and the drift retrain are Dagster runs of `retrain`,
    # each materializing the whole chain with MLflow links.
    triggers = sorted(
        {t["key"]: t["value"] for t in r["tags"]}.get("cryptovol/trigger", "") for r in retrains
    )
    assert triggers == ["demo-bootstrap", "drift"], retrains
    assert all(r["status"] == "SUCCESS" for r in retrains), retrains
    for key in MODEL_ASSETS:
        assert {m["runId"] for m in materialized[key]} == {r["runId"] for r in retrains}, key
    links = [e for m in materialized["logistic_model"] for e in m["metadataEntries"] if "url" in e]
    assert links and all("/#/experiments/" in e["url"] for e in links)

    assert signal["state"] == "ready" and signal["products"], signal
    assert backtest.get("state") != "empty" and backtest["sections"], backtest

    # Every report the drift monitor wrote is a drift_report materialization with its share.
    summaries = [json.loads(p.read_text()) for p in reports]
    shares = sorted(
        e["floatValue"] for m in materialized["drift_report"] for e in m["metadataEntries"]
        if e["label"] == "drift_share"
    )
    assert len(shares) >= len(reports) - 1, (len(shares), len(reports))  # the newest may await a tick
    assert set(shares) <= {s["drift_share"] for s in summaries}

    # No drift before the regime change (calm reports exist and are calm), drift after it.
    calm = [s for s in summaries if s["current_window"]["end_ns"] / 1e9 <= regime_event]
    assert calm and not any(s["dataset_drift"] for s in calm), [(s["generated_at"], s["drift_share"])
                                                                for s in summaries]
    assert any(s["dataset_drift"] for s in summaries if s["current_window"]["end_ns"] / 1e9 > regime_event)

    # The alert log: no drift event before the change; then drift -> retrain -> decision.
    alerts = read_alerts(alerts_log)
    drift = [a for a in alerts if a["kind"] == DRIFT_DETECTED]
    assert drift and all(when(a["created_at"]) > regime_at for a in drift), alerts
    assert len(drift) == 1 and drift[0]["details"]["retrain_requested"], drift
    after = when(drift[0]["created_at"])
    decisions = [a for a in alerts if a["kind"] in DECISIONS and when(a["created_at"]) > after]
    assert len(decisions) == 1, alerts
    assert not [a for a in alerts if a["kind"] == "run_failed"], alerts

    # The status line followed: a champion served, the drift share, the alerts.
    status = [line for line in text.splitlines() if re.match(r"^\[\s*\d+s\] ticks", line)]
    assert status and "champion none" not in status[-1] and "DRIFT" in text, text[-4000:]
    assert "e2e p95 recv->pred" in status[-1], status[-1]

    # Everything it started is gone: the UIs no longer answer, no pid of the run is alive.
    for url in urls.values():
        assert not http_ok(url, timeout_s=1.0), f"{url} still answers after the demo stopped"
    for pid in re.findall(r"\+ \S+: pid (\d+)", text):
        assert not Path(f"/proc/{pid}").exists() or _zombie(int(pid)), f"pid {pid} still running"
    assert list((data_dir / "predictions").glob("**/*.parquet"))
    assert f"data left on disk under {data_dir}" in text


def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
