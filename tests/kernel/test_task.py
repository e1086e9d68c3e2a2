"""Task mode rules, driven through the public kernel API."""

from __future__ import annotations

from typing import Any

import pytest
from macp.modes.task.v1 import task_pb2

from kernel_driver import SessionDriver, start_session
from pymacp.kernel import ErrorCode, Rejected, SessionState

MODE = "macp.mode.task.v1"
PLANNER = "agent://planner"
WORKER = "agent://worker"
HELPER = "agent://helper"
OUTSIDER = "agent://mallory"


def start(participants: list[str], *, rules: dict[str, Any] | None = None) -> SessionDriver:
    """A task session the planner starts."""
    return SessionDriver.start(MODE, PLANNER, participants, rules=rules)


def request(task_id: str = "t1", assignee: str = WORKER, **fields: Any) -> task_pb2.TaskRequestPayload:
    return task_pb2.TaskRequestPayload(task_id=task_id, title="Build", requested_assignee=assignee, **fields)


def accept(assignee: str = "", task_id: str = "t1") -> task_pb2.TaskAcceptPayload:
    return task_pb2.TaskAcceptPayload(task_id=task_id, assignee=assignee, reason="ready")


def reject(assignee: str = "", task_id: str = "t1") -> task_pb2.TaskRejectPayload:
    return task_pb2.TaskRejectPayload(task_id=task_id, assignee=assignee, reason="busy")


def update(task_id: str = "t1", progress: float = 0.5) -> task_pb2.TaskUpdatePayload:
    return task_pb2.TaskUpdatePayload(task_id=task_id, status="working", progress=progress, message="half")


def complete(output: bytes = b"", assignee: str = "", task_id: str = "t1") -> task_pb2.TaskCompletePayload:
    return task_pb2.TaskCompletePayload(task_id=task_id, assignee=assignee, output=output, summary="done")


def fail(assignee: str = "", task_id: str = "t1") -> task_pb2.TaskFailPayload:
    return task_pb2.TaskFailPayload(task_id=task_id, assignee=assignee, error_code="E1", reason="broke")


def assigned(participants: list[str] | None = None, *, rules: dict[str, Any] | None = None) -> SessionDriver:
    run = start(participants or [PLANNER, WORKER], rules=rules)
    run.ok(PLANNER, "TaskRequest", request())
    run.ok(WORKER, "TaskAccept", accept(WORKER))
    return run


# ---------------------------------------------------------------- start
def test_start_needs_a_participant_other_than_the_initiator() -> None:
    decision = start_session(MODE, PLANNER, [PLANNER])
    assert isinstance(decision, Rejected)
    assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE
    assert "other than the initiator" in decision.rejection.message


def test_external_orchestrator_runs_the_task_without_being_listed() -> None:
    run = start([WORKER])
    run.ok(PLANNER, "TaskRequest", request(input=b"\x01\x02", deadline_unix_ms=5))
    run.ok(WORKER, "TaskAccept", accept())
    run.ok(WORKER, "TaskUpdate", update())
    run.ok(WORKER, "TaskComplete", complete(output=b"ok"))
    run.ok(PLANNER, "Commitment", run.commitment())
    assert run.session.state is SessionState.RESOLVED
    assert run.state == {
        "task": {
            "task_id": "t1",
            "title": "Build",
            "instructions": "",
            "requested_assignee": WORKER,
            "input": [1, 2],
            "deadline_unix_ms": 5,
            "requester": PLANNER,
        },
        "active_assignee": WORKER,
        "rejections": [],
        "updates": [
            {
                "task_id": "t1",
                "status": "working",
                "progress": 0.5,
                "message": "half",
                "partial_output": [],
                "sender": WORKER,
            }
        ],
        "terminal_report": {
            "Complete": {"task_id": "t1", "assignee": WORKER, "output": [111, 107], "summary": "done"}
        },
    }
    assert run.replay() == run.session


def test_initial_projection_is_empty() -> None:
    run = start([PLANNER, WORKER])
    assert run.state == {
        "task": None,
        "active_assignee": None,
        "rejections": [],
        "updates": [],
        "terminal_report": None,
    }


# ---------------------------------------------------------------- TaskRequest
def test_task_request_rules() -> None:
    run = start([PLANNER, WORKER])
    run.refused(WORKER, "TaskRequest", request(), ErrorCode.FORBIDDEN)
    run.refused(PLANNER, "TaskRequest", request(task_id="  "), ErrorCode.INVALID_ENVELOPE)
    run.refused(PLANNER, "TaskRequest", request(assignee=OUTSIDER), ErrorCode.INVALID_ENVELOPE)
    run.refused(PLANNER, "TaskRequest", b"\xff\xff", ErrorCode.INVALID_ENVELOPE)
    run.ok(PLANNER, "TaskRequest", request())
    rejection = run.refused(PLANNER, "TaskRequest", request(task_id="t2"), ErrorCode.INVALID_ENVELOPE)
    assert "exactly one TaskRequest" in rejection.message


