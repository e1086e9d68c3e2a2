"""Handoff mode (``macp.mode.handoff.v1``, RFC-MACP-0010): transfer ownership of work.

Theory of operation. The initiator is the current owner and must be a declared
participant, beside at least one possible target. It offers the work to one other
participant with HandoffOffer; at most one offer is outstanding at a time, and none may
follow an accepted one. The target answers with HandoffAccept or HandoffDecline. After a
decline the owner may offer again, under a new ``handoff_id`` and to a target that has
not declined in this session. The owner may attach HandoffContext to any of its offers,
even after the answer (late context is supplementary documentation). A Commitment needs
an offer that was accepted or declined.

Implicit accept. When the policy sets ``acceptance.implicit_accept_timeout_ms``, an
offer left unanswered for that long is accepted on the target's behalf: the runtime
writes a HandoffAccept with ``implicit: true`` and message id
``implicit-accept:<handoff_id>`` into history (see :func:`_next_synthetic`). Time the
session spends suspended does not count. Clients may never send ``implicit: true``.

    message type     who may send                        allowed phases  next phase
    HandoffOffer     the initiator (owner)               Open            Offered
    HandoffContext   the offer's sender (a participant)  any             unchanged
    HandoffAccept    the offer's target (a participant)  offer Offered   Accepted
    HandoffDecline   the offer's target (a participant)  offer Offered   Open
    Commitment       the commitment authority            any (readiness) resolves the session

Phases: ``Open`` (no offer outstanding), ``Offered`` (one awaits its answer),
``Accepted`` (ownership moved; no further offers). An Accept or Decline naming an
unknown offer is INVALID_ENVELOPE, one from anyone but the target is FORBIDDEN, and one
for an offer already answered is INVALID_ENVELOPE.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import immutables
from macp.modes.handoff.v1 import handoff_pb2

from ..commitment import CommitmentPayload, check_common
from ..envelope import IMPLICIT_ACCEPT_PREFIX, Envelope
from ..errors import invalid
from ..policy.rules import HandoffRules
from .base import Context, ModeSpec, Rule, StartContext, Who, nonblank, require, require_sender
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="macp.mode.handoff.v1",
    mode_version="1.0.0",
    title="Handoff",
    description="Transfer ownership of work to another participant.",
    determinism_class="context-frozen",
    participant_model="delegated",
    message_types=(
        "SessionStart",
        "HandoffOffer",
        "HandoffContext",
        "HandoffAccept",
        "HandoffDecline",
        "Commitment",
    ),
)

OPEN = "Open"
OFFERED = "Offered"
ACCEPTED = "Accepted"
DECLINED = "Declined"  # an offer's disposition only; the session returns to Open

IMPLICIT_ACCEPT_REASON = "implicit accept (timeout)"


@dataclass(frozen=True, slots=True)
class OfferRecord:
    handoff_id: str
    target_participant: str
    scope: str
    reason: str
    offered_by: str
    offered_at_ms: int  # runtime clock at acceptance of the offer
    suspended_ms_at_offer: int  # the session's suspended total then; later pauses do not count
    disposition: str = OFFERED  # Offered | Accepted | Declined
    accepted_by: str | None = None
    declined_by: str | None = None
    outcome_reason: str | None = None
    implicit: bool = False  # accepted by the runtime on timeout


@dataclass(frozen=True, slots=True)
class ContextRecord:
    content_type: str
    context: bytes
    sender: str


@dataclass(frozen=True, slots=True)
class HandoffState:
    offers: immutables.Map[str, OfferRecord] = field(default_factory=immutables.Map)
    # handoff_id -> (arrival index -> context); contexts may keep coming, so no tuples here
    contexts: immutables.Map[str, immutables.Map[int, ContextRecord]] = field(default_factory=immutables.Map)
    outstanding: str | None = None  # the offer awaiting an answer
    accepted: str | None = None  # the offer that moved ownership
    declined_targets: frozenset[str] = frozenset()


def _phase(state: HandoffState) -> str:
    if state.accepted is not None:
        return ACCEPTED
    return OPEN if state.outstanding is None else OFFERED


def _start(ctx: StartContext) -> HandoffState:
    require(
        len(ctx.participants) >= 2 and ctx.initiator in ctx.participants,
        "a handoff session needs at least two declared participants, "
        "the initiator (the current owner) among them",
    )
    return HandoffState()


# ---------------------------------------------------------------- validation helpers
def _offer(state: HandoffState, handoff_id: str, message_type: str) -> OfferRecord:
    offer = state.offers.get(handoff_id)
    if offer is None:
        raise invalid(f"{message_type} names handoff {handoff_id!r}, which was never offered in this session")
    return offer


def _answerable(offer: OfferRecord, ctx: Context, claimed: str, field_name: str) -> None:
    """The checks an Accept and a Decline share, in their error-code order."""
    require_sender(
        ctx.sender == offer.target_participant,
        f"only the offer's target {offer.target_participant!r} may answer handoff {offer.handoff_id!r}",
    )
    require(
        not claimed or claimed == ctx.sender,
        f"{ctx.message_type} {field_name} {claimed!r} must be empty or the sender {ctx.sender!r}",
    )
    require(
        offer.disposition == OFFERED,
        f"handoff {offer.handoff_id!r} was already answered ({offer.disposition}); an offer takes one answer",
    )


# ---------------------------------------------------------------- handlers
def _handle_offer(state: HandoffState, ctx: Context, payload: Any) -> HandoffState:
    handoff_id = payload.handoff_id
    target = payload.target_participant
    require(nonblank(handoff_id), "HandoffOffer handoff_id must not be blank")
    require(
        handoff_id not in state.offers, f"handoff_id {handoff_id!r} was already used; offer under a new id"
    )
    require(
        target in ctx.participants and target != ctx.sender,
        f"HandoffOffer target_participant {target!r} must be a declared participant other than the owner",
    )
    require(
        target not in state.declined_targets,
        f"{target!r} already declined a handoff in this session and may not be offered again",
    )
    offer = OfferRecord(
        handoff_id=handoff_id,
        target_participant=target,
        scope=payload.scope,
        reason=payload.reason,
        offered_by=ctx.sender,
        offered_at_ms=ctx.now_ms,
        suspended_ms_at_offer=ctx.suspended_total_ms,
    )
    return replace(state, offers=state.offers.set(handoff_id, offer), outstanding=handoff_id)


def _handle_context(state: HandoffState, ctx: Context, payload: Any) -> HandoffState:
    offer = _offer(state, payload.handoff_id, ctx.message_type)
    require_sender(
        ctx.sender == offer.offered_by,
        f"only {offer.offered_by!r}, who made offer {offer.handoff_id!r}, may attach context to it",
    )
    entries = state.contexts.get(offer.handoff_id, immutables.Map())
    record = ContextRecord(payload.content_type, bytes(payload.context), ctx.sender)
    return replace(state, contexts=state.contexts.set(offer.handoff_id, entries.set(len(entries), record)))


def _handle_accept(state: HandoffState, ctx: Context, payload: Any) -> HandoffState:
    require(
        not payload.implicit or ctx.runtime_emitted,
        "HandoffAccept implicit=true is reserved for the runtime's timeout accept; send implicit=false",
    )
    offer = _offer(state, payload.handoff_id, ctx.message_type)
    _answerable(offer, ctx, payload.accepted_by, "accepted_by")
    answered = replace(
        offer,
        disposition=ACCEPTED,
        accepted_by=ctx.sender,
        outcome_reason=payload.reason,
        implicit=payload.implicit,
    )
    return replace(
        state,
        offers=state.offers.set(offer.handoff_id, answered),
        outstanding=None,
        accepted=offer.handoff_id,
    )


def _handle_decline(state: HandoffState, ctx: Context, payload: Any) -> HandoffState:
    offer = _offer(state, payload.handoff_id, ctx.message_type)
    _answerable(offer, ctx, payload.declined_by, "declined_by")
    answered = replace(offer, disposition=DECLINED, declined_by=ctx.sender, outcome_reason=payload.reason)
    return replace(
        state,
        offers=state.offers.set(offer.handoff_id, answered),
        outstanding=None,
        declined_targets=state.declined_targets | {ctx.sender},
    )


def _commit(state: HandoffState, ctx: Context, payload: Any) -> HandoffState:
    check_common(ctx, payload)
    require(
        state.accepted is not None or bool(state.declined_targets),
        "no offer has been accepted or declined yet; commit once the target answers",
    )
    return state


RULES: dict[str, Rule[HandoffState]] = {
    "HandoffOffer": Rule(
        Who.INITIATOR,
        frozenset({OPEN}),
        handoff_pb2.HandoffOfferPayload,
        _handle_offer,
        phase_error="another offer is outstanding or was accepted; one offer at a time, none after an accept",
    ),
    "HandoffContext": Rule(Who.PARTICIPANT, None, handoff_pb2.HandoffContextPayload, _handle_context),
    "HandoffAccept": Rule(Who.PARTICIPANT, None, handoff_pb2.HandoffAcceptPayload, _handle_accept),
    "HandoffDecline": Rule(Who.PARTICIPANT, None, handoff_pb2.HandoffDeclinePayload, _handle_decline),
    "Commitment": Rule(Who.COMMIT_AUTHORITY, None, CommitmentPayload, _commit, resolves=True),
}


# ---------------------------------------------------------------- time
def _next_synthetic(state: HandoffState, ctx: Context) -> tuple[int, Envelope] | None:
    """The implicit accept of the outstanding offer, and when it falls due."""
    rules: HandoffRules = ctx.rules
    if rules.implicit_accept_timeout_ms <= 0 or state.outstanding is None:
        return None
    offer = state.offers[state.outstanding]
    paused = ctx.suspended_total_ms - offer.suspended_ms_at_offer
    due_at_ms = offer.offered_at_ms + rules.implicit_accept_timeout_ms + paused
    payload = handoff_pb2.HandoffAcceptPayload(
        handoff_id=offer.handoff_id,
        accepted_by=offer.target_participant,
        reason=IMPLICIT_ACCEPT_REASON,
        implicit=True,
    )
    env = Envelope(
        macp_version="1.0",
        mode=ctx.mode,
        message_type="HandoffAccept",
        message_id=f"{IMPLICIT_ACCEPT_PREFIX}{offer.handoff_id}",
        session_id=ctx.session_id,
        sender=offer.target_participant,
        timestamp_unix_ms=ctx.now_ms,
        payload=payload.SerializeToString(),
    )
    return due_at_ms, env


# ---------------------------------------------------------------- projection
def _project(state: HandoffState) -> dict[str, Any]:
    return {
        "offers": {
            handoff_id: {
                "handoff_id": o.handoff_id,
                "target_participant": o.target_participant,
                "scope": o.scope,
                "reason": o.reason,
                "offered_by": o.offered_by,
                "disposition": o.disposition,
                "accepted_by": o.accepted_by,
                "declined_by": o.declined_by,
                "outcome_reason": o.outcome_reason,
                "offered_at_ms": o.offered_at_ms,
                "implicit": o.implicit,
            }
            for handoff_id, o in sorted(state.offers.items())
        },
        "contexts": {
            handoff_id: [
                {"content_type": c.content_type, "context": list(c.context), "sender": c.sender}
                for c in (entries[i] for i in range(len(entries)))
            ]
            for handoff_id, entries in sorted(state.contexts.items())
        },
    }


SPEC: ModeSpec[HandoffState] = ModeSpec(
    descriptor=DESCRIPTOR,
    rules=RULES,
    start=_start,
    phase=_phase,
    project=_project,
    parse_rules=HandoffRules.parse,
    next_synthetic=_next_synthetic,
)
