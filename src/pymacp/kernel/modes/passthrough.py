"""Extension modes registered at run time (RegisterExtMode): a generic passthrough.

Theory of operation. The runtime knows nothing of such a mode but its descriptor, so it
enforces only what every mode shares: a listed message type, a declared participant as
sender (anyone when the session declares none), and a Commitment from the commitment
authority that passes the common payload checks and resolves the session. The mode state
keeps a count per message type and the last payload of each, verbatim.

    message type            who                           phases
    <any listed type>       participant (anyone if none)  Open
    Commitment              commitment authority          Open
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import immutables

from ..commitment import CommitmentPayload, check_common
from ..envelope import COMMITMENT, SESSION_START
from ..policy.rules import GenericRules
from .base import Context, ModeSpec, Rule, StartContext, Who
from .descriptor import ModeDescriptor

OPEN = "Open"
COMMITTED = "Committed"


class RawPayload:
    """A 'payload class' that keeps the bytes as they are."""

    __name__ = "bytes"

    @staticmethod
    def FromString(data: bytes) -> bytes:
        return data


@dataclass(frozen=True, slots=True)
class PassthroughState:
    counts: immutables.Map[str, int]
    last: immutables.Map[str, bytes]
    committed: bool = False


def _start(ctx: StartContext) -> PassthroughState:
    return PassthroughState(immutables.Map(), immutables.Map())


def _record(state: PassthroughState, ctx: Context, payload: bytes) -> PassthroughState:
    return PassthroughState(
        counts=state.counts.set(ctx.message_type, state.counts.get(ctx.message_type, 0) + 1),
        last=state.last.set(ctx.message_type, payload),
    )


def _commit(state: PassthroughState, ctx: Context, payload: Any) -> PassthroughState:
    check_common(ctx, payload)
    return PassthroughState(state.counts, state.last, committed=True)


def _project(state: PassthroughState) -> dict[str, Any]:
    return {
        "phase": COMMITTED if state.committed else OPEN,
        "message_counts": dict(sorted(state.counts.items())),
        "last_payload_hex": {k: v.hex() for k, v in sorted(state.last.items())},
    }


def spec(descriptor: ModeDescriptor, *, strict_start: bool = False) -> ModeSpec[PassthroughState]:
    rules: dict[str, Rule[PassthroughState]] = {
        message_type: Rule(Who.PARTICIPANT_OR_ANYONE, frozenset({OPEN}), RawPayload, _record)
        for message_type in descriptor.message_types
        if message_type not in (SESSION_START, COMMITMENT)
    }
    rules[COMMITMENT] = Rule(
        Who.COMMIT_AUTHORITY, frozenset({OPEN}), CommitmentPayload, _commit, resolves=True
    )
    return ModeSpec(
        descriptor=descriptor,
        rules=rules,
        start=_start,
        phase=lambda s: COMMITTED if s.committed else OPEN,
        project=_project,
        parse_rules=GenericRules.parse,
        strict_start=strict_start,
    )
