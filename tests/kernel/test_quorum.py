"""Quorum mode rules and the effective approval bar, driven through the public kernel API."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message
from macp.modes.quorum.v1 import quorum_pb2
from macp.v1 import core_pb2

from pymacp.kernel import (
    Accepted,
    Decision,
    Envelope,
    ErrorCode,
    HistoryEntry,
    Identity,
    Kernel,
    PolicyDescriptor,
    Registry,
    Rejected,
    Rejection,
    Session,
    SessionState,
    catalog,
)
from pymacp.kernel.policy.quorum import U32_MAX, effective_threshold
from pymacp.kernel.policy.registration import register
from pymacp.kernel.policy.rules import QuorumRules
from pymacp.kernel.replay import replay

MODE = "macp.mode.quorum.v1"
SID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
T0 = 1_780_000_000_000
KERNEL = Kernel()
COORD = "agent://coordinator"
ALICE = "agent://alice"
BOB = "agent://bob"
CAROL = "agent://carol"
OUTSIDER = "agent://mallory"
VOTERS = [ALICE, BOB, CAROL]


class Run:
    """One quorum session: send messages, keep the accepted history."""

    def __init__(
        self,
        participants: list[str] | None = None,
        *,
        rules: dict[str, Any] | None = None,
        stored: bool = False,
    ) -> None:
        """``stored``: bind the policy as a stored descriptor, skipping registration checks."""
        policies: dict[str, PolicyDescriptor] = {}
        policy_version = ""
        if rules is not None:
            descriptor = PolicyDescriptor("test.quorum", MODE, "test", rules, 3)
            result = {descriptor.policy_id: descriptor} if stored else register(policies, descriptor, T0)
            assert isinstance(result, dict), result
            policies, policy_version = result, "test.quorum"
        self.registry = Registry(policies=policies)
        self.now = T0
        start = core_pb2.SessionStartPayload(
            participants=VOTERS if participants is None else participants,
            mode_version="1.0.0",
            configuration_version="cfg-1",
            policy_version=policy_version,
            ttl_ms=60_000,
        )
        env = Envelope("1.0", MODE, "SessionStart", "m0", SID, COORD, T0, start.SerializeToString())
        decision = KERNEL.decide(None, Identity(COORD), env, T0, self.registry)
        assert isinstance(decision, Accepted), decision
        self.session: Session = decision.session
        self.history: list[HistoryEntry] = list(decision.entries)

    def send(self, sender: str, message_type: str, payload: Message | bytes) -> Decision:
        self.now += 1
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        env = Envelope("1.0", MODE, message_type, f"m{self.now - T0}", SID, sender, self.now, data)
        decision = KERNEL.decide(self.session, Identity(sender), env, self.now, self.registry)
        if isinstance(decision, Accepted):
            self.session = decision.session
            self.history.extend(decision.entries)
        return decision

    def ok(self, sender: str, message_type: str, payload: Message | bytes) -> None:
        decision = self.send(sender, message_type, payload)
        assert isinstance(decision, Accepted), decision

    def refused(self, sender: str, message_type: str, payload: Message | bytes, code: ErrorCode) -> Rejection:
        before = self.session
        decision = self.send(sender, message_type, payload)
        assert isinstance(decision, Rejected), decision
        assert decision.rejection.code == code, decision.rejection
        assert self.session is before
        return decision.rejection

    @property
    def projection(self) -> dict[str, Any]:
        return catalog.spec_for(self.session.mode_descriptor).project(self.session.mode_state)


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


def commitment(positive: bool = True, **fields: Any) -> core_pb2.CommitmentPayload:
    values: dict[str, Any] = {
        "commitment_id": "c1",
        "action": "quorum.approved" if positive else "quorum.rejected",
        "authority_scope": "test",
        "reason": "done",
        "mode_version": "1.0.0",
        "configuration_version": "cfg-1",
        "outcome_positive": positive,
    }
    values.update(fields)
    return core_pb2.CommitmentPayload(**values)


# ---------------------------------------------------------------- start
def test_start_needs_a_participant() -> None:
    start = core_pb2.SessionStartPayload(mode_version="1.0.0", configuration_version="cfg-1", ttl_ms=1000)
    env = Envelope("1.0", MODE, "SessionStart", "m0", SID, COORD, T0, start.SerializeToString())
    decision = KERNEL.decide(None, Identity(COORD), env, T0)
    assert isinstance(decision, Rejected)
    assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE


# ---------------------------------------------------------------- happy paths
def test_approved_by_two_of_three() -> None:
    run = Run()
    assert run.projection == {"request": None, "ballots": {}}
    run.ok(COORD, "ApprovalRequest", request())
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.refused(COORD, "Commitment", commitment(), ErrorCode.INVALID_ENVELOPE)  # 1 of 2
    run.ok(BOB, "Approve", ballot("Approve"))
    run.ok(COORD, "Commitment", commitment())
    assert run.session.state is SessionState.RESOLVED
    assert run.projection == {
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
    assert replay(run.history) == run.session


def test_rejected_once_the_bar_is_out_of_reach() -> None:
    run = Run()
    run.ok(COORD, "ApprovalRequest", request())
    run.ok(ALICE, "Reject", ballot("Reject"))
    rejection = run.refused(COORD, "Commitment", commitment(positive=False), ErrorCode.INVALID_ENVELOPE)
    assert "within reach" in rejection.message
    run.ok(BOB, "Abstain", ballot("Abstain"))  # abstentions leave the pool: 0 + 1 < 2
    run.refused(COORD, "Commitment", commitment(positive=True), ErrorCode.INVALID_ENVELOPE)
    run.ok(COORD, "Commitment", commitment(positive=False))
    assert run.session.state is SessionState.RESOLVED
    assert {s: b["choice"] for s, b in run.projection["ballots"].items()} == {ALICE: "Reject", BOB: "Abstain"}


# ---------------------------------------------------------------- ApprovalRequest
def test_approval_request_rules() -> None:
    run = Run()
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
    run = Run()
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
    run = Run([COORD, ALICE])
    run.ok(COORD, "ApprovalRequest", request(required=2))
    run.ok(COORD, "Approve", ballot("Approve"))
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.ok(COORD, "Commitment", commitment())


# ---------------------------------------------------------------- Commitment
def test_commitment_checks() -> None:
    run = Run()
    run.refused(COORD, "Commitment", commitment(positive=False), ErrorCode.INVALID_ENVELOPE)  # no request
    run.ok(COORD, "ApprovalRequest", request(required=1))
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.refused(ALICE, "Commitment", commitment(), ErrorCode.FORBIDDEN)
    run.refused(COORD, "Commitment", commitment(reason=" "), ErrorCode.INVALID_ENVELOPE)
    run.refused(COORD, "Commitment", commitment(positive=False), ErrorCode.INVALID_ENVELOPE)  # bar reached
    run.ok(COORD, "Commitment", commitment())


# ---------------------------------------------------------------- policy threshold
def test_policy_threshold_replaces_required_approvals() -> None:
    run = Run(rules={"threshold": {"type": "n_of_m", "value": 3}})
    run.ok(COORD, "ApprovalRequest", request(required=1))
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.ok(BOB, "Approve", ballot("Approve"))
    rejection = run.refused(COORD, "Commitment", commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "needs 3 approval(s)" in rejection.message
    run.ok(CAROL, "Approve", ballot("Approve"))
    run.ok(COORD, "Commitment", commitment())


def test_percentage_threshold_counts_declared_participants() -> None:
    run = Run(rules={"threshold": {"type": "percentage", "value": 67}})  # ceil(2.01) = 3 of 3
    run.ok(COORD, "ApprovalRequest", request(required=1))
    run.ok(ALICE, "Approve", ballot("Approve"))
    run.ok(BOB, "Approve", ballot("Approve"))
    run.refused(COORD, "Commitment", commitment(), ErrorCode.INVALID_ENVELOPE)
    run.ok(CAROL, "Reject", ballot("Reject"))
    run.ok(COORD, "Commitment", commitment(positive=False))


def test_threshold_above_the_pool_makes_a_decline_eligible_at_once() -> None:
    run = Run(rules={"threshold": {"type": "count", "value": 5}})
    run.ok(COORD, "ApprovalRequest", request(required=2))
    for voter in VOTERS:
        run.ok(voter, "Approve", ballot("Approve"))
    rejection = run.refused(COORD, "Commitment", commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "needs 5 approval(s)" in rejection.message
    run.ok(COORD, "Commitment", commitment(positive=False))


def test_unsatisfiable_threshold_allows_only_a_decline() -> None:
    # Registration refuses 'weighted' today; a descriptor stored before that still binds.
    run = Run(rules={"threshold": {"type": "weighted", "value": 2}}, stored=True)
    run.ok(COORD, "ApprovalRequest", request(required=1))
    run.ok(ALICE, "Approve", ballot("Approve"))
    rejection = run.refused(COORD, "Commitment", commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "unsatisfiable" in rejection.message
    run.ok(COORD, "Commitment", commitment(positive=False))


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
