"""The session table: one slot and one lock per session, hot or cold.

A *hot* slot holds the current immutable :class:`~pymacp.kernel.Session` and the
``asyncio.Lock`` that serializes that session's envelopes; different sessions never wait
for each other. A *cold* slot holds only the session's summary: after a restart every
session starts cold (start-up reads summaries, not histories), and ended sessions go
cold again after the retention period. :meth:`SessionTable.get` makes a cold slot hot by
replaying the session's log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..kernel import Kernel, Session, SessionState
from ..kernel.replay import ReplayError, replay
from ..storage import StorageError, Store
from .summary import SessionSummary

log = logging.getLogger("pymacp.runtime")


@dataclass(eq=False, slots=True)
class SessionSlot:
    session_id: str
    session: Session | None = None  # None: cold, or reserved for a SessionStart being decided
    summary: SessionSummary | None = None  # None only while reserved
    _lock: asyncio.Lock | None = None

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:  # created on first use: idle sessions cost no lock
            self._lock = asyncio.Lock()
        return self._lock


class SessionTable:
    def __init__(self, store: Store, kernel: Kernel, summarize: Callable[[Session], SessionSummary]) -> None:
        self._store = store
        self._kernel = kernel
        self._summarize = summarize
        self._slots: dict[str, SessionSlot] = {}
        self._hydrating: dict[str, asyncio.Future[None]] = {}
        self._open_by_initiator: Counter[str] = Counter()
        self._hot = 0  # slots holding a session (kept as a count: listing slots is O(sessions))

    def __len__(self) -> int:
        return len(self._slots)

    def loaded(self, session_id: str) -> SessionSlot | None:
        return self._slots.get(session_id)

    async def get(self, session_id: str) -> SessionSlot | None:
        """The session's slot, made hot (replayed from the log if it was cold); None if unknown."""
        slot = self._slots.get(session_id)
        if slot is None or slot.session is not None or slot.summary is None:
            return slot
        pending = self._hydrating.get(session_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._hydrating[session_id] = pending
            try:
                await self._hydrate(slot)
                pending.set_result(None)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved here; every waiter re-raises it
                raise
            finally:
                del self._hydrating[session_id]
        else:
            await asyncio.shield(pending)
        return slot

    async def _hydrate(self, slot: SessionSlot) -> None:
        entries = await self._store.read(slot.session_id)
        session = replay(entries, self._kernel)
        if session is None:
            raise StorageError(f"session {slot.session_id} has a summary but no stored history")
        if slot.session is None:
            slot.session = session
            self._hot += 1

    def reserve(self, session_id: str) -> SessionSlot:
        """The slot a SessionStart decides under: the existing one, or a new empty one."""
        slot = self._slots.get(session_id)
        if slot is None:
            slot = SessionSlot(session_id)
            self._slots[session_id] = slot
        return slot

    def release_if_empty(self, slot: SessionSlot) -> None:
        if slot.summary is None and self._slots.get(slot.session_id) is slot:
            del self._slots[slot.session_id]

    def adopt(self, slot: SessionSlot, session: Session, summary: SessionSummary) -> None:
        """Make ``session`` the slot's current state (after it is durable)."""
        self._count(slot.summary, -1)
        self._count(summary, +1)
        if slot.session is None:
            self._hot += 1
        slot.session = session
        slot.summary = summary
        self._slots[slot.session_id] = slot

    def _count(self, summary: SessionSummary | None, delta: int) -> None:
        if summary is not None and summary.state is SessionState.OPEN:
            self._open_by_initiator[summary.initiator] += delta

    def open_sessions_of(self, initiator: str) -> int:
        return self._open_by_initiator[initiator]

    def cool(self, session_id: str) -> None:
        """Drop an ended session's state from memory, keeping its summary."""
        slot = self._slots.get(session_id)
        idle = slot is not None and (slot._lock is None or not slot._lock.locked())
        if slot is not None and idle and slot.summary is not None and slot.summary.state.is_terminal:
            if slot.session is not None:
                self._hot -= 1
            slot.session = None

    def forget(self, session_id: str) -> None:
        slot = self._slots.pop(session_id, None)
        if slot is not None:
            self._count(slot.summary, -1)
            if slot.session is not None:
                self._hot -= 1

    def summaries(self) -> list[SessionSummary]:
        """A snapshot of every known session's summary (summaries are immutable values)."""
        return [s.summary for s in self._slots.values() if s.summary is not None]

    def hot(self) -> int:
        return self._hot

    async def recover(self, *, strict: bool) -> tuple[int, int]:
        """Know every stored session again; returns (sessions, skipped).

        By default start-up reads summaries only and sessions are replayed on first use.
        With ``strict`` every session is replayed now, so a log that does not replay stops
        start-up instead of failing later.
        """
        if strict:
            return await self._replay_all()
        known = 0
        async for session_id, text in self._store.summaries():
            summary = SessionSummary.from_json(text)
            self._slots[session_id] = SessionSlot(session_id, None, summary)
            self._count(summary, +1)
            known += 1
        skipped = 0
        for session_id in await self._store.unsummarized():  # logs written before summaries existed
            try:
                session = replay(await self._store.read(session_id), self._kernel)
            except ReplayError as exc:
                log.warning("skipping session %s: %s", session_id, exc)
                skipped += 1
                continue
            if session is not None:
                summary = self._summarize(session)
                await self._store.append(session_id, [], summary.to_json())
                self.adopt(SessionSlot(session_id), session, summary)
                known += 1
        return known, skipped

    async def _replay_all(self) -> tuple[int, int]:
        recovered = 0
        async for session_id, entries in self._store.sessions():
            session = replay(entries, self._kernel)  # ReplayError stops start-up
            if session is not None:
                self.adopt(SessionSlot(session_id), session, self._summarize(session))
                recovered += 1
        return recovered, 0
