"""The models behind the spike service and what each endpoint does with them, without HTTP.

`SpikeHost` loads `models:/<name>@champion` (and `@challenger` only when shadow scoring is switched
on: the registry is a code-execution boundary, models are unpickled), follows the aliases, scores
validated rows or tick windows with one model snapshot per request, and feeds the shadow scorer
and the metrics. `bento/service.py` maps its two refusals to HTTP: `ChampionUnavailable` -> 503,
`BadRequest` -> 400.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from cryptovol.config import Settings
from cryptovol.serving.champion import ChampionLoader, ChampionUnavailable, alert_on_rejection
from cryptovol.serving.metrics import ServingMetrics
from cryptovol.serving.predict import (
    BadRequest,
    features_for_last_tick,
    features_frame,
    matrix_records,
    prediction_records,
)
from cryptovol.serving.runtime import ServiceOptions, stop_bentoml_parent
from cryptovol.serving.schemas import TickPrediction, feature_rows_to_matrix, ticks_to_frame
from cryptovol.serving.shadow import ShadowScorer

log = logging.getLogger("cryptovol.service")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before MLflow is first imported

__all__ = ["BadRequest", "ChampionUnavailable", "SpikeHost"]


class SpikeHost:
    """One worker's models: the champion, the optional challenger, shadow scoring and metrics."""

    def __init__(self, options: ServiceOptions, settings: Settings | None = None) -> None:
        settings = settings or Settings.from_env()
        self.options = options
        self.settings = settings
        self.metrics = ServingMetrics("service")
        alert = alert_on_rejection(settings)

        def failure(alias: str):
            def hook(version: str, exc: BaseException) -> None:
                self.metrics.observe_reload_failure(alias)
                alert(version, exc)
            return hook

        self.champion = ChampionLoader.from_settings(
            settings, alias="champion",
            on_swap=lambda old, new: self.metrics.observe_swap("champion", old, new),
            on_failure=failure("champion"),
        )
        self.challenger: ChampionLoader | None = None
        if options.shadow:
            self.challenger = ChampionLoader.from_settings(
                settings, alias="challenger", optional=True,
                on_swap=lambda old, new: self.metrics.observe_swap("challenger", old, new),
                on_failure=failure("challenger"),
            )
        self.shadow: ShadowScorer | None = None

    def start(self) -> SpikeHost:
        """Load what is there; a champion built for another feature set (or broken) stops the whole
        server here, with the reason in its log."""
        try:
            self.champion.start(strict=True)
        except Exception as exc:
            log.critical("refusing to start: the champion cannot be served: %s", exc)
            stop_bentoml_parent()
            raise
        if self.champion.current is None:
            log.warning("no models:/%s@champion yet: not ready until one is registered (polling every "
                        "%.0f s)", self.settings.model_name, self.champion.poll_s)
        if self.challenger is not None:
            self.challenger.start(strict=False)
            self.shadow = ShadowScorer(
                self.challenger, metrics=self.metrics,
                log_path=self.settings.data_dir / "serving" / "shadow.jsonl",
            )
        if self.options.gc_freeze:
            # Everything loaded so far (BentoML, MLflow, pandas, XGBoost, the model: >250,000
            # objects, a ~100 ms full collection here) lives as long as the worker. Frozen, a full
            # collection no longer walks it; before, one stalled every request in flight (max
            # latency 240-300 ms at concurrency 8, 30-55 ms after; docs/BENCHMARKS.md, serving).
            gc.collect()
            gc.freeze()
        return self

    def ready(self) -> bool:
        return self.champion.current is not None

    def stop(self) -> None:
        self.champion.stop()
        if self.challenger is not None:
            self.challenger.stop()
        if self.shadow is not None:
            self.shadow.close()

    def score_rows(self, rows: list[Any], endpoint: str) -> list[dict[str, Any]]:
        """Validated `FeatureRow`s -> answer dicts; raises `ChampionUnavailable` before a champion."""
        started = time.perf_counter()
        model = self.champion.require()  # one snapshot for the whole batch, even if a swap happens now
        # No DataFrame on the hot path: validated rows -> float64 matrix -> model -> answers.
        matrix = feature_rows_to_matrix(rows)
        probability, flag = model.predict_matrix(matrix)
        records = matrix_records(model, probability, flag, rows)
        self.metrics.observe_predictions(flag, time.perf_counter() - started, endpoint)
        if self.shadow is not None and self.shadow.active:  # frames for the challenger only when there is one
            self.shadow.submit_matrix(matrix, model, probability, flag)
        return records

    def predict_ticks(self, product_id: str, ticks: list[Any]) -> TickPrediction:
        """A window of one product's validated ticks -> the prediction for its last tick.
        Raises `BadRequest` when the window cannot give every feature (too short, gaps)."""
        started = time.perf_counter()
        model = self.champion.require()
        try:
            row = features_for_last_tick(ticks_to_frame(product_id, ticks))
        except BadRequest:
            self.metrics.observe_rejection("cold_window")
            raise
        frame = features_frame(row)
        out = model.predict(frame)
        record = prediction_records(model, out, [(product_id, int(row["event_time_ns"]))])[0]
        self.metrics.observe_predictions(out["spike_flag"].to_numpy(), time.perf_counter() - started,
                                         "predict_ticks")
        if self.shadow is not None:
            self.shadow.submit(frame, model, out)
        return TickPrediction(
            **record,
            features={k: float(v) for k, v in frame.iloc[0].items()},
            ticks_used=len(ticks),
        )

    def version(self) -> dict[str, Any]:
        """Model name, version, run id, feature-set version, trained window and metrics."""
        from cryptovol.featureset import FEATURE_SET

        model = self.champion.require()
        challenger = self.challenger.current if self.challenger is not None else None
        return {
            **model.describe(),
            "service_feature_set_version": FEATURE_SET.version,
            "shadow": self.challenger is not None,
            "challenger": None if challenger is None else {
                "model_version": challenger.version, "run_id": challenger.run_id,
            },
            "poll_interval_s": self.champion.poll_s,
            "reloads": self.champion.reloads,
            "rejected_versions": self.champion.rejections,
        }
