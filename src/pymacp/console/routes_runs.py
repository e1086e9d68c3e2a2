"""The runs API: submit, list, read, page through events, cancel; removed write paths answer 410.

The console is an observer. It records what agents do at the runtime and never sends on
their behalf, which is why ``/messages``, ``/signal`` and ``/context`` are gone for good.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .backend import Backend
from .descriptor import DescriptorError, parse_descriptor
from .errors import ApiError
from .models import RUN_SOURCES, RUN_STATUSES, Run
from .params import check_query, choice_param, int_param, json_body, text_param
from .service import CancelRefused, RunConflict

MAX_PAGE = 200
MAX_EVENTS_PAGE = 1000
MAX_RUN_ID_CHARS = 128
MAX_REASON_CHARS = 1024


def backend(request: Request) -> Backend:
    core: Backend = request.app.state.core
    return core


async def find_run(request: Request) -> Run:
    run_id: str = request.path_params["run_id"]
    run = None if len(run_id) > MAX_RUN_ID_CHARS else await backend(request).get_run(run_id)
    if run is None:
        raise ApiError(404, "RUN_NOT_FOUND", f"no run with id {run_id[:MAX_RUN_ID_CHARS]!r}")
    return run


async def submit_run(request: Request) -> Response:
    check_query(request, ())
    document = await json_body(request)
    try:
        descriptor = parse_descriptor(document)
    except DescriptorError as exc:
        details = [{"path": path, "message": message} for path, message in exc.errors]
        raise ApiError(400, "VALIDATION_ERROR", str(exc), details) from None
    except RecursionError:
        raise ApiError(400, "VALIDATION_ERROR", "the descriptor nests too deeply") from None
    try:
        run, created = await backend(request).submit(descriptor)
    except RunConflict as exc:
        raise ApiError(
            exc.http_status, exc.code, str(exc), [{"path": "session.sessionId", "message": str(exc)}]
        ) from None
    body = {"runId": run.run_id, "sessionId": run.session_id, "status": run.status, "created": created}
    # 202: accepted for observation; 200: an idempotency key matched, this is the stored run.
    return JSONResponse(
        body, status_code=202 if created else 200, headers={"Location": f"/runs/{run.run_id}"}
    )


async def list_runs(request: Request) -> Response:
    check_query(request, ("status", "mode", "source", "sessionId", "cursor", "limit"))
    try:
        page = await backend(request).list_runs(
            status=choice_param(request, "status", RUN_STATUSES),
            mode=text_param(request, "mode"),
            source=choice_param(request, "source", RUN_SOURCES),
            session_id=text_param(request, "sessionId"),
            cursor=text_param(request, "cursor", limit=1024),
            limit=int_param(request, "limit", 50, 1, MAX_PAGE),
        )
    except ValueError as exc:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"cursor: {exc}; pass back the nextCursor of a previous page, unchanged",
            [{"path": "cursor", "message": str(exc)}],
        ) from None
    return JSONResponse({"data": [run.to_json() for run in page.runs], "nextCursor": page.next_cursor})


async def get_run(request: Request) -> Response:
    check_query(request, ())
    return JSONResponse((await find_run(request)).to_json())


async def get_view(request: Request) -> Response:
    check_query(request, ())
    run = await find_run(request)
    view = await backend(request).view(run.run_id)
    return JSONResponse({"runId": run.run_id, "view": dict(view) if view is not None else {}})


async def list_events(request: Request) -> Response:
    check_query(request, ("afterSeq", "limit"))
    after_seq = int_param(request, "afterSeq", 0, 0, 2**53)
    limit = int_param(request, "limit", 200, 1, MAX_EVENTS_PAGE)
    run = await find_run(request)
    # One extra row tells whether another page exists without a second query.
    events = await backend(request).events(run.run_id, after_seq=after_seq, limit=limit + 1)
    page, more = events[:limit], len(events) > limit
    return JSONResponse(
        {
            "data": [event.to_json() for event in page],
            "nextAfterSeq": page[-1].seq if page else after_seq,
            "hasMore": more,
        }
    )


async def cancel_run(request: Request) -> Response:
    check_query(request, ())
    run = await find_run(request)
    body = await json_body(request, optional=True)
    reason = _reason(body)
    try:
        cancelled = await backend(request).cancel(run.run_id, reason)
    except CancelRefused as exc:
        raise ApiError(exc.http_status, exc.code, str(exc)) from None
    return JSONResponse(cancelled.to_json())


def _reason(body: Any) -> str | None:
    if body is None:
        return None
    if not isinstance(body, dict):
        raise ApiError(400, "VALIDATION_ERROR", 'the body must be a JSON object like {"reason": "..."}')
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"unknown field(s) {', '.join(unknown)}; the only field is reason",
            [{"path": name, "message": "unknown field"} for name in unknown],
        )
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"reason: must be a string of at most {MAX_REASON_CHARS} characters",
            [{"path": "reason", "message": "must be a string"}],
        )
    return reason


async def runs(request: Request) -> Response:
    # One route for both methods, so a 405 on /runs lists both in Allow.
    return await (submit_run(request) if request.method == "POST" else list_runs(request))


async def removed(request: Request) -> Response:
    action = request.url.path.rsplit("/", 1)[-1]
    raise ApiError(
        410,
        "ENDPOINT_REMOVED",
        f"POST /runs/{{id}}/{action} is gone: the console only observes. Agents send envelopes "
        "to the runtime themselves with their own identity (for example with macp-sdk-python).",
    )


ROUTES = [
    Route("/runs", runs, methods=["GET", "POST"]),
    Route("/runs/{run_id}", get_run, methods=["GET"]),
    Route("/runs/{run_id}/view", get_view, methods=["GET"]),
    Route("/runs/{run_id}/events", list_events, methods=["GET"]),
    Route("/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/runs/{run_id}/messages", removed, methods=["POST"]),
    Route("/runs/{run_id}/signal", removed, methods=["POST"]),
    Route("/runs/{run_id}/context", removed, methods=["POST"]),
]
