"""The sans-IO MACP protocol kernel.

Envelopes and the runtime clock go in, decisions come out; nothing here does I/O, reads
a clock or draws random numbers, so every decision can be replayed from history.
"""

from .decisions import Accepted, Broadcast, Decision, Duplicate, Rejected
from .engine import Kernel, Limits
from .envelope import Envelope, is_valid_session_id
from .errors import Denial, ErrorCode, Rejection
from .identity import Identity
from .modes.descriptor import ModeDescriptor
from .policy.descriptor import DEFAULT_POLICY, DEFAULT_POLICY_ID, PolicyDescriptor
from .registry import Registry
from .session import (
    EntryKind,
    EventType,
    HistoryEntry,
    LifecycleEvent,
    Session,
    SessionState,
    StartBinding,
)

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_POLICY_ID",
    "Accepted",
    "Broadcast",
    "Decision",
    "Denial",
    "Duplicate",
    "EntryKind",
    "Envelope",
    "ErrorCode",
    "EventType",
    "HistoryEntry",
    "Identity",
    "Kernel",
    "LifecycleEvent",
    "Limits",
    "ModeDescriptor",
    "PolicyDescriptor",
    "Registry",
    "Rejected",
    "Rejection",
    "Session",
    "SessionState",
    "StartBinding",
    "is_valid_session_id",
]
