"""The in-memory session table: one slot and one lock per session.

A slot holds the current immutable :class:`~pymacp.kernel.Session` and the
``asyncio.Lock`` that serializes that session's envelopes; different sessions never wait
for each other. Sessions that ended long ago may be evicted from memory; the log keeps
them, and :meth:`SessionTable.get` brings one back by replaying its history.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from ..kernel import Kernel, Session, SessionState
from ..kernel.replay import ReplayError, replay
from ..storage import Store

log = logging.getLogger("pymacp.runtime")


@dataclass(eq=False)
class SessionSlot:
    session_id: str
    session: Session | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SessionTable:
    def __init__(self, store: Store, kernel: Kernel) -> None:
        self._store = store
        self._kernel = kernel
        self._slots: dict[str, SessionSlot] = {}
        self._loading: dict[str, asyncio.Future[SessionSlot | None]] = {}
        self._open_by_initiator: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._slots)

    def loaded(self, session_id: str) -> SessionSlot | None:
        return self._slots.get(session_id)

    async def get(self, session_id: str) -> SessionSlot | None:
        """The session's slot, reloading an evicted session from the log; None if unknown."""
        slot = self._slots.get(session_id)
        if slot is not None:
            return slot
        pending = self._loading.get(session_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[SessionSlot | None] = asyncio.get_running_loop().create_future()
        self._loading[session_id] = future
        try:
            slot = await self._load(session_id)
            future.set_result(slot)
            return slot
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the caller re-raises it below
            raise
        finally:
            del self._loading[session_id]

    async def _load(self, session_id: str) -> SessionSlot | None:
        entries = await self._store.read(session_id)
        if not entries:
            return None
        session = replay(entries, self._kernel)
        if session is None:  # pragma: no cover - entries were non-empty
            return None
        existing = self._slots.get(session_id)
        if existing is not None:  # created concurrently by a SessionStart that won the race
            return existing
        slot = SessionSlot(session_id, session)
        self.adopt(slot, session)
        return slot

    def reserve(self, session_id: str) -> SessionSlot:
        """The slot a SessionStart decides under: the existing one, or a new empty one."""
        slot = self._slots.get(session_id)
        if slot is None:
            slot = SessionSlot(session_id)
            self._slots[session_id] = slot
        return slot

    def release_if_empty(self, slot: SessionSlot) -> None:
        if slot.session is None and self._slots.get(slot.session_id) is slot:
            del self._slots[slot.session_id]

    def adopt(self, slot: SessionSlot, session: Session) -> None:
        """Make ``session`` the slot's current state (after it is durable)."""
        previous = slot.session
        if previous is not None and previous.state is SessionState.OPEN:
            self._open_by_initiator[previous.initiator] -= 1
        if session.state is SessionState.OPEN:
            self._open_by_initiator[session.initiator] += 1
        slot.session = session
        self._slots[slot.session_id] = slot

    def open_sessions_of(self, initiator: str) -> int:
        return self._open_by_initiator[initiator]

    def evict(self, session_id: str) -> None:
        slot = self._slots.get(session_id)
        if slot is None or slot.lock.locked() or slot.session is None or not slot.session.state.is_terminal:
            return
        del self._slots[session_id]

    def sessions(self) -> list[Session]:
        """A snapshot of every loaded session (sessions are immutable values)."""
        return [s.session for s in self._slots.values() if s.session is not None]

    async def recover(self, *, strict: bool) -> tuple[int, int]:
        """Rebuild every stored session from its log; returns (recovered, skipped)."""
        recovered = skipped = 0
        async for session_id, entries in self._store.sessions():
            try:
                session = replay(entries, self._kernel)
            except ReplayError as exc:
                if strict:
                    raise
                log.warning("skipping session %s: %s", session_id, exc)
                skipped += 1
                continue
            if session is not None:
                self.adopt(SessionSlot(session_id), session)
                recovered += 1
        return recovered, skipped
