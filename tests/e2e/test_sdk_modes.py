"""Every mode, end to end through the SDK's session helpers: a positive and a negative outcome,
rejections surfacing as ``MacpAckError`` with the registry code, and duplicate sends."""

from __future__ import annotations

import json

import pytest
from macp.modes.decision.v1 import decision_pb2
from macp_sdk import (
    MODE_MULTI_ROUND,
    DecisionSession,
    HandoffSession,
    MacpAckError,
    MacpClient,
    ProposalSession,
    QuorumSession,
    TaskSession,
    build_commitment_payload,
    build_contribute_payload,
    build_envelope,
    build_session_start_payload,
    new_session_id,
    serialize_message,
)
from macp_sdk.base_session import BaseSession

from e2e_support import OPEN, RESOLVED, dev

TTL = 60_000


def state_of(session: BaseSession) -> int:
    return int(session.metadata().metadata.state)


# ------------------------------------------------------------------------------------ Decision


def test_decision_selected_after_evaluations_and_votes(client: MacpClient) -> None:
    s = DecisionSession(client, auth=dev("lead"))
    ack = s.start(intent="pick a release", participants=["lead", "alice", "bob"], ttl_ms=TTL)
    assert (ack.ok, ack.session_id, ack.session_state) == (True, s.session_id, OPEN)
    assert s.propose("p1", "ship 2.0", rationale="tests are green").session_state == OPEN
    assert s.evaluate("p1", "approve", confidence=0.9, auth=dev("alice")).session_state == OPEN
    assert s.vote("p1", "approve", auth=dev("alice")).session_state == OPEN
    assert s.vote("p1", "approve", auth=dev("bob")).session_state == OPEN
    assert state_of(s) == OPEN

    ack = s.commit(action="decision.selected", authority_scope="release", reason="majority approved")

    assert (ack.ok, ack.session_state) == (True, RESOLVED)
    meta = s.metadata().metadata
    assert (meta.session_id, meta.mode, meta.state) == (s.session_id, "macp.mode.decision.v1", RESOLVED)
    assert (meta.initiator, list(meta.participants)) == ("lead", ["lead", "alice", "bob"])
    assert (meta.mode_version, meta.configuration_version, meta.policy_version) == (
        "1.0.0",
        "config.default",
        "policy.default",
    )
    assert s.decision_projection.majority_winner() == "p1"
    assert s.decision_projection.is_committed


def test_decision_negative_outcome_after_partial_votes(client: MacpClient) -> None:
    s = DecisionSession(client, auth=dev("lead"))
    s.start(intent="pick a vendor", participants=["lead", "alice", "bob"], ttl_ms=TTL)
    s.propose("p1", "vendor A")
    s.vote("p1", "reject", auth=dev("alice"))

    # The default policy lets the initiator close with a negative outcome before everyone voted.
    ack = s.commit(action="decision.rejected", authority_scope="procurement", reason="rejected")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED
    assert s.projection.is_positive_outcome is False


def test_decision_outsider_is_forbidden(client: MacpClient) -> None:
    s = DecisionSession(client, auth=dev("lead"))
    s.start(intent="x", participants=["lead", "alice"], ttl_ms=TTL)
    s.propose("p1", "option")

    with pytest.raises(MacpAckError) as err:
        s.vote("p1", "approve", auth=dev("mallory"))

    assert err.value.failure.code == "FORBIDDEN"
    assert err.value.failure.session_id == s.session_id
    assert state_of(s) == OPEN


def test_decision_commit_by_a_non_authority_is_forbidden(client: MacpClient) -> None:
    s = DecisionSession(client, auth=dev("lead"))
    s.start(intent="x", participants=["lead", "alice"], ttl_ms=TTL)
    s.propose("p1", "option")

    with pytest.raises(MacpAckError) as err:
        s.commit(action="decision.selected", authority_scope="x", reason="r", auth=dev("alice"))

    assert err.value.failure.code == "FORBIDDEN"
    assert state_of(s) == OPEN


def test_decision_invalid_vote_reports_invalid_envelope(client: MacpClient) -> None:
    s = DecisionSession(client, auth=dev("lead"))
    s.start(intent="x", participants=["lead", "alice"], ttl_ms=TTL)

    with pytest.raises(MacpAckError) as err:
        s.vote("no-such-proposal", "approve", auth=dev("alice"))

    assert err.value.failure.code == "INVALID_ENVELOPE"
    assert err.value.failure.message  # a sentence saying what was wrong


