"""The reducers: how each canonical event type changes a run's :class:`~.view.View`.

A reducer reads one event and updates one view, nothing else. Payload fields are read from
the envelope's canonical JSON (proto field names), so an envelope whose payload could not be
decoded (``payload_b64``) still counts as activity but adds no detail. The table that maps
event types to these functions is :data:`pymacp.console.projection.REDUCERS`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from .models import RunEvent
from .view import MAX_CONTRIBUTIONS, MAX_MESSAGES, MAX_PROGRESS, MAX_SIGNALS, MAX_TASK_UPDATES, View

Reducer = Callable[[View, RunEvent], None]


def payload_of(event: RunEvent) -> Mapping[str, Any]:
    payload = event.data.get("payload")
    return payload if isinstance(payload, Mapping) else {}


def who_of(event: RunEvent) -> dict[str, Any]:
    return {"sender": event.sender, "timestampMs": event.timestamp_ms, "seq": event.seq}


def participant_record(view: View, pid: str) -> dict[str, Any]:
    return view.participants.setdefault(
        pid, {"id": pid, "declared": False, "messages": 0, "lastActivityMs": None, "lastMessageType": None}
    )


def seen(view: View, event: RunEvent) -> None:
    record = participant_record(view, str(event.sender))
    record["messages"] += 1
    record["lastActivityMs"] = event.timestamp_ms
    record["lastMessageType"] = event.message_type


def push_capped(items: list[dict[str, Any]], item: dict[str, Any], cap: int) -> None:
    items.append(item)
    del items[:-cap]


def proposal_record(view: View, proposal_id: str) -> dict[str, Any]:
    return view.proposals.setdefault(
        proposal_id,
        {
            "proposalId": proposal_id,
            "sender": None,
            "title": None,
            "summary": None,
            "supersedes": None,
            "status": "open",
            "timestampMs": None,
            "evaluations": [],
            "objections": [],
            "votes": {},
            "accepts": [],
            "rejects": [],
        },
    )


def session_started(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    participants = [str(x) for x in p.get("participants", [])]
    view.session = {
        "initiator": event.sender,
        "mode": event.data.get("mode"),
        "intent": p.get("intent"),
        "participants": participants,
        "modeVersion": p.get("mode_version"),
        "configurationVersion": p.get("configuration_version"),
        "policyVersion": p.get("policy_version"),
        "ttlMs": p.get("ttl_ms"),
        "contextId": p.get("context_id") or None,
        "startedAtMs": event.timestamp_ms,
    }
    for pid in participants:
        participant_record(view, pid)["declared"] = True
    if event.sender:
        participant_record(view, event.sender)["initiator"] = True


def proposal_submitted(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    record = proposal_record(view, str(p.get("proposal_id", event.message_id)))
    record.update(
        sender=event.sender,
        title=p.get("option") or p.get("title"),
        summary=p.get("rationale") or p.get("summary"),
        supersedes=p.get("supersedes_proposal_id") or None,
        timestampMs=event.timestamp_ms,
        messageType=event.message_type,
    )
    if record["supersedes"] in view.proposals:
        view.proposals[record["supersedes"]]["status"] = "superseded"


def evaluation(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    proposal_record(view, str(p.get("proposal_id", "")))["evaluations"].append(
        {
            **who_of(event),
            "recommendation": str(p.get("recommendation", "")).upper() or None,
            "confidence": p.get("confidence"),
            "reason": p.get("reason"),
        }
    )


def objection(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    proposal_record(view, str(p.get("proposal_id", "")))["objections"].append(
        {**who_of(event), "severity": str(p.get("severity") or "medium").lower(), "reason": p.get("reason")}
    )


def vote(view: View, event: RunEvent) -> None:
    # One vote per voter and proposal: a later accepted vote replaces the earlier one.
    p = payload_of(event)
    proposal_record(view, str(p.get("proposal_id", "")))["votes"][str(event.sender)] = {
        **who_of(event),
        "vote": str(p.get("vote", "")).upper(),
        "reason": p.get("reason"),
    }


def proposal_accepted(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    record = proposal_record(view, str(p.get("proposal_id", "")))
    record["accepts"].append({**who_of(event), "reason": p.get("reason")})


def proposal_rejected(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    record = proposal_record(view, str(p.get("proposal_id", "")))
    record["rejects"].append(
        {**who_of(event), "terminal": bool(p.get("terminal")), "reason": p.get("reason")}
    )
    if p.get("terminal"):
        record["status"] = "rejected"


def proposal_withdrawn(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    proposal_record(view, str(p.get("proposal_id", "")))["status"] = "withdrawn"


def approval_requested(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    request_id = str(p.get("request_id", event.message_id))
    view.approvals[request_id] = {
        "requestId": request_id,
        **who_of(event),
        "action": p.get("action"),
        "summary": p.get("summary"),
        "requiredApprovals": p.get("required_approvals"),
        "ballots": {},
    }


def ballot(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    request_id = str(p.get("request_id", ""))
    request = view.approvals.setdefault(
        request_id,
        {"requestId": request_id, "sender": None, "action": None, "requiredApprovals": None, "ballots": {}},
    )
    kind = {"Approve": "approve", "Reject": "reject", "Abstain": "abstain"}.get(
        str(event.message_type), "abstain"
    )
    request["ballots"][str(event.sender)] = {**who_of(event), "ballot": kind, "reason": p.get("reason")}


def task_record(view: View, task_id: str) -> dict[str, Any]:
    return view.tasks.setdefault(
        task_id,
        {
            "taskId": task_id,
            "requester": None,
            "title": None,
            "assignee": None,
            "status": "requested",
            "progress": None,
            "updates": [],
            "summary": None,
            "error": None,
        },
    )


def task_requested(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    task = task_record(view, str(p.get("task_id", event.message_id)))
    task.update(
        requester=event.sender,
        title=p.get("title"),
        assignee=p.get("requested_assignee") or None,
        deadlineMs=p.get("deadline_unix_ms") or None,
    )


def task_step(status: str) -> Reducer:
    def reduce(view: View, event: RunEvent) -> None:
        p = payload_of(event)
        task = task_record(view, str(p.get("task_id", "")))
        task["status"] = status
        if p.get("assignee"):
            task["assignee"] = p["assignee"]
        if status == "completed":
            task.update(summary=p.get("summary"), progress=1.0)
        if status in ("failed", "rejected"):
            task["error"] = {"code": p.get("error_code") or None, "reason": p.get("reason"), **who_of(event)}
            if "retryable" in p:
                task["error"]["retryable"] = bool(p["retryable"])

    return reduce


def task_updated(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    task = task_record(view, str(p.get("task_id", "")))
    task["status"] = "in_progress"
    if p.get("progress") is not None:
        task["progress"] = p.get("progress")
    push_capped(
        task["updates"],
        {
            **who_of(event),
            "status": p.get("status"),
            "progress": p.get("progress"),
            "message": p.get("message"),
        },
        MAX_TASK_UPDATES,
    )


def handoff_record(view: View, handoff_id: str) -> dict[str, Any]:
    return view.handoffs.setdefault(
        handoff_id,
        {"handoffId": handoff_id, "from": None, "target": None, "status": "offered", "contexts": 0},
    )


def handoff_offered(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    record = handoff_record(view, str(p.get("handoff_id", event.message_id)))
    record.update(
        {
            "from": event.sender,
            "target": p.get("target_participant"),
            "scope": p.get("scope"),
            "reason": p.get("reason"),
        }
    )
    record["timestampMs"] = event.timestamp_ms


def handoff_context(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    record = handoff_record(view, str(p.get("handoff_id", "")))
    record["contexts"] += 1
    record["contentType"] = p.get("content_type")


def handoff_answer(status: str) -> Reducer:
    def reduce(view: View, event: RunEvent) -> None:
        p = payload_of(event)
        record = handoff_record(view, str(p.get("handoff_id", "")))
        record["status"] = status
        record["answeredBy"] = p.get("accepted_by") or p.get("declined_by") or event.sender
        record["answerReason"] = p.get("reason")
        record["implicit"] = bool(p.get("implicit"))

    return reduce


def contribution(view: View, event: RunEvent) -> None:
    push_capped(
        view.contributions, {**who_of(event), "value": payload_of(event).get("value")}, MAX_CONTRIBUTIONS
    )


def progress(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    entry = {
        **who_of(event),
        "token": p.get("progress_token"),
        "progress": p.get("progress"),
        "total": p.get("total"),
        "message": p.get("message"),
        "targetMessageId": p.get("target_message_id") or None,
    }
    push_capped(view.progress, entry, MAX_PROGRESS)


def signal(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    entry = {
        **who_of(event),
        "signalType": p.get("signal_type"),
        "confidence": p.get("confidence"),
        "data": signal_data(p.get("data")),
    }
    push_capped(view.signals, entry, MAX_SIGNALS)


def policy_denied(view: View, event: RunEvent) -> None:
    details = signal_data(payload_of(event).get("data"))
    view.policy_denials.append({**who_of(event), "reportedBy": event.sender, "details": details})


def signal_data(encoded: Any) -> Any:
    """Signal data is bytes (base64 in JSON): shown as JSON when it is JSON, else as sent."""
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        return json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return encoded


def commitment(view: View, event: RunEvent) -> None:
    p = payload_of(event)
    view.commitment = {
        **who_of(event),
        "commitmentId": p.get("commitment_id"),
        "action": p.get("action"),
        "authorityScope": p.get("authority_scope"),
        "reason": p.get("reason"),
        "outcomePositive": p.get("outcome_positive"),
        "modeVersion": p.get("mode_version"),
        "policyVersion": p.get("policy_version"),
        "configurationVersion": p.get("configuration_version"),
        "supersedes": p.get("supersedes"),
        "commitmentHash": event.data.get("_commitment_hash"),
    }


def message(view: View, event: RunEvent) -> None:
    entry = {**who_of(event), "messageType": event.message_type, "messageId": event.message_id}
    push_capped(view.messages, entry, MAX_MESSAGES)


def run_created(view: View, event: RunEvent) -> None:
    view.status = {
        "status": event.data.get("status"),
        "source": event.data.get("source"),
        "sinceMs": event.timestamp_ms,
    }
    for pid in event.data.get("participants") or []:
        participant_record(view, str(pid))["declared"] = True


def status_changed(view: View, event: RunEvent) -> None:
    entry = {
        "from": event.data.get("from"),
        "to": event.data.get("to"),
        "sessionState": event.data.get("sessionState"),
        "reason": event.data.get("reason"),
        "error": event.data.get("error"),
        "atMs": event.timestamp_ms,
    }
    view.status_history.append(entry)
    view.status = {**view.status, "status": entry["to"], "sinceMs": event.timestamp_ms}
    for key in ("sessionState", "reason", "error"):
        if entry[key] is not None:
            view.status[key] = entry[key]


def gap(view: View, event: RunEvent) -> None:
    view.gaps.append({"atMs": event.timestamp_ms, **event.data})


def cancel_requested(view: View, event: RunEvent) -> None:
    view.cancellations.append({"atMs": event.timestamp_ms, **event.data})


def receipt(view: View, event: RunEvent) -> None:
    view.receipt = {"checkedAtMs": event.timestamp_ms, **event.data}
