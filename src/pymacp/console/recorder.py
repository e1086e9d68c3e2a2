"""The one write path: store a batch, then tell the change feeds and drop stale views."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .events import NewEvent
from .feed import FeedHub
from .metrics import ConsoleMetrics
from .models import Run, RunEvent
from .store import Appended, RunChanges, SqlStore


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Recorder:
    def __init__(
        self,
        store: SqlStore,
        hub: FeedHub,
        metrics: ConsoleMetrics,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.clock = clock

    async def append(
        self, run_id: str, events: Sequence[NewEvent] = (), changes: RunChanges | None = None
    ) -> Appended:
        appended = await self.store.append(run_id, events, changes, self.clock())
        if appended.changed:
            self.metrics.events_stored(appended.events)
            self.hub.publish(run_id)
        return appended

    async def run(self, run_id: str) -> Run | None:
        return await self.store.get_run(run_id)

    async def events(self, run_id: str, after_seq: int = 0, limit: int = 500) -> list[RunEvent]:
        return await self.store.events(run_id, after_seq, limit)
