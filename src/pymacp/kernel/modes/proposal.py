"""Proposal mode (``macp.mode.proposal.v1``, RFC-MACP-0008): negotiate to mutual acceptance.

Theory of operation. Peers table proposals and counter-proposals, and accept, reject or
withdraw them. Nothing is ever retired implicitly: a CounterProposal is a new live
proposal beside the one it answers, and only its author's Withdraw takes a proposal off
the table (dropping the accepts and terminal rejections that pointed at it). Each
participant holds one stance at a time, its latest Accept; a Reject of the proposal it
had accepted retracts that accept.

The phase is not a gate for negotiation — every negotiating message is allowed while the
session is open — but a summary recomputed after each message, and it decides which
Commitment may resolve the session:

- ``TerminalRejected`` while any terminal rejection stands (a Reject with ``terminal``
  set, or any Reject under policy ``rejection.terminal_on_any_reject``). It admits only
  a **negative** Commitment: the negotiation has failed, and it cannot also succeed.
- else ``Converged`` when some live proposal meets the acceptance criterion
  (policy ``acceptance.criterion``): ``all_parties`` (default) — every declared
  participant's latest Accept names it; ``counterparty`` — everyone but its proposer
  (and there is at least one such party); ``initiator`` — the initiator's does. It
  admits only a **positive** Commitment.
- else ``Negotiating``, which admits no Commitment at all.
- ``Committed`` once resolved.

    message type     who may send                 allowed phases                  next phase
    ---------------  ---------------------------  ------------------------------  ----------
    Proposal         a declared participant       Negotiating, Converged,         recomputed
                                                  TerminalRejected
    CounterProposal  a declared participant       (same)                          recomputed
    Accept           a declared participant       (same)                          recomputed
    Reject           a declared participant       (same)                          recomputed
    Withdraw         the proposal's author        (same)                          recomputed
    Commitment       the commitment authority     Converged (positive only),      Committed
                                                  TerminalRejected (negative only)

The handlers check, each failure INVALID_ENVELOPE unless noted:

- Proposal / CounterProposal: a non-blank ``proposal_id`` new to the session; a
  CounterProposal also names an existing proposal in ``supersedes_proposal_id``, and may
  not exceed policy ``counter_proposal.max_rounds`` (0 = unlimited) counter-proposals.
- Accept / Reject: the proposal exists and is live (not withdrawn).
- Withdraw: the proposal exists; the sender is its author (FORBIDDEN); it is still live.
- Commitment: the common payload checks; then readiness — a proposal exists and the phase
  admits the requested polarity (above); then the policy (POLICY_DENIED): a positive
  Commitment past ``max_rounds`` counter-proposals is refused (the admission check above
  makes this a safeguard only); a negative one never is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import immutables
from macp.modes.proposal.v1 import proposal_pb2

from ..commitment import CommitmentPayload, check_common
from ..errors import Denial, ErrorCode, Reject, invalid
from ..policy.rules import ProposalRules
from .base import Context, ModeSpec, Rule, StartContext, Who, nonblank, require, require_sender
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="macp.mode.proposal.v1",
    mode_version="1.0.0",
    title="Proposal",
    description="Negotiate proposals and counter-proposals to mutual acceptance.",
    determinism_class="semantic-deterministic",
    participant_model="peer",
    message_types=(
        "SessionStart",
        "Proposal",
        "CounterProposal",
        "Accept",
        "Reject",
        "Withdraw",
        "Commitment",
    ),
)

NEGOTIATING = "Negotiating"
CONVERGED = "Converged"
TERMINAL_REJECTED = "TerminalRejected"
COMMITTED = "Committed"
OPEN_PHASES = frozenset({NEGOTIATING, CONVERGED, TERMINAL_REJECTED})

LIVE = "Live"
WITHDRAWN = "Withdrawn"


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    proposal_id: str
    title: str
    summary: str
    tags: tuple[str, ...]
    proposer: str
    supersedes_proposal_id: str | None
    disposition: str = LIVE


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    proposal_id: str
    sender: str
    reason: str
    terminal: bool


@dataclass(frozen=True, slots=True)
class ProposalState:
    phase: str
    proposals: immutables.Map[str, ProposalRecord]
    accepts: immutables.Map[str, str]  # sender -> the proposal_id of its latest Accept
    rejections: immutables.Map[int, RejectionRecord]  # arrival index -> rejection
    # proposal_id -> (arrival index -> rejection): the standing terminal rejections, grouped so
    # that a Withdraw drops its proposal's in one step.
    terminal: immutables.Map[str, immutables.Map[int, RejectionRecord]]
    counter_proposals: int = 0


def _start(ctx: StartContext) -> ProposalState:
    require(bool(ctx.participants), "a Proposal session needs at least one declared participant")
    return ProposalState(NEGOTIATING, immutables.Map(), immutables.Map(), immutables.Map(), immutables.Map())


# ---------------------------------------------------------------- handlers, then the rule table
def _propose(state: ProposalState, ctx: Context, p: Any) -> ProposalState:
    _require_new_id(state, p.proposal_id, "Proposal")
    record = ProposalRecord(p.proposal_id, p.title, p.summary, tuple(p.tags), ctx.sender, None)
    return _settle(replace(state, proposals=state.proposals.set(p.proposal_id, record)), ctx)


def _counter(state: ProposalState, ctx: Context, p: Any) -> ProposalState:
    _require_new_id(state, p.proposal_id, "CounterProposal")
    require(
        nonblank(p.supersedes_proposal_id),
        "CounterProposal supersedes_proposal_id must name the proposal it answers",
    )
    require(
        p.supersedes_proposal_id in state.proposals,
        f"CounterProposal supersedes proposal {p.supersedes_proposal_id!r}, "
        "which does not exist in this session",
    )
    max_rounds = _rules(ctx).max_rounds
    require(
        not max_rounds or state.counter_proposals < max_rounds,
        f"the policy allows at most {max_rounds} counter-proposal(s) and that many have been made",
    )
    record = ProposalRecord(p.proposal_id, p.title, p.summary, (), ctx.sender, p.supersedes_proposal_id)
    return _settle(
        replace(
            state,
            proposals=state.proposals.set(p.proposal_id, record),
            counter_proposals=state.counter_proposals + 1,
        ),
        ctx,
    )


def _accept(state: ProposalState, ctx: Context, p: Any) -> ProposalState:
    _require_live(state, p.proposal_id, "Accept")
    return _settle(replace(state, accepts=state.accepts.set(ctx.sender, p.proposal_id)), ctx)


def _reject(state: ProposalState, ctx: Context, p: Any) -> ProposalState:
    _require_live(state, p.proposal_id, "Reject")
    terminal = p.terminal or _rules(ctx).terminal_on_any_reject
    record = RejectionRecord(p.proposal_id, ctx.sender, p.reason, terminal)
    index = len(state.rejections)
    accepts = state.accepts
    if accepts.get(ctx.sender) == p.proposal_id:
        accepts = accepts.delete(ctx.sender)
    standing = state.terminal
    if terminal:
        standing = standing.set(
            p.proposal_id, standing.get(p.proposal_id, immutables.Map()).set(index, record)
        )
    updated = replace(
        state, accepts=accepts, rejections=state.rejections.set(index, record), terminal=standing
    )
    return _settle(updated, ctx)


def _withdraw(state: ProposalState, ctx: Context, p: Any) -> ProposalState:
    record = state.proposals.get(p.proposal_id)
    if record is None:
        raise invalid(f"Withdraw names proposal {p.proposal_id!r}, which does not exist in this session")
    require_sender(
        record.proposer == ctx.sender,
        f"only {record.proposer!r}, who made proposal {p.proposal_id!r}, may withdraw it",
    )
    require(record.disposition == LIVE, f"proposal {p.proposal_id!r} has already been withdrawn")
    accepts = state.accepts
    for sender, target in state.accepts.items():
        if target == p.proposal_id:
            accepts = accepts.delete(sender)
    standing = state.terminal.delete(p.proposal_id) if p.proposal_id in state.terminal else state.terminal
    updated = replace(
        state,
        proposals=state.proposals.set(p.proposal_id, replace(record, disposition=WITHDRAWN)),
        accepts=accepts,
        terminal=standing,
    )
    return _settle(updated, ctx)


def _commit(state: ProposalState, ctx: Context, p: Any) -> ProposalState:
    check_common(ctx, p)
    require(bool(state.proposals), "no proposal has been made yet, so there is nothing to commit")
    if p.outcome_positive:
        require(
            state.phase == CONVERGED,
            f"a positive Commitment needs a converged proposal; the session is {state.phase}"
            + (
                " (a terminal rejection stands: commit negatively)"
                if state.phase == TERMINAL_REJECTED
                else ""
            ),
        )
    else:
        require(
            state.phase == TERMINAL_REJECTED,
            f"a negative Commitment needs a terminal rejection on record; the session is {state.phase}",
        )
    denials = commit_denials(_rules(ctx), state.counter_proposals, p.outcome_positive)
    if denials:
        raise Reject(
            ErrorCode.POLICY_DENIED,
            f"policy {ctx.policy.policy_id!r} refuses the Commitment: "
            + "; ".join(d.message for d in denials),
            denials,
        )
    return replace(state, phase=COMMITTED)


RULES: dict[str, Rule[ProposalState]] = {
    "Proposal": Rule(Who.PARTICIPANT, OPEN_PHASES, proposal_pb2.ProposalPayload, _propose),
    "CounterProposal": Rule(Who.PARTICIPANT, OPEN_PHASES, proposal_pb2.CounterProposalPayload, _counter),
    "Accept": Rule(Who.PARTICIPANT, OPEN_PHASES, proposal_pb2.AcceptPayload, _accept),
    "Reject": Rule(Who.PARTICIPANT, OPEN_PHASES, proposal_pb2.RejectPayload, _reject),
    "Withdraw": Rule(Who.PARTICIPANT, OPEN_PHASES, proposal_pb2.WithdrawPayload, _withdraw),
    "Commitment": Rule(Who.COMMIT_AUTHORITY, OPEN_PHASES, CommitmentPayload, _commit, resolves=True),
}


# ---------------------------------------------------------------- helpers
def _rules(ctx: Context) -> ProposalRules:
    rules: ProposalRules = ctx.rules
    return rules


def _require_new_id(state: ProposalState, proposal_id: str, what: str) -> None:
    require(nonblank(proposal_id), f"{what} proposal_id must not be blank")
    require(
        proposal_id not in state.proposals,
        f"proposal_id {proposal_id!r} is already used in this session; choose a new id",
    )


def _require_live(state: ProposalState, proposal_id: str, what: str) -> None:
    record = state.proposals.get(proposal_id)
    if record is None:
        raise invalid(f"{what} names proposal {proposal_id!r}, which does not exist in this session")
    require(record.disposition == LIVE, f"{what} names proposal {proposal_id!r}, which has been withdrawn")


def _settle(state: ProposalState, ctx: Context) -> ProposalState:
    """Recompute the phase after a message."""
    if state.terminal:
        phase = TERMINAL_REJECTED
    elif any(_meets_criterion(state, ctx, pid) for pid in sorted(set(state.accepts.values()))):
        phase = CONVERGED
    else:
        phase = NEGOTIATING
    return state if phase == state.phase else replace(state, phase=phase)


def _meets_criterion(state: ProposalState, ctx: Context, proposal_id: str) -> bool:
    """Whether ``proposal_id`` (live: accepts never point at a withdrawn one) is accepted enough."""
    criterion = _rules(ctx).acceptance_criterion
    if criterion == "initiator":
        return state.accepts.get(ctx.initiator) == proposal_id
    if criterion == "counterparty":
        proposer = state.proposals[proposal_id].proposer
        parties = [p for p in ctx.participants if p != proposer]
        return bool(parties) and all(state.accepts.get(p) == proposal_id for p in parties)
    # all_parties, and any criterion this runtime does not know (the strictest reading).
    return all(state.accepts.get(p) == proposal_id for p in ctx.participants)


def commit_denials(
    rules: ProposalRules, counter_proposals: int, outcome_positive: bool
) -> tuple[Denial, ...]:
    """The Proposal policy at commit time: only ``max_rounds``, and only for a positive outcome."""
    if outcome_positive and rules.max_rounds and counter_proposals > rules.max_rounds:
        return (
            Denial(
                "max_rounds_exceeded",
                f"{counter_proposals} counter-proposals were made; "
                f"the policy allows at most {rules.max_rounds}",
            ),
        )
    return ()


# ---------------------------------------------------------------- projection
def _project(state: ProposalState) -> dict[str, Any]:
    standing = sorted(
        ((index, r) for by_index in state.terminal.values() for index, r in by_index.items()),
        key=lambda item: item[0],
    )
    return {
        "phase": state.phase,
        "proposals": {
            pid: {
                "proposal_id": r.proposal_id,
                "title": r.title,
                "summary": r.summary,
                "tags": list(r.tags),
                "proposer": r.proposer,
                "supersedes_proposal_id": r.supersedes_proposal_id,
                "disposition": r.disposition,
            }
            for pid, r in sorted(state.proposals.items())
        },
        "accepts": dict(sorted(state.accepts.items())),
        "rejections": [_rejection_json(state.rejections[i]) for i in range(len(state.rejections))],
        "terminal_rejections": [_rejection_json(r) for _, r in standing],
    }


def _rejection_json(r: RejectionRecord) -> dict[str, Any]:
    return {"proposal_id": r.proposal_id, "sender": r.sender, "reason": r.reason, "terminal": r.terminal}


SPEC: ModeSpec[ProposalState] = ModeSpec(
    descriptor=DESCRIPTOR,
    rules=RULES,
    start=_start,
    phase=lambda s: s.phase,
    project=_project,
    parse_rules=ProposalRules.parse,
)
