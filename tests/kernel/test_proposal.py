"""Proposal mode through the public kernel API: every rule, its reject paths, the projection."""

from __future__ import annotations

from typing import Any

import pytest
from macp.modes.proposal.v1 import proposal_pb2
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
from pymacp.kernel.modes.proposal import commit_denials
from pymacp.kernel.policy.rules import ProposalRules

MODE = "macp.mode.proposal.v1"
SID = "5a2c7d4e-8b1f-4c3a-a9e6-1d2b3c4e5f60"
T0 = 1_780_000_000_000
BUYER, SELLER, BROKER, OUTSIDER = "agent://buyer", "agent://seller", "agent://broker", "agent://outsider"
POLICY_ID = "policy.test.proposal"


class Run:
    """One Proposal session driven through ``Kernel.decide``."""

    def __init__(
        self,
        participants: tuple[str, ...] = (BUYER, SELLER),
        rules: dict[str, Any] | None = None,
        initiator: str = BUYER,
    ) -> None:
        self.kernel = Kernel()
        self.count = 0
        self.initiator = initiator
        self.policy_version = POLICY_ID if rules is not None else ""
        policies = (
            {POLICY_ID: PolicyDescriptor(POLICY_ID, MODE, "test", rules, 1)} if rules is not None else {}
        )
        decision = self.kernel.decide(
            None,
            Identity(initiator),
            self.envelope(initiator, "SessionStart", start(participants, self.policy_version)),
            T0,
            Registry(policies),
        )
        assert isinstance(decision, Accepted), decision
        self.session: Session = decision.session

    def envelope(self, sender: str, message_type: str, payload: Any) -> Envelope:
        self.count += 1
        data = payload.SerializeToString()
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

    @property
    def phase(self) -> str:
        phase: str = self.project()["phase"]
        return phase

    def commitment(self, positive: bool = True, **fields: Any) -> core_pb2.CommitmentPayload:
        values: dict[str, Any] = {
            "commitment_id": f"c{self.count}",
            "action": "proposal.accepted" if positive else "proposal.rejected",
            "authority_scope": "test",
            "reason": "because",
            "mode_version": "1.0.0",
            "configuration_version": "cfg-1",
            "policy_version": self.policy_version,
            "outcome_positive": positive,
        }
        values.update(fields)
        return core_pb2.CommitmentPayload(**values)


def start(participants: tuple[str, ...], policy_version: str = "") -> core_pb2.SessionStartPayload:
    return core_pb2.SessionStartPayload(
        intent="test",
        participants=list(participants),
        mode_version="1.0.0",
        configuration_version="cfg-1",
        policy_version=policy_version,
        ttl_ms=60_000,
    )


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
    env = Envelope("1.0", MODE, "SessionStart", "m0", SID, BUYER, T0, start(()).SerializeToString())
    decision = Kernel().decide(None, Identity(BUYER), env, T0)
    assert isinstance(decision, Rejected)
    assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE


def test_a_new_session_is_negotiating_with_empty_state() -> None:
    assert Run().project() == {
        "phase": "Negotiating",
        "proposals": {},
        "accepts": {},
        "rejections": [],
        "terminal_rejections": [],
    }


# ---------------------------------------------------------------- Proposal / CounterProposal
def test_proposal_is_recorded_live() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1", "offer", "terms", ("price", "q3")))
    assert run.project()["proposals"] == {
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
    run = Run()
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "Proposal", offer())
    run.no(ErrorCode.INVALID_ENVELOPE, SELLER, "Proposal", offer(""))
    run.ok(SELLER, "Proposal", offer("p1"))
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Proposal", offer("p1"))
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "CounterProposal", counter("p1", "p1"))


def test_counter_proposal_adds_a_live_proposal_beside_the_one_it_answers() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "CounterProposal", counter("p2", "p1"))
    proposals = run.project()["proposals"]
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
    run = Run()
    run.no(ErrorCode.INVALID_ENVELOPE, SELLER, "CounterProposal", counter("p2", ""))
    run.ok(SELLER, "Proposal", offer("p1"))
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "CounterProposal", counter("p2", "p0"))
    assert "p0" in rejection.message
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "CounterProposal", counter("p2", "p1"))


def test_max_rounds_limits_counter_proposals() -> None:
    run = Run(rules={"counter_proposal": {"max_rounds": 2}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "CounterProposal", counter("p2", "p1"))
    run.ok(SELLER, "CounterProposal", counter("p3", "p2"))
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "CounterProposal", counter("p4", "p3"))
    assert "2" in rejection.message
    run.ok(BUYER, "Proposal", offer("p4"))  # plain proposals are not counter-proposals


