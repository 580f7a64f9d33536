"""The HTTP API over an embedded runtime: `create_app(runtime, tokens)`."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from chainsight.api import live, pages
from chainsight.api.auth import TokenStore
from chainsight.api.context import Context
from chainsight.api.errors import JSON, error, install
from chainsight.api.metrics import EngineCollector, Retractions, exposition, registry
from chainsight.api.routes import alerts, events, shipments
from chainsight.api.routes import fences as fence_routes
from chainsight.api.routes import webhooks as webhook_routes
from chainsight.api.webhooks import Retry, Webhooks
from chainsight.runtimes.embedded import EmbeddedRuntime

DESCRIPTION = """Live state, alerts and events of the ChainSight engine.

Every `/v1` route needs `Authorization: Bearer <token>` (websockets: `?token=`); tokens come
from `chainsight token create`. Errors answer `{"error": "<one line>"}` with a 4xx status."""


def create_app(runtime: EmbeddedRuntime, tokens: TokenStore, fences: dict | None = None,
               public_url: str | None = None, keepalive_s: float = 15.0,
               webhook_retry: Retry | None = None) -> FastAPI:
    """The API over `runtime` (started by the caller). `fences`: the GeoJSON the engine was
    built with, as `GET /v1/fences` shows it until replaced. Webhook subscriptions live in the
    token store's data directory."""
    app = FastAPI(title="ChainSight", version="2", description=DESCRIPTION,
                  default_response_class=JSON)
    ctx = Context(runtime, tokens, public_url=public_url)
    if fences is not None:
        ctx.fences = fences
    hub = live.Hub(runtime.engine)
    retractions = Retractions()
    runtime.subscribe(hub.on_output)
    webhooks = Webhooks(tokens.path.parent, runtime.engine, webhook_retry or Retry())
    runtime.subscribe(retractions.on_output)
    runtime.subscribe(webhooks.on_output)
    metrics = registry(EngineCollector(runtime, retractions, lambda: len(hub.clients)))
    metrics.register(webhooks)
    app.state.context, app.state.hub, app.state.keepalive_s = ctx, hub, keepalive_s
    app.state.webhooks = webhooks
    install(app)
    for module in (events, shipments, alerts, fence_routes, webhook_routes):
        app.include_router(module.router)
    app.include_router(live.router)
    pages.install(app)

    @app.get("/healthz", tags=["operations"], summary="200 once ready to serve")
    async def healthz() -> Response:
        if not runtime.running:
            return error(503, "the engine is not running")
        try:
            await asyncio.wait_for(run_in_threadpool(_touch, runtime), 2.0)
        except TimeoutError:
            return error(503, "the engine is busy")
        return JSON({"status": "ok"})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=Response)
    async def prometheus() -> Response:
        body = await run_in_threadpool(exposition, metrics)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _touch(runtime: EmbeddedRuntime) -> None:
    """Take the runtime's lock once: the engine answers."""
    with runtime.lock:
        pass
