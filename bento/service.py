"""BentoML service for the current champion: `bentoml serve bento.service:SpikeService`.

A thin adapter: model loading, hot swap, validation, shadow scoring and metrics live in
`cryptovol.serving`; features come from `cryptovol.features`. Environment:
MLFLOW_TRACKING_URI / CRYPTOVOL_DATA_DIR / CRYPTOVOL_MODEL_NAME (which model), CRYPTOVOL_MODEL_POLL_S
(alias check interval, default 10 s), CRYPTOVOL_MAX_BATCH (rows per /predict, default 10000),
CRYPTOVOL_API_TOKEN (when set, bearer token required except on health and metrics),
CRYPTOVOL_TRACE_PREDICTIONS (OpenTelemetry spans on the prediction routes, default off); the full list
and the endpoints (/predict, /predict_batch, /predict_ticks, /version, health, /metrics) are in
bento/README.md.
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import os
import signal
import time
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import InvalidArgument, ServiceUnavailable
from bentoml.validators import ContentType
from fastapi import FastAPI
from pydantic import Field

from cryptovol.config import env_flag
from cryptovol.serving.schemas import (
    FeatureRow,
    Prediction,
    TickIn,
    TickPrediction,
    max_batch_from_env,
    max_ticks_from_env,
)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
log = logging.getLogger("cryptovol.service")


MAX_BATCH = max_batch_from_env()
MAX_TICKS = max_ticks_from_env()
#: Adaptive batching of /predict (BentoML's CorkDispatcher); CRYPTOVOL_ADAPTIVE_BATCHING=0 turns it off.
ADAPTIVE_BATCHING = env_flag("CRYPTOVOL_ADAPTIVE_BATCHING", True)
#: The dispatcher's latency budget: it also seeds its wait estimates (higher = longer waits while it
#: learns) and requests queued longer than this are refused with 503, so keep it well above p99.
BATCH_MAX_LATENCY_MS = int(os.environ.get("CRYPTOVOL_BATCH_MAX_LATENCY_MS", "5000"))
#: Worker processes (CRYPTOVOL_SERVICE_WORKERS). Each loads the champion and follows the alias on
#: its own, so during a swap two workers may answer with different versions for up to one poll
#: interval (every single answer still comes from one model).
WORKERS = int(os.environ.get("CRYPTOVOL_SERVICE_WORKERS", "1"))
#: BentoML's per-request access log (CRYPTOVOL_ACCESS_LOG=0 turns it off): on by default; off saves
#: a log record per request for high-rate single-row callers (measured in docs/BENCHMARKS.md).
ACCESS_LOG = env_flag("CRYPTOVOL_ACCESS_LOG", True)
#: `gc.freeze()` after start-up (CRYPTOVOL_GC_FREEZE=0 turns it off; see SpikeService.__init__).
FREEZE_GC = env_flag("CRYPTOVOL_GC_FREEZE", True)
PREDICTION_PATHS = ("/predict", "/predict_batch", "/predict_ticks")
#: OpenTelemetry spans for the prediction routes (CRYPTOVOL_TRACE_PREDICTIONS=1 turns them on).
#: Off by default because BentoML's tracing is off by default (sample rate 0, no exporter): the
#: spans were created and thrown away, at ~0.5 ms of a ~1.3 ms single-row request's CPU. Turn it on
#: together with BentoML's `tracing` configuration when you export traces. (The exclusion is
#: BentoML's `tracing.excluded_urls`: URL regexes, so it replaces any set in BentoML's own config.)
TRACE_PREDICTIONS = env_flag("CRYPTOVOL_TRACE_PREDICTIONS", False)
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
#: The answer type of /predict and /predict_batch. The explicit JSON content type is not cosmetic:
#: without it BentoML 1.4 works out the media type of a list-typed answer by regenerating its
#: pydantic JSON schema on every response (~2 ms CPU per request, the largest single cost of a
#: one-row request; see docs/BENCHMARKS.md, serving). The response is the same application/json.
Predictions = Annotated[list[Prediction], ContentType("application/json")]


class BearerAuth:
    """ASGI middleware: 401 unless `Authorization: Bearer <token>`; health and metrics stay open."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") not in OPEN_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "missing or wrong bearer token (Authorization header)"})
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


