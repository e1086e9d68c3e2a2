"""The Decision governance evaluator (RFC-MACP-0012 §6.4), called directly.

Every cell of the result x outcome table, each algorithm, each schema version, the
weights electorate, the participation floor, evaluations and critical objections.
"""

from __future__ import annotations

from typing import Any

import pytest

from pymacp.kernel.policy.decision import (
    Assessment,
    Ballot,
    Objection,
    Result,
    evaluate_decision,
    tally,
)
from pymacp.kernel.policy.rules import DecisionRules

A, B, C, D = "agent://a", "agent://b", "agent://c", "agent://d"
ROSTER = (A, B, C)


def rules(
    voting: dict[str, Any] | None = None,
    *,
    commitment: dict[str, Any] | None = None,
    objections: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> DecisionRules:
    raw: dict[str, Any] = {}
    if voting is not None:
        raw["voting"] = voting
    if commitment is not None:
        raw["commitment"] = commitment
    if objections is not None:
        raw["objection_handling"] = objections
    if evaluation is not None:
        raw["evaluation"] = evaluation
    return DecisionRules.parse(raw)


def votes(*pairs: tuple[str, str]) -> tuple[Ballot, ...]:
    return tuple(Ballot(sender, vote) for sender, vote in pairs)


def approvals_and_rejections(approve: int, reject: int) -> tuple[Ballot, ...]:
    return tuple(Ballot(f"agent://y{i}", "APPROVE") for i in range(approve)) + tuple(
        Ballot(f"agent://n{i}", "REJECT") for i in range(reject)
    )


def codes(
    r: DecisionRules,
    positive: bool,
    ballots: tuple[Ballot, ...] = (),
    *,
    version: int = 3,
    participants: tuple[str, ...] = ROSTER,
    evaluations: tuple[Assessment, ...] = (),
    objections: tuple[Objection, ...] = (),
) -> list[str]:
    denials = evaluate_decision(
        r,
        version,
        participants,
        ballots=ballots,
        evaluations=evaluations,
        objections=objections,
        outcome_positive=positive,
    )
    return [d.code for d in denials]


MAJORITY = rules({"algorithm": "majority"})
PASSED = votes((A, "APPROVE"), (B, "APPROVE"), (C, "REJECT"))
PASSED_NO_REJECT = votes((A, "APPROVE"), (B, "APPROVE"))
FAILED = votes((A, "APPROVE"), (B, "REJECT"), (C, "REJECT"))
NO_VOTES = votes((A, "ABSTAIN"))


# ---------------------------------------------------------------- schema version
@pytest.mark.parametrize("version", [0, 4, -1])
@pytest.mark.parametrize("positive", [True, False])
def test_unsupported_schema_version_is_the_only_denial(version: int, positive: bool) -> None:
    denials = evaluate_decision(
        rules({"algorithm": "none"}),
        version,
        ROSTER,
        ballots=(),
        evaluations=(),
        objections=(),
        outcome_positive=positive,
    )
    assert [d.code for d in denials] == ["unsupported_schema_version"]
    assert str(version) in denials[0].message


# ---------------------------------------------------------------- the result x outcome table
@pytest.mark.parametrize("version", [1, 2, 3])
def test_passed_positive_is_allowed(version: int) -> None:
    assert codes(MAJORITY, True, PASSED, version=version) == []


@pytest.mark.parametrize("version", [1, 2, 3])
def test_passed_negative_is_a_decline_over_approval(version: int) -> None:
    assert codes(MAJORITY, False, PASSED, version=version) == ["decline_over_approval"]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_passed_negative_without_a_reject_also_lacks_backing(version: int) -> None:
    assert codes(MAJORITY, False, PASSED_NO_REJECT, version=version) == [
        "decline_over_approval",
        "decline_not_backed",
    ]


@pytest.mark.parametrize("version", [2, 3])
def test_waiver_allows_a_backed_decline_over_approval(version: int) -> None:
    waived = rules({"algorithm": "majority"}, commitment={"allow_decline_over_approval": True})
    assert codes(waived, False, PASSED, version=version) == []


@pytest.mark.parametrize("version", [2, 3])
def test_waiver_does_not_cover_the_decline_guard(version: int) -> None:
    waived = rules({"algorithm": "majority"}, commitment={"allow_decline_over_approval": True})
    assert codes(waived, False, PASSED_NO_REJECT, version=version) == ["decline_not_backed"]


def test_waiver_is_a_version_2_field_and_inert_under_version_1() -> None:
    waived = rules({"algorithm": "majority"}, commitment={"allow_decline_over_approval": True})
    assert codes(waived, False, PASSED, version=1) == ["decline_over_approval"]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_failed_positive_is_denied(version: int) -> None:
    assert codes(MAJORITY, True, FAILED, version=version) == ["threshold_not_met"]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_failed_negative_with_a_decisive_reject_is_allowed(version: int) -> None:
    assert codes(MAJORITY, False, FAILED, version=version) == []


@pytest.mark.parametrize("version", [1, 2, 3])
def test_failed_negative_without_a_reject_is_not_backed(version: int) -> None:
    unanimous = rules({"algorithm": "unanimous"})
    partial = votes((A, "APPROVE"), (B, "APPROVE"))
    assert tally(unanimous, ROSTER, partial).result is Result.FAILED
    assert codes(unanimous, False, partial, version=version) == ["decline_not_backed"]


def test_no_votes_positive_is_denied_under_version_3() -> None:
    assert codes(MAJORITY, True, NO_VOTES, version=3) == ["no_votes"]
    assert codes(MAJORITY, True, (), version=3) == ["no_votes"]


@pytest.mark.parametrize("version", [1, 2])
def test_no_votes_positive_is_allowed_under_legacy_versions(version: int) -> None:
    assert codes(MAJORITY, True, NO_VOTES, version=version) == []


@pytest.mark.parametrize("version", [1, 2])
def test_no_votes_positive_is_denied_under_legacy_versions_with_require_vote_quorum(version: int) -> None:
    bound = rules({"algorithm": "majority"}, commitment={"require_vote_quorum": True})
    assert codes(bound, True, (), version=version) == ["no_votes"]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_no_votes_negative_is_denied_at_every_version(version: int) -> None:
    assert codes(MAJORITY, False, NO_VOTES, version=version) == ["no_votes"]


@pytest.mark.parametrize("algorithm", ["majority", "supermajority", "unanimous", "weighted", "plurality"])
def test_version_3_empty_tally_binds_every_voting_algorithm(algorithm: str) -> None:
    r = rules({"algorithm": algorithm, "weights": {A: 1}})
    assert codes(r, True, (), version=3) == ["no_votes"]
    assert codes(r, True, (), version=2) == []


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("positive", [True, False])
def test_none_takes_the_outcome_at_face_value(version: int, positive: bool) -> None:
    none = rules({"algorithm": "none"})
    assert codes(none, positive, (), version=version) == []
    assert codes(none, positive, FAILED, version=version) == []
    assert codes(rules(), positive, PASSED, version=version) == []  # no voting block at all


# ---------------------------------------------------------------- algorithms
def test_majority_is_inclusive_so_a_tie_passes() -> None:
    assert tally(MAJORITY, ROSTER, votes((A, "APPROVE"), (B, "REJECT"))).result is Result.PASSED


def test_majority_threshold_is_read_from_the_policy() -> None:
    strict = rules({"algorithm": "majority", "threshold": 0.6})
    assert tally(strict, ROSTER, votes((A, "APPROVE"), (B, "REJECT"))).result is Result.FAILED
    assert tally(strict, ROSTER, approvals_and_rejections(3, 2)).result is Result.PASSED


def test_abstentions_are_excluded_from_the_denominator() -> None:
    ballots = votes((A, "APPROVE"), (B, "ABSTAIN"), (C, "ABSTAIN"))
    t = tally(rules({"algorithm": "majority", "threshold": 0.9}), ROSTER, ballots)
    assert (t.result, t.approve, t.reject) == (Result.PASSED, 1.0, 0.0)


def test_votes_on_every_proposal_are_aggregated() -> None:
    # Each Ballot is one (proposal, sender) vote: the same sender on two proposals counts twice.
    ballots = votes((A, "APPROVE"), (A, "APPROVE"), (B, "REJECT"))
    t = tally(rules({"algorithm": "majority", "threshold": 0.6}), ROSTER, ballots)
    assert (t.result, t.approve, t.reject) == (Result.PASSED, 2.0, 1.0)


TWO_THIRDS = rules({"algorithm": "supermajority", "threshold": 0.6666666666666666})


@pytest.mark.parametrize(("approve", "reject"), [(2, 1), (4, 2), (20, 10), (67, 33)])
def test_supermajority_two_thirds_passes(approve: int, reject: int) -> None:
    assert tally(TWO_THIRDS, ROSTER, approvals_and_rejections(approve, reject)).result is Result.PASSED


@pytest.mark.parametrize(("approve", "reject"), [(66, 34), (1, 1), (3, 2)])
def test_supermajority_below_two_thirds_fails(approve: int, reject: int) -> None:
    assert tally(TWO_THIRDS, ROSTER, approvals_and_rejections(approve, reject)).result is Result.FAILED


def test_supermajority_with_threshold_0_67_fails_at_two_thirds() -> None:
    r = rules({"algorithm": "supermajority", "threshold": 0.67})
    assert tally(r, ROSTER, approvals_and_rejections(2, 1)).result is Result.FAILED
    assert tally(r, ROSTER, approvals_and_rejections(67, 33)).result is Result.PASSED


@pytest.mark.parametrize("threshold", [None, 0.5, 0.3])
def test_supermajority_falls_back_to_two_thirds_without_a_threshold_above_half(
    threshold: float | None,
) -> None:
    voting: dict[str, Any] = {"algorithm": "supermajority"}
    if threshold is not None:
        voting["threshold"] = threshold
    r = rules(voting)
    assert tally(r, ROSTER, approvals_and_rejections(3, 2)).result is Result.FAILED
    assert tally(r, ROSTER, approvals_and_rejections(2, 1)).result is Result.PASSED


UNANIMOUS = rules({"algorithm": "unanimous"})


def test_unanimous_needs_every_declared_participant_to_approve() -> None:
    everyone = votes((A, "APPROVE"), (B, "APPROVE"), (C, "APPROVE"))
    assert tally(UNANIMOUS, ROSTER, everyone).result is Result.PASSED
    assert tally(UNANIMOUS, ROSTER, everyone[:2]).result is Result.FAILED  # Failed, not NoVotes


def test_unanimous_fails_on_any_reject_or_abstention() -> None:
    assert tally(UNANIMOUS, ROSTER, PASSED).result is Result.FAILED
    with_reject = votes((A, "APPROVE"), (B, "APPROVE"), (C, "APPROVE"), (C, "REJECT"))
    assert tally(UNANIMOUS, ROSTER, with_reject).result is Result.FAILED
    abstaining = votes((A, "APPROVE"), (B, "APPROVE"), (C, "ABSTAIN"))
    assert tally(UNANIMOUS, ROSTER, abstaining).result is Result.FAILED


def test_unanimous_over_an_empty_roster_never_passes() -> None:
    assert tally(UNANIMOUS, (), votes((A, "APPROVE"))).result is Result.FAILED
    assert tally(UNANIMOUS, (), ()).result is Result.NO_VOTES


PLURALITY = rules({"algorithm": "plurality"})


def test_plurality_needs_strictly_more_approvals() -> None:
    assert tally(PLURALITY, ROSTER, approvals_and_rejections(2, 1)).result is Result.PASSED
    assert tally(PLURALITY, ROSTER, approvals_and_rejections(1, 1)).result is Result.FAILED
    assert tally(PLURALITY, ROSTER, approvals_and_rejections(0, 1)).result is Result.FAILED
    assert tally(PLURALITY, ROSTER, ()).result is Result.NO_VOTES


def test_weighted_share_uses_the_weights() -> None:
    r = rules({"algorithm": "weighted", "weights": {A: 3, B: 1}})
    ballots = votes((A, "APPROVE"), (B, "REJECT"))
    t = tally(r, ROSTER, ballots)
    assert (t.result, t.approve, t.reject) == (Result.PASSED, 3.0, 1.0)
    strict = rules({"algorithm": "weighted", "threshold": 0.8, "weights": {A: 3, B: 1}})
    assert tally(strict, ROSTER, ballots).result is Result.FAILED
    outvoted = votes((A, "REJECT"), (B, "APPROVE"))
    assert tally(r, ROSTER, outvoted).result is Result.FAILED  # 1/4 < default 0.5


def test_weighted_electorate_is_the_weights_map() -> None:
    r = rules({"algorithm": "weighted", "weights": {A: 1}})
    only_outsider = votes((B, "REJECT"))  # B is declared but absent from weights: weight 0
    t = tally(r, ROSTER, only_outsider)
    assert (t.result, t.decisive_reject) == (Result.NO_VOTES, False)
    for version in (1, 2, 3):
        assert codes(r, False, only_outsider, version=version) == ["no_votes"]
    assert codes(r, True, only_outsider, version=3) == ["no_votes"]
    assert codes(r, True, only_outsider, version=1) == []
    assert tally(r, ROSTER, votes((B, "REJECT"), (A, "APPROVE"))).result is Result.PASSED


def test_weighted_zero_weight_reject_does_not_back_a_decline() -> None:
    r = rules({"algorithm": "weighted", "threshold": 0.9, "weights": {A: 1, C: 1}})
    ballots = votes((A, "APPROVE"), (C, "ABSTAIN"), (B, "REJECT"))
    assert tally(r, ROSTER, ballots).result is Result.PASSED
    assert codes(r, False, ballots) == ["decline_over_approval", "decline_not_backed"]


def test_weighted_negative_total_fails_and_zero_total_is_no_votes() -> None:
    r = rules({"algorithm": "weighted", "weights": {A: -2, B: 1, C: 2}})
    assert tally(r, ROSTER, votes((A, "APPROVE"), (B, "APPROVE"))).result is Result.FAILED
    assert tally(r, ROSTER, votes((A, "APPROVE"), (C, "APPROVE"))).result is Result.NO_VOTES


def test_unknown_algorithm_fails_and_reports_invalid_rules() -> None:
    r = rules({"algorithm": "ranked_choice"})
    t = tally(r, ROSTER, PASSED)
    assert (t.result, t.known_algorithm) == (Result.FAILED, False)
    assert codes(r, True, PASSED) == ["invalid_rules"]
    assert codes(r, False, FAILED) == []  # Failed with a decisive reject: the decline stands


# ---------------------------------------------------------------- participation floor
def test_count_quorum_gates_only_with_require_vote_quorum() -> None:
    voting = {"algorithm": "majority", "quorum": {"type": "count", "value": 2}}
    inert = rules(voting)
    bound = rules(voting, commitment={"require_vote_quorum": True})
    one = votes((A, "APPROVE"))
    assert codes(inert, True, one) == []
    assert codes(bound, True, one) == ["quorum_not_met"]
    assert codes(bound, True, votes((A, "APPROVE"), (B, "ABSTAIN"))) == []  # abstainers participate


def test_quorum_counts_unique_voters() -> None:
    bound = rules(
        {"algorithm": "majority", "quorum": {"type": "count", "value": 2}},
        commitment={"require_vote_quorum": True},
    )
    assert codes(bound, True, votes((A, "APPROVE"), (A, "APPROVE"))) == ["quorum_not_met"]


def test_weight_zero_voters_count_toward_the_floor() -> None:
    bound = rules(
        {"algorithm": "weighted", "weights": {A: 1}, "quorum": {"type": "count", "value": 2}},
        commitment={"require_vote_quorum": True},
    )
    assert codes(bound, True, votes((A, "APPROVE"), (B, "REJECT"))) == []


@pytest.mark.parametrize(("value", "met"), [(66, True), (66.66, True), (67, False), (0, True), (100, False)])
def test_percentage_quorum_is_0_to_100_of_declared_participants(value: float, met: bool) -> None:
    bound = rules(
        {"algorithm": "none", "quorum": {"type": "percentage", "value": value}},
        commitment={"require_vote_quorum": True},
    )
    two_of_three = votes((A, "APPROVE"), (B, "REJECT"))
    assert codes(bound, True, two_of_three) == ([] if met else ["quorum_not_met"])


def test_percentage_quorum_with_no_participants() -> None:
    def bound(value: int) -> DecisionRules:
        return rules(
            {"algorithm": "none", "quorum": {"type": "percentage", "value": value}},
            commitment={"require_vote_quorum": True},
        )

    assert codes(bound(10), True, (), participants=()) == ["quorum_not_met"]
    assert codes(bound(0), True, (), participants=()) == []


def test_unknown_quorum_type_never_meets_the_floor() -> None:
    bound = rules(
        {"algorithm": "none", "quorum": {"type": "fraction", "value": 0}},
        commitment={"require_vote_quorum": True},
    )
    assert codes(bound, True, PASSED) == ["invalid_rules"]


def test_quorum_and_tally_denials_accumulate() -> None:
    bound = rules(
        {"algorithm": "majority", "quorum": {"type": "count", "value": 2}},
        commitment={"require_vote_quorum": True},
    )
    assert codes(bound, True, (), version=2) == ["quorum_not_met", "no_votes"]


# ---------------------------------------------------------------- evaluations
def test_required_evaluation_excludes_review() -> None:
    r = rules({"algorithm": "none"}, evaluation={"required_before_voting": True})
    assert codes(r, True) == ["evaluation_required"]
    assert codes(r, True, evaluations=(Assessment("REVIEW", 1.0),)) == ["evaluation_required"]
    assert codes(r, True, evaluations=(Assessment("BLOCK", 0.0),)) == []
    assert codes(r, False) == ["evaluation_required"]


def test_minimum_confidence_needs_one_evaluation_at_or_above_it() -> None:
    r = rules({"algorithm": "none"}, evaluation={"required_before_voting": True, "minimum_confidence": 0.7})
    low = (Assessment("APPROVE", 0.5), Assessment("REVIEW", 0.9))
    assert codes(r, True, evaluations=low) == ["confidence_below_minimum"]
    assert codes(r, True, evaluations=(*low, Assessment("REJECT", 0.7))) == []


def test_minimum_confidence_alone_is_inert() -> None:
    r = rules({"algorithm": "none"}, evaluation={"minimum_confidence": 0.7})
    assert codes(r, True) == []


# ---------------------------------------------------------------- critical objections
def critical(*senders: str) -> tuple[Objection, ...]:
    return tuple(Objection(s, "critical") for s in senders)


def objection_rules(
    action: str | None = None, threshold: int | None = None, algorithm: str = "majority"
) -> DecisionRules:
    handling: dict[str, Any] = {"critical_severity_vetoes": True}
    if action is not None:
        handling["critical_objection_action"] = action
    if threshold is not None:
        handling["veto_threshold"] = threshold
    return rules({"algorithm": algorithm}, objections=handling)


def veto_denials(
    r: DecisionRules, positive: bool, objections: tuple[Objection, ...], version: int = 3
) -> Any:
    return evaluate_decision(
        r, version, ROSTER, ballots=PASSED, evaluations=(), objections=objections, outcome_positive=positive
    )


def test_critical_objections_do_not_veto_unless_the_policy_says_so() -> None:
    r = rules({"algorithm": "majority"})
    assert codes(r, True, PASSED, objections=critical(B)) == []


def test_default_veto_denies_both_outcomes_and_names_the_objectors() -> None:
    r = objection_rules()
    for positive in (True, False):
        denials = veto_denials(r, positive, critical(C, B, C))
        assert denials[0].code == "veto"
        assert denials[0].participants == (B, C)
        assert B not in denials[0].message


def test_only_critical_objections_count() -> None:
    r = objection_rules()
    assert veto_denials(r, True, (Objection(B, "high"), Objection(C, "medium"))) == ()


def test_veto_threshold() -> None:
    r = objection_rules(threshold=2)
    assert veto_denials(r, True, critical(B)) == ()
    assert [d.code for d in veto_denials(r, True, critical(B, C))] == ["veto"]


def test_hold_denies_both_outcomes() -> None:
    r = objection_rules("hold")
    assert [d.code for d in veto_denials(r, True, critical(B))] == ["veto_hold"]
    assert [d.code for d in veto_denials(r, False, critical(B))] == ["veto_hold", "decline_over_approval"]


def test_unknown_objection_action_acts_as_deny() -> None:
    assert [d.code for d in veto_denials(objection_rules("escalate"), True, critical(B))] == ["veto"]


def test_finalize_decline_denies_positive_and_authorizes_negative_outright() -> None:
    r = rules(
        {"algorithm": "majority", "quorum": {"type": "count", "value": 3}},
        objections={"critical_severity_vetoes": True, "critical_objection_action": "finalize_decline"},
        commitment={"require_vote_quorum": True},
        evaluation={"required_before_voting": True},
    )
    # Empty tally, unmet floor, no evaluation: the objection alone authorizes the decline.
    assert codes(r, False, (), objections=critical(B)) == []
    assert codes(r, True, (), objections=critical(B)) == [
        "veto",
        "evaluation_required",
        "quorum_not_met",
        "no_votes",
    ]


def test_finalize_decline_is_a_version_2_action() -> None:
    r = objection_rules("finalize_decline", algorithm="none")
    assert codes(r, False, (), version=2, objections=critical(B)) == []
    assert codes(r, False, (), version=1, objections=critical(B)) == ["veto"]
    assert [d.code for d in veto_denials(objection_rules("hold"), True, critical(B), version=1)] == ["veto"]


def test_without_a_standing_veto_finalize_decline_falls_through_to_the_vote() -> None:
    r = objection_rules("finalize_decline")
    assert codes(r, False, (), objections=(Objection(B, "high"),)) == ["no_votes"]
    assert codes(r, False, FAILED, objections=()) == []