def test_send_after_resolution_is_session_not_open(client: MacpClient) -> None:
    s = DecisionSession(client, auth=dev("lead"))
    s.start(intent="x", participants=["lead", "alice"], ttl_ms=TTL)
    s.propose("p1", "option")
    s.commit(action="decision.selected", authority_scope="x", reason="r")

    with pytest.raises(MacpAckError) as err:
        s.vote("p1", "approve", auth=dev("alice"))

    assert err.value.failure.code == "SESSION_NOT_OPEN"
    assert state_of(s) == RESOLVED


def test_duplicate_sends_are_acknowledged_as_duplicates(client: MacpClient) -> None:
    sid = new_session_id()
    start = build_envelope(
        mode="macp.mode.decision.v1",
        message_type="SessionStart",
        session_id=sid,
        sender="lead",
        payload=serialize_message(build_session_start_payload(intent="x", participants=["lead"], ttl_ms=TTL)),
    )
    proposal = build_envelope(
        mode="macp.mode.decision.v1",
        message_type="Proposal",
        session_id=sid,
        sender="lead",
        payload=serialize_message(decision_pb2.ProposalPayload(proposal_id="p1", option="a")),
    )
    lead = dev("lead")
    first_start = client.send(start, auth=lead)
    first = client.send(proposal, auth=lead)
    assert (first_start.duplicate, first.ok, first.duplicate) == (False, True, False)

    again_start = client.send(start, auth=lead)
    again = client.send(proposal, auth=lead)

    assert (again_start.ok, again_start.duplicate, again_start.session_state) == (True, True, OPEN)
    assert (again.ok, again.duplicate, again.message_id, again.session_id) == (
        True,
        True,
        proposal.message_id,
        sid,
    )
    # The duplicate changed nothing: a second proposal with the same id would still be refused.
    fresh_copy = build_envelope(
        mode="macp.mode.decision.v1",
        message_type="Proposal",
        session_id=sid,
        sender="lead",
        payload=proposal.payload,
    )
    with pytest.raises(MacpAckError) as err:
        client.send(fresh_copy, auth=lead)
    assert err.value.failure.code == "INVALID_ENVELOPE"


def test_duplicate_of_an_accepted_message_after_resolution_is_still_a_duplicate(client: MacpClient) -> None:
    s = DecisionSession(client, auth=dev("lead"))
    s.start(intent="x", participants=["lead"], ttl_ms=TTL)
    proposal = build_envelope(
        mode="macp.mode.decision.v1",
        message_type="Proposal",
        session_id=s.session_id,
        sender="lead",
        payload=serialize_message(decision_pb2.ProposalPayload(proposal_id="p1", option="a")),
    )
    client.send(proposal, auth=dev("lead"))
    s.commit(action="decision.selected", authority_scope="x", reason="r")

    ack = client.send(proposal, auth=dev("lead"))

    assert (ack.ok, ack.duplicate) == (True, True)
    assert state_of(s) == RESOLVED


# ------------------------------------------------------------------------------------ Proposal


def test_proposal_converges_and_an_outside_mediator_commits(client: MacpClient) -> None:
    s = ProposalSession(client, auth=dev("mediator"))
    s.start(intent="agree on terms", participants=["buyer", "seller"], ttl_ms=TTL)
    s.propose("p1", "100 units at $10", auth=dev("seller"))
    s.counter_propose("p2", "p1", "100 units at $9", auth=dev("buyer"))
    s.accept("p2", auth=dev("seller"))
    assert s.accept("p2", auth=dev("buyer")).session_state == OPEN

    ack = s.commit(action="proposal.accepted", authority_scope="purchase", reason="both accepted p2")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED
    assert s.proposal_projection.accepted_proposal() == "p2"


def test_proposal_terminal_reject_admits_only_a_negative_commitment(client: MacpClient) -> None:
    s = ProposalSession(client, auth=dev("buyer"))
    s.start(intent="agree on terms", participants=["buyer", "seller"], ttl_ms=TTL)
    s.propose("p1", "offer", auth=dev("seller"))
    s.reject("p1", terminal=True, reason="no deal", auth=dev("buyer"))

    with pytest.raises(MacpAckError) as err:
        s.commit(action="proposal.accepted", authority_scope="purchase", reason="r")
    assert err.value.failure.code == "INVALID_ENVELOPE"
    assert state_of(s) == OPEN

    ack = s.commit(action="proposal.rejected", authority_scope="purchase", reason="terminal reject")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED


