"""The web UI: static files shipped in the package, and the SSE ticket the browser needs.

There is no build step: ``ui/`` holds plain HTML, CSS and ES modules. Every UI response
carries a Content-Security-Policy that allows only this origin's own scripts and styles
and no inline script, so an agent's payload rendered in the timeline can never run code
(the UI also writes payloads with ``textContent`` only).
"""

from __future__ import annotations

import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import TICKET_COOKIE, TICKET_TTL_SECS, ApiKeys

UI_DIR = Path(__file__).resolve().parent / "ui"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
UI_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}


class _UiHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in UI_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def index(request: Request) -> Response:
    return FileResponse(UI_DIR / "index.html", headers=UI_HEADERS)


async def sse_ticket(request: Request) -> Response:
    """Trade the Authorization header for the HttpOnly cookie EventSource will carry."""
    response = Response(status_code=204)
    keys: ApiKeys = request.app.state.api_keys
    principal = request.scope.get("state", {}).get("principal")
    if keys.enabled and principal:
        response.set_cookie(
            TICKET_COOKIE,
            keys.issue_ticket(principal, time.time()),
            max_age=TICKET_TTL_SECS,
            path="/runs",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
    return response


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/auth/sse-ticket", sse_ticket, methods=["POST"]),
    Mount("/ui", app=_UiHeaders(StaticFiles(directory=UI_DIR)), name="ui"),
]
