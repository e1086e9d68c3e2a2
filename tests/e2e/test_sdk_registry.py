"""Policy and extension-mode registries through the SDK: the RPCs, and sessions bound to what
they registered."""

from __future__ import annotations

import json

import grpc
import pytest
from macp.v1 import core_pb2, policy_pb2
from macp_sdk import (
    CommitmentRules,
    DecisionSession,
    MacpAckError,
    MacpClient,
    QuorumThreshold,
    VotingRules,
    build_commitment_payload,
    build_decision_policy,
    build_envelope,
    build_quorum_policy,
    build_session_start_payload,
    macp_error_code,
    new_session_id,
    serialize_message,
)

from e2e_support import OPEN, RESOLVED, dev

ADMIN = dev("admin")
DECISION = "macp.mode.decision.v1"
QUORUM = "macp.mode.quorum.v1"


def majority_policy(policy_id: str) -> policy_pb2.PolicyDescriptor:
    return build_decision_policy(
        policy_id,
        "majority of decisive votes, fail-closed on an empty tally",
        voting=VotingRules(algorithm="majority", threshold=0.5),
        commitment=CommitmentRules(authority="initiator_only"),
        schema_version=3,
    )


def test_register_get_list_unregister(client: MacpClient) -> None:
    decision = majority_policy("policy.e2e.lifecycle")
    quorum = build_quorum_policy(
        "policy.e2e.lifecycle-quorum", "two of three", threshold=QuorumThreshold(type="n_of_m", value=2)
    )

    registered = client.register_policy(decision, auth=ADMIN)
    assert (registered.ok, registered.error) == (True, "")
    assert client.register_policy(quorum, auth=ADMIN).ok

    got = client.get_policy("policy.e2e.lifecycle", auth=ADMIN).policy_descriptor
    assert (got.policy_id, got.mode, got.schema_version) == ("policy.e2e.lifecycle", DECISION, 3)
    assert json.loads(got.rules) == json.loads(decision.rules)
    assert got.registered_at_unix_ms > 0

    decision_ids = {d.policy_id for d in client.list_policies(DECISION, auth=ADMIN).descriptors}
    quorum_ids = {d.policy_id for d in client.list_policies(QUORUM, auth=ADMIN).descriptors}
    all_ids = {d.policy_id for d in client.list_policies(auth=ADMIN).descriptors}
    assert "policy.e2e.lifecycle" in decision_ids
    assert "policy.e2e.lifecycle" not in quorum_ids
    assert "policy.e2e.lifecycle-quorum" in quorum_ids
    assert "policy.e2e.lifecycle-quorum" not in decision_ids
    assert {"policy.e2e.lifecycle", "policy.e2e.lifecycle-quorum", "policy.default"} <= all_ids

    assert client.unregister_policy("policy.e2e.lifecycle", auth=ADMIN).ok
    assert client.unregister_policy("policy.e2e.lifecycle-quorum", auth=ADMIN).ok

    with pytest.raises(grpc.RpcError) as err:
        client.get_policy("policy.e2e.lifecycle", auth=ADMIN)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert macp_error_code(err.value) == "UNKNOWN_POLICY_VERSION"
    assert "policy.e2e.lifecycle" not in {d.policy_id for d in client.list_policies(auth=ADMIN).descriptors}


def test_duplicate_register_answers_ok_false(client: MacpClient) -> None:
    descriptor = majority_policy("policy.e2e.duplicate")
    assert client.register_policy(descriptor, auth=ADMIN).ok

    again = client.register_policy(descriptor, auth=ADMIN)

    assert again.ok is False
    assert "policy.e2e.duplicate" in again.error
    missing = client.unregister_policy("policy.e2e.never-registered", auth=ADMIN)
    assert missing.ok is False
    assert missing.error


def test_invalid_policy_is_refused_with_ok_false(client: MacpClient) -> None:
    broken = build_decision_policy("policy.e2e.broken", "bad rules")
    broken.rules = json.dumps({"voting": {"algorithm": "coin-toss"}})

    answer = client.register_policy(broken, auth=ADMIN)

    assert answer.ok is False
    assert answer.error


def test_a_session_bound_to_a_majority_policy_denies_until_votes_arrive(client: MacpClient) -> None:
    assert client.register_policy(majority_policy("policy.e2e.majority"), auth=ADMIN).ok
    s = DecisionSession(client, policy_version="policy.e2e.majority", auth=dev("lead"))
    s.start(intent="ship?", participants=["lead", "alice", "bob"], ttl_ms=60_000)
    assert s.metadata().metadata.policy_version == "policy.e2e.majority"
    s.propose("p1", "ship")

    with pytest.raises(MacpAckError) as err:
        s.commit(action="decision.selected", authority_scope="release", reason="no votes yet")
    assert err.value.failure.code == "POLICY_DENIED"
    assert [d.code for d in err.value.denials] == ["no_votes"]
    assert err.value.denials[0].message
    assert s.metadata().metadata.state == OPEN

    s.vote("p1", "approve", auth=dev("alice"))
    s.vote("p1", "reject", auth=dev("bob"))  # an even split passes at the inclusive 0.5 threshold
    ack = s.commit(action="decision.selected", authority_scope="release", reason="majority")

    assert ack.session_state == RESOLVED
    assert s.metadata().metadata.state == RESOLVED


