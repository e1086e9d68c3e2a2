"""Envelopes: the one wire unit of MACP, and the structural checks every one must pass.

The checks run in the order the reference runtime uses, because the order decides which
error code a doubly-bad envelope gets: protocol version, then non-empty type and id, then
the ambient/session-scoped shape (Signals empty, session messages both set, Progress
either), then payload size. Session-id format is checked only on SessionStart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from macp.v1 import envelope_pb2

from .errors import ErrorCode, Reject

SUPPORTED_PROTOCOL_VERSIONS = ("1.0",)

# Core message types (RFC-MACP-0001). Mode message types live in the mode modules.
SESSION_START = "SessionStart"
SIGNAL = "Signal"
PROGRESS = "Progress"
COMMITMENT = "Commitment"
# Written into history by the runtime only; a client may never send them.
SESSION_SUSPEND = "SessionSuspend"
SESSION_RESUME = "SessionResume"
SESSION_CANCEL = "SessionCancel"
SESSION_EXPIRE = "SessionExpire"
RUNTIME_ONLY_TYPES = frozenset({SESSION_SUSPEND, SESSION_RESUME, SESSION_CANCEL, SESSION_EXPIRE})

IMPLICIT_ACCEPT_PREFIX = "implicit-accept:"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A MACP envelope (``macp.v1.Envelope``) as an immutable value."""

    macp_version: str
    mode: str
    message_type: str
    message_id: str
    session_id: str
    sender: str
    timestamp_unix_ms: int
    payload: bytes

    @property
    def is_ambient(self) -> bool:
        return not self.session_id and not self.mode

    def with_sender(self, sender: str) -> Envelope:
        return self if sender == self.sender else replace(self, sender=sender)

    def to_proto(self) -> envelope_pb2.Envelope:
        return envelope_pb2.Envelope(
            macp_version=self.macp_version,
            mode=self.mode,
            message_type=self.message_type,
            message_id=self.message_id,
            session_id=self.session_id,
            sender=self.sender,
            timestamp_unix_ms=self.timestamp_unix_ms,
            payload=self.payload,
        )

    def to_bytes(self) -> bytes:
        data: bytes = self.to_proto().SerializeToString()
        return data

    @classmethod
    def from_proto(cls, msg: envelope_pb2.Envelope) -> Envelope:
        return cls(
            macp_version=msg.macp_version,
            mode=msg.mode,
            message_type=msg.message_type,
            message_id=msg.message_id,
            session_id=msg.session_id,
            sender=msg.sender,
            timestamp_unix_ms=msg.timestamp_unix_ms,
            payload=bytes(msg.payload),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        msg = envelope_pb2.Envelope()
        msg.ParseFromString(data)
        return cls.from_proto(msg)


def check_shape(env: Envelope, max_payload_bytes: int) -> None:
    """Structural checks every envelope must pass; raises :class:`Reject`."""
    if env.macp_version not in SUPPORTED_PROTOCOL_VERSIONS:
        raise Reject(
            ErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
            f"macp_version {env.macp_version!r} is not supported; this runtime speaks "
            + ", ".join(SUPPORTED_PROTOCOL_VERSIONS),
        )
    if not env.message_type:
        raise Reject(ErrorCode.INVALID_ENVELOPE, "message_type must not be empty")
    if not env.message_id:
        raise Reject(ErrorCode.INVALID_ENVELOPE, "message_id must not be empty")
    if env.message_type == SIGNAL:
        if env.session_id or env.mode:
            raise Reject(
                ErrorCode.INVALID_ENVELOPE,
                "a Signal is ambient: session_id and mode must both be empty "
                "(relate it to a session with SignalPayload.correlation_session_id)",
            )
    elif env.message_type == PROGRESS:
        if bool(env.session_id) != bool(env.mode):
            raise Reject(
                ErrorCode.INVALID_ENVELOPE,
                "a Progress envelope sets both session_id and mode (session-scoped) or neither (ambient)",
            )
    elif not env.session_id or not env.mode:
        raise Reject(
            ErrorCode.INVALID_ENVELOPE,
            f"a {env.message_type} envelope is session-scoped: session_id and mode must both be set",
        )
    if len(env.payload) > max_payload_bytes:
        raise Reject(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"payload is {len(env.payload)} bytes; the limit is {max_payload_bytes}",
        )


_UUID_SHAPE = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_UUID_V4_V7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]{22,128}")


def is_valid_session_id(session_id: str) -> bool:
    """Lowercase canonical UUID v4/v7, or a base64url token of 22 to 128 characters.

    A string shaped like a UUID is judged only as a UUID, so uppercase or v1 UUIDs fail
    even though their characters would pass the base64url rule.
    """
    if _UUID_SHAPE.fullmatch(session_id):
        return _UUID_V4_V7.fullmatch(session_id) is not None
    return _BASE64URL.fullmatch(session_id) is not None