def test_proposal_withdraw_by_a_non_author_is_forbidden(client: MacpClient) -> None:
    s = ProposalSession(client, auth=dev("buyer"))
    s.start(intent="x", participants=["buyer", "seller"], ttl_ms=TTL)
    s.propose("p1", "offer", auth=dev("seller"))

    with pytest.raises(MacpAckError) as err:
        s.withdraw("p1", auth=dev("buyer"))

    assert err.value.failure.code == "FORBIDDEN"


# ------------------------------------------------------------------------------------ Task


def test_task_completed_with_an_initiator_outside_the_participants(client: MacpClient) -> None:
    s = TaskSession(client, auth=dev("planner"))
    worker = dev("worker")
    s.start(intent="build the docs", participants=["worker"], ttl_ms=TTL)
    s.request_task("t1", "Build docs", instructions="make html", requested_assignee="worker")
    s.accept_task("t1", assignee="worker", auth=worker)
    s.update_task("t1", status="in_progress", progress=0.5, message="halfway", auth=worker)
    assert s.complete_task("t1", assignee="worker", output=b"site.zip", summary="done", auth=worker).ok
    assert state_of(s) == OPEN

    ack = s.commit(action="task.completed", authority_scope="docs", reason="worker delivered")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED
    assert s.task_projection.is_completed("t1")
    assert s.metadata().metadata.initiator == "planner"


def test_task_failure_resolves_negatively(client: MacpClient) -> None:
    s = TaskSession(client, auth=dev("planner"))
    worker = dev("worker")
    s.start(intent="migrate the db", participants=["worker"], ttl_ms=TTL)
    s.request_task("t1", "Migrate", requested_assignee="worker")
    s.accept_task("t1", auth=worker)
    with pytest.raises(MacpAckError) as err:  # no terminal report yet
        s.commit(action="task.failed", authority_scope="db", reason="too early")
    assert err.value.failure.code == "INVALID_ENVELOPE"

    s.fail_task("t1", error_code="E_LOCKED", reason="table locked", auth=worker)

    ack = s.commit(action="task.failed", authority_scope="db", reason="worker failed")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED
    assert s.projection.is_positive_outcome is False


def test_task_update_from_someone_other_than_the_assignee_is_forbidden(client: MacpClient) -> None:
    s = TaskSession(client, auth=dev("planner"))
    s.start(intent="x", participants=["worker", "helper"], ttl_ms=TTL)
    s.request_task("t1", "Job", requested_assignee="worker")
    s.accept_task("t1", auth=dev("worker"))

    with pytest.raises(MacpAckError) as err:
        s.update_task("t1", status="in_progress", progress=0.1, auth=dev("helper"))

    assert err.value.failure.code == "FORBIDDEN"


# ------------------------------------------------------------------------------------ Handoff


def test_handoff_accepted(client: MacpClient) -> None:
    s = HandoffSession(client, auth=dev("owner"))
    s.start(intent="hand over the ticket", participants=["owner", "bob"], ttl_ms=TTL)
    s.offer("h1", "bob", scope="support", reason="shift change")
    s.add_context("h1", content_type="text/plain", context=b"customer is on plan B")
    s.accept_handoff("h1", accepted_by="bob", auth=dev("bob"))
    # Late context is still allowed after the accept.
    assert s.add_context("h1", content_type="text/plain", context=b"one more thing").ok

    ack = s.commit(action="handoff.accepted", authority_scope="support", reason="bob took it")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED
    assert s.handoff_projection.is_accepted("h1")


def test_handoff_declined_resolves_negatively(client: MacpClient) -> None:
    s = HandoffSession(client, auth=dev("owner"))
    s.start(intent="hand over", participants=["owner", "bob", "carol"], ttl_ms=TTL)
    s.offer("h1", "bob")

    with pytest.raises(MacpAckError) as err:
        s.accept_handoff("h1", auth=dev("carol"))
    assert err.value.failure.code == "FORBIDDEN"

    s.decline("h1", declined_by="bob", reason="on leave", auth=dev("bob"))
    ack = s.commit(action="handoff.declined", authority_scope="support", reason="bob declined")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED
    assert s.handoff_projection.is_declined("h1")
    assert s.projection.is_positive_outcome is False


# ------------------------------------------------------------------------------------ Quorum


