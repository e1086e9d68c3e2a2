"""Canonical event types, and how one accepted envelope becomes exactly one event.

A run's history is a gapless sequence of events (seq 1, 2, ...). Two kinds exist:

* **Envelope events** -- one per accepted envelope the console observed on the session's
  stream (or, for correlated Signals, on WatchSignals). They carry the runtime ordinal and
  the message id; ``data`` is the envelope's canonical JSON (RFC-MACP-0001 §10, payload
  decoded with the official protobuf types when the mode is known, ``payload_b64``
  otherwise). Console-computed extras are keys starting with ``_``, which the canonical
  mapping treats as annotations, so ``data`` still reads back as the same envelope.
* **Console events** -- facts the console itself establishes: the run was created, its
  status changed, part of the history could not be read, a cancel was requested, the
  decision receipt was checked. They carry no ordinal and no message id.

The type of an envelope event is looked up in two tables: a per-mode table first (message
type names collide across modes: ``Reject`` means different things in proposal and quorum
mode), then a mode-independent one. Anything not listed is ``message.received``, so every
accepted envelope is stored exactly once whatever its mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from macp.v1 import core_pb2

from pymacp.kernel.commitment_hash import commitment_hash
from pymacp.kernel.envelope import Envelope
from pymacp.kernel.jsonmap import envelope_to_json

DECISION = "macp.mode.decision.v1"
PROPOSAL = "macp.mode.proposal.v1"
TASK = "macp.mode.task.v1"
HANDOFF = "macp.mode.handoff.v1"
QUORUM = "macp.mode.quorum.v1"
MULTI_ROUND = "ext.multi_round.v1"

# Envelope event types whose meaning does not depend on the mode.
COMMON_TYPES: Mapping[str, str] = {
    "SessionStart": "session.started",
    "Commitment": "commitment.made",
    "Progress": "progress.reported",
    "Signal": "signal.emitted",
}

# (mode, message type) -> event type, for the standard modes and the built-in extension.
MODE_TYPES: Mapping[tuple[str, str], str] = {
    (DECISION, "Proposal"): "proposal.submitted",
    (DECISION, "Evaluation"): "evaluation.submitted",
    (DECISION, "Objection"): "objection.raised",
    (DECISION, "Vote"): "vote.cast",
    (PROPOSAL, "Proposal"): "proposal.submitted",
    (PROPOSAL, "CounterProposal"): "proposal.submitted",
    (PROPOSAL, "Accept"): "proposal.accepted",
    (PROPOSAL, "Reject"): "proposal.rejected",
    (PROPOSAL, "Withdraw"): "proposal.withdrawn",
    (QUORUM, "ApprovalRequest"): "approval.requested",
    (QUORUM, "Approve"): "ballot.cast",
    (QUORUM, "Reject"): "ballot.cast",
    (QUORUM, "Abstain"): "ballot.cast",
    (TASK, "TaskRequest"): "task.requested",
    (TASK, "TaskAccept"): "task.accepted",
    (TASK, "TaskReject"): "task.rejected",
    (TASK, "TaskUpdate"): "task.updated",
    (TASK, "TaskComplete"): "task.completed",
    (TASK, "TaskFail"): "task.failed",
    (HANDOFF, "HandoffOffer"): "handoff.offered",
    (HANDOFF, "HandoffContext"): "handoff.context",
    (HANDOFF, "HandoffAccept"): "handoff.accepted",
    (HANDOFF, "HandoffDecline"): "handoff.declined",
    (MULTI_ROUND, "Contribute"): "contribution.submitted",
}
FALLBACK_TYPE = "message.received"

# Events the console establishes itself (no ordinal, no message id).
CONSOLE_TYPES: Mapping[str, str] = {
    "run.created": "the console started tracking the run (POST /runs or discovery)",
    "run.status.changed": "the run's status moved, with the session state and reason",
    "stream.gap": "part of the session's history could not be read (e.g. compacted by the runtime)",
    "cancel.requested": "the console asked for cancellation (callback or CancelSession) and how it went",
    "receipt.checked": "the decision receipt was fetched and verified against the observed Commitment",
}

# Every canonical event type, with one line on what it means. The projection must have a
# reducer for each (an invariant test checks both directions).
EVENT_TYPES: Mapping[str, str] = {
    "session.started": "SessionStart: intent, participants, versions, TTL",
    "proposal.submitted": "a Proposal (decision or proposal mode) or CounterProposal",
    "evaluation.submitted": "a decision-mode Evaluation (recommendation, confidence)",
    "objection.raised": "a decision-mode Objection (severity, reason)",
    "vote.cast": "a decision-mode Vote (APPROVE, REJECT or ABSTAIN)",
    "proposal.accepted": "a proposal-mode Accept",
    "proposal.rejected": "a proposal-mode Reject (possibly terminal)",
    "proposal.withdrawn": "a proposal-mode Withdraw",
    "approval.requested": "a quorum ApprovalRequest (required approvals)",
    "ballot.cast": "a quorum Approve, Reject or Abstain",
    "task.requested": "a TaskRequest",
    "task.accepted": "a TaskAccept",
    "task.rejected": "a TaskReject",
    "task.updated": "a TaskUpdate (status, progress)",
    "task.completed": "a TaskComplete",
    "task.failed": "a TaskFail",
    "handoff.offered": "a HandoffOffer",
    "handoff.context": "a HandoffContext",
    "handoff.accepted": "a HandoffAccept (explicit or runtime-implicit)",
    "handoff.declined": "a HandoffDecline",
    "contribution.submitted": "a multi-round Contribute",
    "progress.reported": "a Progress envelope",
    "signal.emitted": "a Signal correlated with the session (from WatchSignals; no ordinal)",
    "policy.denied": "a correlated Signal of type policy.denied: a participant reporting a POLICY_DENIED",
    "commitment.made": "the accepted Commitment (with its RFC-0013 hash)",
    FALLBACK_TYPE: "any other accepted envelope (extension modes)",
    **CONSOLE_TYPES,
}


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be stored; the store assigns its seq."""

    type: str
    timestamp_ms: int
    data: Mapping[str, Any] = field(default_factory=dict)
    ordinal: int | None = None
    message_id: str | None = None
    message_type: str | None = None
    sender: str | None = None
    # Envelopes from the session's stream take the next runtime ordinal, assigned by the store
    # in the same transaction (and only if the message id is new to the run).
    takes_ordinal: bool = False


