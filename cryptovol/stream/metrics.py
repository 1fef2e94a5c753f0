"""Prometheus exposition of a stats dataclass, read at scrape time (no second set of counters)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: Stats that go up and down; everything else is exposed as a counter.
GAUGES = frozenset({"buffered", "lag"})


class StatsCollector:
    """A prometheus_client collector that turns `stats_fn()` (name -> number) into metrics."""

    def __init__(self, prefix: str, stats_fn: Callable[[], dict[str, float]]) -> None:
        self.prefix = prefix
        self.stats_fn = stats_fn

    def collect(self) -> Iterable[object]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for name, value in self.stats_fn().items():
            metric = f"{self.prefix}_{name}"
            if name in GAUGES:
                yield GaugeMetricFamily(metric, f"current {name.replace('_', ' ')}", value=float(value))
            else:
                yield CounterMetricFamily(metric, f"total {name.replace('_', ' ')}", value=float(value))


def serve_stats(port: int, prefix: str, stats_fn: Callable[[], dict[str, float]], host: str | None = None):
    """Start a /metrics endpoint on `host:port` (default CRYPTOVOL_METRICS_BIND_ADDRESS) in a daemon
    thread (`cryptovol.runtime.serve_metrics`); returns the server."""
    from prometheus_client import CollectorRegistry

    from cryptovol.runtime.runner import serve_metrics

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(prefix, stats_fn))
    return serve_metrics(port, registry, host)
