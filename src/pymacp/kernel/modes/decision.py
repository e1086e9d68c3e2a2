"""Decision mode (``macp.mode.decision.v1``, RFC-MACP-0007): select one proposal.

Theory of operation. Declared participants table proposals, evaluate and object to them,
then vote. The phase only moves forward: the first Proposal opens Evaluation, the first
Vote opens Voting, and Voting closes the floor to new proposals, evaluations and
objections. Every role is membership: the initiator too must be a declared participant to
propose, evaluate, object or vote (so a session with no participants can never progress).
Only the Commitment is granted by role, to the policy's commitment authority. It needs at
least one proposal on record; whether the bound policy allows the requested outcome is
then decided by the pure evaluator :func:`~pymacp.kernel.policy.decision.evaluate_decision`
(RFC-MACP-0012 §6.4), which this module feeds with plain ballots, evaluations and
objections drawn from its state.

    message type  who may send                allowed phases                next phase
    ------------  --------------------------  ----------------------------  ----------
    Proposal      a declared participant      Proposal, Evaluation          Evaluation
    Evaluation    a declared participant      Evaluation                    Evaluation
    Objection     a declared participant      Evaluation                    Evaluation
    Vote          a declared participant      Evaluation, Voting            Voting
    Commitment    the commitment authority    Proposal, Evaluation, Voting  Committed

So a Vote after the first Vote may come from any declared participant, on any proposal it
has not voted on yet. The handlers then check, each failure INVALID_ENVELOPE:

- Proposal: non-blank ``proposal_id`` and ``option``; the id is new to the session.
- Evaluation: an existing proposal; ``recommendation`` in APPROVE | REVIEW | BLOCK | REJECT
  (any case, stored uppercase); ``confidence`` in [0, 1].
- Objection: an existing proposal; ``severity`` in low | medium | high | critical (any case,
  stored lowercase; empty means medium).
- Vote: an existing proposal; ``vote`` in APPROVE | REJECT | ABSTAIN (any case, stored
  uppercase); one vote per (proposal, sender) — the first one stands.
- Commitment: the common payload checks, then readiness (a proposal exists, in either
  polarity), then the policy (POLICY_DENIED, with the evaluator's denials).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

import immutables
from macp.modes.decision.v1 import decision_pb2

from ..commitment import CommitmentPayload, check_common
from ..errors import ErrorCode, Reject
from ..policy.decision import Assessment, Ballot, Objection, evaluate_decision
from ..policy.rules import DecisionRules
from .base import Context, ModeSpec, Rule, StartContext, Who, nonblank, require
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="macp.mode.decision.v1",
    mode_version="1.0.0",
    title="Decision",
    description="Select one proposal through evaluations, objections and votes.",
    determinism_class="semantic-deterministic",
    participant_model="declared",
    message_types=("SessionStart", "Proposal", "Evaluation", "Objection", "Vote", "Commitment"),
)

PROPOSAL = "Proposal"
EVALUATION = "Evaluation"
VOTING = "Voting"
COMMITTED = "Committed"

RECOMMENDATIONS = ("APPROVE", "REVIEW", "BLOCK", "REJECT")
SEVERITIES = ("low", "medium", "high", "critical")
VOTES = ("APPROVE", "REJECT", "ABSTAIN")

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    proposal_id: str
    option: str
    rationale: str
    sender: str


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    proposal_id: str
    recommendation: str
    confidence: float
    reason: str
    sender: str


@dataclass(frozen=True, slots=True)
class ObjectionRecord:
    proposal_id: str
    reason: str
    severity: str
    sender: str


@dataclass(frozen=True, slots=True)
class VoteRecord:
    proposal_id: str
    vote: str
    reason: str
    sender: str


@dataclass(frozen=True, slots=True)
class DecisionState:
    phase: str
    proposals: immutables.Map[str, ProposalRecord]
    # Arrival-ordered lists kept as index -> record maps, so appending shares structure.
    evaluations: immutables.Map[int, EvaluationRecord]
    objections: immutables.Map[int, ObjectionRecord]
    votes: immutables.Map[str, immutables.Map[str, VoteRecord]]  # proposal_id -> sender -> first vote


def _start(ctx: StartContext) -> DecisionState:
    return DecisionState(PROPOSAL, immutables.Map(), immutables.Map(), immutables.Map(), immutables.Map())


# ---------------------------------------------------------------- handlers, then the rule table
def _propose(state: DecisionState, ctx: Context, p: Any) -> DecisionState:
    require(nonblank(p.proposal_id), "Proposal proposal_id must not be blank")
    require(nonblank(p.option), "Proposal option must not be blank; name the option being proposed")
    require(
        p.proposal_id not in state.proposals,
        f"proposal_id {p.proposal_id!r} is already used in this session; choose a new id",
    )
    record = ProposalRecord(p.proposal_id, p.option, p.rationale, ctx.sender)
    return replace(state, phase=EVALUATION, proposals=state.proposals.set(p.proposal_id, record))


def _evaluate(state: DecisionState, ctx: Context, p: Any) -> DecisionState:
    _require_proposal(state, p.proposal_id, "Evaluation")
    recommendation = p.recommendation.upper()
    require(
        recommendation in RECOMMENDATIONS,
        f"Evaluation recommendation {p.recommendation!r} must be one of {', '.join(RECOMMENDATIONS)}",
    )
    require(0.0 <= p.confidence <= 1.0, f"Evaluation confidence {p.confidence!r} must be between 0 and 1")
    record = EvaluationRecord(p.proposal_id, recommendation, p.confidence, p.reason, ctx.sender)
    return replace(state, evaluations=state.evaluations.set(len(state.evaluations), record))


def _object(state: DecisionState, ctx: Context, p: Any) -> DecisionState:
    _require_proposal(state, p.proposal_id, "Objection")
    severity = p.severity.lower() or "medium"
    require(
        severity in SEVERITIES, f"Objection severity {p.severity!r} must be one of {', '.join(SEVERITIES)}"
    )
    record = ObjectionRecord(p.proposal_id, p.reason, severity, ctx.sender)
    return replace(state, objections=state.objections.set(len(state.objections), record))


def _vote(state: DecisionState, ctx: Context, p: Any) -> DecisionState:
    _require_proposal(state, p.proposal_id, "Vote")
    vote = p.vote.upper()
    require(vote in VOTES, f"Vote {p.vote!r} must be one of {', '.join(VOTES)}")
    cast: immutables.Map[str, VoteRecord] = state.votes.get(p.proposal_id, immutables.Map())
    require(
        ctx.sender not in cast,
        f"{ctx.sender!r} has already voted on proposal {p.proposal_id!r}; a vote cannot be changed",
    )
    record = VoteRecord(p.proposal_id, vote, p.reason, ctx.sender)
    return replace(state, phase=VOTING, votes=state.votes.set(p.proposal_id, cast.set(ctx.sender, record)))


def _commit(state: DecisionState, ctx: Context, p: Any) -> DecisionState:
    check_common(ctx, p)
    require(
        bool(state.proposals),
        "a Decision session cannot resolve before at least one Proposal is on record, in either outcome",
    )
    rules: DecisionRules = ctx.rules
    denials = evaluate_decision(
        rules,
        ctx.policy.schema_version,
        ctx.participants,
        ballots=(Ballot(v.sender, v.vote) for v in _votes_in_order(state)),
        evaluations=(Assessment(e.recommendation, e.confidence) for e in _in_order(state.evaluations)),
        objections=(Objection(o.sender, o.severity) for o in _in_order(state.objections)),
        outcome_positive=p.outcome_positive,
    )
    if denials:
        outcome = "positive" if p.outcome_positive else "negative"
        raise Reject(
            ErrorCode.POLICY_DENIED,
            f"policy {ctx.policy.policy_id!r} refuses a {outcome} Commitment: "
            + "; ".join(d.message for d in denials),
            denials,
        )
    return replace(state, phase=COMMITTED)


def _in_order(records: immutables.Map[int, R]) -> list[R]:
    return [records[i] for i in range(len(records))]


def _votes_in_order(state: DecisionState) -> list[VoteRecord]:
    """Every recorded vote, by proposal then sender, so weighted sums add up the same way every time."""
    ordered: list[VoteRecord] = []
    for pid in sorted(state.votes):
        by_sender = state.votes[pid]
        ordered.extend(by_sender[sender] for sender in sorted(by_sender))
    return ordered


def _require_proposal(state: DecisionState, proposal_id: str, what: str) -> None:
    require(
        proposal_id in state.proposals,
        f"{what} names proposal {proposal_id!r}, which does not exist in this session",
    )


RULES: dict[str, Rule[DecisionState]] = {
    "Proposal": Rule(
        Who.PARTICIPANT,
        frozenset({PROPOSAL, EVALUATION}),
        decision_pb2.ProposalPayload,
        _propose,
        phase_error="voting has started, so no new Proposal is accepted",
    ),
    "Evaluation": Rule(
        Who.PARTICIPANT,
        frozenset({EVALUATION}),
        decision_pb2.EvaluationPayload,
        _evaluate,
        phase_error="Evaluation is accepted only after a Proposal and before the first Vote",
    ),
    "Objection": Rule(
        Who.PARTICIPANT,
        frozenset({EVALUATION}),
        decision_pb2.ObjectionPayload,
        _object,
        phase_error="Objection is accepted only after a Proposal and before the first Vote",
    ),
    "Vote": Rule(
        Who.PARTICIPANT,
        frozenset({EVALUATION, VOTING}),
        decision_pb2.VotePayload,
        _vote,
        phase_error="Vote needs a proposal on record; send a Proposal first",
    ),
    "Commitment": Rule(
        Who.COMMIT_AUTHORITY,
        frozenset({PROPOSAL, EVALUATION, VOTING}),
        CommitmentPayload,
        _commit,
        resolves=True,
    ),
}


# ---------------------------------------------------------------- projection
def _project(state: DecisionState) -> dict[str, Any]:
    return {
        "phase": state.phase,
        "proposals": {
            pid: {
                "proposal_id": r.proposal_id,
                "option": r.option,
                "rationale": r.rationale,
                "sender": r.sender,
            }
            for pid, r in sorted(state.proposals.items())
        },
        "evaluations": [
            {
                "proposal_id": e.proposal_id,
                "recommendation": e.recommendation,
                "confidence": e.confidence,
                "reason": e.reason,
                "sender": e.sender,
            }
            for e in _in_order(state.evaluations)
        ],
        "objections": [
            {"proposal_id": o.proposal_id, "reason": o.reason, "severity": o.severity, "sender": o.sender}
            for o in _in_order(state.objections)
        ],
        "votes": {
            pid: {
                sender: {"proposal_id": v.proposal_id, "vote": v.vote, "reason": v.reason, "sender": v.sender}
                for sender, v in sorted(by_sender.items())
            }
            for pid, by_sender in sorted(state.votes.items(), key=lambda item: item[0])
        },
    }


SPEC: ModeSpec[DecisionState] = ModeSpec(
    descriptor=DESCRIPTOR,
    rules=RULES,
    start=_start,
    phase=lambda s: s.phase,
    project=_project,
    parse_rules=DecisionRules.parse,
)
