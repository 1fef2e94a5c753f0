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


# --- Trust boundaries of the compose stack ----------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class ComposeError(ValueError):
    """What `docker compose` stops with: a required variable unset (its `:?` message)."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, and $$ for a literal $."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        value = env.get(name)
        missing = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if missing else value
        if op in (":?", "?"):
            if missing:
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return value
        return value or ""

    return _VAR.sub(one, text)


def _compose_with(env: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


PASSWORDS = {"POSTGRES_PASSWORD": "pg-secret", "GRAFANA_PASSWORD": "gf-secret"}


def test_compose_refuses_to_start_without_each_password() -> None:
    for name in PASSWORDS:
        others = {k: v for k, v in PASSWORDS.items() if k != name}
        for env in (others, {**others, name: ""}):
            with pytest.raises(ComposeError, match=rf"{name} is missing a value: set {name}, there is no"):
                _compose_with(env)
    config = _compose_with(PASSWORDS)
    assert config["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-secret"
    assert config["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "gf-secret"
    assert "pg-secret@postgres" in " ".join(config["services"]["mlflow"]["command"])


def test_no_secret_has_a_default_in_compose() -> None:
    text = COMPOSE.read_text()
    for match in _VAR.finditer(text):
        name, op = match.group(1) or match.group(4), match.group(2)
        if name and re.search(r"PASSWORD|TOKEN|SECRET", name):
            assert op not in (":-", "-"), f"{match.group(0)} has a default"
    assert "admin/admin" not in text


def test_every_published_port_binds_to_loopback_unless_told_otherwise() -> None:
    published = {name: svc["ports"] for name, svc in _compose_with(PASSWORDS)["services"].items()
                 if svc.get("ports")}
    assert {"redpanda", "redpanda-console", "mlflow", "dagster-webserver", "service", "prometheus",
            "grafana"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    exposed = _compose_with({**PASSWORDS, "CRYPTOVOL_BIND_ADDRESS": "0.0.0.0"})["services"]
    assert all(str(p).startswith("0.0.0.0:") for svc in exposed.values() for p in svc.get("ports", []))


def test_metrics_servers_listen_on_the_compose_network_but_are_not_published() -> None:
    services = _compose_with(PASSWORDS)["services"]
    config = yaml.safe_load(PROMETHEUS.read_text())
    scraped = {t.rsplit(":", 1)[0] for job in config["scrape_configs"]
               for t in job["static_configs"][0]["targets"]}
    for name in ("ingest", "featurize", "score", "drift-monitor"):
        assert name in scraped
        assert services[name]["environment"]["CRYPTOVOL_METRICS_BIND_ADDRESS"] == "0.0.0.0", name
        assert not services[name].get("ports"), f"{name}'s metrics port is published"