def test_a_session_naming_an_unknown_policy_is_refused(client: MacpClient) -> None:
    s = DecisionSession(client, policy_version="policy.e2e.nowhere", auth=dev("lead"))

    with pytest.raises(MacpAckError) as err:
        s.start(intent="x", participants=["lead"], ttl_ms=60_000)

    assert err.value.failure.code == "UNKNOWN_POLICY_VERSION"


# ------------------------------------------------------------------------------------ ext modes


def ext_descriptor(mode: str) -> core_pb2.ModeDescriptor:
    return core_pb2.ModeDescriptor(
        mode=mode,
        mode_version="0.3.0",
        title="Poll",
        description="a registered extension",
        determinism_class="structural-only",
        participant_model="declared",
        message_types=["SessionStart", "Ping", "Commitment"],
        terminal_message_types=["Commitment"],
    )


def send_ext(client: MacpClient, mode: str, sid: str, sender: str, message_type: str, payload: bytes) -> int:
    envelope = build_envelope(
        mode=mode, message_type=message_type, session_id=sid, sender=sender, payload=payload
    )
    return int(client.send(envelope, auth=dev(sender)).session_state)


def run_ext_session(client: MacpClient, mode: str) -> str:
    sid = new_session_id()
    start = build_session_start_payload(
        intent="poll", participants=["alice"], ttl_ms=60_000, mode_version="0.3.0"
    )
    assert send_ext(client, mode, sid, "lead", "SessionStart", serialize_message(start)) == OPEN
    assert send_ext(client, mode, sid, "alice", "Ping", b"\x01opaque") == OPEN
    with pytest.raises(MacpAckError) as err:
        send_ext(client, mode, sid, "mallory", "Ping", b"x")
    assert err.value.failure.code == "FORBIDDEN"
    commitment = build_commitment_payload(
        action="poll.closed",
        authority_scope="poll",
        reason="done",
        mode_version="0.3.0",
        configuration_version="config.default",
        policy_version="policy.default",
    )
    assert send_ext(client, mode, sid, "lead", "Commitment", serialize_message(commitment)) == RESOLVED
    return sid


def test_ext_mode_register_list_and_run_a_session(client: MacpClient) -> None:
    mode = "ext.e2e-poll.v1"
    answer = client.register_ext_mode(ext_descriptor(mode), auth=ADMIN)
    assert (answer.ok, answer.error) == (True, "")

    ext = {m.mode: m for m in client.list_ext_modes().modes}
    assert mode in ext
    assert (ext[mode].mode_version, list(ext[mode].terminal_message_types)) == ("0.3.0", ["Commitment"])
    assert "ext.multi_round.v1" in ext
    assert mode not in {m.mode for m in client.list_modes().modes}

    sid = run_ext_session(client, mode)
    meta = client.get_session(sid, auth=dev("lead")).metadata
    assert (meta.mode, meta.mode_version, meta.state) == (mode, "0.3.0", RESOLVED)

    duplicate = client.register_ext_mode(ext_descriptor(mode), auth=ADMIN)
    assert duplicate.ok is False
    assert duplicate.error


def test_ext_mode_unregister(client: MacpClient) -> None:
    mode = "ext.e2e-temporary.v1"
    assert client.register_ext_mode(ext_descriptor(mode), auth=ADMIN).ok

    assert client.unregister_ext_mode(mode, auth=ADMIN).ok

    assert mode not in {m.mode for m in client.list_ext_modes().modes}
    again = client.unregister_ext_mode(mode, auth=ADMIN)
    assert again.ok is False
    start = build_session_start_payload(
        intent="x", participants=["alice"], ttl_ms=60_000, mode_version="0.3.0"
    )
    with pytest.raises(MacpAckError) as err:
        send_ext(client, mode, new_session_id(), "lead", "SessionStart", serialize_message(start))
    assert err.value.failure.code == "MODE_NOT_SUPPORTED"


def test_promote_mode_moves_it_to_the_standard_list_under_its_new_name(client: MacpClient) -> None:
    assert client.register_ext_mode(ext_descriptor("ext.e2e-candidate.v1"), auth=ADMIN).ok

    promoted = client.promote_mode("ext.e2e-candidate.v1", "ext.e2e-promoted.v1", auth=ADMIN)

    assert (promoted.ok, promoted.mode) == (True, "ext.e2e-promoted.v1")
    standard = [m.mode for m in client.list_modes().modes]
    assert standard[:5] == [
        "macp.mode.decision.v1",
        "macp.mode.proposal.v1",
        "macp.mode.task.v1",
        "macp.mode.handoff.v1",
        "macp.mode.quorum.v1",
    ]
    assert "ext.e2e-promoted.v1" in standard
    ext_names = {m.mode for m in client.list_ext_modes().modes}
    assert "ext.e2e-promoted.v1" not in ext_names
    assert "ext.e2e-candidate.v1" not in ext_names
    assert "ext.e2e-promoted.v1" in client.initialize().supported_modes

    run_ext_session(client, "ext.e2e-promoted.v1")
    # Standards-track modes cannot be unregistered.
    refused = client.unregister_ext_mode("ext.e2e-promoted.v1", auth=ADMIN)
    assert refused.ok is False
    assert refused.error
