"""What-if replay: a session's history under its recorded policy and under a candidate."""

from __future__ import annotations

from dataclasses import replace

from macp.modes.decision.v1 import decision_pb2
from macp.v1 import core_pb2

from pymacp.kernel import (
    Accepted,
    Envelope,
    ErrorCode,
    HistoryEntry,
    Identity,
    Kernel,
    PolicyDescriptor,
    Rejection,
    SessionState,
)
from pymacp.kernel.replay import replay
from pymacp.kernel.whatif import OutcomeKind, WhatIfResult, what_if

SID = "2c4e6a8b-1d3f-4a5b-9c7d-0e1f2a3b4c5d"
T0 = 1_780_000_000_000
MODE = "macp.mode.decision.v1"
LEAD, ALICE, BOB = "agent://lead", "agent://alice", "agent://bob"
MAJORITY_V3 = PolicyDescriptor("policy.test.majority", MODE, "", {"voting": {"algorithm": "majority"}}, 3)
OPEN_POLICY = PolicyDescriptor("policy.test.open", "*", "", {}, 1)


def _env(kind: str, mid: str, payload: bytes) -> Envelope:
    return Envelope("1.0", MODE, kind, mid, SID, "", T0, payload)


def history_with_rejecting_vote() -> tuple[list[HistoryEntry], int]:
    """Under policy.default: a proposal, one REJECT vote, then a positive commitment that seals."""
    kernel = Kernel()
    start = core_pb2.SessionStartPayload(
        participants=[LEAD, ALICE, BOB], mode_version="1.0.0", configuration_version="cfg-1", ttl_ms=60_000
    )
    steps = [
        (LEAD, "SessionStart", "m0", start),
        (ALICE, "Proposal", "m1", decision_pb2.ProposalPayload(proposal_id="p1", option="ship")),
        (BOB, "Vote", "m2", decision_pb2.VotePayload(proposal_id="p1", vote="REJECT")),
        (
            LEAD,
            "Commitment",
            "m3",
            core_pb2.CommitmentPayload(
                commitment_id="c1",
                action="decision.selected",
                authority_scope="release",
                reason="lead decides",
                mode_version="1.0.0",
                configuration_version="cfg-1",
                outcome_positive=True,
            ),
        ),
    ]
    session = None
    history: list[HistoryEntry] = []
    for sender, kind, mid, payload in steps:
        decision = kernel.decide(session, Identity(sender), _env(kind, mid, payload.SerializeToString()), T0)
        assert isinstance(decision, Accepted), decision
        session, history = decision.session, history + list(decision.entries)
    return history, 3


def test_candidate_that_denies_the_commitment_diverges_there() -> None:
    history, commit_index = history_with_rejecting_vote()
    result = what_if(history, MAJORITY_V3)
    assert isinstance(result, WhatIfResult)
    assert (result.recorded_policy_id, result.candidate_policy_id) == (
        "policy.default",
        MAJORITY_V3.policy_id,
    )
    assert result.recorded.state is SessionState.RESOLVED
    assert result.recorded.resolved_by_history_index == commit_index
    assert result.recorded.resolved_by_message_id == "m3"
    assert result.recorded.resolved_by_message_type == "Commitment"
    assert result.candidate.state is SessionState.OPEN
    assert result.candidate.resolution == b""
    assert result.first_divergence == commit_index
    (denial,) = result.denials
    assert denial.history_index == commit_index
    assert denial.candidate.kind is OutcomeKind.REFUSED
    assert denial.candidate.error_code == "POLICY_DENIED"
    assert b'"denials":[{"code":' in denial.candidate.details
    assert [e.recorded.kind for e in result.entries] == [OutcomeKind.APPLIED] * 4
    assert [e.candidate.kind for e in result.entries][:3] == [OutcomeKind.APPLIED] * 3


def test_equivalent_candidate_does_not_diverge() -> None:
    history, _ = history_with_rejecting_vote()
    result = what_if(history, OPEN_POLICY)
    assert isinstance(result, WhatIfResult)
    assert result.first_divergence is None
    assert result.denials == ()
    assert result.candidate == result.recorded


def test_candidate_is_validated_and_must_fit_the_mode() -> None:
    history, _ = history_with_rejecting_vote()
    invalid = what_if(history, replace(OPEN_POLICY, schema_version=0))
    assert isinstance(invalid, Rejection) and invalid.code is ErrorCode.INVALID_POLICY_DEFINITION
    other_mode = what_if(history, replace(MAJORITY_V3, mode="macp.mode.task.v1"))
    assert isinstance(other_mode, Rejection) and other_mode.code is ErrorCode.INVALID_POLICY_DEFINITION
    empty = what_if([], OPEN_POLICY)
    assert isinstance(empty, Rejection) and empty.code is ErrorCode.HISTORY_UNAVAILABLE


def test_entries_after_the_end_are_not_open_and_a_failed_start_means_no_session() -> None:
    history, _ = history_with_rejecting_vote()
    kernel = Kernel()
    # A history cut after the proposal, with the session cancelled, then a late vote.
    session = replay(history[:2])
    cancel = kernel.cancel(session, Identity(LEAD), "stop", T0 + 1)
    assert isinstance(cancel, Accepted)
    late_vote = replace(history[2], index=3)
    result = what_if([*history[:2], *cancel.entries, late_vote], OPEN_POLICY)
    assert isinstance(result, WhatIfResult)
    assert result.entries[-1].recorded.kind is OutcomeKind.NOT_OPEN
    assert result.entries[-1].recorded.state is SessionState.CANCELLED
    assert result.recorded.state is SessionState.CANCELLED

    broken_start = replace(history[0], envelope=replace(history[0].envelope, payload=b"\xff"))
    result = what_if([broken_start, *history[1:]], OPEN_POLICY)
    assert isinstance(result, WhatIfResult)
    assert {e.recorded.kind for e in result.entries} == {OutcomeKind.NO_SESSION}
    assert result.recorded.state is SessionState.UNSPECIFIED


def test_commitments_naming_the_recorded_policy_are_judged_by_the_candidates_rules() -> None:
    kernel = Kernel()
    start = core_pb2.SessionStartPayload(
        participants=[LEAD, ALICE, BOB],
        mode_version="1.0.0",
        configuration_version="cfg-1",
        policy_version="policy.default",
        ttl_ms=60_000,
    )
    commit = core_pb2.CommitmentPayload(
        commitment_id="c1",
        action="decision.selected",
        authority_scope="release",
        reason="lead decides",
        mode_version="1.0.0",
        configuration_version="cfg-1",
        policy_version="policy.default",  # as the SDK writes it: the session's policy, by name
        outcome_positive=True,
    )
    session = None
    history: list[HistoryEntry] = []
    for sender, kind, mid, payload in [
        (LEAD, "SessionStart", "m0", start),
        (ALICE, "Proposal", "m1", decision_pb2.ProposalPayload(proposal_id="p1", option="ship")),
        (LEAD, "Commitment", "m2", commit),
    ]:
        decision = kernel.decide(session, Identity(sender), _env(kind, mid, payload.SerializeToString()), T0)
        assert isinstance(decision, Accepted), decision
        session, history = decision.session, history + list(decision.entries)
    lenient = what_if(history, OPEN_POLICY)
    assert isinstance(lenient, WhatIfResult) and lenient.first_divergence is None
    strict = what_if(history, MAJORITY_V3)
    assert isinstance(strict, WhatIfResult) and strict.first_divergence == 2
    (denial,) = strict.denials
    assert b'"code":"no_votes"' in denial.candidate.details