def event_type(mode: str, message_type: str) -> str:
    return MODE_TYPES.get((mode, message_type)) or COMMON_TYPES.get(message_type) or FALLBACK_TYPE


def envelope_event(envelope: Envelope, *, from_stream: bool) -> NewEvent:
    """The one event an accepted envelope becomes (``from_stream``: it has a session ordinal)."""
    data = envelope_to_json(envelope)
    if envelope.message_type == "Commitment":
        digest = _commitment_digest(envelope.payload)
        if digest is not None:
            data["_commitment_hash"] = digest
    return NewEvent(
        type=event_type(envelope.mode, envelope.message_type),
        timestamp_ms=envelope.timestamp_unix_ms,
        data=data,
        message_id=envelope.message_id,
        message_type=envelope.message_type,
        sender=envelope.sender,
        takes_ordinal=from_stream,
    )


def console_event(kind: str, now_ms: int, **data: Any) -> NewEvent:
    if kind not in CONSOLE_TYPES:
        raise ValueError(f"{kind!r} is not a console event type")
    return NewEvent(type=kind, timestamp_ms=now_ms, data={k: v for k, v in data.items() if v is not None})


def _commitment_digest(payload: bytes) -> str | None:
    try:
        message = core_pb2.CommitmentPayload.FromString(payload)
    except DecodeError:
        return None
    # RFC-0013: a payload carrying fields outside the nine hashed ones cannot be vouched for.
    if len(UnknownFieldSet(message)) or (
        message.HasField("supersedes") and len(UnknownFieldSet(message.supersedes))
    ):
        return None
    return commitment_hash(message)
