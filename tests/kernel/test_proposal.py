"""Proposal mode through the public kernel API: every rule, its reject paths, the projection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from macp.modes.proposal.v1 import proposal_pb2

from kernel_driver import SessionDriver, start_session
from pymacp.kernel import ErrorCode, Rejected, SessionState
from pymacp.kernel.modes.proposal import commit_denials
from pymacp.kernel.policy.rules import ProposalRules

MODE = "macp.mode.proposal.v1"
BUYER, SELLER, BROKER, OUTSIDER = "agent://buyer", "agent://seller", "agent://broker", "agent://outsider"


def start(
    participants: Sequence[str] = (BUYER, SELLER),
    rules: dict[str, Any] | None = None,
    initiator: str = BUYER,
    stored: bool = False,
) -> SessionDriver:
    """A Proposal session (its policy, if any, at schema_version 1)."""
    return SessionDriver.start(MODE, initiator, participants, rules=rules, schema_version=1, stored=stored)


def offer(pid: str = "p1", title: str = "offer", summary: str = "terms", tags: tuple[str, ...] = ()) -> Any:
    return proposal_pb2.ProposalPayload(proposal_id=pid, title=title, summary=summary, tags=list(tags))


def counter(pid: str = "p2", supersedes: str = "p1") -> Any:
    return proposal_pb2.CounterProposalPayload(
        proposal_id=pid, supersedes_proposal_id=supersedes, title="counter", summary="revised"
    )


def accept(pid: str = "p1") -> Any:
    return proposal_pb2.AcceptPayload(proposal_id=pid, reason="fine")


def reject(pid: str = "p1", terminal: bool = False, reason: str = "no") -> Any:
    return proposal_pb2.RejectPayload(proposal_id=pid, terminal=terminal, reason=reason)


def withdraw(pid: str = "p1") -> Any:
    return proposal_pb2.WithdrawPayload(proposal_id=pid, reason="changed my mind")


# ---------------------------------------------------------------- start
def test_session_needs_a_participant() -> None:
    decision = start_session(MODE, BUYER, ())
    assert isinstance(decision, Rejected)
    assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE


def test_a_new_session_is_negotiating_with_empty_state() -> None:
    assert start().state == {
        "phase": "Negotiating",
        "proposals": {},
        "accepts": {},
        "rejections": [],
        "terminal_rejections": [],
    }


# ---------------------------------------------------------------- Proposal / CounterProposal
def test_proposal_is_recorded_live() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1", "offer", "terms", ("price", "q3")))
    assert run.state["proposals"] == {
        "p1": {
            "proposal_id": "p1",
            "title": "offer",
            "summary": "terms",
            "tags": ["price", "q3"],
            "proposer": SELLER,
            "supersedes_proposal_id": None,
            "disposition": "Live",
        }
    }


def test_proposal_needs_a_new_non_blank_id_from_a_participant() -> None:
    run = start()
    run.refused(OUTSIDER, "Proposal", offer(), ErrorCode.FORBIDDEN)
    run.refused(SELLER, "Proposal", offer(""), ErrorCode.INVALID_ENVELOPE)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.refused(BUYER, "Proposal", offer("p1"), ErrorCode.INVALID_ENVELOPE)
    run.refused(BUYER, "CounterProposal", counter("p1", "p1"), ErrorCode.INVALID_ENVELOPE)


def test_counter_proposal_adds_a_live_proposal_beside_the_one_it_answers() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "CounterProposal", counter("p2", "p1"))
    proposals = run.state["proposals"]
    assert proposals["p1"]["disposition"] == "Live"
    assert proposals["p2"] == {
        "proposal_id": "p2",
        "title": "counter",
        "summary": "revised",
        "tags": [],
        "proposer": BUYER,
        "supersedes_proposal_id": "p1",
        "disposition": "Live",
    }


def test_counter_proposal_must_name_an_existing_proposal() -> None:
    run = start()
    run.refused(SELLER, "CounterProposal", counter("p2", ""), ErrorCode.INVALID_ENVELOPE)
    run.ok(SELLER, "Proposal", offer("p1"))
    rejection = run.refused(BUYER, "CounterProposal", counter("p2", "p0"), ErrorCode.INVALID_ENVELOPE)
    assert "p0" in rejection.message
    run.refused(OUTSIDER, "CounterProposal", counter("p2", "p1"), ErrorCode.FORBIDDEN)


def test_max_rounds_limits_counter_proposals() -> None:
    run = start(rules={"counter_proposal": {"max_rounds": 2}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "CounterProposal", counter("p2", "p1"))
    run.ok(SELLER, "CounterProposal", counter("p3", "p2"))
    rejection = run.refused(BUYER, "CounterProposal", counter("p4", "p3"), ErrorCode.INVALID_ENVELOPE)
    assert "2" in rejection.message
    run.ok(BUYER, "Proposal", offer("p4"))  # plain proposals are not counter-proposals


def test_no_max_rounds_means_unlimited_counter_proposals() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p0"))
    for i in range(1, 6):
        run.ok(BUYER if i % 2 else SELLER, "CounterProposal", counter(f"p{i}", f"p{i - 1}"))
    assert len(run.state["proposals"]) == 6


# ---------------------------------------------------------------- Accept and convergence
def test_everyone_accepting_the_same_live_proposal_converges() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Converged"
    assert run.state["accepts"] == {BUYER: "p1", SELLER: "p1"}


def test_only_the_latest_accept_counts() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "CounterProposal", counter("p2", "p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Converged"
    run.ok(BUYER, "Accept", accept("p2"))
    assert run.phase == "Negotiating"
    assert run.state["accepts"] == {BUYER: "p2", SELLER: "p1"}
    run.ok(SELLER, "Accept", accept("p2"))
    assert run.phase == "Converged"


def test_accept_needs_a_live_proposal() -> None:
    run = start()
    run.refused(BUYER, "Accept", accept("p1"), ErrorCode.INVALID_ENVELOPE)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Withdraw", withdraw("p1"))
    rejection = run.refused(BUYER, "Accept", accept("p1"), ErrorCode.INVALID_ENVELOPE)
    assert "withdrawn" in rejection.message
    run.refused(OUTSIDER, "Accept", accept("p1"), ErrorCode.FORBIDDEN)


def test_counterparty_criterion_leaves_out_the_proposer() -> None:
    run = start(participants=(BUYER, SELLER, BROKER), rules={"acceptance": {"criterion": "counterparty"}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"
    run.ok(BROKER, "Accept", accept("p1"))
    assert run.phase == "Converged"


def test_counterparty_criterion_needs_a_counterparty() -> None:
    run = start(participants=(SELLER,), rules={"acceptance": {"criterion": "counterparty"}}, initiator=SELLER)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"


def test_initiator_criterion_needs_only_the_initiator() -> None:
    run = start(participants=(BUYER, SELLER, BROKER), rules={"acceptance": {"criterion": "initiator"}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"
    run.ok(BUYER, "Accept", accept("p1"))
    assert run.phase == "Converged"


def test_unknown_criterion_reads_as_all_parties() -> None:
    # Registration refuses an unknown criterion; a descriptor stored before that still binds.
    run = start(rules={"acceptance": {"criterion": "majority"}}, stored=True)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Converged"


# ---------------------------------------------------------------- Reject
def test_non_terminal_reject_is_recorded_and_retracts_the_senders_accept() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    run.ok(BUYER, "Reject", reject("p1", reason="second thoughts"))
    state = run.state
    assert state["phase"] == "Negotiating"
    assert state["accepts"] == {SELLER: "p1"}
    assert state["rejections"] == [
        {"proposal_id": "p1", "sender": BUYER, "reason": "second thoughts", "terminal": False}
    ]
    assert state["terminal_rejections"] == []


def test_reject_of_another_proposal_keeps_the_accept() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Proposal", offer("p2"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(BUYER, "Reject", reject("p2"))
    assert run.state["accepts"] == {BUYER: "p1"}


def test_terminal_reject_ends_the_negotiation() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p1", terminal=True, reason="unacceptable"))
    state = run.state
    assert state["phase"] == "TerminalRejected"
    record = {"proposal_id": "p1", "sender": BUYER, "reason": "unacceptable", "terminal": True}
    assert state["rejections"] == [record]
    assert state["terminal_rejections"] == [record]


def test_terminal_on_any_reject_policy_makes_every_reject_terminal() -> None:
    run = start(rules={"rejection": {"terminal_on_any_reject": True}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p1", terminal=False))
    assert run.phase == "TerminalRejected"
    assert run.state["terminal_rejections"][0]["terminal"] is True


def test_terminal_rejection_outranks_convergence() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Proposal", offer("p2"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    run.ok(BUYER, "Reject", reject("p2", terminal=True))
    assert run.phase == "TerminalRejected"
    run.refused(BUYER, "Commitment", run.commitment(True), ErrorCode.INVALID_ENVELOPE)
    run.ok(BUYER, "Commitment", run.commitment(False))


def test_reject_needs_a_live_proposal() -> None:
    run = start()
    run.refused(BUYER, "Reject", reject("p1"), ErrorCode.INVALID_ENVELOPE)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Withdraw", withdraw("p1"))
    run.refused(BUYER, "Reject", reject("p1", terminal=True), ErrorCode.INVALID_ENVELOPE)
    run.refused(OUTSIDER, "Reject", reject("p1"), ErrorCode.FORBIDDEN)


# ---------------------------------------------------------------- Withdraw
def test_only_the_author_may_withdraw() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "CounterProposal", counter("p2", "p1"))
    rejection = run.refused(SELLER, "Withdraw", withdraw("p2"), ErrorCode.FORBIDDEN)
    assert BUYER in rejection.message
    run.refused(OUTSIDER, "Withdraw", withdraw("p2"), ErrorCode.FORBIDDEN)
    run.ok(BUYER, "Withdraw", withdraw("p2"))
    assert run.state["proposals"]["p2"]["disposition"] == "Withdrawn"
    assert run.state["proposals"]["p1"]["disposition"] == "Live"


def test_withdraw_needs_an_existing_live_proposal() -> None:
    run = start()
    run.refused(SELLER, "Withdraw", withdraw("p1"), ErrorCode.INVALID_ENVELOPE)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Withdraw", withdraw("p1"))
    run.refused(SELLER, "Withdraw", withdraw("p1"), ErrorCode.INVALID_ENVELOPE)


def test_withdraw_drops_accepts_and_terminal_rejections_of_the_proposal() -> None:
    run = start(participants=(BUYER, SELLER, BROKER))
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Proposal", offer("p2"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(BROKER, "Accept", accept("p2"))
    run.ok(BROKER, "Reject", reject("p1", terminal=True))
    run.ok(BUYER, "Reject", reject("p2", terminal=True))
    assert run.phase == "TerminalRejected"
    run.ok(SELLER, "Withdraw", withdraw("p1"))
    state = run.state
    assert state["phase"] == "TerminalRejected"  # the rejection of p2 still stands
    assert state["accepts"] == {BROKER: "p2"}
    assert [r["proposal_id"] for r in state["terminal_rejections"]] == ["p2"]
    assert len(state["rejections"]) == 2  # the record of what happened is kept
    run.ok(SELLER, "Withdraw", withdraw("p2"))
    state = run.state
    assert (state["phase"], state["accepts"], state["terminal_rejections"]) == ("Negotiating", {}, [])


def test_terminal_rejections_project_in_arrival_order() -> None:
    run = start(participants=(BUYER, SELLER, BROKER))
    run.ok(SELLER, "Proposal", offer("p2"))
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p2", terminal=True))
    run.ok(BROKER, "Reject", reject("p1", terminal=True))
    run.ok(BROKER, "Reject", reject("p2", terminal=True))
    terminal = run.state["terminal_rejections"]
    assert [(r["proposal_id"], r["sender"]) for r in terminal] == [
        ("p2", BUYER),
        ("p1", BROKER),
        ("p2", BROKER),
    ]


# ---------------------------------------------------------------- Commitment
def test_commitment_without_a_proposal_is_invalid() -> None:
    run = start()
    rejection = run.refused(BUYER, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "no proposal" in rejection.message
    run.refused(BUYER, "Commitment", run.commitment(False), ErrorCode.INVALID_ENVELOPE)


def test_payload_checks_run_before_readiness() -> None:
    run = start()
    rejection = run.refused(BUYER, "Commitment", run.commitment(commitment_id=""), ErrorCode.INVALID_ENVELOPE)
    assert "commitment_id" in rejection.message


@pytest.mark.parametrize("positive", [True, False])
def test_negotiating_admits_no_commitment(positive: bool) -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.refused(BUYER, "Commitment", run.commitment(positive), ErrorCode.INVALID_ENVELOPE)


def test_converged_admits_only_a_positive_commitment() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    run.refused(BUYER, "Commitment", run.commitment(False), ErrorCode.INVALID_ENVELOPE)
    run.refused(SELLER, "Commitment", run.commitment(True), ErrorCode.FORBIDDEN)
    run.ok(BUYER, "Commitment", run.commitment(True))
    assert run.phase == "Committed"
    assert run.session.state is SessionState.RESOLVED


def test_terminal_rejected_admits_only_a_negative_commitment() -> None:
    run = start()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p1", terminal=True))
    rejection = run.refused(BUYER, "Commitment", run.commitment(True), ErrorCode.INVALID_ENVELOPE)
    assert "negatively" in rejection.message
    run.ok(BUYER, "Commitment", run.commitment(False))
    assert run.session.state is SessionState.RESOLVED


def test_an_initiator_outside_the_participants_commits_after_everyone_accepts() -> None:
    run = start(participants=(SELLER, BROKER), initiator=BUYER)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.refused(BUYER, "Accept", accept("p1"), ErrorCode.FORBIDDEN)
    run.ok(SELLER, "Accept", accept("p1"))
    run.ok(BROKER, "Accept", accept("p1"))
    run.ok(BUYER, "Commitment", run.commitment())


def test_any_participant_authority() -> None:
    run = start(rules={"commitment": {"authority": "any_participant"}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p1", terminal=True))
    run.ok(SELLER, "Commitment", run.commitment(False))


def test_commit_time_max_rounds_check_spares_negative_outcomes() -> None:
    rules = ProposalRules(max_rounds=1)
    assert [d.code for d in commit_denials(rules, 2, True)] == ["max_rounds_exceeded"]
    assert commit_denials(rules, 2, False) == ()
    assert commit_denials(rules, 1, True) == ()
    assert commit_denials(ProposalRules(), 9, True) == ()
