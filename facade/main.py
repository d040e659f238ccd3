"""The FastAPI app factory: routes, error handlers, CORS, body limit, Socket.IO, lifespan.

Run with ``uvicorn facade.main:app`` (settings from the environment) or build an app with
explicit settings in tests: ``create_app(FacadeSettings(...))``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facade import redact
from facade.adopt import Adopter
from facade.cache_feed import CacheFeed
from facade.config import FacadeSettings, get_settings
from facade.db import create_tables, make_engine, pool_limits, request_slots
from facade.errors import install_error_handlers
from facade.live import LiveHub
from facade.prefect_gateway import PrefectGateway
from facade.responses import LegacyJSONResponse
from facade.routes import (
    downloads,
    executions,
    logs,
    physics,
    preferences,
    root,
    stats,
    tasks,
    workflows,
    ws,
)
from facade.socketio import LegacySocketServer

log = logging.getLogger("topup.facade")
DOCS_ASSETS = "/docs-assets"

DESCRIPTION = """
The legacy Topup REST API, served on Prefect. Tasks are flow runs of versioned workflow
deployments; status, progress, executions and logs are read from Prefect.

Authenticate with `Authorization: Bearer <token>` (issue one with
`python -m facade.cli token create --user NAME`). Live updates: WebSocket
`/api/tasks/{id}/ws` or Socket.IO at `/socket.io/` (`subscribe_task`).
"""


class BodySizeLimit:
    """Reject request bodies above ``limit`` bytes with 413 before any route sees them.

    A declared Content-Length is checked at once; a chunked body is read (up to the limit)
    and then replayed to the app, so an oversized one never reaches the JSON parser.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._reject(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = LegacyJSONResponse(
            {
                "success": False,
                "error": "Payload Too Large",
                "message": f"Request body exceeds {self.limit} bytes",
            },
            status_code=413,
        )
        await response(scope, receive, send)


def create_app(settings: FacadeSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    redact.configure(settings.downloads_dir)
    pool = pool_limits(
        settings.database_url, settings.database_pool_size, settings.database_max_overflow
    )
    engine = make_engine(settings.database_url, *pool)
    gateway = PrefectGateway(
        settings.prefect_api_url_clean,
        page_size=settings.page_size,
        read_ttl=settings.prefect_read_ttl_seconds,
        live_read_ttl=settings.prefect_live_read_ttl_seconds,
    )
    feed = CacheFeed(gateway)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        create_tables(engine)
        await gateway.open()
        feed.start()
        try:
            yield
        finally:
            await feed.stop()
            await app.state.socket.close()
            await app.state.live.close()
            await gateway.close()
            engine.dispose()

    # Swagger UI and ReDoc from the package's own assets: no CDN is reachable at IHEP.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="Topup HTTP API",
        version=root.VERSION,
        description=DESCRIPTION,
        default_response_class=LegacyJSONResponse,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.db_slots = asyncio.Semaphore(request_slots(*pool))
    app.state.gateway = gateway
    app.state.cache_feed = feed
    app.state.live = LiveHub(engine, gateway)
    app.state.adopter = Adopter(settings.adopt_interval_seconds)
    install_error_handlers(app)
    for module in (root, tasks, workflows, executions, logs, downloads, stats, preferences, ws):
        app.include_router(module.router)
    app.include_router(physics.router)
    app.state.socket = LegacySocketServer(app, settings)
    app.mount("/socket.io", app.state.socket.asgi_app())
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_origin_regex=r"^https?://(localhost|127\.0\.0\.1)(:\d+)?$"
        if settings.dev_mode
        else None,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization"],
        allow_credentials=False,
    )
    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn facade.main:app`` builds the app from the environment on first access only,
    # so importing this module (tests, the CLI) has no side effects.
    if name == "app":
        return create_app()
    raise AttributeError(name)
