"""Timers for sessions: TTL expiry, the suspension cap and handoff implicit accepts.

Each session's next deadline (from :meth:`Kernel.next_deadline`) sits in a heap; the
sweeper sleeps until the earliest one, asks the runtime to advance that session, and
re-arms. Stale heap entries are harmless: advancing a session with nothing due does
nothing. A periodic tick also runs maintenance (retention).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable

from .clock import Clock

log = logging.getLogger("pymacp.runtime")


class Sweeper:
    def __init__(
        self,
        due: Callable[[str], Awaitable[None]],
        clock: Clock,
        interval_secs: int,
        maintenance: Callable[[], Awaitable[None]],
    ) -> None:
        self._due = due
        self._clock = clock
        self._interval_ms = interval_secs * 1000
        self._maintenance = maintenance
        self._heap: list[tuple[int, str]] = []
        self._scheduled: dict[str, int] = {}
        self._wakeup = asyncio.Event()

    def schedule(self, session_id: str, at_ms: int) -> None:
        current = self._scheduled.get(session_id)
        if current is not None and current <= at_ms:
            return
        self._scheduled[session_id] = at_ms
        heapq.heappush(self._heap, (at_ms, session_id))
        if self._heap[0][1] == session_id:
            self._wakeup.set()

    async def run(self) -> None:
        next_maintenance = self._clock() + self._interval_ms
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                at, session_id = heapq.heappop(self._heap)
                if self._scheduled.get(session_id) == at:
                    del self._scheduled[session_id]
                    try:
                        await self._due(session_id)
                    except Exception:  # one session's trouble must not stop the timers
                        log.exception("timed transition of session %s failed", session_id)
            if now >= next_maintenance:
                try:
                    await self._maintenance()
                except Exception:
                    log.exception("maintenance failed")
                next_maintenance = now + self._interval_ms
            wake_at = min(next_maintenance, self._heap[0][0] if self._heap else next_maintenance)
            self._wakeup.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow an outside
            # cancellation that races with the event being set, and stop() would hang.
            try:
                async with asyncio.timeout(max(0, wake_at - self._clock()) / 1000):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
