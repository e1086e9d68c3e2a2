"""The console's records: a run, one of its events, a page of runs.

A *run* is the console's record of one observed MACP session. The console never starts or
drives sessions; it only watches them, so a run's status is always derived from what the
runtime reports about the session (see :mod:`.status`). Every record is a frozen value that
serialises to the camelCase JSON the HTTP API returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

RunStatus = Literal["queued", "starting", "running", "suspended", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
TERMINAL_STATUSES: frozenset[RunStatus] = frozenset({"completed", "failed", "cancelled"})

RunSource = Literal["api", "discovered"]
RUN_SOURCES: tuple[RunSource, ...] = get_args(RunSource)


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str  # UUID4 text, assigned by the console, distinct from the session id
    session_id: str
    status: RunStatus
    source: RunSource
    mode_name: str | None
    participants: tuple[str, ...]
    session_state: str | None  # the runtime's state name as last observed, e.g. "SESSION_STATE_OPEN"
    descriptor: Mapping[str, Any] | None  # always redacted: secrets read "***"
    idempotency_key: str | None
    tags: tuple[str, ...]
    created_at_ms: int
    updated_at_ms: int
    ended_at_ms: int | None
    last_seq: int  # events stored for this run; they are seq 1..last_seq, without gaps
    last_ordinal: int  # highest runtime ordinal stored: the after_sequence resume point
    error: str | None  # why the run failed, in words a user can act on

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "sessionId": self.session_id,
            "status": self.status,
            "source": self.source,
            "modeName": self.mode_name,
            "participants": list(self.participants),
            "sessionState": self.session_state,
            "descriptor": _plain(self.descriptor),
            "idempotencyKey": self.idempotency_key,
            "tags": list(self.tags),
            "createdAtMs": self.created_at_ms,
            "updatedAtMs": self.updated_at_ms,
            "endedAtMs": self.ended_at_ms,
            "lastSeq": self.last_seq,
            "lastOrdinal": self.last_ordinal,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class RunEvent:
    run_id: str
    seq: int  # 1-based and gapless per run; the SSE event id; never reused
    type: str  # a canonical event type (see pymacp.console.events.EVENT_TYPES)
    ordinal: int | None  # runtime ordinal for envelope-derived events; None for console-derived ones
    message_id: str | None
    message_type: str | None
    sender: str | None
    timestamp_ms: int
    data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "seq": self.seq,
            "type": self.type,
            "ordinal": self.ordinal,
            "messageId": self.message_id,
            "messageType": self.message_type,
            "sender": self.sender,
            "timestampMs": self.timestamp_ms,
            "data": _plain(self.data),
        }


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: tuple[Run, ...]
    next_cursor: str | None  # opaque; pass back to list_runs for the next (older) page


def _plain(value: Any) -> Any:
    """A JSON-ready deep copy, so callers can never mutate a stored record through to_json()."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
