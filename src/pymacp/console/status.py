"""How a run's status follows the session's state, and nothing else.

    session state (GetSession / WatchSessions)   run status
    ------------------------------------------   ---------------------------------------------
    not found yet                                queued, then starting while the console polls
    OPEN                                         running
    SUSPENDED                                    suspended
    RESOLVED                                     completed
    EXPIRED                                      failed ("session expired")
    CANCELLED                                    cancelled
    never appeared within the poll timeout       failed ("session ... not found within N s")
    the console may not read it                  failed (the error names the fix)

A quiet or broken stream changes nothing: the console re-subscribes and asks GetSession.
A terminal status is final (the store enforces it).
"""

from __future__ import annotations

from macp.v1 import envelope_pb2

from .models import RunStatus

OPEN = envelope_pb2.SESSION_STATE_OPEN
RESOLVED = envelope_pb2.SESSION_STATE_RESOLVED
EXPIRED = envelope_pb2.SESSION_STATE_EXPIRED
SUSPENDED = envelope_pb2.SESSION_STATE_SUSPENDED
CANCELLED = envelope_pb2.SESSION_STATE_CANCELLED

STATUS_BY_STATE: dict[int, RunStatus] = {
    OPEN: "running",
    SUSPENDED: "suspended",
    RESOLVED: "completed",
    EXPIRED: "failed",
    CANCELLED: "cancelled",
}
TERMINAL_STATES = frozenset({RESOLVED, EXPIRED, CANCELLED})
REASON_BY_STATE: dict[int, str] = {
    OPEN: "session is open",
    SUSPENDED: "session suspended",
    RESOLVED: "session resolved",
    EXPIRED: "session expired",
    CANCELLED: "session cancelled",
}


def state_name(state: int) -> str:
    """The proto enum name, e.g. ``SESSION_STATE_OPEN``; unknown numbers are kept visible."""
    try:
        return str(envelope_pb2.SessionState.Name(state))
    except ValueError:
        return f"SESSION_STATE_{state}"


def status_for(state: int) -> RunStatus | None:
    return STATUS_BY_STATE.get(state)


def error_for(state: int) -> str | None:
    return "session expired before it resolved" if state == EXPIRED else None
