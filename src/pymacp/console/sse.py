"""Server-sent event streams: one run's events live, and the live list of runs.

A run stream follows the one order that can neither lose nor repeat an event:

1. open the run's change feed *before* reading anything, so a change made while the
   stream is being set up still wakes it;
2. ``snapshot`` (the run and its projection; skip with ``includeSnapshot=false``);
3. every stored event after the resume point (``Last-Event-ID``, else ``afterSeq``), in
   pages, each as ``event`` with ``id: <seq>``, the same JSON as ``GET /runs/{id}/events``;
4. then wait on the feed: on a wake-up, send the events stored since the last one sent
   (and ``run`` when the run's status, session state, participants or error changed);
   after ``heartbeatMs`` of silence send ``heartbeat``;
5. once the run is terminal and all of its events are out, send ``end`` and close. A
   reconnect to a finished run therefore gets what it missed, then ``end``.

The seq of the last event sent is the only cursor, so a browser's automatic reconnect
(which sends ``Last-Event-ID``) resumes exactly where it stopped, across console restarts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .backend import Feed
from .models import RUN_SOURCES, RUN_STATUSES, Run
from .params import bool_param, check_query, choice_param, int_param, parse_int, text_param
from .routes_runs import MAX_PAGE, backend, find_run

EVENT_PAGE = 500
RECONNECT_MS = 2000
EARLY_WAKE_SECS = 0.05  # slack for timers that fire a hair early
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def frame(event: str, data: Mapping[str, Any], event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), allow_nan=False))
    return ("\n".join(lines) + "\n\n").encode()


def _now_ms() -> int:
    return int(time.time() * 1000)


async def wait_for_change(feed: Feed, timeout: float, stopping: asyncio.Event) -> bool:
    """The feed's answer, or False at once when the server starts shutting down."""
    if stopping.is_set():
        return False
    change = asyncio.ensure_future(feed.wait(timeout))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({change, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not change.done():
            change.cancel()
    return change.done() and not change.cancelled() and change.result()


class _Idle:
    """When the next heartbeat is due: heartbeatMs after the last frame of any kind."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.due = time.monotonic() + interval

    def reset(self) -> None:
        self.due = time.monotonic() + self.interval

    def remaining(self) -> float:
        return max(self.due - time.monotonic(), 0.0)


def _facts(run: Run) -> tuple[object, ...]:
    """What a ``run`` frame announces; counters that move with every event do not count,
    since the events themselves already say so."""
    return (run.status, run.session_state, run.ended_at_ms, run.error, run.participants, run.mode_name)


def _feed_closed(changed: bool, idle: _Idle) -> bool:
    """A feed that answers "no change" well before its timeout has been closed: the core is
    stopping, so the stream ends (the client reconnects) instead of spinning."""
    return not changed and idle.remaining() > EARLY_WAKE_SECS


def _resume_point(request: Request) -> int:
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        # A browser sends back the last id we sent, so it beats a (stale) afterSeq in the URL.
        return parse_int("Last-Event-ID", header, 0, 2**53)
    return int_param(request, "afterSeq", 0, 0, 2**53)


def _heartbeat_secs(request: Request) -> float:
    default: int = request.app.state.settings.heartbeat_ms
    return int_param(request, "heartbeatMs", default, 1000, 300_000) / 1000.0


async def run_stream(request: Request) -> Response:
    check_query(request, ("afterSeq", "includeSnapshot", "heartbeatMs"))
    after_seq = _resume_point(request)
    snapshot = bool_param(request, "includeSnapshot", True)
    heartbeat = _heartbeat_secs(request)
    run = await find_run(request)
    if request.method == "HEAD":  # a stream that would never end has no place in a HEAD answer
        return Response(media_type="text/event-stream", headers=SSE_HEADERS)
    body = _run_frames(request, run.run_id, after_seq, snapshot, heartbeat)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def _run_frames(
    request: Request, run_id: str, after_seq: int, snapshot: bool, heartbeat: float
) -> AsyncIterator[bytes]:
    core = backend(request)
    # Opened inside the generator (so it is always closed) and before the first read.
    feed = core.changes(run_id)
    stopping: asyncio.Event = request.app.state.stopping
    gauge = request.app.state.web_metrics.sse_streams
    gauge.inc()
    try:
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        run = await core.get_run(run_id)
        if run is None:
            return
        if snapshot:
            view = await core.view(run_id)
            yield frame("snapshot", {"run": run.to_json(), "view": dict(view) if view is not None else {}})
        sent_run = _facts(run)
        last_seq = after_seq
        idle = _Idle(heartbeat)
        while True:
            # The run is read before its events, so when it is terminal every event it
            # counts (seq <= last_seq) is already stored and is drained below.
            while True:
                events = await core.events(run_id, after_seq=last_seq, limit=EVENT_PAGE)
                for event in events:
                    yield frame("event", event.to_json(), event.seq)
                    last_seq = event.seq
                    idle.reset()
                if len(events) < EVENT_PAGE:
                    break
            if _facts(run) != sent_run:
                yield frame("run", run.to_json())
                sent_run = _facts(run)
                idle.reset()
            if run.terminal and last_seq >= run.last_seq:
                yield frame("end", {"run": run.to_json()})
                return
            changed = await wait_for_change(feed, idle.remaining(), stopping)
            if stopping.is_set() or _feed_closed(changed, idle):
                return
            if not changed:
                yield frame("heartbeat", {"ts": _now_ms()})
                idle.reset()
            refreshed = await core.get_run(run_id)
            if refreshed is None:
                return
            run = refreshed
    finally:
        feed.close()
        gauge.dec()


_LIST_FILTERS = ("status", "mode", "source", "limit", "heartbeatMs")


async def runs_stream(request: Request) -> Response:
    """The live run list: a ``runs`` frame (same JSON as ``GET /runs``) whenever it changes."""
    check_query(request, _LIST_FILTERS)
    filters = {
        "status": choice_param(request, "status", RUN_STATUSES),
        "mode": text_param(request, "mode"),
        "source": choice_param(request, "source", RUN_SOURCES),
        "limit": int_param(request, "limit", 50, 1, MAX_PAGE),
    }
    heartbeat = _heartbeat_secs(request)
    if request.method == "HEAD":
        return Response(media_type="text/event-stream", headers=SSE_HEADERS)
    return StreamingResponse(
        _list_frames(request, filters, heartbeat), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _list_frames(
    request: Request, filters: Mapping[str, Any], heartbeat: float
) -> AsyncIterator[bytes]:
    core = backend(request)
    feed = core.changes(None)
    stopping: asyncio.Event = request.app.state.stopping
    gauge = request.app.state.web_metrics.sse_streams
    gauge.inc()
    try:
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        sent: dict[str, Any] | None = None
        idle = _Idle(heartbeat)
        while True:
            page = await core.list_runs(**filters)
            current = {"data": [run.to_json() for run in page.runs], "nextCursor": page.next_cursor}
            if current != sent:
                yield frame("runs", current)
                sent = current
                idle.reset()
            changed = await wait_for_change(feed, idle.remaining(), stopping)
            if stopping.is_set() or _feed_closed(changed, idle):
                return
            if not changed:
                yield frame("heartbeat", {"ts": _now_ms()})
                idle.reset()
    finally:
        feed.close()
        gauge.dec()


ROUTES = [
    # Before /runs/{run_id}: "stream" must never be taken for a run id.
    Route("/runs/stream", runs_stream, methods=["GET"]),
    Route("/runs/{run_id}/stream", run_stream, methods=["GET"]),
]
