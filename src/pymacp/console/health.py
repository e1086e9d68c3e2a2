"""Probes and metrics. Unlike the reference control plane, a probe that is not OK says so
with its status code: ``/readyz`` is 503 while the runtime or the store is unreachable, so
an orchestrator stops routing to a console that cannot observe anything.

``/healthz`` is liveness: the process answers HTTP. It stays 200 while the runtime is
down, because restarting the console would not bring the runtime back.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .routes_runs import backend


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True, "service": "pymacp-console"})


async def readyz(request: Request) -> Response:
    core = backend(request)
    runtime, store = core.runtime_ready, core.store_ready
    ready = runtime and store and not request.app.state.stopping.is_set()
    body = {
        "ok": ready,
        "runtime": "ok" if runtime else "unreachable",
        "store": "ok" if store else "unavailable",
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    parts = [generate_latest(request.app.state.web_metrics.registry)]
    core_registry = backend(request).metrics_registry()
    if core_registry is not None:
        parts.append(generate_latest(core_registry))
    return Response(b"".join(parts), media_type=CONTENT_TYPE_LATEST)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
