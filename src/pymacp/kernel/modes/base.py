"""The shared shape of every mode: a rule table and a driver that applies it.

A mode is a :class:`ModeSpec`: its descriptor, how a session of it starts, how to read
its phase off its state, and a table ``RULES[message_type] -> Rule``. A rule says who may
send the message (a :class:`Who`), in which phases it is allowed, which protobuf class its
payload decodes to, and the handler that computes the next mode state.

The driver checks, in this order — the order decides the error code of a doubly-bad
message, and the conformance fixtures pin it:

1. the message type is one the mode knows          (INVALID_ENVELOPE)
2. the sender holds the rule's role                 (FORBIDDEN)
3. the payload decodes                              (INVALID_ENVELOPE)
4. the mode is in one of the rule's phases          (INVALID_ENVELOPE)
5. the handler's own checks, which may refine 2-4   (FORBIDDEN / INVALID_ENVELOPE / POLICY_DENIED)

Handlers are pure: they return a new state value and never mutate the old one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError

from ..envelope import Envelope
from ..errors import ErrorCode, Reject, forbidden, invalid
from ..policy.descriptor import PolicyDescriptor
from .descriptor import ModeDescriptor

S = TypeVar("S")


class Who(Enum):
    """The role a sender must hold for a rule."""

    PARTICIPANT = "a declared participant"
    INITIATOR = "the session initiator"
    COMMIT_AUTHORITY = "the commitment authority"
    PARTICIPANT_OR_ANYONE = "a declared participant (anyone when none are declared)"


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a handler may know about the message and its session."""

    session_id: str
    mode: str
    mode_version: str
    configuration_version: str
    policy: PolicyDescriptor
    rules: Any  # the mode's parsed rules (kernel.policy.rules)
    initiator: str
    participants: tuple[str, ...]
    sender: str
    message_id: str
    message_type: str
    now_ms: int
    suspended_total_ms: int
    semantics_rev: int
    runtime_emitted: bool = False  # True only for envelopes the runtime synthesized itself

    def holds(self, who: Who) -> bool:
        if who is Who.PARTICIPANT:
            return self.sender in self.participants
        if who is Who.INITIATOR:
            return self.sender == self.initiator
        if who is Who.COMMIT_AUTHORITY:
            authority = getattr(self.rules, "commitment", None)
            if authority is None:
                return self.sender == self.initiator
            return bool(authority.may_commit(self.sender, self.initiator, self.participants))
        return not self.participants or self.sender in self.participants


@dataclass(frozen=True, slots=True)
class StartContext:
    """What a mode sees of a SessionStart it is asked to admit."""

    session_id: str
    mode: str
    initiator: str
    participants: tuple[str, ...]
    policy: PolicyDescriptor
    rules: Any
    now_ms: int


@dataclass(frozen=True, slots=True)
class Rule(Generic[S]):
    who: Who
    phases: frozenset[str] | None  # None: allowed in every phase
    payload: Any  # protobuf message class the payload decodes to
    handler: Callable[[S, Context, Any], S]
    resolves: bool = False  # accepting this message resolves the session (the Commitment)
    phase_error: str = ""  # what to tell the sender when the phase is wrong


@dataclass(frozen=True, slots=True)
class ModeSpec(Generic[S]):
    descriptor: ModeDescriptor
    rules: Mapping[str, Rule[S]]
    start: Callable[[StartContext], S]  # strict start checks (raise Reject); returns the initial state
    phase: Callable[[S], str]
    project: Callable[[S], dict[str, Any]]  # the mode-state JSON the fixtures and the console read
    parse_rules: Callable[[Mapping[str, Any]], Any]
    # Time-driven envelopes the runtime must synthesize (handoff implicit accept): given the
    # state and a context whose sender is empty, return (due_at_ms, envelope) for the next
    # one, or None. The engine processes it like a client envelope, with runtime_emitted set.
    next_synthetic: Callable[[S, Context], tuple[int, Envelope] | None] | None = None
    strict_start: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.descriptor.mode

    def step(self, state: S, ctx: Context, env: Envelope) -> tuple[S, bool]:
        """Apply one message; returns (new state, resolves). Raises :class:`Reject`."""
        rule = self.rules.get(env.message_type)
        if rule is None:
            raise invalid(f"{self.name} has no message type {env.message_type!r}")
        if not ctx.holds(rule.who):
            raise forbidden(f"{env.message_type} may only be sent by {rule.who.value}; {ctx.sender!r} is not")
        payload = decode(rule.payload, env.payload, env.message_type)
        if rule.phases is not None:
            current = self.phase(state)
            if current not in rule.phases:
                raise invalid(rule.phase_error or f"{env.message_type} is not allowed in phase {current}")
        return rule.handler(state, ctx, payload), rule.resolves


def decode(cls: Any, data: bytes, what: str) -> Any:
    """Decode a protobuf payload, turning any decoding failure into INVALID_ENVELOPE."""
    try:
        return cls.FromString(data)
    except (DecodeError, ValueError, TypeError, RuntimeError) as exc:
        raise Reject(
            ErrorCode.INVALID_ENVELOPE, f"{what} payload does not decode as {cls.__name__}: {exc}"
        ) from None


def require(condition: bool, message: str) -> None:
    """INVALID_ENVELOPE unless ``condition`` holds."""
    if not condition:
        raise invalid(message)


def require_sender(condition: bool, message: str) -> None:
    """FORBIDDEN unless ``condition`` holds."""
    if not condition:
        raise forbidden(message)


def nonblank(value: str) -> bool:
    return bool(value.strip())
