"""An in-memory stand-in for ConsoleCore, for fast tests of the HTTP layer.

It implements the same methods with the same contracts (gapless seqs, newest-first pages
with an opaque cursor, a level-triggered change feed), and lets a test play the observer:
add runs, append events, change a run's status.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pymacp.console.descriptor import RunDescriptor
from pymacp.console.models import Run, RunEvent, RunPage, RunStatus
from pymacp.console.service import CancelRefused


class FakeFeed:
    def __init__(self, owner: FakeCore, run_id: str | None) -> None:
        self.owner = owner
        self.run_id = run_id
        self.event = asyncio.Event()
        self.closed = False

    def notify(self) -> None:
        self.event.set()

    async def wait(self, timeout: float) -> bool:
        # Like the real feed: a closed feed answers False at once.
        if self.closed:
            return False
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        self.event.clear()
        return not self.closed

    def close(self) -> None:
        self.closed = True
        self.owner.feeds.discard(self)
        self.event.set()


class FakeCore:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.order: list[str] = []  # creation order
        self.log: dict[str, list[RunEvent]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.feeds: set[FakeFeed] = set()
        self.opened_feeds = 0
        self.runtime_ready = True
        self.store_ready = True
        self.cancel_refusal: CancelRefused | None = None
        self.cancelled: list[tuple[str, str | None]] = []

    # --- test controls ----------------------------------------------------------------------------

    def add_run(self, status: RunStatus = "running", **fields: Any) -> Run:
        now = int(time.time() * 1000)
        run = Run(
            run_id=str(uuid.uuid4()),
            session_id=str(uuid.uuid4()),
            status=status,
            source="discovered",
            mode_name="macp.mode.decision.v1",
            participants=("lead", "alice"),
            session_state="SESSION_STATE_OPEN",
            descriptor=None,
            idempotency_key=None,
            tags=(),
            created_at_ms=now,
            updated_at_ms=now,
            ended_at_ms=None,
            last_seq=0,
            last_ordinal=0,
            error=None,
        )
        run = replace(run, **fields)
        self.runs[run.run_id] = run
        self.order.append(run.run_id)
        self.log[run.run_id] = []
        self._notify(run.run_id)
        return run

    def append(self, run_id: str, type_: str = "message.received", **data: Any) -> RunEvent:
        run = self.runs[run_id]
        seq = run.last_seq + 1
        event = RunEvent(
            run_id=run_id,
            seq=seq,
            type=type_,
            ordinal=seq,
            message_id=str(uuid.uuid4()),
            message_type="Proposal",
            sender="lead",
            timestamp_ms=int(time.time() * 1000),
            data=data,
        )
        self.log[run_id].append(event)
        self.runs[run_id] = replace(run, last_seq=seq, last_ordinal=seq, updated_at_ms=event.timestamp_ms)
        self._notify(run_id)
        return event

    def set_status(self, run_id: str, status: RunStatus) -> None:
        run = self.runs[run_id]
        ended = int(time.time() * 1000) if status in ("completed", "failed", "cancelled") else None
        self.runs[run_id] = replace(run, status=status, ended_at_ms=ended)
        self._notify(run_id)

    def close_feeds(self) -> None:
        """What the real core does when it stops."""
        for feed in list(self.feeds):
            feed.close()

    def _notify(self, run_id: str) -> None:
        for feed in list(self.feeds):
            if feed.run_id in (None, run_id):
                feed.notify()

    # --- the Backend protocol ---------------------------------------------------------------------

    async def submit(self, descriptor: RunDescriptor) -> tuple[Run, bool]:
        key = descriptor.idempotency_key
        if key is not None and key in self.by_key:
            return self.runs[self.by_key[key]], False
        run = self.add_run(
            status="queued",
            source="api",
            session_id=descriptor.session.session_id or str(uuid.uuid4()),
            mode_name=descriptor.session.mode_name,
            participants=descriptor.session.participants,
            descriptor=descriptor.redacted(),
            idempotency_key=key,
            tags=descriptor.tags,
        )
        if key is not None:
            self.by_key[key] = run.run_id
        return run, True

    async def list_runs(
        self,
        *,
        status: str | None = None,
        mode: str | None = None,
        source: str | None = None,
        session_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> RunPage:
        ids = list(reversed(self.order))
        if cursor is not None:
            try:
                start = int(base64.urlsafe_b64decode(cursor.encode()).decode())
            except (ValueError, UnicodeDecodeError):
                raise ValueError("not a cursor this console issued") from None
            ids = ids[start:]
        else:
            start = 0
        picked: list[Run] = []
        consumed = 0
        for run_id in ids:
            consumed += 1
            run = self.runs[run_id]
            if (status and run.status != status) or (mode and run.mode_name != mode):
                continue
            if (source and run.source != source) or (session_id and run.session_id != session_id):
                continue
            picked.append(run)
            if len(picked) == limit:
                break
        more = start + consumed < len(self.order) and len(picked) == limit
        next_cursor = base64.urlsafe_b64encode(str(start + consumed).encode()).decode() if more else None
        return RunPage(tuple(picked), next_cursor)

    async def get_run(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    async def events(self, run_id: str, *, after_seq: int = 0, limit: int = 500) -> list[RunEvent]:
        return [e for e in self.log.get(run_id, []) if e.seq > after_seq][:limit]

    async def view(self, run_id: str) -> Mapping[str, Any] | None:
        return self.views.get(run_id, {"participants": []}) if run_id in self.runs else None

    def changes(self, run_id: str | None) -> FakeFeed:
        feed = FakeFeed(self, run_id)
        self.feeds.add(feed)
        self.opened_feeds += 1
        return feed

    async def cancel(self, run_id: str, reason: str | None) -> Run:
        if self.cancel_refusal is not None:
            raise self.cancel_refusal
        self.cancelled.append((run_id, reason))
        self.set_status(run_id, "cancelled")
        return self.runs[run_id]

    def metrics_registry(self) -> None:
        return None
