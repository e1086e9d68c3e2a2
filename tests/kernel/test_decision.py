"""Decision mode through the public kernel API: every rule, its reject paths, the projection."""

from __future__ import annotations

import math
from typing import Any

import pytest
from macp.modes.decision.v1 import decision_pb2
from macp.v1 import core_pb2

from pymacp.kernel import (
    Accepted,
    Envelope,
    ErrorCode,
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

MODE = "macp.mode.decision.v1"
SID = "3f1b6f3e-1d2c-4b5a-9c8d-7e6f5a4b3c2d"
T0 = 1_780_000_000_000
ORCH, A, B, OUTSIDER = "agent://orchestrator", "agent://a", "agent://b", "agent://outsider"
POLICY_ID = "policy.test.decision"


class Run:
    """One Decision session driven through ``Kernel.decide``."""

    def __init__(
        self,
        participants: tuple[str, ...] = (ORCH, A, B),
        rules: dict[str, Any] | None = None,
        schema_version: int = 3,
    ) -> None:
        self.kernel = Kernel()
        self.count = 0
        policy_version = ""
        policies: dict[str, PolicyDescriptor] = {}
        if rules is not None:
            policy_version = POLICY_ID
            policies[POLICY_ID] = PolicyDescriptor(POLICY_ID, MODE, "test", rules, schema_version)
        self.policy_version = policy_version
        start = core_pb2.SessionStartPayload(
            intent="test",
            participants=list(participants),
            mode_version="1.0.0",
            configuration_version="cfg-1",
            policy_version=policy_version,
            ttl_ms=60_000,
        )
        decision = self.kernel.decide(
            None, Identity(ORCH), self.envelope(ORCH, "SessionStart", start), T0, Registry(policies)
        )
        assert isinstance(decision, Accepted), decision
        self.session: Session = decision.session

    def envelope(self, sender: str, message_type: str, payload: Any) -> Envelope:
        self.count += 1
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        return Envelope("1.0", MODE, message_type, f"m{self.count}", SID, sender, T0 + self.count, data)

    def send(self, sender: str, message_type: str, payload: Any) -> Accepted | Rejected:
        env = self.envelope(sender, message_type, payload)
        decision = self.kernel.decide(self.session, Identity(sender), env, T0 + self.count)
        assert isinstance(decision, Accepted | Rejected), decision
        if isinstance(decision, Accepted):
            self.session = decision.session
        return decision

    def ok(self, sender: str, message_type: str, payload: Any) -> None:
        decision = self.send(sender, message_type, payload)
        assert isinstance(decision, Accepted), decision

    def no(self, code: ErrorCode, sender: str, message_type: str, payload: Any) -> Rejection:
        before = self.project()
        decision = self.send(sender, message_type, payload)
        assert isinstance(decision, Rejected), f"expected {code}, got {decision}"
        assert decision.rejection.code == code, decision.rejection
        assert self.project() == before  # a rejected message leaves no trace
        return decision.rejection

    def project(self) -> dict[str, Any]:
        return catalog.spec_for(self.session.mode_descriptor).project(self.session.mode_state)

    def commitment(self, positive: bool = True, **fields: Any) -> core_pb2.CommitmentPayload:
        values: dict[str, Any] = {
            "commitment_id": f"c{self.count}",
            "action": "decision.selected" if positive else "decision.rejected",
            "authority_scope": "test",
            "reason": "because",
            "mode_version": "1.0.0",
            "configuration_version": "cfg-1",
            "policy_version": self.policy_version,
            "outcome_positive": positive,
        }
        values.update(fields)
        return core_pb2.CommitmentPayload(**values)


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
    assert Run().project() == {
        "phase": "Proposal",
        "proposals": {},
        "evaluations": [],
        "objections": [],
        "votes": {},
    }


def test_phases_move_proposal_evaluation_voting_committed() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    assert run.project()["phase"] == "Evaluation"
    run.ok(A, "Vote", vote())
    assert run.project()["phase"] == "Voting"
    run.ok(ORCH, "Commitment", run.commitment())
    assert run.project()["phase"] == "Committed"
    assert run.session.state is SessionState.RESOLVED


def test_zero_participants_session_can_start_but_never_progress() -> None:
    run = Run(participants=())
    run.no(ErrorCode.FORBIDDEN, ORCH, "Proposal", proposal())
    run.no(ErrorCode.INVALID_ENVELOPE, ORCH, "Commitment", run.commitment())
    assert run.session.state is SessionState.OPEN


def test_undecodable_payload_is_invalid() -> None:
    Run().no(ErrorCode.INVALID_ENVELOPE, ORCH, "Proposal", b"\xff\xff\xff")


def test_unknown_message_type_is_invalid() -> None:
    Run().no(ErrorCode.INVALID_ENVELOPE, A, "Accept", b"")


# ---------------------------------------------------------------- Proposal
def test_proposal_is_recorded_with_its_sender() -> None:
    run = Run()
    run.ok(A, "Proposal", proposal("p1", "deploy", "ready"))
    assert run.project()["proposals"] == {
        "p1": {"proposal_id": "p1", "option": "deploy", "rationale": "ready", "sender": A}
    }


def test_proposal_from_a_non_participant_is_forbidden_even_from_the_initiator() -> None:
    run = Run(participants=(A, B))
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "Proposal", proposal())
    run.no(ErrorCode.FORBIDDEN, ORCH, "Proposal", proposal())


