"""The drift monitor's Prometheus metrics (names used by the Grafana dashboard)."""

from __future__ import annotations

from typing import Any


def drift_metrics(registry: Any) -> dict[str, Any]:
    """The drift monitor's Prometheus metrics, registered in `registry` (names used by Grafana)."""
    from prometheus_client import Counter, Gauge

    return {
        "share": Gauge("cryptovol_drift_share", "Share of monitored feature columns drifted",
                       registry=registry),
        "dataset": Gauge("cryptovol_dataset_drift", "1 when the latest report flags dataset drift",
                         registry=registry),
        "feature": Gauge("cryptovol_drift_feature_statistic", "Per-feature drift statistic",
                         ["feature", "test"], registry=registry),
        "prediction": Gauge("cryptovol_prediction_drift_statistic",
                            "Drift statistic of the spike-probability distribution", registry=registry),
        "live_pr_auc": Gauge("cryptovol_live_pr_auc", "Champion PR-AUC on labelled current rows",
                             registry=registry),
        "timestamp": Gauge("cryptovol_drift_report_timestamp_seconds",
                           "Unix time of the latest drift report", registry=registry),
        "reports": Counter("cryptovol_drift_reports", "Drift reports by result", ["result"],
                           registry=registry),
    }


def export_summary(gauges: dict[str, Any], summary: dict[str, Any]) -> None:
    """Set the gauges of `drift_metrics` from one report summary."""
    import time

    gauges["share"].set(summary["drift_share"])
    gauges["dataset"].set(1.0 if summary["dataset_drift"] else 0.0)
    for name, entry in summary["per_feature"].items():
        if entry.get("statistic") is not None:
            gauges["feature"].labels(name, entry["test"]).set(entry["statistic"])
    prediction = summary.get("prediction_drift") or {}
    if prediction.get("statistic") is not None:
        gauges["prediction"].set(prediction["statistic"])
    live = summary.get("live_pr_auc") or {}
    if live.get("pr_auc") is not None:
        gauges["live_pr_auc"].set(live["pr_auc"])
    gauges["timestamp"].set(time.time())