def test_no_max_rounds_means_unlimited_counter_proposals() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p0"))
    for i in range(1, 6):
        run.ok(BUYER if i % 2 else SELLER, "CounterProposal", counter(f"p{i}", f"p{i - 1}"))
    assert len(run.project()["proposals"]) == 6


# ---------------------------------------------------------------- Accept and convergence
def test_everyone_accepting_the_same_live_proposal_converges() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Converged"
    assert run.project()["accepts"] == {BUYER: "p1", SELLER: "p1"}


def test_only_the_latest_accept_counts() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "CounterProposal", counter("p2", "p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Converged"
    run.ok(BUYER, "Accept", accept("p2"))
    assert run.phase == "Negotiating"
    assert run.project()["accepts"] == {BUYER: "p2", SELLER: "p1"}
    run.ok(SELLER, "Accept", accept("p2"))
    assert run.phase == "Converged"


def test_accept_needs_a_live_proposal() -> None:
    run = Run()
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Withdraw", withdraw("p1"))
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Accept", accept("p1"))
    assert "withdrawn" in rejection.message
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "Accept", accept("p1"))


def test_counterparty_criterion_leaves_out_the_proposer() -> None:
    run = Run(participants=(BUYER, SELLER, BROKER), rules={"acceptance": {"criterion": "counterparty"}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"
    run.ok(BROKER, "Accept", accept("p1"))
    assert run.phase == "Converged"


def test_counterparty_criterion_needs_a_counterparty() -> None:
    run = Run(participants=(SELLER,), rules={"acceptance": {"criterion": "counterparty"}}, initiator=SELLER)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"


def test_initiator_criterion_needs_only_the_initiator() -> None:
    run = Run(participants=(BUYER, SELLER, BROKER), rules={"acceptance": {"criterion": "initiator"}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"
    run.ok(BUYER, "Accept", accept("p1"))
    assert run.phase == "Converged"


def test_unknown_criterion_reads_as_all_parties() -> None:
    run = Run(rules={"acceptance": {"criterion": "majority"}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    assert run.phase == "Negotiating"
    run.ok(SELLER, "Accept", accept("p1"))
    assert run.phase == "Converged"


# ---------------------------------------------------------------- Reject
def test_non_terminal_reject_is_recorded_and_retracts_the_senders_accept() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    run.ok(BUYER, "Reject", reject("p1", reason="second thoughts"))
    state = run.project()
    assert state["phase"] == "Negotiating"
    assert state["accepts"] == {SELLER: "p1"}
    assert state["rejections"] == [
        {"proposal_id": "p1", "sender": BUYER, "reason": "second thoughts", "terminal": False}
    ]
    assert state["terminal_rejections"] == []


def test_reject_of_another_proposal_keeps_the_accept() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Proposal", offer("p2"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(BUYER, "Reject", reject("p2"))
    assert run.project()["accepts"] == {BUYER: "p1"}


def test_terminal_reject_ends_the_negotiation() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p1", terminal=True, reason="unacceptable"))
    state = run.project()
    assert state["phase"] == "TerminalRejected"
    record = {"proposal_id": "p1", "sender": BUYER, "reason": "unacceptable", "terminal": True}
    assert state["rejections"] == [record]
    assert state["terminal_rejections"] == [record]


def test_terminal_on_any_reject_policy_makes_every_reject_terminal() -> None:
    run = Run(rules={"rejection": {"terminal_on_any_reject": True}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p1", terminal=False))
    assert run.phase == "TerminalRejected"
    assert run.project()["terminal_rejections"][0]["terminal"] is True


def test_terminal_rejection_outranks_convergence() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Proposal", offer("p2"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    run.ok(BUYER, "Reject", reject("p2", terminal=True))
    assert run.phase == "TerminalRejected"
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Commitment", run.commitment(True))
    run.ok(BUYER, "Commitment", run.commitment(False))


def test_reject_needs_a_live_proposal() -> None:
    run = Run()
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Reject", reject("p1"))
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Withdraw", withdraw("p1"))
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Reject", reject("p1", terminal=True))
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "Reject", reject("p1"))


# ---------------------------------------------------------------- Withdraw
def test_only_the_author_may_withdraw() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "CounterProposal", counter("p2", "p1"))
    rejection = run.no(ErrorCode.FORBIDDEN, SELLER, "Withdraw", withdraw("p2"))
    assert BUYER in rejection.message
    run.no(ErrorCode.FORBIDDEN, OUTSIDER, "Withdraw", withdraw("p2"))
    run.ok(BUYER, "Withdraw", withdraw("p2"))
    assert run.project()["proposals"]["p2"]["disposition"] == "Withdrawn"
    assert run.project()["proposals"]["p1"]["disposition"] == "Live"


def test_withdraw_needs_an_existing_live_proposal() -> None:
    run = Run()
    run.no(ErrorCode.INVALID_ENVELOPE, SELLER, "Withdraw", withdraw("p1"))
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Withdraw", withdraw("p1"))
    run.no(ErrorCode.INVALID_ENVELOPE, SELLER, "Withdraw", withdraw("p1"))


def test_withdraw_drops_accepts_and_terminal_rejections_of_the_proposal() -> None:
    run = Run(participants=(BUYER, SELLER, BROKER))
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(SELLER, "Proposal", offer("p2"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(BROKER, "Accept", accept("p2"))
    run.ok(BROKER, "Reject", reject("p1", terminal=True))
    run.ok(BUYER, "Reject", reject("p2", terminal=True))
    assert run.phase == "TerminalRejected"
    run.ok(SELLER, "Withdraw", withdraw("p1"))
    state = run.project()
    assert state["phase"] == "TerminalRejected"  # the rejection of p2 still stands
    assert state["accepts"] == {BROKER: "p2"}
    assert [r["proposal_id"] for r in state["terminal_rejections"]] == ["p2"]
    assert len(state["rejections"]) == 2  # the record of what happened is kept
    run.ok(SELLER, "Withdraw", withdraw("p2"))
    state = run.project()
    assert (state["phase"], state["accepts"], state["terminal_rejections"]) == ("Negotiating", {}, [])


def test_terminal_rejections_project_in_arrival_order() -> None:
    run = Run(participants=(BUYER, SELLER, BROKER))
    run.ok(SELLER, "Proposal", offer("p2"))
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p2", terminal=True))
    run.ok(BROKER, "Reject", reject("p1", terminal=True))
    run.ok(BROKER, "Reject", reject("p2", terminal=True))
    terminal = run.project()["terminal_rejections"]
    assert [(r["proposal_id"], r["sender"]) for r in terminal] == [
        ("p2", BUYER),
        ("p1", BROKER),
        ("p2", BROKER),
    ]


# ---------------------------------------------------------------- Commitment
def test_commitment_without_a_proposal_is_invalid() -> None:
    run = Run()
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Commitment", run.commitment())
    assert "no proposal" in rejection.message
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Commitment", run.commitment(False))


def test_payload_checks_run_before_readiness() -> None:
    run = Run()
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Commitment", run.commitment(commitment_id=""))
    assert "commitment_id" in rejection.message


@pytest.mark.parametrize("positive", [True, False])
def test_negotiating_admits_no_commitment(positive: bool) -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Commitment", run.commitment(positive))


def test_converged_admits_only_a_positive_commitment() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Commitment", run.commitment(False))
    run.no(ErrorCode.FORBIDDEN, SELLER, "Commitment", run.commitment(True))
    run.ok(BUYER, "Commitment", run.commitment(True))
    assert run.phase == "Committed"
    assert run.session.state is SessionState.RESOLVED


def test_terminal_rejected_admits_only_a_negative_commitment() -> None:
    run = Run()
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p1", terminal=True))
    rejection = run.no(ErrorCode.INVALID_ENVELOPE, BUYER, "Commitment", run.commitment(True))
    assert "negatively" in rejection.message
    run.ok(BUYER, "Commitment", run.commitment(False))
    assert run.session.state is SessionState.RESOLVED


def test_an_initiator_outside_the_participants_commits_after_everyone_accepts() -> None:
    run = Run(participants=(SELLER, BROKER), initiator=BUYER)
    run.ok(SELLER, "Proposal", offer("p1"))
    run.no(ErrorCode.FORBIDDEN, BUYER, "Accept", accept("p1"))
    run.ok(SELLER, "Accept", accept("p1"))
    run.ok(BROKER, "Accept", accept("p1"))
    run.ok(BUYER, "Commitment", run.commitment())


def test_any_participant_authority() -> None:
    run = Run(rules={"commitment": {"authority": "any_participant"}})
    run.ok(SELLER, "Proposal", offer("p1"))
    run.ok(BUYER, "Reject", reject("p1", terminal=True))
    run.ok(SELLER, "Commitment", run.commitment(False))


def test_commit_time_max_rounds_check_spares_negative_outcomes() -> None:
    rules = ProposalRules(max_rounds=1)
    assert [d.code for d in commit_denials(rules, 2, True)] == ["max_rounds_exceeded"]
    assert commit_denials(rules, 2, False) == ()
    assert commit_denials(rules, 1, True) == ()
    assert commit_denials(ProposalRules(), 9, True) == ()
