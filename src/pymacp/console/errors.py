"""One JSON error shape for every failure the console's HTTP API reports.

``{"statusCode": 404, "errorCode": "RUN_NOT_FOUND", "message": "...", "details": [...]}``:
handlers raise :class:`ApiError`; Starlette's own 404/405 and anything unexpected are
converted by the handlers below, so no response ever carries a framework-specific body or a
stack trace. ``details`` appears only when there is something specific to point at.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("pymacp.console")

_DEFAULT_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    410: "ENDPOINT_REMOVED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "RUNTIME_UNAVAILABLE",
}


class ApiError(Exception):
    """Raised by a handler; rendered as the JSON error body with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_body(
    status: int, code: str, message: str, details: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"statusCode": status, "errorCode": code, "message": message}
    if details:
        body["details"] = [dict(item) for item in details]
    return body


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, details), status_code=status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"no such endpoint: {request.method} {request.url.path}; the API is described at /openapi.json"
        )
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}"
    else:
        message = str(exc.detail)
    code = _DEFAULT_CODES.get(exc.status_code, "HTTP_ERROR")
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    # The log has the traceback; the client gets no internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "INTERNAL_ERROR", "the console hit an unexpected error; see its log")


EXCEPTION_HANDLERS: Mapping[Any, Any] = {
    ApiError: api_error_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