# ---------------------------------------------------------------- TaskAccept
def test_task_accept_rules() -> None:
    run = start([PLANNER, WORKER, HELPER])
    run.refused(WORKER, "TaskAccept", accept(), ErrorCode.INVALID_ENVELOPE)  # no task yet
    run.ok(PLANNER, "TaskRequest", request())
    run.refused(OUTSIDER, "TaskAccept", accept(), ErrorCode.FORBIDDEN)
    run.refused(WORKER, "TaskAccept", accept(task_id="t9"), ErrorCode.INVALID_ENVELOPE)
    run.refused(WORKER, "TaskAccept", accept(assignee=HELPER), ErrorCode.INVALID_ENVELOPE)
    rejection = run.refused(HELPER, "TaskAccept", accept(), ErrorCode.FORBIDDEN)
    assert WORKER in rejection.message
    run.ok(WORKER, "TaskAccept", accept())
    assert run.state["active_assignee"] == WORKER
    run.refused(WORKER, "TaskAccept", accept(), ErrorCode.INVALID_ENVELOPE)  # first accept wins


def test_open_request_is_for_any_participant_but_the_initiator() -> None:
    run = start([PLANNER, WORKER, HELPER])
    run.ok(PLANNER, "TaskRequest", request(assignee=""))
    run.refused(PLANNER, "TaskAccept", accept(), ErrorCode.FORBIDDEN)
    run.ok(HELPER, "TaskAccept", accept())
    run.refused(WORKER, "TaskAccept", accept(), ErrorCode.INVALID_ENVELOPE)
    assert run.state["active_assignee"] == HELPER


# ---------------------------------------------------------------- declines
def test_personal_decline_leaves_the_task_open_for_others() -> None:
    run = start([PLANNER, WORKER, HELPER])
    run.refused(WORKER, "TaskReject", reject(), ErrorCode.INVALID_ENVELOPE)  # no task yet
    run.ok(PLANNER, "TaskRequest", request(assignee=""))
    run.refused(PLANNER, "TaskReject", reject(), ErrorCode.FORBIDDEN)
    run.refused(WORKER, "TaskReject", reject(assignee=HELPER), ErrorCode.INVALID_ENVELOPE)
    run.ok(WORKER, "TaskReject", reject(WORKER))
    run.refused(WORKER, "TaskReject", reject(), ErrorCode.INVALID_ENVELOPE)  # one each
    rejection = run.refused(WORKER, "TaskAccept", accept(), ErrorCode.FORBIDDEN)
    assert "declined" in rejection.message
    run.ok(HELPER, "TaskAccept", accept())
    assert run.state["rejections"] == [
        {"task_id": "t1", "assignee": WORKER, "reason": "busy", "while_assigned": False}
    ]
    assert run.state["active_assignee"] == HELPER


def test_accepted_task_cannot_be_given_back_without_policy() -> None:
    run = assigned([PLANNER, WORKER, HELPER])
    run.refused(HELPER, "TaskReject", reject(), ErrorCode.INVALID_ENVELOPE)  # not the assignee
    rejection = run.refused(WORKER, "TaskReject", reject(), ErrorCode.POLICY_DENIED)
    assert [d.code for d in rejection.denials] == ["reassignment_not_allowed"]
    assert rejection.denials[0].participants == (WORKER,)
    assert run.state["active_assignee"] == WORKER


def test_reassignment_policy_lets_the_assignee_give_the_task_back() -> None:
    rules = {"assignment": {"allow_reassignment_on_reject": True}}
    run = start([PLANNER, WORKER, HELPER], rules=rules)
    run.ok(PLANNER, "TaskRequest", request(assignee=""))
    run.ok(WORKER, "TaskAccept", accept())
    run.ok(WORKER, "TaskReject", reject())
    assert run.state["active_assignee"] is None
    assert run.state["rejections"][0]["while_assigned"] is True
    run.refused(WORKER, "TaskAccept", accept(), ErrorCode.FORBIDDEN)
    run.ok(HELPER, "TaskAccept", accept())
    run.ok(HELPER, "TaskFail", fail())
    run.refused(HELPER, "TaskReject", reject(), ErrorCode.INVALID_ENVELOPE)  # reported: too late
    run.ok(PLANNER, "Commitment", run.commitment(positive=False))
    assert run.replay() == run.session


