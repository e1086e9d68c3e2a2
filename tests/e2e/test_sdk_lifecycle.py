"""Session lifecycle and read-side RPCs through the SDK: suspend/resume/cancel, ListSessions
pagination, WhatIfReplay and decision receipts."""

from __future__ import annotations

import grpc
import pytest
from macp_sdk import (
    DecisionSession,
    MacpAckError,
    MacpClient,
    MacpTransportError,
    SessionLifecycleWatcher,
    VotingRules,
    build_decision_policy,
    macp_error_code,
    parse_error_details,
)
from macp_sdk.receipt import trusted_keys_from_jwks, verify_receipt

from e2e_support import CANCELLED, EXPIRED, OPEN, RESOLVED, SUSPENDED, Connections, dev

TTL = 60_000
DECISION = "macp.mode.decision.v1"


def decision(
    client: MacpClient, *, max_suspend_ms: int = 0, policy_version: str = "policy.default"
) -> DecisionSession:
    s = DecisionSession(client, policy_version=policy_version, auth=dev("lead"))
    s.start(intent="lifecycle", participants=["lead", "alice"], ttl_ms=TTL, max_suspend_ms=max_suspend_ms)
    return s


def resolved(client: MacpClient, policy_version: str = "policy.default") -> DecisionSession:
    """A Decision session resolved by the initiator right after one unvoted proposal."""
    s = decision(client, policy_version=policy_version)
    s.propose("p1", "ship it")
    s.commit(action="decision.selected", authority_scope="release", reason="initiator decides")
    return s


def commitment_message_id(s: DecisionSession) -> str:
    commit = s.open_stream(auth=dev("lead"))
    try:
        commit.send_subscribe(s.session_id, after_sequence=2)
        envelope = commit.read(timeout=5)
        assert envelope is not None
        assert envelope.message_type == "Commitment"
        return envelope.message_id
    finally:
        commit.cancel()


# ------------------------------------------------------------------------ suspend / resume / cancel


def test_suspend_resume_cancel(client: MacpClient, connect: Connections) -> None:
    events = connect.pump(lambda c: SessionLifecycleWatcher(c, auth=dev("watcher")).changes())
    s = decision(client)
    assert events.until(lambda e: e.session.session_id == s.session_id).is_created

    suspended = s.suspend(reason="waiting for legal")
    assert (suspended.ok, suspended.session_id, suspended.session_state) == (True, s.session_id, SUSPENDED)
    assert s.metadata().metadata.state == SUSPENDED
    with pytest.raises(MacpAckError) as err:
        s.propose("p1", "ship it")
    assert err.value.failure.code == "SESSION_NOT_OPEN"

    resumed = s.resume(reason="legal approved")
    assert (resumed.ok, resumed.session_state) == (True, OPEN)
    assert s.propose("p1", "ship it").session_state == OPEN

    cancelled = s.cancel(reason="superseded")
    assert (cancelled.ok, cancelled.session_state) == (True, CANCELLED)
    assert s.metadata().metadata.state == CANCELLED
    again = s.cancel(reason="twice")
    assert (again.ok, again.session_state) == (True, CANCELLED)
    with pytest.raises(MacpAckError) as err:
        s.vote("p1", "approve", auth=dev("alice"))
    assert err.value.failure.code == "SESSION_NOT_OPEN"

    mine = [events.until(lambda e: e.session.session_id == s.session_id).event_type for _ in range(3)]
    assert mine == ["SUSPENDED", "RESUMED", "CANCELLED"]
    # The repeated cancel changed nothing, so it announced nothing.
    assert [e.event_type for e in events.drain() if e.session.session_id == s.session_id] == []


def test_cancelling_a_resolved_session_is_a_no_op(client: MacpClient) -> None:
    s = resolved(client)

    ack = client.cancel_session(s.session_id, reason="too late", auth=dev("lead"))

    assert (ack.ok, ack.session_state) == (True, RESOLVED)
    assert s.metadata().metadata.state == RESOLVED


