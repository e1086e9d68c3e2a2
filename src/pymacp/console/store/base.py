"""What the console needs from a database, and the values it passes in.

One implementation (:class:`~.sql.SqlStore`) serves SQLite and PostgreSQL; this module is
the contract the rest of the console codes against. Three rules every store keeps:

* a run's events are numbered 1, 2, ... without gaps, and an event, the run's ``last_seq``,
  ``last_ordinal`` and status change in one transaction;
* an envelope event whose message id is already stored for the run is skipped (not an
  error), so re-reading history from too low an ordinal is harmless;
* a status change writes a ``run.status.changed`` event in the same transaction, and a
  terminal status is final: later changes of status are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..events import NewEvent
from ..models import Run, RunEvent, RunSource, RunStatus


class StoreError(Exception):
    """The database failed or is unreachable; the message says which and what to check."""


class SessionTaken(Exception):
    """A run already observes this session; ``run`` is that run."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"session {run.session_id!r} is already observed by run {run.run_id}")
        self.run = run


@dataclass(frozen=True, slots=True)
class NewRun:
    run_id: str
    session_id: str
    status: RunStatus
    source: RunSource
    mode_name: str | None
    participants: tuple[str, ...]
    session_state: str | None
    descriptor: Mapping[str, Any] | None  # redacted
    cancel_bearer: str | None  # the one secret kept, never returned by reads of the run
    idempotency_key: str | None
    tags: tuple[str, ...]
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class RunChanges:
    """Fields to update with an append; None leaves a field as it is."""

    status: RunStatus | None = None
    reason: str | None = None  # why the status changed, recorded in the run.status.changed event
    session_state: str | None = None
    mode_name: str | None = None
    participants: tuple[str, ...] | None = None
    error: str | None = None
    # Move the resume point forward to at least this ordinal (history before it is gone).
    skip_to_ordinal: int | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    run: Run
    events: tuple[RunEvent, ...]  # the events actually stored (duplicates skipped), in seq order
    changed: bool  # the run's row or its events changed (readers should look again)


class Store(Protocol):
    @property
    def ready(self) -> bool: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_run(self, new: NewRun, now_ms: int) -> tuple[Run, bool]:
        """Insert the run and its ``run.created`` event; atomic on the idempotency key.

        Returns ``(stored run, False)`` when the idempotency key is taken. When a discovered
        run without a descriptor already observes the session, an API run adopts it
        (``(run, True)``); any other run on the session raises :class:`SessionTaken`.
        """
        ...

    async def append(
        self, run_id: str, events: Sequence[NewEvent], changes: RunChanges | None, now_ms: int
    ) -> Appended: ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def run_for_session(self, session_id: str) -> Run | None: ...

    async def list_runs(
        self,
        *,
        status: str | None,
        mode: str | None,
        source: str | None,
        session_id: str | None,
        before_position: int | None,
        limit: int,
    ) -> list[tuple[int, Run]]:
        """Runs newest first, each with its position (the cursor key)."""
        ...

    async def events(self, run_id: str, after_seq: int, limit: int) -> list[RunEvent]: ...

    async def unfinished_runs(self) -> list[Run]: ...

    async def cancel_bearer(self, run_id: str) -> str | None: ...
