"""BentoML service for the current champion: `bentoml serve bento.service:SpikeService`.

A thin adapter: options, auth and body-limit middlewares live in `cryptovol.serving.runtime`; the
models (champion, opt-in shadow challenger, hot swap, metrics) in `cryptovol.serving.host`; request
validation in `cryptovol.serving.schemas`. Endpoints: /predict, /predict_batch, /predict_ticks,
/version, health, /metrics; the environment variables are in README (Configuration) and
bento/README.md.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import InvalidArgument, ServiceUnavailable
from bentoml.validators import ContentType
from fastapi import FastAPI, HTTPException
from pydantic import Field

from cryptovol.serving.host import BadRequest, ChampionUnavailable, SpikeHost
from cryptovol.serving.runtime import ServiceOptions
from cryptovol.serving.schemas import FeatureRow, Prediction, ProductId, TickIn, TickPrediction

OPTIONS = ServiceOptions.from_env()  # a bad variable stops `bentoml serve` here, naming it
#: The answer type of /predict and /predict_batch. The explicit JSON content type is not cosmetic:
#: without it BentoML 1.4 regenerates the pydantic JSON schema of a list-typed answer on every
#: response to find its media type (~2 ms CPU per request; docs/BENCHMARKS.md, serving).
Predictions = Annotated[list[Prediction], ContentType("application/json")]
Rows = Annotated[list[FeatureRow], Field(min_length=1, max_length=OPTIONS.max_batch)]
Ticks = Annotated[list[TickIn], Field(min_length=1, max_length=OPTIONS.max_ticks)]

info_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@contextmanager
def http_errors():
    """The host's refusals as HTTP: no champion yet -> 503, input it cannot score -> 400."""
    try:
        yield
    except ChampionUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from exc
    except BadRequest as exc:
        raise InvalidArgument(str(exc)) from exc


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(**OPTIONS.bentoml_options())
class SpikeService:
    """Spike probability for feature rows or raw tick windows, from models:/<name>@champion."""

    def __init__(self) -> None:
        self.host = SpikeHost(OPTIONS).start()

    def __is_ready__(self) -> bool:
        return self.host.ready()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.host.stop()

    @bentoml.api(batchable=OPTIONS.adaptive_batching, max_batch_size=OPTIONS.max_batch,
                 max_latency_ms=OPTIONS.batch_max_latency_ms)
    def predict(self, rows: Rows) -> Predictions:
        """Feature rows -> per row: spike probability, flag, model name/version/alias.

        Adaptive batching merges concurrent requests into one model call: the endpoint for many
        small online requests."""
        with http_errors():
            return self.host.score_rows(rows, "predict")

    @bentoml.api
    def predict_batch(self, rows: Rows) -> Predictions:
        """Same input and answers as /predict, without the batching dispatcher: for bulk callers
        sending hundreds to thousands of rows per request, where the dispatcher's queueing only
        adds latency (both measured side by side in docs/BENCHMARKS.md, serving)."""
        with http_errors():
            return self.host.score_rows(rows, "predict_batch")

    @bentoml.api
    def predict_ticks(self, product_id: ProductId, ticks: Ticks) -> TickPrediction:
        """A recent window of one product's raw ticks -> the prediction for its last tick."""
        with http_errors():
            return self.host.predict_ticks(product_id, ticks)

    @info_app.get("/version")
    def version(self) -> dict[str, Any]:
        """Model name, version, run id, feature-set version, trained window and metrics."""
        try:
            return self.host.version()
        except ChampionUnavailable as exc:
            raise HTTPException(503, str(exc)) from exc


for _middleware, _options in OPTIONS.asgi_middlewares():
    SpikeService.add_asgi_middleware(_middleware, **_options)