def test_outsider_is_forbidden_before_a_bad_payload_is_noticed() -> None:
    Run().no(ErrorCode.FORBIDDEN, OUTSIDER, "Proposal", b"\xff\xff\xff")


@pytest.mark.parametrize(("pid", "option"), [("", "deploy"), ("  ", "deploy"), ("p1", ""), ("p1", " ")])
def test_proposal_needs_an_id_and_an_option(pid: str, option: str) -> None:
    Run().no(ErrorCode.INVALID_ENVELOPE, ORCH, "Proposal", proposal(pid, option))


def test_proposal_ids_are_unique() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal("p1"))
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, A, "Proposal", proposal("p1", "other"))
    assert "p1" in rejection.message


def test_more_proposals_are_welcome_until_voting_starts() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal("p1"))
    run.ok(A, "Proposal", proposal("p2"))
    run.ok(B, "Vote", vote("p2"))
    run.no(ErrorCode.INVALID_ENVELOPE, A, "Proposal", proposal("p3"))
    assert sorted(run.project()["proposals"]) == ["p1", "p2"]


# ---------------------------------------------------------------- Evaluation
def test_evaluation_is_recorded_uppercase_in_arrival_order() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(B, "Evaluation", evaluation(recommendation="approve", confidence=0.7, reason="good"))
    run.ok(A, "Evaluation", evaluation(recommendation="REVIEW", confidence=0.0, reason="later"))
    assert run.project()["evaluations"] == [
        {"proposal_id": "p1", "recommendation": "APPROVE", "confidence": 0.7, "reason": "good", "sender": B},
        {"proposal_id": "p1", "recommendation": "REVIEW", "confidence": 0.0, "reason": "later", "sender": A},
    ]
    assert run.project()["phase"] == "Evaluation"


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
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.no(ErrorCode.INVALID_ENVELOPE, A, "Evaluation", payload)


def test_evaluation_before_any_proposal_or_after_voting_is_invalid() -> None:
    run = Run()
    run.no(ErrorCode.INVALID_ENVELOPE, A, "Evaluation", evaluation())
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Vote", vote())
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, B, "Evaluation", evaluation())
    assert "Vote" in rejection.message


def test_evaluation_from_an_outsider_is_forbidden() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "Evaluation", evaluation())


# ---------------------------------------------------------------- Objection
def test_objections_are_recorded_in_arrival_order_with_normalized_severity() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(B, "Objection", objection(severity="CRITICAL", reason="freeze"))
    run.ok(A, "Objection", objection(severity="", reason="minor"))
    assert run.project()["objections"] == [
        {"proposal_id": "p1", "reason": "freeze", "severity": "critical", "sender": B},
        {"proposal_id": "p1", "reason": "minor", "severity": "medium", "sender": A},
    ]


@pytest.mark.parametrize("payload", [objection(pid="p-does-not-exist"), objection(severity="severe")])
def test_bad_objections_are_invalid(payload: decision_pb2.ObjectionPayload) -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.no(ErrorCode.INVALID_ENVELOPE, B, "Objection", payload)


