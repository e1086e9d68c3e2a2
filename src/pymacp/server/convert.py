"""Runtime values -> ``macp.v1`` protobuf messages."""

from __future__ import annotations

from macp.v1 import core_pb2, envelope_pb2, policy_pb2

from ..kernel import EventType
from ..kernel.whatif import EntryOutcome, RunOutcome, WhatIfResult
from ..runtime.core import Ack, SessionEvent
from ..runtime.summary import SessionSummary


def metadata(summary: SessionSummary) -> core_pb2.SessionMetadata:
    return core_pb2.SessionMetadata(
        session_id=summary.session_id,
        mode=summary.mode,
        state=int(summary.state),
        started_at_unix_ms=summary.started_at_ms,
        expires_at_unix_ms=summary.expires_at_ms,
        mode_version=summary.mode_version,
        configuration_version=summary.configuration_version,
        policy_version=summary.policy_id,
        participants=list(summary.participants),
        participant_activity=[
            core_pb2.ParticipantActivity(
                participant_id=pid, last_message_at_unix_ms=last, message_count=count
            )
            for pid, count, last in summary.activity
        ],
        initiator=summary.initiator,
        context_id=summary.context_id,
        extension_keys=list(summary.extension_keys),
    )


def ack(value: Ack) -> envelope_pb2.Ack:
    msg = envelope_pb2.Ack(
        ok=value.ok,
        duplicate=value.duplicate,
        message_id=value.message_id,
        session_id=value.session_id,
        accepted_at_unix_ms=value.accepted_at_ms,
        session_state=int(value.state),
    )
    if value.rejection is not None:
        msg.error.CopyFrom(
            envelope_pb2.MACPError(
                code=value.rejection.code.value,
                message=value.rejection.message,
                session_id=value.session_id,
                message_id=value.message_id,
                details=value.rejection.details_bytes(),
            )
        )
    return msg


def lifecycle(event: SessionEvent) -> core_pb2.WatchSessionsResponse:
    return core_pb2.WatchSessionsResponse(
        event=core_pb2.SessionLifecycleEvent(
            event_type=int(event.type), session=metadata(event.session), observed_at_unix_ms=event.at_ms
        )
    )


def lifecycle_created(summary: SessionSummary) -> core_pb2.WatchSessionsResponse:
    """The initial-sync event for a session that existed when the watcher subscribed."""
    return lifecycle(SessionEvent(EventType.CREATED, summary, summary.started_at_ms))


def _run(outcome: RunOutcome) -> policy_pb2.WhatIfOutcome:
    return policy_pb2.WhatIfOutcome(
        state=int(outcome.state),
        resolution=outcome.resolution,
        resolved_by_history_index=outcome.resolved_by_history_index,
        resolved_by_message_id=outcome.resolved_by_message_id,
        resolved_by_message_type=outcome.resolved_by_message_type,
    )


def _entry(outcome: EntryOutcome) -> policy_pb2.WhatIfEntryOutcome:
    return policy_pb2.WhatIfEntryOutcome(
        kind=int(outcome.kind),
        state=int(outcome.state),
        error_code=outcome.error_code,
        details=outcome.details,
    )


def what_if(result: WhatIfResult) -> policy_pb2.WhatIfReplayResponse:
    response = policy_pb2.WhatIfReplayResponse(
        candidate_policy_id=result.candidate_policy_id,
        recorded_policy_id=result.recorded_policy_id,
        recorded=_run(result.recorded),
        candidate=_run(result.candidate),
        denials=[
            policy_pb2.WhatIfDenial(
                history_index=e.history_index, message_id=e.message_id, details=e.candidate.details
            )
            for e in result.denials
        ],
        entries=[
            policy_pb2.WhatIfEntry(
                history_index=e.history_index,
                message_id=e.message_id,
                message_type=e.message_type,
                recorded=_entry(e.recorded),
                candidate=_entry(e.candidate),
            )
            for e in result.entries
        ],
    )
    if result.first_divergence is not None:
        response.first_divergence = result.first_divergence
    return response