def test_cancel_of_an_unknown_session_is_refused(client: MacpClient) -> None:
    with pytest.raises((MacpAckError, MacpTransportError)) as err:
        client.cancel_session("5b0f3c4e-1d2a-4b3c-8d4e-5f6a7b8c9d0e", reason="x", auth=dev("lead"))

    failure = err.value
    code = failure.failure.code if isinstance(failure, MacpAckError) else failure.macp_code
    assert code == "SESSION_NOT_FOUND"


def test_a_suspension_longer_than_max_suspend_ms_expires_the_session(
    client: MacpClient, connect: Connections
) -> None:
    events = connect.pump(lambda c: SessionLifecycleWatcher(c, auth=dev("watcher")).changes())
    events.drain()  # the initial snapshot: from here on the watcher is live
    s = decision(client, max_suspend_ms=300)
    s.suspend()

    expired = events.until(lambda e: e.session.session_id == s.session_id and e.is_terminal, timeout=5)

    assert (expired.event_type, expired.session.state) == ("EXPIRED", EXPIRED)
    assert s.metadata().metadata.state == EXPIRED


def test_get_session_of_an_unknown_session_is_not_found(client: MacpClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.get_session("5b0f3c4e-1d2a-4b3c-8d4e-5f6a7b8c9d0e", auth=dev("lead"))

    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert macp_error_code(err.value) == "SESSION_NOT_FOUND"


def test_get_session_is_refused_to_outsiders(client: MacpClient) -> None:
    s = decision(client)

    with pytest.raises(grpc.RpcError) as err:
        client.get_session(s.session_id, auth=dev("mallory"))

    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert macp_error_code(err.value) == "FORBIDDEN"
    assert client.get_session(s.session_id, auth=dev("alice")).metadata.session_id == s.session_id


# ------------------------------------------------------------------------------------ listing


def test_list_sessions_paginates_with_disjoint_pages(client: MacpClient) -> None:
    mine = {decision(client).session_id for _ in range(3)}
    lead = dev("lead")

    pages: list[list[str]] = []
    token = ""
    while True:
        batch, token = client.list_sessions_page(page_size=1, page_token=token, auth=lead)
        pages.append([m.session_id for m in batch])
        assert len(batch) == 1
        if not token:
            break
        assert len(pages) < 1000, "pagination never ended"

    flat = [sid for page in pages for sid in page]
    assert len(flat) == len(set(flat)), "pages overlap"
    assert mine <= set(flat)
    everything = client.list_sessions(page_size=1, auth=lead)
    assert {m.session_id for m in everything} == set(flat)
    assert {m.session_id for m in client.list_sessions(auth=lead)} == set(flat)

    by_id = {m.session_id: m for m in everything}
    some = by_id[next(iter(mine))]
    assert (some.mode, list(some.participants), some.initiator, some.state) == (
        DECISION,
        ["lead", "alice"],
        "lead",
        OPEN,
    )


def test_list_sessions_page_honours_page_size(client: MacpClient) -> None:
    for _ in range(3):
        decision(client)

    batch, token = client.list_sessions_page(page_size=2, auth=dev("lead"))
    rest, _ = client.list_sessions_page(page_size=1000, page_token=token, auth=dev("lead"))

    assert len(batch) == 2
    assert token
    assert not {m.session_id for m in batch} & {m.session_id for m in rest}


def test_list_sessions_rejects_a_forged_page_token(client: MacpClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.list_sessions_page(page_size=1, page_token="not-a-token", auth=dev("lead"))

    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert macp_error_code(err.value) == "INVALID_REQUEST"


# ------------------------------------------------------------------------------------ what-if


# The SDK's session helpers echo the session's policy_version ("policy.default" by default) in
# every Commitment; an empty one matches whatever policy is bound. Both must replay alike.
POLICY_VERSIONS = pytest.mark.parametrize("policy_version", ["policy.default", ""], ids=["echoed", "empty"])


@POLICY_VERSIONS
def test_what_if_replay_reports_where_a_stricter_policy_diverges(
    client: MacpClient, policy_version: str
) -> None:
    s = resolved(client, policy_version)
    candidate = build_decision_policy(
        "policy.e2e.whatif-majority",
        "would need votes",
        voting=VotingRules(algorithm="majority", threshold=0.5),
        schema_version=3,
    )

    report = client.what_if_replay(s.session_id, candidate, auth=dev("lead"))

    assert (report.recorded_policy_id, report.candidate_policy_id) == (
        "policy.default",
        "policy.e2e.whatif-majority",
    )
    assert report.recorded.state == RESOLVED
    assert report.recorded.resolved_by_message_type == "Commitment"
    assert report.candidate.state == OPEN
    assert report.HasField("first_divergence")
    assert report.first_divergence == 2  # SessionStart, Proposal, then the Commitment
    assert [e.message_type for e in report.entries] == ["SessionStart", "Proposal", "Commitment"]
    (denial,) = report.denials
    assert denial.history_index == 2
    assert denial.message_id == report.recorded.resolved_by_message_id == commitment_message_id(s)
    assert [d.code for d in parse_error_details(denial.details).denials] == ["no_votes"]
    # Advisory only: the candidate was never registered.
    with pytest.raises(grpc.RpcError):
        client.get_policy("policy.e2e.whatif-majority", auth=dev("lead"))


@POLICY_VERSIONS
def test_what_if_replay_with_equally_lenient_rules_does_not_diverge(
    client: MacpClient, policy_version: str
) -> None:
    s = resolved(client, policy_version)
    lenient = build_decision_policy("policy.e2e.whatif-none", "no voting rule", schema_version=3)

    report = client.what_if_replay(s.session_id, lenient, auth=dev("lead"))

    assert report.candidate.state == RESOLVED
    assert report.candidate.resolved_by_message_id == report.recorded.resolved_by_message_id
    assert not report.HasField("first_divergence")
    assert list(report.denials) == []


# ------------------------------------------------------------------------------------ receipts


def test_decision_receipt_verifies_against_the_runtime_keys(client: MacpClient) -> None:
    s = resolved(client)

    first = client.get_decision_receipt(s.session_id, auth=dev("lead"))
    second = client.get_decision_receipt(s.session_id, auth=dev("alice"))
    keys = client.get_receipt_keys()
    verification = verify_receipt(first.receipt, trusted_keys_from_jwks(keys))

    assert first.raw == second.raw
    assert verification["integrity"] == "match"
    assert verification["verdict"] == "attested"
    receipt = first.receipt
    assert receipt["receipt_format"] == "macp-receipt/1"
    assert (receipt["session_id"], receipt["mode"]) == (s.session_id, DECISION)
    assert receipt["commitment"]["action"] == "decision.selected"
    assert receipt["commitment"]["outcome_positive"] is True
    assert receipt["commitment_hash"].startswith("sha256:")


def test_a_tampered_receipt_fails_verification(client: MacpClient) -> None:
    s = resolved(client)
    receipt = client.get_decision_receipt(s.session_id, auth=dev("lead")).receipt
    keys = trusted_keys_from_jwks(client.get_receipt_keys())

    receipt["commitment"]["action"] = "decision.rejected"

    assert verify_receipt(receipt, keys)["verdict"] != "attested"


def test_no_receipt_for_an_open_session(client: MacpClient) -> None:
    s = decision(client)

    with pytest.raises(MacpTransportError) as err:
        client.get_decision_receipt(s.session_id, auth=dev("lead"))

    assert err.value.macp_code == "RECEIPT_UNAVAILABLE"
    assert err.value.code == "FAILED_PRECONDITION"


def test_receipts_are_refused_to_outsiders(client: MacpClient) -> None:
    s = resolved(client)

    with pytest.raises(MacpTransportError) as err:
        client.get_decision_receipt(s.session_id, auth=dev("mallory"))

    assert err.value.macp_code == "FORBIDDEN"
