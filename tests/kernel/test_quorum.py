"""Quorum mode rules and the effective approval bar, driven through the public kernel API."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message
from macp.modes.quorum.v1 import quorum_pb2

from kernel_driver import SessionDriver, start_session
from pymacp.kernel import ErrorCode, Rejected, SessionState
from pymacp.kernel.policy.quorum import U32_MAX, effective_threshold
from pymacp.kernel.policy.rules import QuorumRules

MODE = "macp.mode.quorum.v1"
COORD = "agent://coordinator"
ALICE = "agent://alice"
BOB = "agent://bob"
CAROL = "agent://carol"
OUTSIDER = "agent://mallory"
VOTERS = [ALICE, BOB, CAROL]


def start(
    participants: list[str] | None = None, *, rules: dict[str, Any] | None = None, stored: bool = False
) -> SessionDriver:
    """A quorum session the coordinator starts; ``stored`` binds rules registration refuses."""
    return SessionDriver.start(
        MODE, COORD, VOTERS if participants is None else participants, rules=rules, stored=stored
    )


def request(required: int = 2, request_id: str = "r1") -> quorum_pb2.ApprovalRequestPayload:
    return quorum_pb2.ApprovalRequestPayload(
        request_id=request_id,
        action="deploy",
        summary="Deploy v2",
        details=b"\x07",
        required_approvals=required,
    )


BALLOTS = {
    "Approve": quorum_pb2.ApprovePayload,
    "Reject": quorum_pb2.RejectPayload,
    "Abstain": quorum_pb2.AbstainPayload,
}


def ballot(choice: str, request_id: str = "r1") -> Message:
    message: Message = BALLOTS[choice](request_id=request_id, reason=f"{choice.lower()}!")
    return message


# ---------------------------------------------------------------- start
def test_start_needs_a_participant() -> None:
    decision = start_session(MODE, COORD, [])
    assert isinstance(decision, Rejected)
    assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE


# ---------------------------------------------------------------- happy paths
def test_approved_by_two_of_three() -> None:
    run = start()
    assert run.state == {"request": None, "ballots": {}}
    run.ok(COORD, "ApprovalRequest", request())
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.refused(COORD, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)  # 1 of 2
    run.ok(BOB, "Approve", ballot("Approve"))
    run.ok(COORD, "Commitment", run.commitment())
    assert run.session.state is SessionState.RESOLVED
    assert run.state == {
        "request": {
            "request_id": "r1",
            "action": "deploy",
            "summary": "Deploy v2",
            "details": [7],
            "required_approvals": 2,
            "requested_by": COORD,
        },
        "ballots": {
            ALICE: {"request_id": "r1", "choice": "Approve", "sender": ALICE, "reason": "approve!"},
            BOB: {"request_id": "r1", "choice": "Approve", "sender": BOB, "reason": "approve!"},
        },
    }
    assert run.replay() == run.session


def test_rejected_once_the_bar_is_out_of_reach() -> None:
    run = start()
    run.ok(COORD, "ApprovalRequest", request())
    run.ok(ALICE, "Reject", ballot("Reject"))
    rejection = run.refused(COORD, "Commitment", run.commitment(positive=False), ErrorCode.INVALID_ENVELOPE)
    assert "within reach" in rejection.message
    run.ok(BOB, "Abstain", ballot("Abstain"))  # abstentions leave the pool: 0 + 1 < 2
    run.refused(COORD, "Commitment", run.commitment(positive=True), ErrorCode.INVALID_ENVELOPE)
    run.ok(COORD, "Commitment", run.commitment(positive=False))
    assert run.session.state is SessionState.RESOLVED
    assert {s: b["choice"] for s, b in run.state["ballots"].items()} == {ALICE: "Reject", BOB: "Abstain"}


# ---------------------------------------------------------------- ApprovalRequest
def test_approval_request_rules() -> None:
    run = start()
    run.refused(ALICE, "ApprovalRequest", request(), ErrorCode.FORBIDDEN)
    run.refused(COORD, "ApprovalRequest", request(request_id=""), ErrorCode.INVALID_ENVELOPE)
    run.refused(COORD, "ApprovalRequest", request(required=0), ErrorCode.INVALID_ENVELOPE)
    run.refused(COORD, "ApprovalRequest", request(required=4), ErrorCode.INVALID_ENVELOPE)
    run.ok(COORD, "ApprovalRequest", request(required=3))
    rejection = run.refused(COORD, "ApprovalRequest", request(request_id="r2"), ErrorCode.INVALID_ENVELOPE)
    assert "exactly one" in rejection.message


# ---------------------------------------------------------------- ballots
@pytest.mark.parametrize("choice", ["Approve", "Reject", "Abstain"])
def test_ballot_rules(choice: str) -> None:
    run = start()
    run.refused(ALICE, choice, ballot(choice), ErrorCode.INVALID_ENVELOPE)  # before the request
    run.ok(COORD, "ApprovalRequest", request())
    run.refused(OUTSIDER, choice, ballot(choice), ErrorCode.FORBIDDEN)
    run.refused(COORD, choice, ballot(choice), ErrorCode.FORBIDDEN)  # coordinator is not a voter
    run.refused(ALICE, choice, ballot(choice, request_id="r9"), ErrorCode.INVALID_ENVELOPE)
    run.ok(ALICE, choice, ballot(choice))
    for again in BALLOTS:  # one ballot per participant across all three types
        rejection = run.refused(ALICE, again, ballot(again), ErrorCode.INVALID_ENVELOPE)
        assert "one ballot" in rejection.message


def test_a_listed_coordinator_votes() -> None:
    run = start([COORD, ALICE])
    run.ok(COORD, "ApprovalRequest", request(required=2))
    run.ok(COORD, "Approve", ballot("Approve"))
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.ok(COORD, "Commitment", run.commitment())


# ---------------------------------------------------------------- Commitment
def test_commitment_checks() -> None:
    run = start()
    run.refused(COORD, "Commitment", run.commitment(positive=False), ErrorCode.INVALID_ENVELOPE)  # no request
    run.ok(COORD, "ApprovalRequest", request(required=1))
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.refused(ALICE, "Commitment", run.commitment(), ErrorCode.FORBIDDEN)
    run.refused(COORD, "Commitment", run.commitment(reason=" "), ErrorCode.INVALID_ENVELOPE)
    # bar reached
    run.refused(COORD, "Commitment", run.commitment(positive=False), ErrorCode.INVALID_ENVELOPE)
    run.ok(COORD, "Commitment", run.commitment())


# ---------------------------------------------------------------- policy threshold
def test_policy_threshold_replaces_required_approvals() -> None:
    run = start(rules={"threshold": {"type": "n_of_m", "value": 3}})
    run.ok(COORD, "ApprovalRequest", request(required=1))
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.ok(BOB, "Approve", ballot("Approve"))
    rejection = run.refused(COORD, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "needs 3 approval(s)" in rejection.message
    run.ok(CAROL, "Approve", ballot("Approve"))
    run.ok(COORD, "Commitment", run.commitment())


def test_percentage_threshold_counts_declared_participants() -> None:
    run = start(rules={"threshold": {"type": "percentage", "value": 67}})  # ceil(2.01) = 3 of 3
    run.ok(COORD, "ApprovalRequest", request(required=1))
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.ok(BOB, "Approve", ballot("Approve"))
    run.refused(COORD, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    run.ok(CAROL, "Reject", ballot("Reject"))
    run.ok(COORD, "Commitment", run.commitment(positive=False))


def test_threshold_above_the_pool_makes_a_decline_eligible_at_once() -> None:
    run = start(rules={"threshold": {"type": "count", "value": 5}})
    run.ok(COORD, "ApprovalRequest", request(required=2))
    for voter in VOTERS:
        run.ok(voter, "Approve", ballot("Approve"))
    rejection = run.refused(COORD, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "needs 5 approval(s)" in rejection.message
    run.ok(COORD, "Commitment", run.commitment(positive=False))


def test_unsatisfiable_threshold_allows_only_a_decline() -> None:
    # Registration refuses 'weighted' today; a descriptor stored before that still binds.
    run = start(rules={"threshold": {"type": "weighted", "value": 2}}, stored=True)
    run.ok(COORD, "ApprovalRequest", request(required=1))
    run.ok(ALICE, "Approve", ballot("Approve"))
    rejection = run.refused(COORD, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "unsatisfiable" in rejection.message
    run.ok(COORD, "Commitment", run.commitment(positive=False))


# ---------------------------------------------------------------- effective_threshold
def rules(kind: str, value: float) -> QuorumRules:
    return QuorumRules(threshold_type=kind, threshold_value=value)


@pytest.mark.parametrize(
    ("kind", "value", "participants", "expected"),
    [
        ("n_of_m", 0, 3, 2),  # no threshold: required_approvals stands
        ("n_of_m", float("nan"), 3, 2),
        ("n_of_m", -1, 3, 2),
        ("n_of_m", 3, 3, 3),
        ("count", 2.5, 3, 3),  # ceil
        ("n_of_m", 7, 3, 7),  # kept as given, above the pool
        ("n_of_m", 1e12, 3, U32_MAX),  # capped at the wire width
        ("percentage", 28, 25, 7),  # exact: a float product gives 8
        ("percentage", 50, 4, 2),
        ("percentage", 1, 10, 1),  # floored at 1
        ("percentage", 12.5, 8, 1),
        ("percentage", 150, 2, 3),
        ("percentage", 50, 0, None),  # no participants: unsatisfiable
        ("weighted", 2, 3, None),  # unknown type: unsatisfiable
    ],
)
def test_effective_threshold(kind: str, value: float, participants: int, expected: int | None) -> None:
    assert effective_threshold(rules(kind, value), 2, participants) == expected


def test_percentage_arithmetic_is_exact_over_the_whole_domain() -> None:
    for value in range(1, 101):
        for n in range(1, 101):
            bar = effective_threshold(rules("percentage", value), 1, n)
            assert bar == max(1, -(-value * n // 100)), (value, n)