def test_objection_after_voting_started_is_invalid() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Vote", vote())
    run.no(ErrorCode.INVALID_ENVELOPE, B, "Objection", objection(severity="critical"))


# ---------------------------------------------------------------- Vote
def test_votes_are_recorded_per_proposal_and_sender() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal("p1"))
    run.ok(ORCH, "Proposal", proposal("p2"))
    run.ok(A, "Vote", vote("p1", "approve", "good"))
    # After the first Vote, any other declared participant may still vote, on any proposal.
    run.ok(B, "Vote", vote("p1", "REJECT", "risky"))
    run.ok(A, "Vote", vote("p2", "Abstain", "no view"))
    assert run.project()["votes"] == {
        "p1": {
            A: {"proposal_id": "p1", "vote": "APPROVE", "reason": "good", "sender": A},
            B: {"proposal_id": "p1", "vote": "REJECT", "reason": "risky", "sender": B},
        },
        "p2": {A: {"proposal_id": "p2", "vote": "ABSTAIN", "reason": "no view", "sender": A}},
    }


def test_a_second_vote_on_the_same_proposal_is_invalid_and_the_first_stands() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Vote", vote(value="APPROVE"))
    run.no(ErrorCode.INVALID_ENVELOPE, A, "Vote", vote(value="REJECT"))
    assert run.project()["votes"]["p1"][A]["vote"] == "APPROVE"


@pytest.mark.parametrize("payload", [vote(pid="p9"), vote(value="YES"), vote(value="")])
def test_bad_votes_are_invalid(payload: decision_pb2.VotePayload) -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.no(ErrorCode.INVALID_ENVELOPE, A, "Vote", payload)
    assert run.project()["phase"] == "Evaluation"


def test_vote_before_any_proposal_is_invalid_and_outsider_vote_is_forbidden() -> None:
    run = Run()
    run.no(ErrorCode.INVALID_ENVELOPE, A, "Vote", vote())
    run.ok(ORCH, "Proposal", proposal())
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "Vote", vote())


# ---------------------------------------------------------------- Commitment: authority, payload, readiness
def test_commitment_from_someone_other_than_the_authority_is_forbidden() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.no(ErrorCode.FORBIDDEN, A, "Commitment", run.commitment())


def test_any_participant_authority_lets_a_participant_commit() -> None:
    run = Run(rules={"commitment": {"authority": "any_participant"}})
    run.ok(ORCH, "Proposal", proposal())
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "Commitment", run.commitment())
    run.ok(A, "Commitment", run.commitment())
    assert run.session.state is SessionState.RESOLVED


@pytest.mark.parametrize("positive", [True, False])
def test_commitment_before_any_proposal_is_invalid_in_either_outcome(positive: bool) -> None:
    run = Run(rules={"voting": {"algorithm": "none"}})
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, ORCH, "Commitment", run.commitment(positive))
    assert "Proposal" in rejection.message


def test_payload_checks_run_before_readiness() -> None:
    run = Run()
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, ORCH, "Commitment", run.commitment(reason=" "))
    assert "reason" in rejection.message


def test_readiness_runs_before_policy() -> None:
    run = Run(rules={"voting": {"algorithm": "unanimous"}})
    run.no(ErrorCode.INVALID_ENVELOPE, ORCH, "Commitment", run.commitment())


@pytest.mark.parametrize("positive", [True, False])
def test_default_policy_takes_the_outcome_at_face_value(positive: bool) -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(ORCH, "Commitment", run.commitment(positive))
    assert run.session.state is SessionState.RESOLVED
    assert core_pb2.CommitmentPayload.FromString(run.session.resolution or b"").outcome_positive is positive


def test_a_resolved_session_accepts_nothing_more() -> None:
    run = Run()
    run.ok(ORCH, "Proposal", proposal())
    run.ok(ORCH, "Commitment", run.commitment())
    run.no(ErrorCode.SESSION_NOT_OPEN, A, "Vote", vote())