def _stop_bentoml_server() -> None:
    """Ask the `bentoml serve` arbiter to shut down: without this it keeps the port open with no
    worker behind it (it does not exit when a worker's start-up fails), so the refusal would look
    like a server that never gets ready instead of a process that stopped with a reason."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ")
    except OSError:
        return
    if b"bentoml" in cmdline and b"serve" in cmdline:
        os.kill(parent, signal.SIGTERM)


info_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(name="cryptovol_spike", workers=WORKERS, traffic={"timeout": 60},
                 logging={"access": {"enabled": ACCESS_LOG}},
                 tracing={} if TRACE_PREDICTIONS else {"excluded_urls": [f"{p}$" for p in PREDICTION_PATHS]})
class SpikeService:
    """Spike probability for feature rows or raw tick windows, from models:/<name>@champion."""

    def __init__(self) -> None:
        from cryptovol.config import Settings
        from cryptovol.serving.champion import ChampionLoader, alert_on_rejection
        from cryptovol.serving.metrics import ServingMetrics
        from cryptovol.serving.shadow import ShadowScorer

        settings = Settings.from_env()
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
        self.challenger = ChampionLoader.from_settings(
            settings, alias="challenger", optional=True,
            on_swap=lambda old, new: self.metrics.observe_swap("challenger", old, new),
            on_failure=failure("challenger"),
        )
        # A champion built for another feature set (or broken) stops the start-up right here.
        try:
            self.champion.start(strict=True)
        except Exception as exc:
            log.critical("refusing to start: the champion cannot be served: %s", exc)
            _stop_bentoml_server()
            raise
        if self.champion.current is None:
            log.warning("no models:/%s@champion yet: not ready until one is registered (polling every "
                        "%.0f s)", settings.model_name, self.champion.poll_s)
        self.challenger.start(strict=False)
        self.shadow = ShadowScorer(
            self.challenger, metrics=self.metrics,
            log_path=settings.data_dir / "serving" / "shadow.jsonl",
        )
        if FREEZE_GC:
            # Everything loaded so far (BentoML, MLflow, pandas, XGBoost, the model: >250,000
            # objects, a ~100 ms full collection here) lives as long as the worker. Frozen, a full
            # collection no longer walks it; before, one stalled every request in flight (max
            # latency 240-300 ms at concurrency 8, 30-55 ms after; docs/BENCHMARKS.md, serving).
            gc.collect()
            gc.freeze()

    def __is_ready__(self) -> bool:
        return self.champion.current is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.champion.stop()
        self.challenger.stop()
        self.shadow.close()

    def _model(self):
        from cryptovol.serving.champion import ChampionUnavailable

        try:
            return self.champion.require()
        except ChampionUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from exc

    def _score_rows(self, rows: list[Any], endpoint: str) -> list[dict[str, Any]]:
        from cryptovol.serving.predict import matrix_records
        from cryptovol.serving.schemas import feature_rows_to_matrix

        started = time.perf_counter()
        model = self._model()  # one snapshot for the whole batch, even if a swap happens now
        # No DataFrame on the hot path: validated rows -> float64 matrix -> model -> answers.
        matrix = feature_rows_to_matrix(rows)
        probability, flag = model.predict_matrix(matrix)
        records = matrix_records(model, probability, flag, rows)
        self.metrics.observe_predictions(flag, time.perf_counter() - started, endpoint)
        if self.shadow.active:  # frames for the challenger only when there is one
            self.shadow.submit_matrix(matrix, model, probability, flag)
        return records

    @bentoml.api(batchable=ADAPTIVE_BATCHING, max_batch_size=MAX_BATCH, max_latency_ms=BATCH_MAX_LATENCY_MS)
    def predict(
        self, rows: Annotated[list[FeatureRow], Field(min_length=1, max_length=MAX_BATCH)]
    ) -> Predictions:
        """Feature rows -> per row: spike probability, flag, model name/version/alias.

        Adaptive batching merges concurrent requests into one model call: the endpoint for many
        small online requests."""
        return self._score_rows(rows, "predict")

    @bentoml.api
    def predict_batch(
        self, rows: Annotated[list[FeatureRow], Field(min_length=1, max_length=MAX_BATCH)]
    ) -> Predictions:
        """Same input and answers as /predict, without the batching dispatcher: for bulk callers
        sending hundreds to thousands of rows per request, where the dispatcher's queueing only
        adds latency (both measured side by side in docs/BENCHMARKS.md, serving)."""
        return self._score_rows(rows, "predict_batch")

    @bentoml.api
    def predict_ticks(
        self,
        product_id: Annotated[str, Field(min_length=1)],
        ticks: Annotated[list[TickIn], Field(min_length=1, max_length=MAX_TICKS)],
    ) -> TickPrediction:
        """A recent window of one product's raw ticks -> the prediction for its last tick."""
        from cryptovol.serving.predict import (
            BadRequest,
            features_for_last_tick,
            features_frame,
            prediction_records,
        )
        from cryptovol.serving.schemas import ticks_to_frame

        started = time.perf_counter()
        model = self._model()
        try:
            row = features_for_last_tick(ticks_to_frame(product_id, ticks))
        except BadRequest as exc:
            self.metrics.observe_rejection("cold_window")
            raise InvalidArgument(str(exc)) from exc
        frame = features_frame(row)
        out = model.predict(frame)
        record = prediction_records(model, out, [(product_id, int(row["event_time_ns"]))])[0]
        self.metrics.observe_predictions(out["spike_flag"].to_numpy(), time.perf_counter() - started,
                                         "predict_ticks")
        self.shadow.submit(frame, model, out)
        return TickPrediction(
            **record,
            features={k: float(v) for k, v in frame.iloc[0].items()},
            ticks_used=len(ticks),
        )

    @info_app.get("/version")
    def version(self) -> dict[str, Any]:
        """Model name, version, run id, feature-set version, trained window and metrics."""
        from fastapi import HTTPException

        from cryptovol.featureset import FEATURE_SET

        model = self.champion.current
        if model is None:
            raise HTTPException(503, f"no model loaded for alias champion of {self.champion.model_name}")
        challenger = self.challenger.current
        return {
            **model.describe(),
            "service_feature_set_version": FEATURE_SET.version,
            "challenger": None if challenger is None else {
                "model_version": challenger.version, "run_id": challenger.run_id,
            },
            "poll_interval_s": self.champion.poll_s,
            "reloads": self.champion.reloads,
            "rejected_versions": self.champion.rejections,
        }


_token = os.environ.get("CRYPTOVOL_API_TOKEN", "").strip()
if _token:
    SpikeService.add_asgi_middleware(BearerAuth, token=_token)
