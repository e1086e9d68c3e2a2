"""What the kernel answers: one of four decision values."""

from __future__ import annotations

from dataclasses import dataclass

from .envelope import Envelope
from .errors import Rejection
from .session import HistoryEntry, LifecycleEvent, Session


@dataclass(frozen=True, slots=True)
class Accepted:
    """Accepted: append ``entries`` durably, then adopt ``session`` and publish ``events``.

    ``entries`` may hold more than the caller's envelope (a runtime-synthesized entry the
    envelope depended on comes first) and is empty for an idempotent no-op.
    """

    session: Session
    entries: tuple[HistoryEntry, ...]
    events: tuple[LifecycleEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The message_id was already accepted in this session: acknowledge, change nothing."""

    session: Session


@dataclass(frozen=True, slots=True)
class Broadcast:
    """A Signal or Progress envelope: accepted for fan-out, never recorded in history."""

    envelope: Envelope
    session: Session | None = None  # set for session-scoped Progress


@dataclass(frozen=True, slots=True)
class Rejected:
    """Refused. Nothing changed: no history, no dedup slot, no state."""

    rejection: Rejection


Decision = Accepted | Duplicate | Broadcast | Rejected
