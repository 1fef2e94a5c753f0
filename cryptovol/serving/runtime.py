"""How the spike service runs, apart from what it computes: its options from the validated
environment, the ASGI middlewares in front of it (body limit, bearer auth) and stopping the
`bentoml serve` parent when start-up fails.

Plain Python and ASGI, no BentoML import: `bento/service.py` passes `ServiceOptions.bentoml_options()`
to `@bentoml.service` and adds `asgi_middlewares()`, and stays a class with its model and typed APIs.
"""

from __future__ import annotations

import hmac
import json
import os
import signal
from dataclasses import dataclass
from typing import Any

from cryptovol.config import PlatformEnv, load_env

#: Endpoints that answer without a token and are never limited (probes and Prometheus).
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
PREDICTION_PATHS = ("/predict", "/predict_batch", "/predict_ticks")


@dataclass(frozen=True)
class ServiceOptions:
    """The service's switches and bounds (README, Configuration, lists the variables)."""

    max_batch: int = 10_000
    max_ticks: int = 50_000
    max_body_bytes: int = 16 * 1024 * 1024
    #: Requests in flight across all workers; more are answered 429 at once (BentoML's traffic
    #: `max_concurrency`), so a burst queues at the client instead of exhausting the server.
    max_concurrency: int = 64
    adaptive_batching: bool = True
    batch_max_latency_ms: int = 5000
    workers: int = 1
    access_log: bool = True
    gc_freeze: bool = True
    trace_predictions: bool = False
    api_token: str | None = None
    #: Load models:/<name>@challenger and score it in the background (off unless asked: every model
    #: loaded is unpickled code, so only the aliases an operator opted into are ever loaded).
    shadow: bool = False

    @classmethod
    def from_env(cls, env: PlatformEnv | None = None) -> ServiceOptions:
        env = env or load_env()
        token = env.api_token.get_secret_value() if env.api_token else None
        return cls(
            max_batch=env.max_batch, max_ticks=env.max_ticks, max_body_bytes=env.max_body_bytes,
            max_concurrency=env.max_concurrency, adaptive_batching=env.adaptive_batching,
            batch_max_latency_ms=env.batch_max_latency_ms, workers=env.service_workers,
            access_log=env.access_log, gc_freeze=env.gc_freeze, trace_predictions=env.trace_predictions,
            api_token=token or None, shadow=env.shadow,
        )

    def bentoml_options(self) -> dict[str, Any]:
        """Keyword arguments for `@bentoml.service`.

        Tracing: spans on the prediction routes cost ~0.5 ms of a ~1.3 ms single-row request and
        BentoML samples none by default, so they are excluded unless CRYPTOVOL_TRACE_PREDICTIONS=1
        (`tracing.excluded_urls` takes URL regexes and replaces any set in BentoML's own config).
        """
        excluded = [f"{p}$" for p in PREDICTION_PATHS]
        return {
            "name": "cryptovol_spike",
            "workers": self.workers,
            "traffic": {"timeout": 60, "max_concurrency": self.max_concurrency},
            "logging": {"access": {"enabled": self.access_log}},
            "tracing": {} if self.trace_predictions else {"excluded_urls": excluded},
        }

    def asgi_middlewares(self) -> list[tuple[type, dict[str, Any]]]:
        """(middleware class, options) pairs, in the order to add them."""
        middlewares: list[tuple[type, dict[str, Any]]] = [
            (BodyLimit, {"max_bytes": self.max_body_bytes}), (JsonOnly, {})]
        if self.api_token:
            middlewares.append((BearerAuth, {"token": self.api_token}))
        return middlewares


async def _json_response(send: Any, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """ASGI middleware: 401 unless `Authorization: Bearer <token>`; health and metrics stay open."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") not in OPEN_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _json_response(send, 401, "missing or wrong bearer token (Authorization header)",
                                     [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, before anything parses it.

    A declared Content-Length over the limit is refused without reading the body. A body without
    one (chunked) is read up to the limit and handed on only if it fits, so no size of input can
    make the server buffer more than `max_bytes` per request.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _too_large(self) -> str:
        return f"request body over {self.max_bytes} bytes (CRYPTOVOL_MAX_BODY_BYTES)"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _json_response(send, 400, "bad Content-Length header")
                return
            if length > self.max_bytes:
                await _json_response(send, 413, self._too_large())
                return
            await self.app(scope, receive, send)  # the server enforces the declared length
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # disconnected
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _json_response(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class JsonOnly:
    """ASGI middleware: 415 for a multipart body on the prediction routes.

    They take JSON. BentoML hands a multipart body to Starlette's form parser, whose error on a
    malformed one surfaced as a 500; no caller of this API sends forms, so they are refused first.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") in PREDICTION_PATHS:
            content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
            if content_type.strip().lower().startswith(b"multipart/"):
                await _json_response(send, 415, "send the request as application/json")
                return
        await self.app(scope, receive, send)


def stop_bentoml_parent() -> None:
    """Ask the `bentoml serve` arbiter (our parent) to shut down.

    Without this it keeps the port open with no worker behind it (it does not exit when a worker's
    start-up fails), so a refusal to start would look like a server that never gets ready instead
    of a process that stopped with a reason.
    """
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ")
    except OSError:
        return
    if b"bentoml" in cmdline and b"serve" in cmdline:
        os.kill(parent, signal.SIGTERM)
