"""Quorum mode (``macp.mode.quorum.v1``, RFC-MACP-0011): approve an action by enough votes.

Theory of operation. The coordinator (the session initiator) puts one ApprovalRequest to
the declared participants, naming how many approvals it needs. The coordinator stands
outside the voter pool: it need not be a participant and votes only if it is listed.
Every participant casts at most one ballot -- Approve, Reject or Abstain -- and a ballot
cannot be changed. The session becomes eligible for a Commitment in one of two ways:

- positive (``quorum.approved``): approvals >= the bar;
- negative (``quorum.rejected``): the bar is out of reach, approvals + the participants
  who have not voted yet < the bar. Rejections and abstentions both shrink the pool.

The bar is ``required_approvals`` unless the bound policy sets a ``threshold``, which
replaces it as given (:mod:`..policy.quorum`); a bar above the pool makes the negative
outcome eligible at once. Readiness is checked for the direction the Commitment asks
for; anything else is INVALID_ENVELOPE. The policy's ``abstention`` rules do not change
the bar under this reading (an abstention always leaves the pool).

    message type     who may send               allowed phases   next phase
    ApprovalRequest  the initiator              Open             Voting
    Approve          a declared participant     Voting           Voting  (one ballot each)
    Reject           a declared participant     Voting           Voting  (one ballot each)
    Abstain          a declared participant     Voting           Voting  (one ballot each)
    Commitment       the commitment authority   any (readiness)  resolves the session

Phases: ``Open`` until the ApprovalRequest arrives, then ``Voting``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import immutables
from macp.modes.quorum.v1 import quorum_pb2

from ..commitment import CommitmentPayload, check_common
from ..errors import invalid
from ..policy.quorum import effective_threshold
from ..policy.rules import QuorumRules
from .base import Context, ModeSpec, Rule, StartContext, Who, nonblank, require
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="macp.mode.quorum.v1",
    mode_version="1.0.0",
    title="Quorum",
    description="Approve an action once enough participants approve.",
    determinism_class="semantic-deterministic",
    participant_model="quorum",
    message_types=("SessionStart", "ApprovalRequest", "Approve", "Reject", "Abstain", "Commitment"),
)

Handler = Callable[["QuorumState", Context, Any], "QuorumState"]

OPEN = "Open"
VOTING = "Voting"

APPROVE = "Approve"
REJECT = "Reject"
ABSTAIN = "Abstain"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    action: str
    summary: str
    details: bytes
    required_approvals: int
    requested_by: str


@dataclass(frozen=True, slots=True)
class BallotRecord:
    request_id: str
    choice: str  # Approve | Reject | Abstain
    sender: str
    reason: str


@dataclass(frozen=True, slots=True)
class QuorumState:
    request: RequestRecord | None = None
    ballots: immutables.Map[str, BallotRecord] = field(default_factory=immutables.Map)
    approvals: int = 0


def _phase(state: QuorumState) -> str:
    return OPEN if state.request is None else VOTING


def _start(ctx: StartContext) -> QuorumState:
    require(len(ctx.participants) >= 1, "a quorum session needs at least one declared participant to vote")
    return QuorumState()


def _request(state: QuorumState, ctx: Context, payload: Any) -> QuorumState:
    require(nonblank(payload.request_id), "ApprovalRequest request_id must not be blank")
    pool = len(ctx.participants)
    require(
        1 <= payload.required_approvals <= pool,
        f"ApprovalRequest required_approvals must be between 1 and the {pool} declared participants; "
        f"got {payload.required_approvals}",
    )
    record = RequestRecord(
        request_id=payload.request_id,
        action=payload.action,
        summary=payload.summary,
        details=bytes(payload.details),
        required_approvals=payload.required_approvals,
        requested_by=ctx.sender,
    )
    return replace(state, request=record)


def _ballot(choice: str) -> Handler:
    def handler(state: QuorumState, ctx: Context, payload: Any) -> QuorumState:
        open_id = state.request.request_id if state.request else ""
        require(
            payload.request_id == open_id,
            f"{choice} names request {payload.request_id!r}; the open request is {open_id!r}",
        )
        previous = state.ballots.get(ctx.sender)
        if previous is not None:
            raise invalid(
                f"{ctx.sender!r} already cast a ballot ({previous.choice}) on this request; each participant "
                "casts one ballot (Approve, Reject or Abstain) and cannot change it"
            )
        ballot = BallotRecord(payload.request_id, choice, ctx.sender, payload.reason)
        return replace(
            state,
            ballots=state.ballots.set(ctx.sender, ballot),
            approvals=state.approvals + int(choice == APPROVE),
        )

    return handler


def _commit(state: QuorumState, ctx: Context, payload: Any) -> QuorumState:
    check_common(ctx, payload)
    request = state.request
    if request is None:
        raise invalid("no ApprovalRequest yet; a Commitment needs a request that was put to a vote")
    bar = effective_threshold(ctx.rules, request.required_approvals, len(ctx.participants))
    remaining = len(ctx.participants) - len(state.ballots)
    if payload.outcome_positive:
        require(
            bar is not None and state.approvals >= bar,
            f"the request has {state.approvals} approval(s) and needs {_describe(bar)}; "
            "a positive Commitment must wait until the bar is reached",
        )
    else:
        require(
            bar is None or state.approvals + remaining < bar,
            f"the bar of {_describe(bar)} is met or still within reach ({state.approvals} approval(s), "
            f"{remaining} participant(s) yet to vote); a negative Commitment needs it out of reach",
        )
    return state


def _describe(bar: int | None) -> str:
    return "an unsatisfiable number of approvals" if bar is None else f"{bar} approval(s)"


_NO_REQUEST = "no ApprovalRequest yet; ballots answer the coordinator's open request"

RULES: dict[str, Rule[QuorumState]] = {
    "ApprovalRequest": Rule(
        Who.INITIATOR,
        frozenset({OPEN}),
        quorum_pb2.ApprovalRequestPayload,
        _request,
        phase_error="the session already has its ApprovalRequest; a quorum session carries exactly one",
    ),
    APPROVE: Rule(
        Who.PARTICIPANT,
        frozenset({VOTING}),
        quorum_pb2.ApprovePayload,
        _ballot(APPROVE),
        phase_error=_NO_REQUEST,
    ),
    REJECT: Rule(
        Who.PARTICIPANT,
        frozenset({VOTING}),
        quorum_pb2.RejectPayload,
        _ballot(REJECT),
        phase_error=_NO_REQUEST,
    ),
    ABSTAIN: Rule(
        Who.PARTICIPANT,
        frozenset({VOTING}),
        quorum_pb2.AbstainPayload,
        _ballot(ABSTAIN),
        phase_error=_NO_REQUEST,
    ),
    "Commitment": Rule(Who.COMMIT_AUTHORITY, None, CommitmentPayload, _commit, resolves=True),
}


def _project(state: QuorumState) -> dict[str, Any]:
    request = state.request
    return {
        "request": None
        if request is None
        else {
            "request_id": request.request_id,
            "action": request.action,
            "summary": request.summary,
            "details": list(request.details),
            "required_approvals": request.required_approvals,
            "requested_by": request.requested_by,
        },
        "ballots": {
            sender: {
                "request_id": ballot.request_id,
                "choice": ballot.choice,
                "sender": ballot.sender,
                "reason": ballot.reason,
            }
            for sender, ballot in sorted(state.ballots.items())
        },
    }


SPEC: ModeSpec[QuorumState] = ModeSpec(
    descriptor=DESCRIPTOR,
    rules=RULES,
    start=_start,
    phase=_phase,
    project=_project,
    parse_rules=QuorumRules.parse,
)
