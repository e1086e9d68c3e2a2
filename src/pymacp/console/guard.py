"""The gate every HTTP request passes: rate limit, authentication, baseline headers.

Order matters. The rate limit comes first and is keyed by the caller's key when the key
is valid, by address otherwise, so key guessing is throttled per address. Probes
(``/healthz``, ``/readyz``) and ``/metrics`` skip both checks: orchestrators and
Prometheus scrape them without credentials, and none of them reveals run data. The UI's
static files and ``/openapi.json`` need no key either (the page asks for one), but are
rate limited.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import TICKET_COOKIE, ApiKeys
from .errors import error_response
from .ratelimit import RateLimiter, retry_after_header

UNGUARDED = frozenset({"/healthz", "/readyz", "/metrics"})
# Reachable without a key: the UI shell and its assets, and the API description.
PUBLIC_PREFIXES = ("/ui/",)
PUBLIC_PATHS = frozenset({"/", "/openapi.json", "/favicon.ico"})
BASE_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: ApiKeys,
        limiter: RateLimiter,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.clock = clock
        self.wall_clock = wall_clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        send = _with_base_headers(send)
        if path in UNGUARDED:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        principal = None
        problem: str | None = None
        if self.keys.enabled:
            cookie = cookie_parser(headers.get("cookie", "")).get(TICKET_COOKIE)
            found = self.keys.identify(
                scope["method"], path, headers.get("authorization"), cookie, self.wall_clock()
            )
            principal, problem = found.id, found.problem
        client = scope.get("client")
        bucket = principal or f"addr:{client[0] if client else 'unknown'}"
        wait = self.limiter.take(bucket, self.clock())
        if wait > 0:
            response = error_response(
                429,
                "RATE_LIMITED",
                f"too many requests; retry in {retry_after_header(wait)} s "
                "(limits: PYMACP_CONSOLE_RATE_LIMIT / PYMACP_CONSOLE_RATE_BURST)",
                headers={"Retry-After": retry_after_header(wait)},
            )
            await response(scope, receive, send)
            return
        if self.keys.enabled and principal is None and not is_public(path):
            await _unauthenticated(problem)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _unauthenticated(problem: str | None) -> ASGIApp:
    if problem is None:
        message = "this endpoint needs an API key: send 'Authorization: Bearer <key>'"
        challenge = 'Bearer realm="pymacp-console"'
    else:
        message = problem
        challenge = 'Bearer realm="pymacp-console", error="invalid_token"'
    return error_response(401, "UNAUTHENTICATED", message, headers={"WWW-Authenticate": challenge})


def _with_base_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(name, value) for name, value in BASE_HEADERS if name not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
