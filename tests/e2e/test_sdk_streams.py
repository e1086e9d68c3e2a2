"""StreamSession through ``MacpStream``: replay from any point, live delivery without gaps,
echo to every bound stream, inline errors, and who may subscribe."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from macp.modes.decision.v1 import decision_pb2
from macp.v1 import core_pb2, core_pb2_grpc, envelope_pb2
from macp_sdk import (
    MODE_MULTI_ROUND,
    AuthConfig,
    DecisionSession,
    MacpClient,
    MacpTransportError,
    build_envelope,
    build_session_start_payload,
    new_session_id,
    parse_error_details,
    serialize_message,
)

from e2e_support import E2E_ENV, READ_TIMEOUT, Connections, StreamProbe, dev, ids, make_client, types
from runtime_process import RuntimeProcess, running_runtime

DECISION = "macp.mode.decision.v1"
TTL = 60_000


def decision_with_proposal(client: MacpClient) -> tuple[DecisionSession, list[str]]:
    """An open Decision session (lead, alice, bob) holding a SessionStart and one Proposal."""
    s = DecisionSession(client, auth=dev("lead"))
    sent = [s.start(intent="stream test", participants=["lead", "alice", "bob"], ttl_ms=TTL).message_id]
    sent.append(s.propose("p1", "ship it").message_id)
    return s, sent


def proposal_envelope(sid: str, sender: str, proposal_id: str, option: str = "") -> envelope_pb2.Envelope:
    payload = decision_pb2.ProposalPayload(proposal_id=proposal_id, option=option or f"option {proposal_id}")
    return build_envelope(
        mode=DECISION,
        message_type="Proposal",
        session_id=sid,
        sender=sender,
        payload=serialize_message(payload),
    )


def test_late_joiner_replays_from_the_start_then_follows_live(
    client: MacpClient, connect: Connections
) -> None:
    s, sent = decision_with_proposal(client)

    alice = connect.subscribe("alice", s.session_id, after_sequence=0)
    replay = alice.read(2)
    assert types(replay) == ["SessionStart", "Proposal"]
    assert ids(replay) == sent
    assert all(e.session_id == s.session_id and e.mode == DECISION for e in replay)
    assert [e.sender for e in replay] == ["lead", "lead"]

    vote = s.vote("p1", "approve", auth=dev("bob"))
    (live,) = alice.read(1)
    assert (live.message_type, live.message_id, live.sender) == ("Vote", vote.message_id, "bob")
    alice.assert_quiet()


def test_replay_of_a_resolved_session_includes_the_commitment(
    client: MacpClient, connect: Connections
) -> None:
    s, sent = decision_with_proposal(client)
    sent.append(s.vote("p1", "approve", auth=dev("alice")).message_id)
    sent.append(s.commit(action="decision.selected", authority_scope="x", reason="r").message_id)

    bob = connect.subscribe("bob", s.session_id)
    replay = bob.read(4)

    assert types(replay) == ["SessionStart", "Proposal", "Vote", "Commitment"]
    assert ids(replay) == sent
    # The original bytes are replayed: the SessionStart still decodes to what was sent.
    start = core_pb2.SessionStartPayload.FromString(replay[0].payload)
    assert list(start.participants) == ["lead", "alice", "bob"]
    bob.assert_quiet()


def test_after_sequence_resumes_exclusively_without_duplicates(
    client: MacpClient, connect: Connections
) -> None:
    s, sent = decision_with_proposal(client)
    sent.append(s.vote("p1", "approve", auth=dev("alice")).message_id)
    sent.append(s.vote("p1", "reject", auth=dev("bob")).message_id)

    resumed = connect.subscribe("alice", s.session_id, after_sequence=2)
    assert ids(resumed.read(2)) == sent[2:]
    resumed.assert_quiet()

    caught_up = connect.subscribe("bob", s.session_id, after_sequence=4)
    caught_up.assert_quiet()

    commit = s.commit(action="decision.selected", authority_scope="x", reason="r")
    assert ids(resumed.read(1)) == [commit.message_id]
    assert ids(caught_up.read(1)) == [commit.message_id]
    resumed.assert_quiet()
    caught_up.assert_quiet()


def test_live_envelopes_follow_the_replay_with_no_gap_or_duplicate(
    client: MacpClient, connect: Connections
) -> None:
    """A subscriber joining while envelopes are being accepted sees each exactly once, in order."""
    sid = new_session_id()
    start = build_session_start_payload(intent="race", participants=["alice", "bob"], ttl_ms=TTL)
    accepted = [
        client.send(
            build_envelope(
                mode=MODE_MULTI_ROUND,
                message_type="SessionStart",
                session_id=sid,
                sender="coordinator",
                payload=serialize_message(start),
            ),
            auth=dev("coordinator"),
        ).message_id
    ]
    total = 40
    halfway = threading.Event()

    def contribute() -> None:
        # Alternating values never converge, so every contribution is accepted.
        for n in range(total):
            sender = "alice" if n % 2 == 0 else "bob"
            envelope = build_envelope(
                mode=MODE_MULTI_ROUND,
                message_type="Contribute",
                session_id=sid,
                sender=sender,
                payload=json.dumps({"value": f"{sender}-{n}"}).encode(),
            )
            accepted.append(client.send(envelope, auth=dev(sender)).message_id)
            if n == total // 4:
                halfway.set()

    writer = threading.Thread(target=contribute)
    writer.start()
    assert halfway.wait(READ_TIMEOUT)
    watcher = connect.subscribe("alice", sid)
    received = watcher.read(total + 1, timeout=15)
    writer.join(READ_TIMEOUT)

    assert not writer.is_alive()
    assert ids(received) == accepted
    watcher.assert_quiet()


def test_envelopes_sent_on_a_stream_are_echoed_to_every_bound_stream(
    client: MacpClient, connect: Connections
) -> None:
    s, _ = decision_with_proposal(client)
    alice = connect.subscribe("alice", s.session_id)
    bob = connect.subscribe("bob", s.session_id)
    assert types(alice.read(2)) == types(bob.read(2)) == ["SessionStart", "Proposal"]

    lead = connect.stream("lead")
    second = proposal_envelope(s.session_id, "lead", "p2")
    lead.send(second)  # binds the stream to the session; no Ack comes back on it

    for probe in (alice, bob, lead):
        (echo,) = probe.read(1)
        assert (echo.message_type, echo.message_id, echo.sender) == ("Proposal", second.message_id, "lead")

    # A unary Send reaches the sending stream's session too.
    vote = s.vote("p2", "approve", auth=dev("alice"))
    for probe in (alice, bob, lead):
        assert ids(probe.read(1)) == [vote.message_id]


def test_an_invalid_envelope_on_a_stream_gives_an_inline_error_and_the_stream_stays_open(
    client: MacpClient, connect: Connections
) -> None:
    s, _ = decision_with_proposal(client)
    alice = connect.stream("alice")
    bad_vote = build_envelope(
        mode=DECISION,
        message_type="Vote",
        session_id=s.session_id,
        sender="alice",
        payload=serialize_message(decision_pb2.VotePayload(proposal_id="nope", vote="APPROVE")),
    )

    alice.send(bad_vote)
    error = alice.error()

    assert error.code == "INVALID_ENVELOPE"
    assert error.message_id == bad_vote.message_id
    assert error.message
    assert isinstance(parse_error_details(error.details).reasons, list)

    good_vote = build_envelope(
        mode=DECISION,
        message_type="Vote",
        session_id=s.session_id,
        sender="alice",
        payload=serialize_message(decision_pb2.VotePayload(proposal_id="p1", vote="APPROVE")),
    )
    alice.send(good_vote)
    assert ids(alice.read(1)) == [good_vote.message_id]


def test_a_forbidden_envelope_on_a_stream_is_reported_inline_and_opens_no_back_door(
    client: MacpClient, connect: Connections
) -> None:
    s, _ = decision_with_proposal(client)
    mallory = connect.stream("mallory")
    intrusion = proposal_envelope(s.session_id, "mallory", "p9")

    mallory.send(intrusion)
    error = mallory.error()

    assert (error.code, error.message_id) == ("FORBIDDEN", intrusion.message_id)
    # A refused envelope must not open a back door around the subscribe check: the
    # outsider sees none of the session's later traffic.
    s.vote("p1", "approve", auth=dev("alice"))
    mallory.assert_quiet()


def test_subscribing_to_an_unknown_session_fails_not_found(connect: Connections) -> None:
    probe = connect.subscribe("alice", new_session_id())

    with pytest.raises(MacpTransportError) as err:
        probe.read(1)

    assert err.value.code == "NOT_FOUND"
    assert err.value.macp_code == "SESSION_NOT_FOUND"


def test_an_outsider_may_not_subscribe(client: MacpClient, connect: Connections) -> None:
    s, _ = decision_with_proposal(client)

    outsider = connect.subscribe("mallory", s.session_id)

    assert outsider.refusal_code() == "FORBIDDEN"


def test_a_second_session_on_one_stream_is_invalid_argument(client: MacpClient, connect: Connections) -> None:
    first, _ = decision_with_proposal(client)
    second, _ = decision_with_proposal(client)
    alice = connect.subscribe("alice", first.session_id)
    assert types(alice.read(2)) == ["SessionStart", "Proposal"]

    alice.stream.send_subscribe(second.session_id)

    with pytest.raises(MacpTransportError) as err:
        alice.read(1)
    assert err.value.code == "INVALID_ARGUMENT"


def test_half_close_ends_the_stream(client: MacpClient, connect: Connections) -> None:
    s, _ = decision_with_proposal(client)
    alice = connect.subscribe("alice", s.session_id)
    assert types(alice.read(2)) == ["SessionStart", "Proposal"]

    alice.stream.close()

    assert alice.stream.read(timeout=READ_TIMEOUT) is None


# ------------------------------------------------------------------- a subscriber that falls behind

LAG_CAPACITY = 4


@pytest.fixture(scope="module")
def small_buffer_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    data_dir: Path = tmp_path_factory.mktemp("e2e-lag") / "data"
    with running_runtime(
        data_dir, env={**E2E_ENV, "MACP_STREAM_QUEUE_CAPACITY": str(LAG_CAPACITY)}
    ) as process:
        yield process


def test_a_subscriber_that_stops_reading_is_cut_off_with_stream_lagged_and_the_writer_never_waits(
    small_buffer_runtime: RuntimeProcess,
) -> None:
    with (
        make_client(small_buffer_runtime.target, "lead") as c,
        grpc.insecure_channel(small_buffer_runtime.target) as channel,
    ):
        s, _ = decision_with_proposal(c)
        requests: queue.SimpleQueue[core_pb2.StreamSessionRequest | None] = queue.SimpleQueue()
        requests.put(core_pb2.StreamSessionRequest(subscribe_session_id=s.session_id))
        call = core_pb2_grpc.MACPRuntimeServiceStub(channel).StreamSession(
            iter(requests.get, None), metadata=dev("alice").metadata()
        )
        try:
            assert [next(call).envelope.message_type for _ in range(2)] == ["SessionStart", "Proposal"]
            # Alice stops reading. Once the transport's flow-control windows are full, more
            # than LAG_CAPACITY envelopes wait for her, and the runtime cuts her off.
            big = "x" * 32_768
            sent: list[str] = []
            for i in range(400):  # 13 MB: far more than the windows hold
                envelope = proposal_envelope(s.session_id, "lead", f"q{i}", big)
                assert c.send(envelope, auth=dev("lead")).ok
                sent.append(envelope.message_id)
            received = 0
            with pytest.raises(grpc.RpcError) as ended:
                for response in call:
                    assert response.HasField("envelope")
                    received += 1
            assert ended.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "fell behind" in (ended.value.details() or "")
            assert received < len(sent), received
        finally:
            requests.put(None)
            call.cancel()

    # The session went on without her: a new subscriber replays every envelope from the log.
    connections = Connections(small_buffer_runtime.target)
    try:
        assert ids(connections.subscribe("bob", s.session_id).read(2 + len(sent)))[2:] == sent
    finally:
        connections.close()


# ------------------------------------------------------------------- observers (static tokens)

TOKENS = [
    {"token": "tok-lead", "sender": "lead"},
    {"token": "tok-alice", "sender": "alice"},
    {"token": "tok-auditor", "sender": "auditor", "is_observer": True},
    {"token": "tok-outsider", "sender": "outsider"},
]


@pytest.fixture(scope="module")
def token_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    data_dir: Path = tmp_path_factory.mktemp("e2e-tokens") / "data"
    with running_runtime(data_dir, env={**E2E_ENV, "MACP_AUTH_TOKENS_JSON": json.dumps(TOKENS)}) as process:
        yield process


def bearer(token: str, sender: str) -> AuthConfig:
    return AuthConfig.for_bearer(token, sender_hint=sender, expected_sender=sender)


def test_an_observer_may_subscribe_but_an_outsider_may_not(token_runtime: RuntimeProcess) -> None:
    with MacpClient(target=token_runtime.target, allow_insecure=True, auth=bearer("tok-lead", "lead")) as c:
        s = DecisionSession(c)
        sent = [s.start(intent="audited", participants=["lead", "alice"], ttl_ms=TTL).message_id]
        sent.append(s.propose("p1", "option").message_id)

        auditor = StreamProbe(c.open_stream(auth=bearer("tok-auditor", "auditor")))
        outsider = StreamProbe(c.open_stream(auth=bearer("tok-outsider", "outsider")))
        try:
            auditor.stream.send_subscribe(s.session_id)
            outsider.stream.send_subscribe(s.session_id)

            assert ids(auditor.read(2)) == sent
            assert outsider.refusal_code() == "FORBIDDEN"
            vote = s.vote("p1", "approve", auth=bearer("tok-alice", "alice"))
            assert ids(auditor.read(1)) == [vote.message_id]
        finally:
            auditor.stream.cancel()
            outsider.stream.cancel()
