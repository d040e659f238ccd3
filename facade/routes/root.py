"""``GET /`` (service banner) and ``GET /api/health`` (Prefect API and database reachability)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from facade.db import ping
from facade.responses import LegacyJSONResponse
from facade.schemas import example

VERSION = "2.0.0"
router = APIRouter(tags=["service"])

BANNER = {
    "endpoints": {
        "downloads": "/api/downloads",
        "executions": "/api/executions",
        "logs": "/api/logs",
        "tasks": "/api/tasks",
        "workflows": "/api/workflows",
        "stats": "/api/stats",
        "preferences": "/api/preferences",
        "docs": "/docs",
    },
    "message": "Topup HTTP API",
    "version": VERSION,
}
HEALTHY = {
    "message": "Topup HTTP API is running",
    "status": "healthy",
    "version": VERSION,
    "checks": {"database": {"ok": True}, "prefect": {"ok": True}},
}


@router.get("/", responses={200: example(BANNER)})
async def banner() -> dict[str, Any]:
    """Service banner (no authentication)."""
    return BANNER


@router.get(
    "/api/health",
    responses={
        200: example(HEALTHY),
        503: example({**HEALTHY, "status": "unhealthy"}, "Prefect or the database is down"),
    },
)
async def health(request: Request) -> LegacyJSONResponse:
    """Checks that the Prefect API and the database answer (no authentication)."""
    gateway = request.app.state.gateway

    async def db_error() -> str | None:
        try:
            await asyncio.wait_for(run_in_threadpool(ping, request.app.state.engine), 5)
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            return type(exc).__name__
        return None

    async def prefect_error() -> str | None:
        try:
            return await asyncio.wait_for(gateway.health(), 5)
        except TimeoutError:
            return "timeout"

    db, prefect = await asyncio.gather(db_error(), prefect_error())
    healthy = db is None and prefect is None
    body = {
        "message": "Topup HTTP API is running" if healthy else "Topup HTTP API is degraded",
        "status": "healthy" if healthy else "unhealthy",
        "version": VERSION,
        "checks": {
            "database": {"ok": db is None, **({"error": db} if db else {})},
            "prefect": {"ok": prefect is None, **({"error": prefect} if prefect else {})},
        },
    }
    return LegacyJSONResponse(body, status_code=200 if healthy else 503)
