"""Per-sender sliding-window rate limits (SessionStart and other envelopes)."""

from __future__ import annotations

from collections import deque

WINDOW_MS = 60_000


class RateLimiter:
    """At most ``limit`` events per sender in any 60-second window."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._events: dict[str, deque[int]] = {}
        self._calls = 0

    def allow(self, sender: str, now_ms: int) -> bool:
        self._calls += 1
        if self._calls % 128 == 0:
            self._sweep(now_ms)
        events = self._events.setdefault(sender, deque())
        while events and events[0] <= now_ms - WINDOW_MS:
            events.popleft()
        if len(events) >= self._limit:
            return False
        events.append(now_ms)
        return True

    def _sweep(self, now_ms: int) -> None:
        idle = [s for s, e in self._events.items() if not e or e[-1] <= now_ms - WINDOW_MS]
        for sender in idle:
            del self._events[sender]
