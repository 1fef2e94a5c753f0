"""`cryptovol drift --every S`: a report on a fixed cadence, its summary as Prometheus gauges."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from cryptovol.drift.metrics import drift_metrics, export_summary
from cryptovol.drift.report import DriftResult, build_drift_report
from cryptovol.drift.stats import DriftConfig, DriftError, Window

log = logging.getLogger(__name__)


class DriftMonitor:
    """Writes a drift report every `every_s` seconds and exposes the latest as Prometheus gauges.

    What `cryptovol drift --every S --metrics-port P` runs (the demo and the compose `monitor`
    service): Evidently is imported once, a failed report (e.g. no champion yet) is logged and
    retried next time, SIGINT/SIGTERM stop it cleanly.
    """

    def __init__(
        self,
        settings: Any,
        config: DriftConfig | None = None,
        *,
        reference: Window | None = None,
        products: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or DriftConfig()
        self.reference = reference
        self.products = products
        self.reports = 0
        self.errors = 0

    def run_once(self) -> DriftResult | None:
        try:
            result = build_drift_report(
                self.settings, self.config, reference=self.reference, products=self.products
            )
        except DriftError as exc:
            self.errors += 1
            log.warning("no drift report this round: %s", exc)
            return None
        self.reports += 1
        return result

    def run(
        self,
        *,
        every_s: float = 300.0,
        metrics_port: int | None = None,
        duration_s: float | None = None,
        out: Any = print,
    ) -> int:
        """Report every `every_s` seconds until SIGINT/SIGTERM or `duration_s` (the shared
        lifecycle: `cryptovol.runtime.StopSignal`, `serve_metrics`, `every`)."""
        from prometheus_client import CollectorRegistry

        from cryptovol.runtime import StopSignal, close_metrics, every, serve_metrics

        with StopSignal(name="drift monitor") as stop:
            gauges = server = None
            if metrics_port:
                registry = CollectorRegistry()
                gauges = drift_metrics(registry)
                server = serve_metrics(metrics_port, registry)
                out(f"drift monitor: metrics on port {metrics_port} (/metrics)")

            def one_round() -> None:
                # Mid-report (tens of seconds on a busy machine) a signal leaves at once: the
                # report files are written atomically, nothing half-done stays.
                with stop.interruptible():
                    result = self.run_once()
                if result is not None:
                    s = result.summary
                    out(f"drift share {s['drift_share']:.2f} dataset_drift={s['dataset_drift']} "
                        f"drifted={','.join(s['drifted_columns']) or '-'} -> {s.get('json_path')}")
                    if gauges:
                        export_summary(gauges, s)
                        gauges["reports"].labels("ok").inc()
                elif gauges:
                    gauges["reports"].labels("error").inc()

            try:
                every(one_round, every_s=every_s, stop=stop.event, duration_s=duration_s)
            finally:
                close_metrics(server)
        out(f"drift monitor stopped: {self.reports} reports, {self.errors} rounds without a report")
        return 0
