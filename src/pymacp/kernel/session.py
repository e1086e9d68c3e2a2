"""A session's state, its history entries and lifecycle events, as immutable values.

A :class:`Session` is never mutated: the engine returns a new one for every accepted
envelope, sharing structure with the old one (persistent maps from ``immutables``), so a
rejected envelope cannot leave a trace and a caller can decide, persist, then publish.

History is a list of :class:`HistoryEntry`. CLIENT and RUNTIME entries are accepted
envelopes and carry the 1-based stream ordinal (SessionStart is 1). INTERNAL entries
(suspend, resume, cancel, expiry) take no ordinal and are never streamed; they exist so
that replaying the history reproduces the session exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import immutables

from .envelope import Envelope
from .identity import Identity
from .modes.descriptor import ModeDescriptor
from .policy.descriptor import PolicyDescriptor

IMPLEMENTATION = "pymacp"
SEMANTICS_REV = 1


class SessionState(IntEnum):
    """Mirrors ``macp.v1.SessionState``."""

    UNSPECIFIED = 0
    OPEN = 1
    RESOLVED = 2
    EXPIRED = 3
    SUSPENDED = 4
    CANCELLED = 5

    @property
    def is_terminal(self) -> bool:
        return self in (SessionState.RESOLVED, SessionState.EXPIRED, SessionState.CANCELLED)

    @property
    def label(self) -> str:
        """The spelling the conformance fixtures use (``Open``, ``Resolved`` ...)."""
        return self.name.capitalize()


class EventType(IntEnum):
    """Mirrors ``macp.v1.SessionLifecycleEvent.EventType``."""

    CREATED = 1
    RESOLVED = 2
    EXPIRED = 3
    SUSPENDED = 4
    RESUMED = 5
    CANCELLED = 6


class EntryKind(IntEnum):
    CLIENT = 1  # an envelope a client sent and the kernel accepted
    RUNTIME = 2  # an envelope the runtime synthesized into history (handoff implicit accept)
    INTERNAL = 3  # a lifecycle record: SessionSuspend / SessionResume / SessionCancel / SessionExpire


@dataclass(frozen=True, slots=True)
class StartBinding:
    """What a SessionStart bound, recorded on its history entry so replay never re-resolves it."""

    policy: PolicyDescriptor
    mode_descriptor: ModeDescriptor
    max_suspend_ms: int
    implementation: str = IMPLEMENTATION
    semantics_rev: int = SEMANTICS_REV

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_json(),
            "mode_descriptor": self.mode_descriptor.to_json(),
            "max_suspend_ms": self.max_suspend_ms,
            "implementation": self.implementation,
            "semantics_rev": self.semantics_rev,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StartBinding:
        return cls(
            policy=PolicyDescriptor.from_json(data["policy"]),
            mode_descriptor=ModeDescriptor.from_json(data["mode_descriptor"]),
            max_suspend_ms=int(data["max_suspend_ms"]),
            implementation=str(data.get("implementation", IMPLEMENTATION)),
            semantics_rev=int(data.get("semantics_rev", SEMANTICS_REV)),
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    index: int  # 0-based position in the session's history; SessionStart is 0
    ordinal: int  # 1-based stream ordinal for CLIENT/RUNTIME entries, 0 for INTERNAL ones
    kind: EntryKind
    envelope: Envelope
    accepted_at_ms: int
    binding: StartBinding | None = None  # only on the SessionStart entry

    @property
    def streamable(self) -> bool:
        return self.kind is not EntryKind.INTERNAL


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    type: EventType
    at_ms: int


@dataclass(frozen=True, slots=True)
class Activity:
    message_count: int
    last_message_at_ms: int


@dataclass(frozen=True, slots=True)
class Root:
    uri: str
    name: str


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    mode: str
    mode_version: str
    configuration_version: str
    policy: PolicyDescriptor
    mode_descriptor: ModeDescriptor
    rules: Any  # the mode's parsed view of policy.rules (see kernel.policy.rules)
    initiator: str
    participants: tuple[str, ...]
    intent: str
    context_id: str
    extensions: Mapping[str, bytes]
    roots: tuple[Root, ...]
    ttl_ms: int
    started_at_ms: int  # runtime clock at acceptance of SessionStart
    deadline_ms: int  # moves forward on resume by the time spent suspended
    max_suspend_ms: int
    semantics_rev: int
    state: SessionState
    mode_state: Any  # the mode's own immutable state value
    seen: immutables.Map[str, int]  # accepted message_id -> history index
    last_ordinal: int
    history_len: int
    activity: immutables.Map[str, Activity]
    suspended_at_ms: int | None = None
    suspended_total_ms: int = 0
    suspension_cycles: int = 0
    resolution: bytes | None = None  # the winning Commitment's payload bytes, as received
    resolved_by_index: int | None = None
    ended_at_ms: int | None = None

    def may_read(self, identity: Identity) -> bool:
        """Initiator, declared participants and admitted observers may read a session."""
        return (
            identity.is_observer or identity.sender == self.initiator or identity.sender in self.participants
        )

    def may_control(self, sender: str) -> bool:
        """Cancel, suspend and resume follow the commitment-authority rule."""
        authority = getattr(self.rules, "commitment", None)
        if authority is None:
            return sender == self.initiator
        return sender == self.initiator or bool(
            authority.may_commit(sender, self.initiator, self.participants)
        )

    def expires_at_ms(self) -> int:
        return self.deadline_ms