# ---------------------------------------------------------------- reports
@pytest.mark.parametrize(
    ("message_type", "make"),
    [("TaskUpdate", update), ("TaskComplete", complete), ("TaskFail", fail)],
)
def test_reports_come_from_the_active_assignee_only(message_type: str, make: Any) -> None:
    run = start([PLANNER, WORKER, HELPER])
    run.refused(WORKER, message_type, make(), ErrorCode.INVALID_ENVELOPE)  # no task yet
    run.ok(PLANNER, "TaskRequest", request())
    rejection = run.refused(WORKER, message_type, make(), ErrorCode.FORBIDDEN)
    assert "nobody has accepted" in rejection.message
    run.ok(WORKER, "TaskAccept", accept())
    run.refused(WORKER, message_type, make(task_id="t2"), ErrorCode.INVALID_ENVELOPE)
    run.refused(PLANNER, message_type, make(), ErrorCode.FORBIDDEN)
    run.refused(OUTSIDER, message_type, make(), ErrorCode.FORBIDDEN)
    run.ok(WORKER, message_type, make())


@pytest.mark.parametrize("make", [complete, fail])
def test_terminal_report_payload_assignee_must_be_the_sender(make: Any) -> None:
    run = assigned()
    run.refused(
        WORKER,
        "TaskComplete" if make is complete else "TaskFail",
        make(assignee=HELPER),
        ErrorCode.INVALID_ENVELOPE,
    )


def test_nothing_follows_the_terminal_report() -> None:
    run = assigned()
    run.ok(WORKER, "TaskFail", fail(WORKER))
    assert run.state["terminal_report"] == {
        "Fail": {
            "task_id": "t1",
            "assignee": WORKER,
            "error_code": "E1",
            "reason": "broke",
            "retryable": False,
        }
    }
    for message_type, payload in (
        ("TaskUpdate", update()),
        ("TaskComplete", complete()),
        ("TaskFail", fail()),
    ):
        rejection = run.refused(WORKER, message_type, payload, ErrorCode.FORBIDDEN)
        assert "terminal report" in rejection.message


def test_update_progress_must_be_finite() -> None:
    run = assigned()
    run.refused(WORKER, "TaskUpdate", update(progress=float("nan")), ErrorCode.INVALID_ENVELOPE)
    run.ok(WORKER, "TaskUpdate", update(progress=0.25))
    run.ok(WORKER, "TaskUpdate", update(progress=0.75))
    assert [u["progress"] for u in run.state["updates"]] == [0.25, 0.75]


# ---------------------------------------------------------------- Commitment
def test_commitment_needs_a_terminal_report() -> None:
    run = assigned()
    run.refused(WORKER, "Commitment", run.commitment(), ErrorCode.FORBIDDEN)
    rejection = run.refused(PLANNER, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "TaskComplete or TaskFail" in rejection.message
    run.ok(WORKER, "TaskComplete", complete())
    run.refused(PLANNER, "Commitment", run.commitment(mode_version="2.0.0"), ErrorCode.INVALID_ENVELOPE)
    run.ok(PLANNER, "Commitment", run.commitment())
    assert run.session.state is SessionState.RESOLVED


def test_require_output_denies_a_positive_commit_without_output() -> None:
    run = assigned(rules={"completion": {"require_output": True}})
    run.ok(WORKER, "TaskComplete", complete(output=b""))
    rejection = run.refused(PLANNER, "Commitment", run.commitment(), ErrorCode.POLICY_DENIED)
    assert [d.code for d in rejection.denials] == ["output_required"]


def test_require_output_is_met_by_output() -> None:
    run = assigned(rules={"completion": {"require_output": True}})
    run.ok(WORKER, "TaskComplete", complete(output=b"artifact"))
    run.ok(PLANNER, "Commitment", run.commitment())


def test_require_output_never_blocks_a_failure() -> None:
    run = assigned(rules={"completion": {"require_output": True}})
    run.ok(WORKER, "TaskFail", fail())
    run.refused(PLANNER, "Commitment", run.commitment(positive=True), ErrorCode.POLICY_DENIED)
    run.ok(PLANNER, "Commitment", run.commitment(positive=False))
    assert run.session.state is SessionState.RESOLVED
    assert run.replay() == run.session


def test_unknown_message_type_is_invalid() -> None:
    run = start([PLANNER, WORKER])
    run.refused(PLANNER, "Vote", b"", ErrorCode.INVALID_ENVELOPE)
