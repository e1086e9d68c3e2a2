"""Decision mode through the public kernel API: every rule, its reject paths, the projection."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from macp.modes.decision.v1 import decision_pb2
from macp.v1 import core_pb2

from kernel_driver import POLICY_ID, SessionDriver
from pymacp.kernel import ErrorCode, SessionState

MODE = "macp.mode.decision.v1"
ORCH, A, B, OUTSIDER = "agent://orchestrator", "agent://a", "agent://b", "agent://outsider"


def start(
    participants: Sequence[str] = (ORCH, A, B),
    rules: dict[str, Any] | None = None,
    schema_version: int = 3,
    stored: bool = False,
) -> SessionDriver:
    """A Decision session the orchestrator starts."""
    return SessionDriver.start(
        MODE, ORCH, participants, rules=rules, schema_version=schema_version, stored=stored
    )


def proposal(
    pid: str = "p1", option: str = "deploy", rationale: str = "ready"
) -> decision_pb2.ProposalPayload:
    return decision_pb2.ProposalPayload(proposal_id=pid, option=option, rationale=rationale)


def evaluation(
    pid: str = "p1", recommendation: str = "APPROVE", confidence: float = 0.8, reason: str = "ok"
) -> decision_pb2.EvaluationPayload:
    return decision_pb2.EvaluationPayload(
        proposal_id=pid, recommendation=recommendation, confidence=confidence, reason=reason
    )


def objection(pid: str = "p1", severity: str = "high", reason: str = "risk") -> decision_pb2.ObjectionPayload:
    return decision_pb2.ObjectionPayload(proposal_id=pid, severity=severity, reason=reason)


def vote(pid: str = "p1", value: str = "APPROVE", reason: str = "fine") -> decision_pb2.VotePayload:
    return decision_pb2.VotePayload(proposal_id=pid, vote=value, reason=reason)


# ---------------------------------------------------------------- start and phases
def test_a_new_session_is_in_the_proposal_phase_with_empty_state() -> None:
    assert start().state == {
        "phase": "Proposal",
        "proposals": {},
        "evaluations": [],
        "objections": [],
        "votes": {},
    }


def test_phases_move_proposal_evaluation_voting_committed() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    assert run.state["phase"] == "Evaluation"
    run.ok(A, "Vote", vote())
    assert run.state["phase"] == "Voting"
    run.ok(ORCH, "Commitment", run.commitment())
    assert run.state["phase"] == "Committed"
    assert run.session.state is SessionState.RESOLVED


def test_zero_participants_session_can_start_but_never_progress() -> None:
    run = start(participants=())
    run.refused(ORCH, "Proposal", proposal(), ErrorCode.FORBIDDEN)
    run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    assert run.session.state is SessionState.OPEN


def test_undecodable_payload_is_invalid() -> None:
    start().refused(ORCH, "Proposal", b"\xff\xff\xff", ErrorCode.INVALID_ENVELOPE)


def test_unknown_message_type_is_invalid() -> None:
    start().refused(A, "Accept", b"", ErrorCode.INVALID_ENVELOPE)


# ---------------------------------------------------------------- Proposal
def test_proposal_is_recorded_with_its_sender() -> None:
    run = start()
    run.ok(A, "Proposal", proposal("p1", "deploy", "ready"))
    assert run.state["proposals"] == {
        "p1": {"proposal_id": "p1", "option": "deploy", "rationale": "ready", "sender": A}
    }


def test_proposal_from_a_non_participant_is_forbidden_even_from_the_initiator() -> None:
    run = start(participants=(A, B))
    run.refused(OUTSIDER, "Proposal", proposal(), ErrorCode.FORBIDDEN)
    run.refused(ORCH, "Proposal", proposal(), ErrorCode.FORBIDDEN)


def test_outsider_is_forbidden_before_a_bad_payload_is_noticed() -> None:
    start().refused(OUTSIDER, "Proposal", b"\xff\xff\xff", ErrorCode.FORBIDDEN)


@pytest.mark.parametrize(("pid", "option"), [("", "deploy"), ("  ", "deploy"), ("p1", ""), ("p1", " ")])
def test_proposal_needs_an_id_and_an_option(pid: str, option: str) -> None:
    start().refused(ORCH, "Proposal", proposal(pid, option), ErrorCode.INVALID_ENVELOPE)


def test_proposal_ids_are_unique() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal("p1"))
    rejection = run.refused(A, "Proposal", proposal("p1", "other"), ErrorCode.INVALID_ENVELOPE)
    assert "p1" in rejection.message


def test_more_proposals_are_welcome_until_voting_starts() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal("p1"))
    run.ok(A, "Proposal", proposal("p2"))
    run.ok(B, "Vote", vote("p2"))
    run.refused(A, "Proposal", proposal("p3"), ErrorCode.INVALID_ENVELOPE)
    assert sorted(run.state["proposals"]) == ["p1", "p2"]


# ---------------------------------------------------------------- Evaluation
def test_evaluation_is_recorded_uppercase_in_arrival_order() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(B, "Evaluation", evaluation(recommendation="approve", confidence=0.7, reason="good"))
    run.ok(A, "Evaluation", evaluation(recommendation="REVIEW", confidence=0.0, reason="later"))
    assert run.state["evaluations"] == [
        {"proposal_id": "p1", "recommendation": "APPROVE", "confidence": 0.7, "reason": "good", "sender": B},
        {"proposal_id": "p1", "recommendation": "REVIEW", "confidence": 0.0, "reason": "later", "sender": A},
    ]
    assert run.state["phase"] == "Evaluation"


@pytest.mark.parametrize(
    "payload",
    [
        evaluation(pid="p9"),
        evaluation(recommendation="MAYBE"),
        evaluation(recommendation=""),
        evaluation(confidence=1.01),
        evaluation(confidence=-0.1),
        evaluation(confidence=math.nan),
    ],
)
def test_bad_evaluations_are_invalid(payload: decision_pb2.EvaluationPayload) -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.refused(A, "Evaluation", payload, ErrorCode.INVALID_ENVELOPE)


def test_evaluation_before_any_proposal_or_after_voting_is_invalid() -> None:
    run = start()
    run.refused(A, "Evaluation", evaluation(), ErrorCode.INVALID_ENVELOPE)
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Vote", vote())
    rejection = run.refused(B, "Evaluation", evaluation(), ErrorCode.INVALID_ENVELOPE)
    assert "Vote" in rejection.message


def test_evaluation_from_an_outsider_is_forbidden() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.refused(OUTSIDER, "Evaluation", evaluation(), ErrorCode.FORBIDDEN)


# ---------------------------------------------------------------- Objection
def test_objections_are_recorded_in_arrival_order_with_normalized_severity() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(B, "Objection", objection(severity="CRITICAL", reason="freeze"))
    run.ok(A, "Objection", objection(severity="", reason="minor"))
    assert run.state["objections"] == [
        {"proposal_id": "p1", "reason": "freeze", "severity": "critical", "sender": B},
        {"proposal_id": "p1", "reason": "minor", "severity": "medium", "sender": A},
    ]


@pytest.mark.parametrize("payload", [objection(pid="p-does-not-exist"), objection(severity="severe")])
def test_bad_objections_are_invalid(payload: decision_pb2.ObjectionPayload) -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.refused(B, "Objection", payload, ErrorCode.INVALID_ENVELOPE)


def test_objection_after_voting_started_is_invalid() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Vote", vote())
    run.refused(B, "Objection", objection(severity="critical"), ErrorCode.INVALID_ENVELOPE)


# ---------------------------------------------------------------- Vote
def test_votes_are_recorded_per_proposal_and_sender() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal("p1"))
    run.ok(ORCH, "Proposal", proposal("p2"))
    run.ok(A, "Vote", vote("p1", "approve", "good"))
    # After the first Vote, any other declared participant may still vote, on any proposal.
    run.ok(B, "Vote", vote("p1", "REJECT", "risky"))
    run.ok(A, "Vote", vote("p2", "Abstain", "no view"))
    assert run.state["votes"] == {
        "p1": {
            A: {"proposal_id": "p1", "vote": "APPROVE", "reason": "good", "sender": A},
            B: {"proposal_id": "p1", "vote": "REJECT", "reason": "risky", "sender": B},
        },
        "p2": {A: {"proposal_id": "p2", "vote": "ABSTAIN", "reason": "no view", "sender": A}},
    }


def test_a_second_vote_on_the_same_proposal_is_invalid_and_the_first_stands() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Vote", vote(value="APPROVE"))
    run.refused(A, "Vote", vote(value="REJECT"), ErrorCode.INVALID_ENVELOPE)
    assert run.state["votes"]["p1"][A]["vote"] == "APPROVE"


@pytest.mark.parametrize("payload", [vote(pid="p9"), vote(value="YES"), vote(value="")])
def test_bad_votes_are_invalid(payload: decision_pb2.VotePayload) -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.refused(A, "Vote", payload, ErrorCode.INVALID_ENVELOPE)
    assert run.state["phase"] == "Evaluation"


def test_vote_before_any_proposal_is_invalid_and_outsider_vote_is_forbidden() -> None:
    run = start()
    run.refused(A, "Vote", vote(), ErrorCode.INVALID_ENVELOPE)
    run.ok(ORCH, "Proposal", proposal())
    run.refused(OUTSIDER, "Vote", vote(), ErrorCode.FORBIDDEN)


# ---------------------------------------------------------------- Commitment: authority, payload, readiness
def test_commitment_from_someone_other_than_the_authority_is_forbidden() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.refused(A, "Commitment", run.commitment(), ErrorCode.FORBIDDEN)


def test_any_participant_authority_lets_a_participant_commit() -> None:
    run = start(rules={"commitment": {"authority": "any_participant"}})
    run.ok(ORCH, "Proposal", proposal())
    run.refused(OUTSIDER, "Commitment", run.commitment(), ErrorCode.FORBIDDEN)
    run.ok(A, "Commitment", run.commitment())
    assert run.session.state is SessionState.RESOLVED


@pytest.mark.parametrize("positive", [True, False])
def test_commitment_before_any_proposal_is_invalid_in_either_outcome(positive: bool) -> None:
    run = start(rules={"voting": {"algorithm": "none"}})
    rejection = run.refused(ORCH, "Commitment", run.commitment(positive), ErrorCode.INVALID_ENVELOPE)
    assert "Proposal" in rejection.message


def test_payload_checks_run_before_readiness() -> None:
    run = start()
    rejection = run.refused(ORCH, "Commitment", run.commitment(reason=" "), ErrorCode.INVALID_ENVELOPE)
    assert "reason" in rejection.message


def test_readiness_runs_before_policy() -> None:
    run = start(rules={"voting": {"algorithm": "unanimous"}})
    run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)


@pytest.mark.parametrize("positive", [True, False])
def test_default_policy_takes_the_outcome_at_face_value(positive: bool) -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(ORCH, "Commitment", run.commitment(positive))
    assert run.session.state is SessionState.RESOLVED
    assert core_pb2.CommitmentPayload.FromString(run.session.resolution or b"").outcome_positive is positive


def test_a_resolved_session_accepts_nothing_more() -> None:
    run = start()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(ORCH, "Commitment", run.commitment())
    run.refused(A, "Vote", vote(), ErrorCode.SESSION_NOT_OPEN)


# ---------------------------------------------------------------- Commitment: policy
def test_policy_denial_carries_structured_denials() -> None:
    run = start(
        rules={"voting": {"algorithm": "majority"}, "objection_handling": {"critical_severity_vetoes": True}},
        schema_version=3,
    )
    run.ok(ORCH, "Proposal", proposal())
    run.ok(B, "Objection", objection(severity="critical"))
    run.ok(A, "Objection", objection(severity="critical"))
    rejection = run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.POLICY_DENIED)
    assert [(d.code, d.participants) for d in rejection.denials] == [("veto", (A, B)), ("no_votes", ())]
    assert POLICY_ID in rejection.message
    assert rejection.details()["reasons"] == [d.message for d in rejection.denials]
    assert run.session.state is SessionState.OPEN


def test_vote_gated_decline_needs_a_decisive_reject() -> None:
    run = start(rules={"voting": {"algorithm": "majority"}}, schema_version=2)
    run.ok(ORCH, "Proposal", proposal())
    denied = run.refused(ORCH, "Commitment", run.commitment(False), ErrorCode.POLICY_DENIED)
    assert [d.code for d in denied.denials] == ["no_votes"]
    run.ok(A, "Vote", vote(value="REJECT"))
    run.ok(B, "Vote", vote(value="REJECT"))
    run.ok(ORCH, "Commitment", run.commitment(False))
    assert run.state["phase"] == "Committed"


def test_votes_on_every_proposal_count_toward_the_tally() -> None:
    run = start(rules={"voting": {"algorithm": "majority", "threshold": 0.6}})
    run.ok(ORCH, "Proposal", proposal("p1"))
    run.ok(ORCH, "Proposal", proposal("p2"))
    run.ok(A, "Vote", vote("p1", "APPROVE"))
    run.ok(B, "Vote", vote("p2", "REJECT"))
    denied = run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.POLICY_DENIED)
    assert [d.code for d in denied.denials] == ["threshold_not_met"]
    run.ok(A, "Vote", vote("p2", "APPROVE"))  # 2 approve / 3 decisive = 0.67 >= 0.6
    run.ok(ORCH, "Commitment", run.commitment())


def test_weighted_policy_through_the_mode() -> None:
    run = start(rules={"voting": {"algorithm": "weighted", "weights": {A: 1, B: 3}}})
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Vote", vote(value="APPROVE"))
    run.ok(B, "Vote", vote(value="REJECT"))
    run.ok(ORCH, "Vote", vote(value="APPROVE"))  # not in the weights map: weight 0
    run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.POLICY_DENIED)
    run.ok(ORCH, "Commitment", run.commitment(False))


def test_evaluation_requirements_through_the_mode() -> None:
    run = start(rules={"evaluation": {"required_before_voting": True, "minimum_confidence": 0.6}})
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Evaluation", evaluation(recommendation="REVIEW", confidence=0.9))
    denied = run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.POLICY_DENIED)
    assert [d.code for d in denied.denials] == ["evaluation_required"]
    run.ok(B, "Evaluation", evaluation(recommendation="BLOCK", confidence=0.5))
    denied = run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.POLICY_DENIED)
    assert [d.code for d in denied.denials] == ["confidence_below_minimum"]
    run.ok(A, "Evaluation", evaluation(recommendation="APPROVE", confidence=0.6))
    run.ok(ORCH, "Commitment", run.commitment())


def test_finalize_decline_objection_authorizes_a_decline_through_the_mode() -> None:
    run = start(
        rules={
            "voting": {"algorithm": "majority", "quorum": {"type": "count", "value": 2}},
            "objection_handling": {
                "critical_severity_vetoes": True,
                "critical_objection_action": "finalize_decline",
            },
            "commitment": {"require_vote_quorum": True},
        }
    )
    run.ok(ORCH, "Proposal", proposal())
    run.ok(B, "Objection", objection(severity="critical"))
    denied = run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.POLICY_DENIED)
    assert [d.code for d in denied.denials] == ["veto", "quorum_not_met", "no_votes"]
    run.ok(ORCH, "Commitment", run.commitment(False))


def test_unsupported_schema_version_is_denied_at_commitment() -> None:
    # Registration refuses schema_version 4; a descriptor stored before that still binds.
    run = start(rules={"voting": {"algorithm": "none"}}, schema_version=4, stored=True)
    run.ok(ORCH, "Proposal", proposal())
    denied = run.refused(ORCH, "Commitment", run.commitment(), ErrorCode.POLICY_DENIED)
    assert [d.code for d in denied.denials] == ["unsupported_schema_version"]
