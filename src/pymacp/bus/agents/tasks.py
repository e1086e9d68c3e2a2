"""A dispatched task: its lifecycle, its events, and how it reads as JSON.

Lifecycle. Every status change is an event with the status as its type, numbered 1, 2, ...
per task (the SSE ``id``). ``streaming`` may repeat; the last three are terminal and end the
event stream::

    status       what moves a task into it                               may become
    queued       POST /dispatch accepted it; it waits for a slot          dispatched, error, cancelled
    dispatched   its session started; the TaskRequest was accepted        started, streaming, end
    started      the worker's TaskAccept                                  streaming, end
    streaming    a TaskUpdate, or a chunk (Progress) from the worker      streaming, end
    completed    TaskComplete, then the dispatcher's Commitment accepted  -
    error        TaskFail, TaskReject, a worker crash, expiry, a refusal  -
    cancelled    POST /dispatch/{id}/cancel, or the session was cancelled -

("end" is any of the three terminal statuses, except that ``dispatched`` cannot jump to
``completed``: a task is accepted before it is completed.)

A change the table does not allow is ignored (and logged): e.g. a late TaskUpdate after
the task was cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pymacp.kernel.jsonmap import format_timestamp

log = logging.getLogger("pymacp.agents")

QUEUED = "queued"
DISPATCHED = "dispatched"
STARTED = "started"
STREAMING = "streaming"
COMPLETED = "completed"
ERROR = "error"
CANCELLED = "cancelled"

_ENDS = frozenset({COMPLETED, ERROR, CANCELLED})
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({DISPATCHED, ERROR, CANCELLED}),
    DISPATCHED: frozenset({STARTED, STREAMING, ERROR, CANCELLED}),
    STARTED: frozenset({STREAMING}) | _ENDS,
    STREAMING: frozenset({STREAMING}) | _ENDS,
    COMPLETED: frozenset(),
    ERROR: frozenset(),
    CANCELLED: frozenset(),
}
TERMINAL = _ENDS


@dataclass(frozen=True, slots=True)
class Callback:
    url: str
    bearer: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        """The URL's host name or address (lower case, an IPv6 address without brackets)."""
        return urlsplit(self.url).hostname or ""


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What POST /dispatch asked for, resolved to a pool."""

    pool_id: str
    participant: str
    title: str
    instructions: str = ""
    input: bytes = b""
    ttl_ms: int = 600_000
    callback: Callback | None = None


@dataclass(frozen=True, slots=True)
class TaskEvent:
    seq: int
    type: str
    at_ms: int
    data: Mapping[str, Any]

    def to_json(self, task_id: str) -> dict[str, Any]:
        return {
            "id": self.seq,
            "type": self.type,
            "taskId": task_id,
            "at": format_timestamp(self.at_ms),
            **self.data,
        }


@dataclass(slots=True)
class Delivery:
    """The callback's delivery, as the dispatcher saw it."""

    status: str = "pending"  # pending, delivered, failed
    attempts: int = 0
    last_error: str | None = None
    scheduled: bool = False  # handed to the sender: never twice


def bytes_json(data: bytes, name: str) -> dict[str, Any]:
    """Bytes a worker produced: ``{name: <JSON value>}`` if they are JSON text, else ``{nameB64: ...}``."""
    if not data:
        return {}
    with contextlib.suppress(ValueError, RecursionError):
        return {name: json.loads(data)}
    return {f"{name}B64": base64.b64encode(data).decode("ascii")}


class Task:
    def __init__(self, task_id: str, session_id: str, spec: TaskSpec, now_ms: int) -> None:
        self.task_id = task_id
        self.session_id = session_id
        self.spec = spec
        self.created_ms = now_ms
        self.updated_ms = now_ms
        self.status = QUEUED
        self.events: list[TaskEvent] = []
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.delivery = Delivery() if spec.callback is not None else None
        self._changed = asyncio.Event()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def advance(self, status: str, data: Mapping[str, Any], now_ms: int) -> bool:
        """Move to ``status`` and record the event; False (nothing recorded) if the table forbids it."""
        if self.events and status not in TRANSITIONS[self.status]:
            log.info("task %s: ignoring %s after %s", self.task_id, status, self.status)
            return False
        self.status = status
        self.updated_ms = now_ms
        if status == ERROR:
            self.error = dict(data.get("error", {}))
        if status == COMPLETED:
            self.result = dict(data.get("result", {}))
        self.events.append(TaskEvent(len(self.events) + 1, status, now_ms, dict(data)))
        self._changed.set()
        self._changed = asyncio.Event()
        return True

    async def wait_for_event(self, after_seq: int, timeout: float) -> None:
        """Return once there is an event after ``after_seq``, or after ``timeout`` seconds."""
        if len(self.events) > after_seq:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def to_json(self, *, with_callback: bool = True) -> dict[str, Any]:
        document: dict[str, Any] = {
            "taskId": self.task_id,
            "sessionId": self.session_id,
            "pool": self.spec.pool_id,
            "agent": self.spec.participant,
            "status": self.status,
            "title": self.spec.title,
            "createdAt": format_timestamp(self.created_ms),
            "updatedAt": format_timestamp(self.updated_ms),
            "lastEventId": len(self.events),
            "result": self.result,
            "error": self.error,
        }
        if with_callback and self.spec.callback is not None and self.delivery is not None:
            document["callback"] = {
                "url": self.spec.callback.url,
                "status": self.delivery.status,
                "attempts": self.delivery.attempts,
                "lastError": self.delivery.last_error,
            }
        return document
