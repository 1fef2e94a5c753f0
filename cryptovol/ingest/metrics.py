"""Prometheus exposition of `IngestStats` (read at scrape time: no second set of counters)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cryptovol.ingest.stats import IngestStats

_GAUGES = {"spool_pending"}


class IngestStatsCollector(Collector):
    """`cryptovol_ingest_<counter>_total` for every counter, gauges for current levels."""

    def __init__(self, stats: IngestStats, prefix: str = "cryptovol_ingest") -> None:
        self.stats = stats
        self.prefix = prefix

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for f in fields(self.stats):
            value = getattr(self.stats, f.name)
            if f.name == "deadletter_reasons":
                name = f"{self.prefix}_deadletter_by_reason"
                family = CounterMetricFamily(name, "dead-lettered records by reason", labels=["reason"])
                for reason, count in sorted(dict(value).items()):
                    family.add_metric([reason], count)
                yield family
            elif f.name in _GAUGES:
                yield GaugeMetricFamily(f"{self.prefix}_{f.name}", f.name.replace("_", " "), value=value)
            else:
                yield CounterMetricFamily(f"{self.prefix}_{f.name}", f.name.replace("_", " "), value=value)


def start_metrics_server(stats: IngestStats, port: int, host: str | None = None) -> WSGIServer:
    """Serve `/metrics` on host:port (default CRYPTOVOL_METRICS_BIND_ADDRESS) in a daemon thread
    (`cryptovol.runtime.serve_metrics`); returns the server (call `shutdown()`)."""
    from cryptovol.runtime.runner import serve_metrics

    registry = CollectorRegistry()
    registry.register(IngestStatsCollector(stats))
    return serve_metrics(port, registry, host)
