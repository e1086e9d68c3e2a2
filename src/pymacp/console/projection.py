"""The projection: every event of a run folded, in seq order, by the reducer its type names.

``REDUCERS[event type] -> reducer`` below is the whole projection. Reducers are pure
updates of one :class:`~.view.View` from one event, so the same events always give the same
view, and a view can be built incrementally (the console caches views and folds only new
events). Every canonical type in :data:`pymacp.console.events.EVENT_TYPES` has exactly one
reducer; an invariant test checks both directions.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import reducers as r
from .models import RunEvent
from .view import View

__all__ = ["REDUCERS", "View", "apply", "fold"]


def fold(events: list[RunEvent], view: View | None = None) -> View:
    """Apply ``events`` (in seq order, after ``view.last_seq``) to ``view`` or a fresh one."""
    view = view if view is not None else View()
    for event in events:
        if event.seq <= view.last_seq:
            continue
        apply(view, event)
    return view


def apply(view: View, event: RunEvent) -> None:
    view.last_seq = event.seq
    view.last_event_ms = event.timestamp_ms
    view.counts[event.type] = view.counts.get(event.type, 0) + 1
    if event.message_id is not None and event.sender:
        r.seen(view, event)
    reducer = REDUCERS.get(event.type)
    if reducer is not None:  # unknown types (from a newer console) still count on the timeline
        reducer(view, event)


REDUCERS: Mapping[str, r.Reducer] = {
    # envelope events
    "session.started": r.session_started,
    "proposal.submitted": r.proposal_submitted,
    "evaluation.submitted": r.evaluation,
    "objection.raised": r.objection,
    "vote.cast": r.vote,
    "proposal.accepted": r.proposal_accepted,
    "proposal.rejected": r.proposal_rejected,
    "proposal.withdrawn": r.proposal_withdrawn,
    "approval.requested": r.approval_requested,
    "ballot.cast": r.ballot,
    "task.requested": r.task_requested,
    "task.accepted": r.task_step("accepted"),
    "task.rejected": r.task_step("rejected"),
    "task.updated": r.task_updated,
    "task.completed": r.task_step("completed"),
    "task.failed": r.task_step("failed"),
    "handoff.offered": r.handoff_offered,
    "handoff.context": r.handoff_context,
    "handoff.accepted": r.handoff_answer("accepted"),
    "handoff.declined": r.handoff_answer("declined"),
    "contribution.submitted": r.contribution,
    "progress.reported": r.progress,
    "signal.emitted": r.signal,
    "policy.denied": r.policy_denied,
    "commitment.made": r.commitment,
    "message.received": r.message,
    # console events
    "run.created": r.run_created,
    "run.status.changed": r.status_changed,
    "stream.gap": r.gap,
    "cancel.requested": r.cancel_requested,
    "receipt.checked": r.receipt,
}
