"""Prometheus metrics of the HTTP layer, in a registry of its own (one per app, so tests and
an embedded console never collide with the process-wide default registry).

Requests are labelled by route *template* (``/runs/{run_id}``), never by raw path, so run
ids cannot blow up the label set; unmatched paths count as ``unmatched``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pymacp_console_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.sse_streams = Gauge(
            "pymacp_console_sse_streams",
            "Server-sent event streams currently open.",
            registry=self.registry,
        )


class RequestCounter:
    """ASGI middleware: count each answered request once its status is known."""

    def __init__(self, app: ASGIApp, *, metrics: WebMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
