"""The dispatch HTTP API (Starlette).

=====================================  ====================================================
``POST /dispatch``                     queue a task; 202 ``{taskId, sessionId, status, links}``
``GET /dispatch/{taskId}``             the task: status, result or error, callback delivery
``GET /dispatch/{taskId}/events``      its lifecycle as server-sent events (resumable)
``POST /dispatch/{taskId}/cancel``     cancel it (``{"reason": ...}`` optional)
``GET /pools``                         each pool: agent, workers, cap, running, queued
``GET /healthz``, ``GET /readyz``      liveness; readiness (runtime reachable, workers up)
=====================================  ====================================================

Every error is ``{"statusCode", "errorCode", "message"}`` (the console's shape). With API
keys configured, every route but the two probes needs ``Authorization: Bearer <key>``.

SSE: each event is ``event: <type>``, ``id: <n>``, ``data: <JSON>`` with the same JSON as
the task's events; after the terminal event (completed, error, cancelled) the stream ends.
A reconnect with ``Last-Event-ID: n`` (or ``?after=n``) gets only the events after ``n``.
An idle stream gets a ``: keepalive`` comment every ``heartbeatMs`` (default 15000).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pymacp.console.auth import ApiKeys, bearer_token
from pymacp.console.errors import ApiError, api_error_handler, error_response

from .dispatch import Dispatcher, DispatchError
from .submission import Invalid, parse_submission
from .tasks import Task, TaskEvent

log = logging.getLogger("pymacp.agents")

MAX_BODY_BYTES = 2 * 2**20
RECONNECT_MS = 2000
DEFAULT_HEARTBEAT_MS = 15_000
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


def _task(request: Request) -> Task:
    task_id = request.path_params["task_id"]
    task = _dispatcher(request).get(task_id)
    if task is None:
        raise ApiError(404, "TASK_NOT_FOUND", f"no task {task_id!r} (tasks are kept in memory only)")
    return task


async def _json_body(request: Request, required: bool) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the body must be at most {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the body must be at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        if required:
            raise ApiError(400, "BAD_REQUEST", "the body must be a JSON object")
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "BAD_REQUEST", f"the body is not valid JSON: {exc}") from None


# ---------------------------------------------------------------------- routes
async def dispatch(request: Request) -> Response:
    try:
        submission = parse_submission(await _json_body(request, required=True))
    except Invalid as exc:
        raise ApiError(400, "INVALID_FIELD", str(exc)) from None
    task = _dispatcher(request).submit(submission)
    links = {"self": f"/dispatch/{task.task_id}", "events": f"/dispatch/{task.task_id}/events"}
    body = {"taskId": task.task_id, "sessionId": task.session_id, "status": task.status, "links": links}
    return JSONResponse(body, status_code=202, headers={"Location": links["self"]})


async def get_task(request: Request) -> Response:
    return JSONResponse(_task(request).to_json())


async def cancel_task(request: Request) -> Response:
    task = _task(request)
    body = await _json_body(request, required=False)
    reason = "cancelled through the dispatch API"
    if body is not None:
        given = body.get("reason") if isinstance(body, dict) else None
        if (
            not isinstance(body, dict)
            or set(body) - {"reason"}
            or not isinstance(given, str)
            or not given.strip()
        ):
            raise ApiError(400, "INVALID_FIELD", 'reason: the body, if any, must be {"reason": "<text>"}')
        reason = given
    task = await _dispatcher(request).cancel(task.task_id, reason)
    return JSONResponse(task.to_json(), status_code=200 if task.terminal else 202)


async def pools(request: Request) -> Response:
    return JSONResponse({"pools": _dispatcher(request).pools()})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True, "service": "pymacp-agents"})


async def readyz(request: Request) -> Response:
    runtime_ready: Callable[[], bool] = request.app.state.runtime_ready
    rows = _dispatcher(request).pools()
    runtime = runtime_ready()
    workers_up = all(row["workers"] > 0 for row in rows)
    ready = runtime and workers_up and not request.app.state.stopping.is_set()
    body = {
        "ok": ready,
        "runtime": "ok" if runtime else "unreachable",
        "pools": {row["id"]: {"workers": row["workers"], "failed": row["failed"]} for row in rows},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


# ---------------------------------------------------------------------- SSE
def frame(event: TaskEvent, task_id: str) -> bytes:
    data = json.dumps(event.to_json(task_id), separators=(",", ":"), allow_nan=False)
    return f"event: {event.type}\nid: {event.seq}\ndata: {data}\n\n".encode()


def _resume_point(request: Request) -> int:
    header = request.headers.get("last-event-id")
    raw, name = (
        (header, "Last-Event-ID")
        if header and header.strip()
        else (request.query_params.get("after"), "after")
    )
    if raw is None:
        return 0
    if not raw.strip().isdigit():
        raise ApiError(
            400, "INVALID_FIELD", f"{name} must be an event id (a non-negative integer), not {raw!r}"
        )
    return int(raw)


def _heartbeat(request: Request) -> float:
    raw = request.query_params.get("heartbeatMs")
    if raw is None:
        return DEFAULT_HEARTBEAT_MS / 1000
    if not raw.isdigit() or not 1000 <= int(raw) <= 300_000:
        raise ApiError(400, "INVALID_FIELD", "heartbeatMs must be an integer between 1000 and 300000")
    return int(raw) / 1000


async def events(request: Request) -> Response:
    task = _task(request)
    after = _resume_point(request)
    body = _frames(task, after, _heartbeat(request), request.app.state.stopping)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def _frames(task: Task, after: int, heartbeat: float, stopping: asyncio.Event) -> AsyncIterator[bytes]:
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    sent = after
    while True:
        for event in task.events[sent:]:
            yield frame(event, task.task_id)
            sent = event.seq
        if (task.terminal and sent >= len(task.events)) or stopping.is_set():
            return
        waiter = asyncio.ensure_future(task.wait_for_event(sent, heartbeat))
        stop = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        waiter.cancel()
        if len(task.events) <= sent and not stopping.is_set():
            yield b": keepalive\n\n"


# ---------------------------------------------------------------------- errors and auth
async def _dispatch_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DispatchError)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return error_response(exc.status, exc.code, exc.message, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(404, "NOT_FOUND", f"no such endpoint: {request.method} {request.url.path}")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "another method")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        return error_response(405, "METHOD_NOT_ALLOWED", message, headers=exc.headers)
    return error_response(exc.status_code, "HTTP_ERROR", str(exc.detail))


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The log has the traceback; the client gets no internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "INTERNAL_ERROR", "pymacp agents hit an unexpected error; see its log")


class RequireApiKey:
    """Every route but the probes needs a configured API key (when any is configured)."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys.enabled or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = bearer_token(Headers(scope=scope).get("authorization"))
        if token is None or self.keys.match(token) is None:
            message = (
                "send 'Authorization: Bearer <API key>'" if token is None else "the API key is not valid"
            )
            response = error_response(401, "UNAUTHENTICATED", message, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


ROUTES = [
    Route("/dispatch", dispatch, methods=["POST"]),
    Route("/dispatch/{task_id}", get_task, methods=["GET"]),
    Route("/dispatch/{task_id}/events", events, methods=["GET"]),
    Route("/dispatch/{task_id}/cancel", cancel_task, methods=["POST"]),
    Route("/pools", pools, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]


def create_app(dispatcher: Dispatcher, keys: ApiKeys, runtime_ready: Callable[[], bool]) -> Starlette:
    app = Starlette(
        routes=ROUTES,
        exception_handlers={
            ApiError: api_error_handler,
            DispatchError: _dispatch_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.dispatcher = dispatcher
    app.state.runtime_ready = runtime_ready
    app.state.stopping = asyncio.Event()
    app.add_middleware(RequireApiKey, keys=keys)
    return app
