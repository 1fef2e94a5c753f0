"""Prometheus metrics of everything that scores: the service and the streaming scorer.

`prometheus_client` is imported when `ServingMetrics` is built, not at module import: BentoML sets
PROMETHEUS_MULTIPROC_DIR in its worker after importing the service module, and prometheus_client
picks single- or multi-process mode when it is first imported.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: End-to-end latency (exchange event or tick receipt -> prediction produced): 5 ms .. 10 s.
END_TO_END_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5,
                      2.0, 2.5, 3.0, 4.0, 5.0, 10.0)
PROBABILITY_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class RollingRate:
    """Share of True among the last `window` booleans (spike rate, shadow agreement)."""

    def __init__(self, window: int = 1000) -> None:
        self._values: deque[bool] = deque(maxlen=window)
        self._true = 0
        self._lock = threading.Lock()

    def extend(self, flags: np.ndarray | list[bool]) -> float:
        with self._lock:
            for flag in flags:
                flag = bool(flag)
                if len(self._values) == self._values.maxlen and self._values[0]:
                    self._true -= 1
                self._values.append(flag)
                self._true += flag
            return self.value_unlocked()

    def value_unlocked(self) -> float:
        return self._true / len(self._values) if self._values else 0.0

    @property
    def value(self) -> float:
        with self._lock:
            return self.value_unlocked()


class ServingMetrics:
    """The custom metrics: latency, predictions by outcome, spike rate, model version, reloads,
    shadow agreement and the challenger's score distribution.

    `component` ("service" or "scorer") is a label so one Prometheus can scrape both.
    `registry=None` uses prometheus_client's default registry (what BentoML's /metrics collects).
    """

    def __init__(self, component: str, *, registry: Any = None, window: int = 1000) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        self.component = component
        reg = REGISTRY if registry is None else registry
        self.latency = Histogram(
            "cryptovol_prediction_latency_seconds",
            "Time to score one request (service) or one polled batch (scorer)",
            ["component", "endpoint"], buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.predictions = Counter(
            "cryptovol_predictions",
            "Rows scored by the champion, by outcome (spike / no_spike)",
            ["component", "outcome"], registry=reg,
        )
        self.rejected = Counter(
            "cryptovol_rejected_requests",
            "Requests or rows refused as bad input, by reason",
            ["component", "reason"], registry=reg,
        )
        self.spike_rate = Gauge(
            "cryptovol_spike_rate",
            f"Share of spike flags among the last {window} champion predictions",
            ["component"], registry=reg, multiprocess_mode="livemostrecent",
        )
        self.model_version = Gauge(
            "cryptovol_model_version_info",
            "1 for the model version currently serving an alias, 0 for versions it replaced",
            ["component", "model_name", "version", "alias", "run_id"], registry=reg,
            multiprocess_mode="livemostrecent",
        )
        self.reloads = Counter(
            "cryptovol_model_reloads",
            "Model loads by alias and result (swapped = validated and now serving, rejected)",
            ["component", "alias", "result"], registry=reg,
        )
        self.shadow_agreement = Gauge(
            "cryptovol_shadow_agreement_rate",
            f"Share of rows where challenger and champion flags agree (last {window} rows)",
            ["component"], registry=reg, multiprocess_mode="livemostrecent",
        )
        self.shadow_rows = Counter(
            "cryptovol_shadow_predictions",
            "Rows scored by the challenger in shadow mode, by result (scored / dropped / failed)",
            ["component", "result"], registry=reg,
        )
        self.challenger_probability = Histogram(
            "cryptovol_challenger_spike_probability",
            "Distribution of the challenger's spike probabilities (shadow mode)",
            ["component"], buckets=PROBABILITY_BUCKETS, registry=reg,
        )
        self.end_to_end = Histogram(
            "cryptovol_end_to_end_latency_seconds",
            "Per prediction: exchange event time (since=event) or the ingestor's receive time "
            "(since=received) -> prediction produced, wall clock",
            ["component", "since"], buckets=END_TO_END_BUCKETS, registry=reg,
        )
        self._spikes = RollingRate(window)
        self._agreement = RollingRate(window)

    # -- recording --------------------------------------------------------------------------

    def observe_end_to_end(self, since_event_ns: list[int], since_received_ns: list[int]) -> None:
        """One observation per scored row (the streaming scorer: event/receive -> scored_at)."""
        for since, values in (("event", since_event_ns), ("received", since_received_ns)):
            if values:
                observe = self.end_to_end.labels(self.component, since).observe
                for ns in values:
                    observe(ns / 1e9)

    def observe_predictions(self, flags: np.ndarray, latency_s: float, endpoint: str) -> None:
        n = len(flags)
        spikes = int(np.count_nonzero(flags))
        self.latency.labels(self.component, endpoint).observe(latency_s)
        if spikes:
            self.predictions.labels(self.component, "spike").inc(spikes)
        if n - spikes:
            self.predictions.labels(self.component, "no_spike").inc(n - spikes)
        self.spike_rate.labels(self.component).set(self._spikes.extend(flags))

    def observe_rejection(self, reason: str, count: int = 1) -> None:
        self.rejected.labels(self.component, reason).inc(count)

    def observe_swap(self, alias: str, old: Any, new: Any) -> None:
        """`old`/`new` are `ServedModel` or None (loaded, replaced, dropped)."""
        if old is not None:
            self.model_version.labels(self.component, old.name, old.version, alias, old.run_id).set(0)
        if new is not None:
            self.model_version.labels(self.component, new.name, new.version, alias, new.run_id).set(1)
            self.reloads.labels(self.component, alias, "swapped").inc()

    def observe_reload_failure(self, alias: str) -> None:
        self.reloads.labels(self.component, alias, "rejected").inc()

    def observe_shadow(self, champion_flags: np.ndarray, challenger_probs: np.ndarray,
                       challenger_flags: np.ndarray) -> float:
        agree = np.asarray(champion_flags, dtype=bool) == np.asarray(challenger_flags, dtype=bool)
        rate = self._agreement.extend(agree)
        self.shadow_agreement.labels(self.component).set(rate)
        self.shadow_rows.labels(self.component, "scored").inc(len(agree))
        hist = self.challenger_probability.labels(self.component)
        for p in np.asarray(challenger_probs, dtype=float):
            hist.observe(p)
        return rate

    def observe_shadow_skip(self, result: str, rows: int) -> None:
        self.shadow_rows.labels(self.component, result).inc(rows)
