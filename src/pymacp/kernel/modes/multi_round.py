"""Multi-round convergence (``ext.multi_round.v1``): contribute values until everyone agrees.

Theory of operation. Declared participants send Contribute messages carrying one string
value each; a participant may revise its value as often as it likes. Every accepted
contribution that is new or changed advances ``round``; repeating one's current value is
accepted and changes nothing. The session converges when every participant other than the
initiator has contributed and all recorded values are identical (when the initiator is
the only participant, it must contribute itself). Convergence is final: later
contributions are refused, and the initiator -- only the initiator -- may then commit.

A Contribute payload is canonically ``macp.modes.multi_round.v1.ContributePayload``; the
legacy UTF-8 JSON body ``{"value": "<string>"}`` is still accepted and is tried first, so
old histories decode as they always did. JSON bytes are trusted only when they do not
also round-trip byte for byte as the canonical protobuf of some value: for value lengths
such as 10, 13, 32 and 123 the protobuf tag and length bytes are themselves valid JSON
(whitespace or ``{``), and the protobuf reading is the right one. An empty payload is
refused. This kernel applies the tie-break to every session (its own semantics begin
after the rule existed).

    message type  who may send             allowed phases  next phase
    Contribute    a declared participant   Open            Open, or Converged once all agree
    Commitment    the initiator            Converged       resolves the session

A Commitment is checked for readiness (converged) before its payload fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import immutables
from google.protobuf.message import DecodeError
from macp.modes.multi_round.v1 import multi_round_pb2

from ..commitment import CommitmentPayload, check_common
from ..policy.rules import GenericRules
from .base import Context, ModeSpec, Rule, StartContext, Who, require
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="ext.multi_round.v1",
    mode_version="1.0.0",
    title="Multi-round convergence",
    description="Participants contribute values over rounds until they all agree.",
    determinism_class="semantic-deterministic",
    participant_model="peer",
    message_types=("SessionStart", "Contribute", "Commitment"),
)

OPEN = "Open"
CONVERGED = "Converged"
CONVERGENCE_TYPE = "all_equal"


def decode_contribution(data: bytes) -> str:
    """The value a Contribute payload carries; raises ValueError for a payload it cannot be."""
    if not data:
        raise ValueError("the payload is empty; send ContributePayload{value} with a non-empty value")
    try:
        proto: Any = multi_round_pb2.ContributePayload.FromString(data)
    except DecodeError:
        proto = None
    canonical = (
        proto is not None and multi_round_pb2.ContributePayload(value=proto.value).SerializeToString() == data
    )
    legacy = _legacy_json_value(data)
    if legacy is not None and not canonical:
        return legacy
    if proto is None:
        raise ValueError(
            'it is neither a ContributePayload protobuf nor the legacy JSON {"value": "<string>"}'
        )
    value: str = proto.value
    if not value:
        raise ValueError("the ContributePayload carries no value")
    return value


def _legacy_json_value(data: bytes) -> str | None:
    try:
        parsed = json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("value"), str):
        value: str = parsed["value"]
        return value
    return None


class Contribution:
    """The payload 'class' of Contribute: decodes to the contributed string."""

    @staticmethod
    def FromString(data: bytes) -> str:  # named like the protobuf API the rule table expects
        return decode_contribution(data)


@dataclass(frozen=True, slots=True)
class MultiRoundState:
    participants: tuple[str, ...]
    contributions: immutables.Map[str, str] = field(default_factory=immutables.Map)
    round: int = 0
    converged: bool = False


def _phase(state: MultiRoundState) -> str:
    return CONVERGED if state.converged else OPEN


def _start(ctx: StartContext) -> MultiRoundState:
    require(len(ctx.participants) >= 1, "a multi-round session needs at least one declared participant")
    return MultiRoundState(participants=ctx.participants)


def _contribute(state: MultiRoundState, ctx: Context, value: str) -> MultiRoundState:
    if state.contributions.get(ctx.sender) == value:
        return state
    contributions = state.contributions.set(ctx.sender, value)
    return replace(
        state,
        contributions=contributions,
        round=state.round + 1,
        converged=_converged(contributions, state.participants, ctx.initiator),
    )


def _converged(
    contributions: immutables.Map[str, str], participants: tuple[str, ...], initiator: str
) -> bool:
    # The coordinator usually only watches; it counts only when nobody else can contribute.
    required = [p for p in participants if p != initiator] or list(participants)
    return all(p in contributions for p in required) and len(set(contributions.values())) == 1


def _commit(state: MultiRoundState, ctx: Context, payload: Any) -> MultiRoundState:
    check_common(ctx, payload)
    return state


RULES: dict[str, Rule[MultiRoundState]] = {
    "Contribute": Rule(
        Who.PARTICIPANT,
        frozenset({OPEN}),
        Contribution,
        _contribute,
        phase_error="the session has converged; contributions are closed and the initiator may commit",
    ),
    "Commitment": Rule(
        Who.INITIATOR,
        frozenset({CONVERGED}),
        CommitmentPayload,
        _commit,
        resolves=True,
        phase_error="the participants have not converged on one value yet; commit once every participant "
        "has contributed the same value",
    ),
}


def _project(state: MultiRoundState) -> dict[str, Any]:
    return {
        "round": state.round,
        "participants": list(state.participants),
        "contributions": dict(sorted(state.contributions.items())),
        "convergence_type": CONVERGENCE_TYPE,
        "converged": state.converged,
    }


SPEC: ModeSpec[MultiRoundState] = ModeSpec(
    descriptor=DESCRIPTOR,
    rules=RULES,
    start=_start,
    phase=_phase,
    project=_project,
    parse_rules=GenericRules.parse,
)
