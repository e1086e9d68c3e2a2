"""Task mode (``macp.mode.task.v1``, RFC-MACP-0009): delegate one task and record its outcome.

Theory of operation. The initiator (the orchestrator; it need not be a participant)
sends exactly one TaskRequest. An eligible assignee -- the ``requested_assignee`` when
one is named, otherwise any declared participant other than the initiator -- takes it
with TaskAccept; the first accept wins and makes the sender the active assignee. The
active assignee reports progress with TaskUpdate and ends the work with TaskComplete or
TaskFail, which become the terminal report. A Commitment needs a terminal report:
``task.completed`` after a TaskComplete, ``task.failed`` after a TaskFail.

Declines. A TaskReject before anyone accepted is a personal decline: the task stays open
for the other eligible assignees, but the decliner may not accept it later. The active
assignee may give the task back with TaskReject only when the policy sets
``assignment.allow_reassignment_on_reject`` (POLICY_DENIED otherwise); the task is then
open again and the former assignee counts as a decliner. One TaskReject per sender.
(These are the reference runtime's newest, rev-4 rules; this kernel has no older task
semantics that a stored history could need.)

Policy ``completion.require_output``: a positive Commitment needs a TaskComplete with a
non-empty ``output`` (POLICY_DENIED otherwise); it never blocks a negative outcome.

    message type  who may send                          allowed phases       next phase
    TaskRequest   the initiator                         Open                 Requested
    TaskAccept    an eligible assignee who has not      Requested            Assigned
                  declined (FORBIDDEN otherwise)
    TaskReject    before assignment: an eligible        Requested, Assigned  Requested
                  assignee; after: the active assignee
    TaskUpdate    the active assignee (FORBIDDEN        any, until reported  unchanged
                  otherwise)
    TaskComplete  the active assignee                   any, until reported  Reported
    TaskFail      the active assignee                   any, until reported  Reported
    Commitment    the commitment authority              any (readiness)      resolves the session

Every message after the TaskRequest must name its ``task_id`` (INVALID_ENVELOPE
otherwise), and a payload ``assignee``, when set, must be the sender.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import immutables
from macp.modes.task.v1 import task_pb2

from ..commitment import CommitmentPayload, check_common
from ..errors import Denial, ErrorCode, Reject, invalid
from ..policy.rules import TaskRules
from .base import Context, ModeSpec, Rule, StartContext, Who, nonblank, require, require_sender
from .descriptor import ModeDescriptor

DESCRIPTOR = ModeDescriptor(
    mode="macp.mode.task.v1",
    mode_version="1.0.0",
    title="Task",
    description="Delegate one task to an assignee and record its outcome.",
    determinism_class="structural-only",
    participant_model="orchestrated",
    message_types=(
        "SessionStart",
        "TaskRequest",
        "TaskAccept",
        "TaskReject",
        "TaskUpdate",
        "TaskComplete",
        "TaskFail",
        "Commitment",
    ),
)

OPEN = "Open"
REQUESTED = "Requested"
ASSIGNED = "Assigned"
REPORTED = "Reported"


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    title: str
    instructions: str
    requested_assignee: str
    input: bytes
    deadline_unix_ms: int
    requester: str


@dataclass(frozen=True, slots=True)
class RejectRecord:
    task_id: str
    assignee: str  # the sender who declined
    reason: str
    while_assigned: bool  # True when the active assignee gave the task back


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    task_id: str
    status: str
    progress: float
    message: str
    partial_output: bytes
    sender: str


@dataclass(frozen=True, slots=True)
class CompleteReport:
    task_id: str
    assignee: str
    output: bytes
    summary: str


@dataclass(frozen=True, slots=True)
class FailReport:
    task_id: str
    assignee: str
    error_code: str
    reason: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class TaskState:
    task: TaskRecord | None = None
    active_assignee: str | None = None
    rejections: tuple[RejectRecord, ...] = ()  # at most one per participant
    updates: immutables.Map[int, UpdateRecord] = field(
        default_factory=immutables.Map
    )  # arrival index -> update
    terminal_report: CompleteReport | FailReport | None = None

    def declined(self, sender: str) -> bool:
        return any(r.assignee == sender for r in self.rejections)


def _phase(state: TaskState) -> str:
    if state.task is None:
        return OPEN
    if state.terminal_report is not None:
        return REPORTED
    return REQUESTED if state.active_assignee is None else ASSIGNED


def _start(ctx: StartContext) -> TaskState:
    require(
        any(p != ctx.initiator for p in ctx.participants),
        "a task session needs at least one declared participant other than the initiator to take the task",
    )
    return TaskState()


# ---------------------------------------------------------------- validation helpers
def _task(state: TaskState, task_id: str, message_type: str) -> TaskRecord:
    """The session's task, which the payload's ``task_id`` must name (INVALID_ENVELOPE)."""
    if state.task is None:
        raise invalid(f"no TaskRequest yet; {message_type} refers to a requested task")
    require(
        task_id == state.task.task_id,
        f"{message_type} names task {task_id!r}; this session's task is {state.task.task_id!r}",
    )
    return state.task


def _own_assignee_field(assignee: str, ctx: Context) -> None:
    require(
        not assignee or assignee == ctx.sender,
        f"{ctx.message_type} assignee {assignee!r} must be empty or the sender {ctx.sender!r}",
    )


def _eligible(task: TaskRecord, ctx: Context) -> bool:
    if task.requested_assignee:
        return ctx.sender == task.requested_assignee
    return ctx.sender in ctx.participants and ctx.sender != ctx.initiator


def _who_may_take(task: TaskRecord) -> str:
    if task.requested_assignee:
        return f"the requested assignee {task.requested_assignee!r}"
    return "a declared participant other than the initiator"


# ---------------------------------------------------------------- handlers
def _request(state: TaskState, ctx: Context, payload: Any) -> TaskState:
    require(nonblank(payload.task_id), "TaskRequest task_id must not be blank")
    assignee = payload.requested_assignee
    require(
        not assignee or assignee in ctx.participants,
        f"TaskRequest requested_assignee {assignee!r} is not a declared participant; "
        "name a participant or leave it empty",
    )
    record = TaskRecord(
        task_id=payload.task_id,
        title=payload.title,
        instructions=payload.instructions,
        requested_assignee=assignee,
        input=bytes(payload.input),
        deadline_unix_ms=payload.deadline_unix_ms,
        requester=ctx.sender,
    )
    return replace(state, task=record)


def _accept(state: TaskState, ctx: Context, payload: Any) -> TaskState:
    task = _task(state, payload.task_id, ctx.message_type)
    _own_assignee_field(payload.assignee, ctx)
    require_sender(_eligible(task, ctx), f"only {_who_may_take(task)} may accept this task")
    require_sender(
        not state.declined(ctx.sender), f"{ctx.sender!r} declined this task and may not accept it now"
    )
    return replace(state, active_assignee=ctx.sender)


def _reject(state: TaskState, ctx: Context, payload: Any) -> TaskState:
    task = _task(state, payload.task_id, ctx.message_type)
    _own_assignee_field(payload.assignee, ctx)
    active = state.active_assignee
    if active is not None:
        require(
            ctx.sender == active,
            f"the task is assigned to {active!r}; only the active assignee may reject it now",
        )
        if not ctx.rules.allow_reassignment_on_reject:
            message = (
                "the policy does not allow reassignment (assignment.allow_reassignment_on_reject), "
                "so an accepted task cannot be given back; report a TaskFail instead"
            )
            raise Reject(
                ErrorCode.POLICY_DENIED, message, (Denial("reassignment_not_allowed", message, (active,)),)
            )
    else:
        require_sender(_eligible(task, ctx), f"only {_who_may_take(task)} may decline this task")
        require(
            not state.declined(ctx.sender), f"{ctx.sender!r} already declined this task; one TaskReject each"
        )
    record = RejectRecord(payload.task_id, ctx.sender, payload.reason, while_assigned=active is not None)
    return replace(state, active_assignee=None, rejections=(*state.rejections, record))


def _check_reporter(state: TaskState, ctx: Context) -> None:
    require_sender(
        state.active_assignee == ctx.sender,
        f"only the active assignee may send {ctx.message_type}; "
        + (
            f"it is {state.active_assignee!r}"
            if state.active_assignee
            else "nobody has accepted the task yet"
        ),
    )
    require_sender(
        state.terminal_report is None,
        f"the task already has its terminal report; no {ctx.message_type} may follow it",
    )


def _update(state: TaskState, ctx: Context, payload: Any) -> TaskState:
    _task(state, payload.task_id, ctx.message_type)
    _check_reporter(state, ctx)
    require(math.isfinite(payload.progress), "TaskUpdate progress must be a finite number")
    record = UpdateRecord(
        task_id=payload.task_id,
        status=payload.status,
        progress=payload.progress,
        message=payload.message,
        partial_output=bytes(payload.partial_output),
        sender=ctx.sender,
    )
    return replace(state, updates=state.updates.set(len(state.updates), record))


def _complete(state: TaskState, ctx: Context, payload: Any) -> TaskState:
    _task(state, payload.task_id, ctx.message_type)
    _check_reporter(state, ctx)
    _own_assignee_field(payload.assignee, ctx)
    report = CompleteReport(payload.task_id, ctx.sender, bytes(payload.output), payload.summary)
    return replace(state, terminal_report=report)


def _fail(state: TaskState, ctx: Context, payload: Any) -> TaskState:
    _task(state, payload.task_id, ctx.message_type)
    _check_reporter(state, ctx)
    _own_assignee_field(payload.assignee, ctx)
    report = FailReport(payload.task_id, ctx.sender, payload.error_code, payload.reason, payload.retryable)
    return replace(state, terminal_report=report)


def _commit(state: TaskState, ctx: Context, payload: Any) -> TaskState:
    check_common(ctx, payload)
    report = state.terminal_report
    if report is None:
        raise invalid("the task has no TaskComplete or TaskFail yet; commit after the assignee reports")
    has_output = isinstance(report, CompleteReport) and bool(report.output)
    if ctx.rules.require_output and payload.outcome_positive and not has_output:
        message = (
            "the policy requires output (completion.require_output): a positive Commitment needs a "
            "TaskComplete with a non-empty output"
        )
        raise Reject(ErrorCode.POLICY_DENIED, message, (Denial("output_required", message),))
    return state


RULES: dict[str, Rule[TaskState]] = {
    "TaskRequest": Rule(
        Who.INITIATOR,
        frozenset({OPEN}),
        task_pb2.TaskRequestPayload,
        _request,
        phase_error="the session already has its task; a task session carries exactly one TaskRequest",
    ),
    "TaskAccept": Rule(
        Who.PARTICIPANT,
        frozenset({REQUESTED}),
        task_pb2.TaskAcceptPayload,
        _accept,
        phase_error="TaskAccept needs a requested task that nobody holds; the first accept wins",
    ),
    "TaskReject": Rule(
        Who.PARTICIPANT,
        frozenset({REQUESTED, ASSIGNED}),
        task_pb2.TaskRejectPayload,
        _reject,
        phase_error="TaskReject needs a requested task that has no terminal report yet",
    ),
    "TaskUpdate": Rule(Who.PARTICIPANT, None, task_pb2.TaskUpdatePayload, _update),
    "TaskComplete": Rule(Who.PARTICIPANT, None, task_pb2.TaskCompletePayload, _complete),
    "TaskFail": Rule(Who.PARTICIPANT, None, task_pb2.TaskFailPayload, _fail),
    "Commitment": Rule(Who.COMMIT_AUTHORITY, None, CommitmentPayload, _commit, resolves=True),
}


# ---------------------------------------------------------------- projection
def _project(state: TaskState) -> dict[str, Any]:
    task = state.task
    return {
        "task": None
        if task is None
        else {
            "task_id": task.task_id,
            "title": task.title,
            "instructions": task.instructions,
            "requested_assignee": task.requested_assignee,
            "input": list(task.input),
            "deadline_unix_ms": task.deadline_unix_ms,
            "requester": task.requester,
        },
        "active_assignee": state.active_assignee,
        "rejections": [
            {
                "task_id": r.task_id,
                "assignee": r.assignee,
                "reason": r.reason,
                "while_assigned": r.while_assigned,
            }
            for r in state.rejections
        ],
        "updates": [_project_update(state.updates[i]) for i in range(len(state.updates))],
        "terminal_report": _project_report(state.terminal_report),
    }


def _project_update(u: UpdateRecord) -> dict[str, Any]:
    return {
        "task_id": u.task_id,
        "status": u.status,
        "progress": u.progress,
        "message": u.message,
        "partial_output": list(u.partial_output),
        "sender": u.sender,
    }


def _project_report(report: CompleteReport | FailReport | None) -> dict[str, Any] | None:
    if isinstance(report, CompleteReport):
        return {
            "Complete": {
                "task_id": report.task_id,
                "assignee": report.assignee,
                "output": list(report.output),
                "summary": report.summary,
            }
        }
    if isinstance(report, FailReport):
        return {
            "Fail": {
                "task_id": report.task_id,
                "assignee": report.assignee,
                "error_code": report.error_code,
                "reason": report.reason,
                "retryable": report.retryable,
            }
        }
    return None


SPEC: ModeSpec[TaskState] = ModeSpec(
    descriptor=DESCRIPTOR,
    rules=RULES,
    start=_start,
    phase=_phase,
    project=_project,
    parse_rules=TaskRules.parse,
)