# ---------------------------------------------------------------- Commitment: policy
def test_policy_denial_carries_structured_denials() -> None:
    run = Run(
        rules={"voting": {"algorithm": "majority"}, "objection_handling": {"critical_severity_vetoes": True}},
        schema_version=3,
    )
    run.ok(ORCH, "Proposal", proposal())
    run.ok(B, "Objection", objection(severity="critical"))
    run.ok(A, "Objection", objection(severity="critical"))
    rejection = run.no(ErrorCode.POLICY_DENIED, ORCH, "Commitment", run.commitment())
    assert [(d.code, d.participants) for d in rejection.denials] == [("veto", (A, B)), ("no_votes", ())]
    assert POLICY_ID in rejection.message
    assert rejection.details()["reasons"] == [d.message for d in rejection.denials]
    assert run.session.state is SessionState.OPEN


def test_vote_gated_decline_needs_a_decisive_reject() -> None:
    run = Run(rules={"voting": {"algorithm": "majority"}}, schema_version=2)
    run.ok(ORCH, "Proposal", proposal())
    denied = run.no(ErrorCode.POLICY_DENIED, ORCH, "Commitment", run.commitment(False))
    assert [d.code for d in denied.denials] == ["no_votes"]
    run.ok(A, "Vote", vote(value="REJECT"))
    run.ok(B, "Vote", vote(value="REJECT"))
    run.ok(ORCH, "Commitment", run.commitment(False))
    assert run.project()["phase"] == "Committed"


def test_votes_on_every_proposal_count_toward_the_tally() -> None:
    run = Run(rules={"voting": {"algorithm": "majority", "threshold": 0.6}})
    run.ok(ORCH, "Proposal", proposal("p1"))
    run.ok(ORCH, "Proposal", proposal("p2"))
    run.ok(A, "Vote", vote("p1", "APPROVE"))
    run.ok(B, "Vote", vote("p2", "REJECT"))
    denied = run.no(ErrorCode.POLICY_DENIED, ORCH, "Commitment", run.commitment())
    assert [d.code for d in denied.denials] == ["threshold_not_met"]
    run.ok(A, "Vote", vote("p2", "APPROVE"))  # 2 approve / 3 decisive = 0.67 >= 0.6
    run.ok(ORCH, "Commitment", run.commitment())


def test_weighted_policy_through_the_mode() -> None:
    run = Run(rules={"voting": {"algorithm": "weighted", "weights": {A: 1, B: 3}}})
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Vote", vote(value="APPROVE"))
    run.ok(B, "Vote", vote(value="REJECT"))
    run.ok(ORCH, "Vote", vote(value="APPROVE"))  # not in the weights map: weight 0
    run.no(ErrorCode.POLICY_DENIED, ORCH, "Commitment", run.commitment())
    run.ok(ORCH, "Commitment", run.commitment(False))


def test_evaluation_requirements_through_the_mode() -> None:
    run = Run(rules={"evaluation": {"required_before_voting": True, "minimum_confidence": 0.6}})
    run.ok(ORCH, "Proposal", proposal())
    run.ok(A, "Evaluation", evaluation(recommendation="REVIEW", confidence=0.9))
    denied = run.no(ErrorCode.POLICY_DENIED, ORCH, "Commitment", run.commitment())
    assert [d.code for d in denied.denials] == ["evaluation_required"]
    run.ok(B, "Evaluation", evaluation(recommendation="BLOCK", confidence=0.5))
    denied = run.no(ErrorCode.POLICY_DENIED, ORCH, "Commitment", run.commitment())
    assert [d.code for d in denied.denials] == ["confidence_below_minimum"]
    run.ok(A, "Evaluation", evaluation(recommendation="APPROVE", confidence=0.6))
    run.ok(ORCH, "Commitment", run.commitment())


def test_finalize_decline_objection_authorizes_a_decline_through_the_mode() -> None:
    run = Run(
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
    denied = run.no(ErrorCode.POLICY_DENIED, ORCH, "Commitment", run.commitment())
    assert [d.code for d in denied.denials] == ["veto", "quorum_not_met", "no_votes"]
    run.ok(ORCH, "Commitment", run.commitment(False))


def test_unsupported_schema_version_is_denied_at_commitment() -> None:
    run = Run(rules={"voting": {"algorithm": "none"}}, schema_version=4)
    run.ok(ORCH, "Proposal", proposal())
    denied = run.no(ErrorCode.POLICY_DENIED, ORCH, "Commitment", run.commitment())
    assert [d.code for d in denied.denials] == ["unsupported_schema_version"]
