"""Error bodies and the exception handlers that produce them.

Route-level errors keep the legacy ``{"success": false, "error": text}`` body; framework-level
ones add ``message``. Unlike the legacy service, status codes mean what they say (405 for a
wrong method, 400/422 for bad input) and raw exception texts never reach the client.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from facade.responses import LegacyJSONResponse

log = logging.getLogger("topup.facade")

# Prefect answers these when it is overloaded or restarting (SQLite busy, say): the request
# may be repeated, so the client gets 503 and a hint when to retry, not a 500.
UPSTREAM_BUSY = {429, 502, 503, 504}
RETRY_AFTER_S = "2"

NOT_FOUND_MESSAGE = (
    "The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again."
)


class ApiError(Exception):
    """An error a route reports to the client: status code, text, optional extra keys."""

    def __init__(
        self, status_code: int, error: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.headers = headers
        self.extra = extra


def bad_request(error: str, **extra: Any) -> ApiError:
    return ApiError(400, error, **extra)


def not_found(error: str = "Task not found", **extra: Any) -> ApiError:
    return ApiError(404, error, **extra)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "parameters", "max_wait_minutes") -> "parameters.max_wait_minutes"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation(errors: list[dict[str, Any]]) -> tuple[int, str]:
    """Status and one clear sentence naming the first offending field."""
    first = errors[0] if errors else {"type": "value_error", "loc": ("body",), "msg": "invalid"}
    kind = first.get("type", "")
    loc = tuple(first.get("loc", ()))
    field = _field_name(loc)
    if kind == "json_invalid":
        return 400, "Malformed JSON body: " + str(first.get("ctx", {}).get("error", "invalid JSON"))
    if kind == "missing" and field == "body":
        return 400, "Request body is required (a JSON object)"
    if kind == "missing":
        where = "query parameter" if loc and loc[0] == "query" else "field"
        return 400, f"Missing required {where}: {field}"
    if field == "body":
        return 400, "Request body must be a JSON object"
    return 422, f"Invalid value for {field}: {first.get('msg', 'invalid')}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> LegacyJSONResponse:
        return LegacyJSONResponse(
            {"success": False, "error": exc.error, **exc.extra},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> LegacyJSONResponse:
        errors = list(exc.errors())
        status, text = describe_validation(errors)
        details = [
            {"field": _field_name(e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in errors
        ]
        return LegacyJSONResponse(
            {"success": False, "error": text, "details": details}, status_code=status
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> LegacyJSONResponse:
        if exc.status_code == 404:
            body = {"success": False, "error": "Not Found", "message": NOT_FOUND_MESSAGE}
        elif exc.status_code == 405:
            body = {
                "success": False,
                "error": "Method Not Allowed",
                "message": "The method is not allowed for the requested URL.",
            }
        else:
            body = {"success": False, "error": str(exc.detail), "message": str(exc.detail)}
        return LegacyJSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(httpx.HTTPStatusError)
    async def _prefect_status(request: Request, exc: httpx.HTTPStatusError) -> LegacyJSONResponse:
        upstream = exc.response.status_code
        if upstream in UPSTREAM_BUSY:
            log.warning("Prefect answered %s on %s %s", upstream, request.method, request.url.path)
            return _unavailable(f"The Prefect API is busy (HTTP {upstream}); retry shortly")
        log.error("Prefect answered %s on %s %s", upstream, request.method, request.url.path)
        return LegacyJSONResponse(
            {"success": False, "error": f"The Prefect API failed the request (HTTP {upstream})"},
            status_code=502,
        )

    @app.exception_handler(httpx.TransportError)
    async def _prefect_unreachable(
        request: Request, exc: httpx.TransportError
    ) -> LegacyJSONResponse:
        log.warning("Prefect unreachable on %s %s: %r", request.method, request.url.path, exc)
        return _unavailable("The Prefect API is unreachable; retry shortly")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> LegacyJSONResponse:
        # Logged with the traceback for operators; the client gets no internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return LegacyJSONResponse(
            {
                "success": False,
                "error": "Internal Server Error",
                "message": "An unexpected error occurred; see the server log.",
            },
            status_code=500,
        )


def _unavailable(error: str) -> LegacyJSONResponse:
    return LegacyJSONResponse(
        {"success": False, "error": error}, status_code=503, headers={"Retry-After": RETRY_AFTER_S}
    )
