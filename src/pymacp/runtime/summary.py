"""A session's summary: what listing, watching and timers need, without its history.

The runtime writes one with every append, in the same transaction, so after a restart it
can list, watch and time every session by reading summaries alone, and rebuild a session
from its log (replay) only when someone uses it. It also stays behind when an ended
session leaves memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from ..kernel import Identity, Session, SessionState

FIXED_JSON_CACHE = 4096  # sessions whose unchanging summary fields are kept encoded


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    mode: str
    state: SessionState
    initiator: str
    participants: tuple[str, ...]
    mode_version: str
    configuration_version: str
    policy_id: str
    context_id: str
    extension_keys: tuple[str, ...]
    started_at_ms: int
    expires_at_ms: int
    ended_at_ms: int | None
    last_ordinal: int
    next_deadline_ms: int | None  # when the session's timers next have work; None when ended
    activity: tuple[tuple[str, int, int], ...]  # (participant, message count, last message at)

    @classmethod
    def of(cls, session: Session, next_deadline_ms: int | None) -> SessionSummary:
        return cls(
            session_id=session.session_id,
            mode=session.mode,
            state=session.state,
            initiator=session.initiator,
            participants=session.participants,
            mode_version=session.mode_version,
            configuration_version=session.configuration_version,
            policy_id=session.policy.policy_id,
            context_id=session.context_id,
            extension_keys=tuple(sorted(session.extensions)),
            started_at_ms=session.started_at_ms,
            expires_at_ms=session.deadline_ms,
            ended_at_ms=session.ended_at_ms,
            last_ordinal=session.last_ordinal,
            next_deadline_ms=next_deadline_ms,
            activity=tuple(
                (pid, a.message_count, a.last_message_at_ms) for pid, a in sorted(session.activity.items())
            ),
        )

    def may_read(self, identity: Identity) -> bool:
        return (
            identity.is_observer or identity.sender == self.initiator or identity.sender in self.participants
        )

    def to_json(self) -> str:
        # One append rewrites the summary, and most of it never changes after SessionStart:
        # that part is encoded once per session (cached), the rest on every call.
        changing = {
            "state": int(self.state),
            "expires_at_ms": self.expires_at_ms,
            "ended_at_ms": self.ended_at_ms,
            "last_ordinal": self.last_ordinal,
            "next_deadline_ms": self.next_deadline_ms,
            "activity": [list(a) for a in self.activity],
        }
        fixed = _fixed_json(
            self.session_id,
            self.mode,
            self.initiator,
            self.participants,
            self.mode_version,
            self.configuration_version,
            self.policy_id,
            self.context_id,
            self.extension_keys,
            self.started_at_ms,
        )
        return fixed[:-1] + "," + json.dumps(changing, separators=(",", ":"))[1:]

    @classmethod
    def from_json(cls, text: str) -> SessionSummary:
        doc = json.loads(text)
        return cls(
            session_id=doc["session_id"],
            mode=doc["mode"],
            state=SessionState(doc["state"]),
            initiator=doc["initiator"],
            participants=tuple(doc["participants"]),
            mode_version=doc["mode_version"],
            configuration_version=doc["configuration_version"],
            policy_id=doc["policy_id"],
            context_id=doc["context_id"],
            extension_keys=tuple(doc["extension_keys"]),
            started_at_ms=doc["started_at_ms"],
            expires_at_ms=doc["expires_at_ms"],
            ended_at_ms=doc["ended_at_ms"],
            last_ordinal=doc["last_ordinal"],
            next_deadline_ms=doc["next_deadline_ms"],
            activity=tuple((str(p), int(c), int(t)) for p, c, t in doc["activity"]),
        )


@lru_cache(maxsize=FIXED_JSON_CACHE)
def _fixed_json(
    session_id: str,
    mode: str,
    initiator: str,
    participants: tuple[str, ...],
    mode_version: str,
    configuration_version: str,
    policy_id: str,
    context_id: str,
    extension_keys: tuple[str, ...],
    started_at_ms: int,
) -> str:
    doc = {
        "v": 1,
        "session_id": session_id,
        "mode": mode,
        "initiator": initiator,
        "participants": list(participants),
        "mode_version": mode_version,
        "configuration_version": configuration_version,
        "policy_id": policy_id,
        "context_id": context_id,
        "extension_keys": list(extension_keys),
        "started_at_ms": started_at_ms,
    }
    return json.dumps(doc, separators=(",", ":"))
