"""The monitoring and compose configuration agrees with the code it observes.

A renamed metric or a changed port breaks a Grafana panel or a Prometheus scrape silently; these
tests make it loud. They read the real files and collect the real metric families from the
platform's own collectors (no Docker needed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "infra" / "compose" / "docker-compose.yml"
PROMETHEUS = REPO / "infra" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "infra" / "grafana" / "dashboards" / "cryptovol.json"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _exported_metric_names() -> set[str]:
    """Every metric family the platform's processes export, from their real collectors."""
    from cryptovol.drift import drift_metrics
    from cryptovol.ingest.metrics import IngestStatsCollector
    from cryptovol.ingest.stats import IngestStats
    from cryptovol.serving.metrics import ServingMetrics
    from cryptovol.stream.featurizer import FeaturizerStats
    from cryptovol.stream.metrics import StatsCollector

    registry = CollectorRegistry()
    registry.register(IngestStatsCollector(IngestStats()))
    registry.register(StatsCollector("cryptovol_featurizer", FeaturizerStats().as_dict))
    serving = ServingMetrics("service", registry=registry)
    serving.latency.labels("service", "predict").observe(0.001)
    drift_metrics(registry)
    text = generate_latest(registry).decode()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    samples = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
               if line and not line.startswith("#")}
    return families | samples | {_base(n) for n in families}


def _base(name: str) -> str:
    return re.sub(r"_(total|bucket|sum|count|created)$", "", name)


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def test_compose_has_the_platform_services() -> None:
    services = set(_compose()["services"])
    assert {
        "redpanda", "redpanda-console", "postgres", "mlflow", "dagster-webserver", "dagster-daemon",
        "ingest", "featurize", "score", "drift-monitor", "service", "prometheus", "grafana",
    } <= services


def test_prometheus_targets_match_compose_services_and_their_ports() -> None:
    services = _compose()["services"]
    config = yaml.safe_load(PROMETHEUS.read_text())
    for job in config["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.rsplit(":", 1)
            assert host in services, f"{job['job_name']}: {host} is not a compose service"
            command = services[host].get("command", [])
            text = " ".join(command) if isinstance(command, list) else str(command)
            if host == "redpanda":
                assert port in " ".join(services[host]["ports"][1:2]) or port == "9644"
                continue
            assert re.search(rf"(--metrics-port|--port)[ =]{port}\b", text), (
                f"{job['job_name']}: {host} does not listen on {port}: {text}"
            )


@pytest.mark.parametrize("expr", _dashboard_exprs())
def test_every_dashboard_metric_is_exported_by_the_code(expr: str) -> None:
    exported = _exported_metric_names()
    names = set(re.findall(r"\b(cryptovol_[a-z0-9_]+)", expr))
    assert names or "redpanda_" in expr, expr
    for name in names:
        assert name in exported or _base(name) in exported, (
            f"{name} in the dashboard is not exported (have {sorted(exported)})"
        )


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    provider = yaml.safe_load((REPO / "infra/grafana/provisioning/dashboards/cryptovol.yml").read_text())
    datasource = yaml.safe_load((REPO / "infra/grafana/provisioning/datasources/prometheus.yml").read_text())
    mounts = _compose()["services"]["grafana"]["volumes"]
    dashboards_mount = next(m for m in mounts if m.startswith("../grafana/dashboards:"))
    assert provider["providers"][0]["options"]["path"] == dashboards_mount.split(":")[1]
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"])
