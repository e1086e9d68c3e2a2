"""The MACP error-code registry and the kernel's rejection value.

Every refusal the kernel makes is a :class:`Rejection`: a registry code, a sentence a
user can act on, and structured details in the shape clients parse
(``{"reasons": [...], "denials": [...]}``). The kernel never raises for bad input; it
returns a Rejection. ``Reject`` is the internal exception mode code may raise to
short-circuit deep validation; the engine turns it into a Rejection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Registry codes (RFC-MACP-0001 error registry plus the runtime 0.9 additions)."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_NOT_OPEN = "SESSION_NOT_OPEN"
    DUPLICATE_MESSAGE = "DUPLICATE_MESSAGE"
    SESSION_ALREADY_EXISTS = "SESSION_ALREADY_EXISTS"
    INVALID_ENVELOPE = "INVALID_ENVELOPE"
    UNSUPPORTED_PROTOCOL_VERSION = "UNSUPPORTED_PROTOCOL_VERSION"
    MODE_NOT_SUPPORTED = "MODE_NOT_SUPPORTED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_SESSION_ID = "INVALID_SESSION_ID"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    UNKNOWN_POLICY_VERSION = "UNKNOWN_POLICY_VERSION"
    POLICY_DENIED = "POLICY_DENIED"
    INVALID_POLICY_DEFINITION = "INVALID_POLICY_DEFINITION"
    REGISTRY_READ_ONLY = "REGISTRY_READ_ONLY"
    INVALID_REQUEST = "INVALID_REQUEST"
    STREAM_LAGGED = "STREAM_LAGGED"
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    HISTORY_UNAVAILABLE = "HISTORY_UNAVAILABLE"
    RECEIPT_UNAVAILABLE = "RECEIPT_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Denial:
    """One structured reason a governance policy refused a Commitment."""

    code: str
    message: str
    participants: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "participants": list(self.participants)}


@dataclass(frozen=True, slots=True)
class Rejection:
    """The kernel's answer to an envelope or request it refuses."""

    code: ErrorCode
    message: str
    denials: tuple[Denial, ...] = field(default=())

    def details(self) -> dict[str, Any]:
        reasons = [d.message for d in self.denials] if self.denials else [self.message]
        return {"reasons": reasons, "denials": [d.to_json() for d in self.denials]}

    def details_bytes(self) -> bytes:
        return json.dumps(self.details(), separators=(",", ":"), sort_keys=True).encode()


class Reject(Exception):
    """Raised inside kernel code to refuse the current message; caught by the engine."""

    def __init__(self, code: ErrorCode, message: str, denials: tuple[Denial, ...] = ()) -> None:
        super().__init__(message)
        self.rejection = Rejection(code, message, denials)


def forbidden(message: str) -> Reject:
    return Reject(ErrorCode.FORBIDDEN, message)


def invalid(message: str) -> Reject:
    return Reject(ErrorCode.INVALID_ENVELOPE, message)