def test_quorum_approved_by_the_threshold(client: MacpClient) -> None:
    s = QuorumSession(client, auth=dev("coordinator"))
    s.start(intent="approve deploy", participants=["alice", "bob", "carol"], ttl_ms=TTL)
    s.request_approval("r1", "deploy v2", summary="Deploy v2", required_approvals=2)
    s.approve("r1", auth=dev("alice"))

    with pytest.raises(MacpAckError) as err:
        s.commit(action="quorum.approved", authority_scope="deploy", reason="early")
    assert err.value.failure.code == "INVALID_ENVELOPE"

    s.approve("r1", auth=dev("bob"))
    assert s.quorum_projection.has_quorum("r1")
    ack = s.commit(action="quorum.approved", authority_scope="deploy", reason="2 of 3 approved")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED


def test_quorum_rejected_once_the_threshold_is_unreachable(client: MacpClient) -> None:
    s = QuorumSession(client, auth=dev("coordinator"))
    s.start(intent="approve deploy", participants=["alice", "bob", "carol"], ttl_ms=TTL)
    s.request_approval("r1", "deploy v3", required_approvals=2)
    s.reject("r1", reason="risky", auth=dev("alice"))
    s.abstain("r1", auth=dev("bob"))

    with pytest.raises(MacpAckError) as err:
        s.approve("r1", auth=dev("dave"))
    assert err.value.failure.code == "FORBIDDEN"

    ack = s.commit(action="quorum.rejected", authority_scope="deploy", reason="cannot reach 2")

    assert ack.session_state == RESOLVED
    assert state_of(s) == RESOLVED
    assert s.projection.is_positive_outcome is False


# ------------------------------------------------------------------------------------ multi_round


def _multi_round_send(client: MacpClient, sid: str, sender: str, message_type: str, payload: bytes) -> int:
    envelope = build_envelope(
        mode=MODE_MULTI_ROUND, message_type=message_type, session_id=sid, sender=sender, payload=payload
    )
    return int(client.send(envelope, auth=dev(sender)).session_state)


def _start_multi_round(client: MacpClient) -> str:
    sid = new_session_id()
    start = build_session_start_payload(intent="converge", participants=["alice", "bob"], ttl_ms=TTL)
    assert _multi_round_send(client, sid, "coordinator", "SessionStart", serialize_message(start)) == OPEN
    return sid


def _commit_payload() -> bytes:
    commitment = build_commitment_payload(
        action="multi_round.converged",
        authority_scope="test",
        reason="all agree",
        mode_version="1.0.0",
        configuration_version="config.default",
        policy_version="policy.default",
    )
    return serialize_message(commitment)


def _legacy(value: str) -> bytes:
    return json.dumps({"value": value}).encode()


def test_multi_round_converges_with_proto_and_legacy_json_contributions(client: MacpClient) -> None:
    sid = _start_multi_round(client)
    assert (
        _multi_round_send(
            client, sid, "alice", "Contribute", serialize_message(build_contribute_payload("blue"))
        )
        == OPEN
    )
    assert _multi_round_send(client, sid, "bob", "Contribute", _legacy("blue")) == OPEN

    assert _multi_round_send(client, sid, "coordinator", "Commitment", _commit_payload()) == RESOLVED
    meta = client.get_session(sid, auth=dev("coordinator")).metadata
    assert (meta.mode, meta.state, meta.mode_version) == (MODE_MULTI_ROUND, RESOLVED, "1.0.0")


def test_multi_round_commit_waits_for_convergence(client: MacpClient) -> None:
    sid = _start_multi_round(client)
    _multi_round_send(client, sid, "alice", "Contribute", _legacy("red"))
    _multi_round_send(client, sid, "bob", "Contribute", serialize_message(build_contribute_payload("green")))

    with pytest.raises(MacpAckError) as err:
        _multi_round_send(client, sid, "coordinator", "Commitment", _commit_payload())
    assert err.value.failure.code == "INVALID_ENVELOPE"

    with pytest.raises(MacpAckError) as err:
        _multi_round_send(client, sid, "carol", "Contribute", _legacy("red"))
    assert err.value.failure.code == "FORBIDDEN"

    # Bob revises his value with a legacy JSON body; both now hold "red".
    _multi_round_send(client, sid, "bob", "Contribute", _legacy("red"))
    with pytest.raises(MacpAckError) as err:
        _multi_round_send(client, sid, "alice", "Commitment", _commit_payload())
    assert err.value.failure.code == "FORBIDDEN"

    assert _multi_round_send(client, sid, "coordinator", "Commitment", _commit_payload()) == RESOLVED
