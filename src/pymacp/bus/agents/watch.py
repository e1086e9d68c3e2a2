"""The service's two watch streams, each opened once and fanned out to its listeners.

- **Sessions** (WatchSessions): the runtime opens it with one CREATED event per session it
  knows (terminal ones included, each carrying its real state), then pushes lifecycle
  transitions. Listeners judge a session by ``metadata.state``, never by the event type
  alone, so the initial sync that follows every reconnect is harmless and an end that
  happened while the stream was down is noticed on reconnect.
- **Progress** (WatchSignals): the runtime keeps Progress envelopes out of session history
  and broadcasts them with the Signals, so this is the only place where one participant's
  session-scoped Progress reaches the others. It has no replay: what is broadcast while
  the stream is down is gone.

Both reconnect with backoff, forever; a listener that raises is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Generic, TypeVar

from macp.v1 import core_pb2, envelope_pb2

from pymacp.kernel.envelope import PROGRESS, Envelope

from .client import AgentClient, CallError

log = logging.getLogger("pymacp.agents")

T = TypeVar("T")
RETRY_BASE_S = 0.1
RETRY_MAX_S = 5.0
TERMINAL_STATES = frozenset(
    {
        envelope_pb2.SESSION_STATE_RESOLVED,
        envelope_pb2.SESSION_STATE_EXPIRED,
        envelope_pb2.SESSION_STATE_CANCELLED,
    }
)


def is_terminal(state: int) -> bool:
    return state in TERMINAL_STATES


def state_name(state: int) -> str:
    """``SESSION_STATE_RESOLVED`` and so on: the canonical JSON name of a session state."""
    try:
        return str(envelope_pb2.SessionState.Name(state))
    except ValueError:
        return f"SESSION_STATE_{state}"


class _Watch(Generic[T]):
    def __init__(self, name: str, listeners: Sequence[Callable[[T], None]]) -> None:
        self._name = name
        self._listeners = listeners
        self._task: asyncio.Task[None] | None = None

    def _items(self) -> AsyncIterator[T]:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name=f"agents-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        delay = RETRY_BASE_S
        while True:
            try:
                async for item in self._items():
                    delay = RETRY_BASE_S
                    self._publish(item)
            except CallError as error:
                level = logging.ERROR if error.status == "UNAUTHENTICATED" else logging.INFO
                log.log(level, "%s failed (%s); reconnecting", self._name, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _publish(self, item: T) -> None:
        for listener in self._listeners:
            try:
                listener(item)
            except Exception:  # one listener's bug must not blind the others
                log.exception("a %s listener failed", self._name)


class SessionWatch(_Watch[core_pb2.SessionMetadata]):
    def __init__(
        self, client: AgentClient, listeners: Sequence[Callable[[core_pb2.SessionMetadata], None]]
    ) -> None:
        super().__init__("WatchSessions", listeners)
        self._client = client

    async def _items(self) -> AsyncIterator[core_pb2.SessionMetadata]:
        async for event in self._client.watch_sessions():
            yield event.session


class ProgressWatch(_Watch[Envelope]):
    """Session-scoped Progress envelopes from WatchSignals (Signals proper are skipped)."""

    def __init__(self, client: AgentClient, listeners: Sequence[Callable[[Envelope], None]]) -> None:
        super().__init__("WatchSignals", listeners)
        self._client = client

    async def _items(self) -> AsyncIterator[Envelope]:
        async for envelope in self._client.watch_signals():
            if envelope.message_type == PROGRESS and envelope.session_id:
                yield Envelope.from_proto(envelope)
