"""A graceful restart on the same data directory loses nothing the SDK can observe: sessions,
their full history, registered policies and extension modes, receipts; open sessions go on."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from macp.v1 import core_pb2
from macp_sdk import (
    DecisionSession,
    MacpAckError,
    MacpClient,
    VotingRules,
    build_commitment_payload,
    build_decision_policy,
    build_envelope,
    build_session_start_payload,
    new_session_id,
    serialize_message,
)

from e2e_support import CANCELLED, E2E_ENV, OPEN, RESOLVED, StreamProbe, dev, ids, make_client
from runtime_process import RuntimeProcess

ADMIN = dev("admin")
POLICY = "policy.e2e.durable-majority"
EXT = "ext.e2e-durable.v1"
PROMOTED = "ext.e2e-durable-promoted.v1"


@pytest.fixture
def processes() -> Iterator[list[RuntimeProcess]]:
    started: list[RuntimeProcess] = []
    yield started
    for process in started:
        process.stop()


def launch(data_dir: Path, processes: list[RuntimeProcess]) -> RuntimeProcess:
    process = RuntimeProcess(data_dir, E2E_ENV)
    processes.append(process)
    process.start()
    return process


def ext_descriptor(mode: str) -> core_pb2.ModeDescriptor:
    return core_pb2.ModeDescriptor(
        mode=mode,
        mode_version="1.0.0",
        title="Durable",
        message_types=["SessionStart", "Note", "Commitment"],
        terminal_message_types=["Commitment"],
    )


def history(client: MacpClient, session_id: str, count: int) -> list[str]:
    probe = StreamProbe(client.open_stream(auth=dev("lead")))
    try:
        probe.stream.send_subscribe(session_id, after_sequence=0)
        message_ids = ids(probe.read(count))
        probe.assert_quiet()
        return message_ids
    finally:
        probe.stream.cancel()


def start_ext_session(client: MacpClient, mode: str) -> int:
    start = build_session_start_payload(intent="after restart", participants=["alice"], ttl_ms=60_000)
    envelope = build_envelope(
        mode=mode,
        message_type="SessionStart",
        session_id=new_session_id(),
        sender="lead",
        payload=serialize_message(start),
    )
    return int(client.send(envelope, auth=dev("lead")).session_state)


def test_everything_survives_a_graceful_restart(tmp_path: Path, processes: list[RuntimeProcess]) -> None:
    data_dir = tmp_path / "data"
    first = launch(data_dir, processes)
    with make_client(first.target, "lead") as c:
        majority = build_decision_policy(
            POLICY, "durable", voting=VotingRules(algorithm="majority", threshold=0.5)
        )
        assert c.register_policy(majority, auth=ADMIN).ok
        assert c.register_ext_mode(ext_descriptor(EXT), auth=ADMIN).ok
        assert c.register_ext_mode(ext_descriptor("ext.e2e-durable-candidate.v1"), auth=ADMIN).ok
        assert c.promote_mode("ext.e2e-durable-candidate.v1", PROMOTED, auth=ADMIN).ok

        done = DecisionSession(c)
        done_ids = [done.start(intent="finished", participants=["lead", "alice"], ttl_ms=60_000).message_id]
        done_ids.append(done.propose("p1", "ship").message_id)
        done_ids.append(done.vote("p1", "approve", auth=dev("alice")).message_id)
        done_ids.append(done.commit(action="decision.selected", authority_scope="x", reason="r").message_id)
        receipt_before = c.get_decision_receipt(done.session_id).raw

        pending = DecisionSession(c, policy_version=POLICY)
        pending_ids = [
            pending.start(intent="pending", participants=["lead", "alice", "bob"], ttl_ms=600_000).message_id
        ]
        pending_ids.append(pending.propose("p1", "ship").message_id)

        dropped = DecisionSession(c)
        dropped.start(intent="dropped", participants=["lead"], ttl_ms=60_000)
        dropped.cancel(reason="not needed")
        before = {m.session_id: m for m in c.list_sessions()}

    assert first.stop(signal.SIGTERM) == 0, first.log()
    second = launch(data_dir, processes)

    with make_client(second.target, "lead") as c:
        after = {m.session_id: m for m in c.list_sessions()}
        assert set(before) <= set(after)
        for sid in (done.session_id, pending.session_id, dropped.session_id):
            assert after[sid].SerializeToString(deterministic=True) == before[sid].SerializeToString(
                deterministic=True
            ), f"metadata of {sid} changed across the restart"
        assert c.get_session(done.session_id).metadata.state == RESOLVED
        assert c.get_session(pending.session_id).metadata.state == OPEN
        assert c.get_session(dropped.session_id).metadata.state == CANCELLED

        assert history(c, done.session_id, 4) == done_ids
        assert history(c, pending.session_id, 2) == pending_ids
        assert c.get_decision_receipt(done.session_id).raw == receipt_before

        assert c.get_policy(POLICY, auth=ADMIN).policy_descriptor.policy_id == POLICY
        assert EXT in {m.mode for m in c.list_ext_modes().modes}
        assert PROMOTED in {m.mode for m in c.list_modes().modes}
        assert start_ext_session(c, EXT) == OPEN
        assert start_ext_session(c, PROMOTED) == OPEN

        # The open session carries on under its bound policy, and live delivery resumes.
        resumed = DecisionSession(c, session_id=pending.session_id, policy_version=POLICY)
        follower = StreamProbe(c.open_stream(auth=dev("alice")))
        try:
            follower.stream.send_subscribe(pending.session_id, after_sequence=2)
            with pytest.raises(MacpAckError) as err:
                resumed.commit(action="decision.selected", authority_scope="x", reason="no votes")
            assert err.value.failure.code == "POLICY_DENIED"
            vote_a = resumed.vote("p1", "approve", auth=dev("alice")).message_id
            vote_b = resumed.vote("p1", "approve", auth=dev("bob")).message_id
            commit = resumed.commit(action="decision.selected", authority_scope="x", reason="majority")
            assert commit.session_state == RESOLVED
            assert ids(follower.read(3)) == [vote_a, vote_b, commit.message_id]
        finally:
            follower.stream.cancel()

        commitment = build_commitment_payload(
            action="decision.selected",
            authority_scope="x",
            reason="again",
            mode_version="1.0.0",
            configuration_version="config.default",
            policy_version="policy.default",
        )
        late = build_envelope(
            mode="macp.mode.decision.v1",
            message_type="Commitment",
            session_id=done.session_id,
            sender="lead",
            payload=serialize_message(commitment),
        )
        with pytest.raises(MacpAckError) as err:
            c.send(late)
        assert err.value.failure.code == "SESSION_NOT_OPEN"
