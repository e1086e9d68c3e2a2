"""The console's ASGI application: routes, the gate, error handling, in one factory.

The app holds no state of its own beyond the rate-limit buckets and metrics; everything
about runs lives behind the backend (the core), so any number of apps can share one core.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import health, routes_runs, routes_ui, sse
from .auth import ApiKeys
from .backend import Backend
from .errors import EXCEPTION_HANDLERS, error_response
from .guard import Guard
from .openapi import document
from .ratelimit import RateLimiter
from .settings import ConsoleSettings
from .store.base import StoreError
from .web_metrics import RequestCounter, WebMetrics


async def store_error(request: Request, exc: Exception) -> Response:
    # The database went away mid-request: a retryable condition, not a console bug.
    return error_response(503, "STORE_UNAVAILABLE", f"the console's database is unavailable: {exc}")


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document())


def routes() -> list[BaseRoute]:
    # The SSE routes come first: "/runs/stream" must not be read as the run id "stream".
    return [
        *sse.ROUTES,
        *routes_runs.ROUTES,
        *health.ROUTES,
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *routes_ui.ROUTES,
    ]


def create_app(core: Backend, settings: ConsoleSettings) -> Starlette:
    keys = ApiKeys(settings.api_keys)
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    metrics = WebMetrics()
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(RequestCounter, metrics=metrics),
            Middleware(Guard, keys=keys, limiter=limiter),
        ],
        exception_handlers={**EXCEPTION_HANDLERS, StoreError: store_error},
    )
    app.state.core = core
    app.state.settings = settings
    app.state.api_keys = keys
    app.state.web_metrics = metrics
    # Set when the server begins to stop, so open SSE streams end instead of holding it up.
    app.state.stopping = asyncio.Event()
    return app
