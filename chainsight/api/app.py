"""The HTTP API over a backend (an embedded runtime, or Kafka and Redis):
`create_app(backend, tokens)`."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from chainsight.api import live, pages
from chainsight.api.auth import TokenStore
from chainsight.api.backend import Backend, Unavailable
from chainsight.api.context import Context
from chainsight.api.embedded import EmbeddedBackend
from chainsight.api.errors import JSON, error, install
from chainsight.api.metrics import EngineCollector, Retractions, exposition, registry
from chainsight.api.routes import alerts, ask, events, shipments, trace
from chainsight.api.routes import fences as fence_routes
from chainsight.api.routes import webhooks as webhook_routes
from chainsight.api.webhooks import Retry, Webhooks
from chainsight.runtimes.embedded import EmbeddedRuntime
from chainsight.trace.links import KeyRing

DESCRIPTION = """Live state, alerts and events of the ChainSight engine.

Every `/v1` route needs `Authorization: Bearer <token>` (websockets: `?token=`); tokens come
from `chainsight token create`. Errors answer `{"error": "<one line>"}` with a 4xx status."""


def create_app(source: Backend | EmbeddedRuntime, tokens: TokenStore,
               fences: dict | None = None, public_url: str | None = None,
               keepalive_s: float = 15.0, webhook_retry: Retry | None = None) -> FastAPI:
    """The API over a backend, or over an embedded runtime (started by the caller) with
    `fences`, the GeoJSON its engine was built with, as `GET /v1/fences` shows it until
    replaced. Webhook subscriptions live in the token store's data directory."""
    backend = EmbeddedBackend(source, fences) if isinstance(source, EmbeddedRuntime) else source
    app = FastAPI(title="ChainSight", version="2", description=DESCRIPTION,
                  default_response_class=JSON)
    ctx = Context(backend, tokens, public_url=public_url)
    hub = live.Hub(backend)
    retractions = Retractions()
    webhooks = Webhooks(tokens.path.parent, webhook_retry or Retry())
    for subscriber in (hub.on_delta, retractions.on_delta, webhooks.on_delta):
        backend.subscribe(subscriber)
    metrics = registry(EngineCollector(backend, retractions, lambda: len(hub.clients)))
    metrics.register(webhooks)
    app.state.context, app.state.hub, app.state.keepalive_s = ctx, hub, keepalive_s
    app.state.webhooks = webhooks
    install(app)

    @app.exception_handler(Unavailable)
    async def unavailable(_: Request, exc: Unavailable) -> Response:
        return error(503, str(exc))

    app.state.trace_keys = KeyRing(tokens.path.parent)
    for module in (events, shipments, alerts, fence_routes, webhook_routes, trace, ask):
        app.include_router(module.router)
    app.include_router(live.router)
    pages.install(app)

    @app.get("/healthz", tags=["operations"], summary="200 once ready to serve")
    async def healthz() -> Response:
        try:
            problem = await asyncio.wait_for(run_in_threadpool(ctx.health), 2.0)
        except TimeoutError:
            problem = "the runtime does not answer (busy or unreachable)"
        return JSON({"status": "ok"}) if problem is None else error(503, problem)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=Response)
    async def prometheus() -> Response:
        body = await run_in_threadpool(exposition, metrics)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app
