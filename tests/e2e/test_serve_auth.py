"""Authentication and identity against a real ``pymacp serve``: static tokens, JWT, dev mode.

One runtime serves most of this module, configured with both resolvers: static tokens
(``MACP_AUTH_TOKENS_JSON``) for a cast of identities with different capability flags, and
JWT (``MACP_AUTH_ISSUER`` + ``MACP_AUTH_JWKS_JSON``, an RS256 and an ES256 key generated
here). It runs plaintext (``MACP_ALLOW_INSECURE=1``), which with auth configured permits
plaintext only: dev-mode identities are refused. Short-lived runtimes cover
``MACP_AUTH_TOKENS_FILE`` and the start-up refusals.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from macp.v1 import core_pb2, core_pb2_grpc, envelope_pb2, policy_pb2
from macp_sdk.auth import AuthConfig
from macp_sdk.client import MacpClient
from macp_sdk.decision import DecisionSession
from macp_sdk.errors import MacpAckError, MacpTransportError

import wire_support as wire
from runtime_process import RuntimeProcess, running_runtime
from wire_support import DECISION, TASK, bearer

ISSUER = "https://issuer.e2e.test"
AUDIENCE = "macp-runtime"
RULES_MAJORITY = {
    "voting": {"algorithm": "majority", "threshold": 0.5},
    "commitment": {"authority": "initiator_only"},
}

TOKENS: list[dict[str, Any]] = [
    {"token": "tok-coord", "sender": "agent://coord"},
    {"token": "tok-alice", "sender": "agent://alice"},
    {"token": "tok-bob", "sender": "agent://bob"},
    {"token": "tok-task-only", "sender": "agent://task-only", "allowed_modes": [TASK]},
    {"token": "tok-no-start", "sender": "agent://no-start", "can_start_sessions": False},
    {"token": "tok-capped", "sender": "agent://capped", "max_open_sessions": 1},
    {"token": "tok-admin", "sender": "agent://admin", "can_manage_mode_registry": True},
    {"token": "tok-observer", "sender": "agent://observer", "is_observer": True},
]
SENDER = {t["token"]: t["sender"] for t in TOKENS}


# --- keys, tokens, the runtime -----------------------------------------------------------------------


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks_json(self) -> str:
        rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        rsa_jwk.update(kid="rsa-1", alg="RS256", use="sig")
        ec_jwk.update(kid="ec-1", alg="ES256", use="sig")
        return json.dumps({"keys": [rsa_jwk, ec_jwk]})

    def token(
        self, sub: str, *, alg: str = "RS256", scopes: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600}
        if scopes is not None:
            body["macp_scopes"] = scopes
        body.update(claims)
        if alg == "ES256":
            return jwt.encode(body, self.ec, algorithm="ES256", headers={"kid": "ec-1"})
        return jwt.encode(body, self.rsa, algorithm="RS256", headers={"kid": "rsa-1"})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[RuntimeProcess]:
    env = {
        "MACP_AUTH_TOKENS_JSON": json.dumps(TOKENS),
        "MACP_AUTH_ISSUER": ISSUER,
        "MACP_AUTH_JWKS_JSON": keys.jwks_json(),
        **wire.NO_RATE_LIMITS,
    }
    with running_runtime(tmp_path_factory.mktemp("auth") / "data", env) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def stub(server: RuntimeProcess) -> Iterator[core_pb2_grpc.MACPRuntimeServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield wire.stub_for(channel)


@pytest.fixture(scope="module")
def client(server: RuntimeProcess) -> Iterator[MacpClient]:
    with MacpClient(target=server.target, allow_insecure=True, default_timeout=10) as sdk:
        yield sdk


def as_token(token: str) -> AuthConfig:
    return AuthConfig.for_bearer(token, sender_hint=SENDER.get(token), expected_sender=SENDER.get(token))


def open_decision(
    stub: core_pb2_grpc.MACPRuntimeServiceStub,
    token: str = "tok-coord",
    participants: tuple[str, ...] = ("agent://alice",),
    policy_version: str = "",
) -> str:
    session_id = wire.new_id()
    start = wire.session_start(
        DECISION, session_id, SENDER[token], participants, policy_version=policy_version
    )
    outcome = wire.send(stub, start, bearer(token))
    assert outcome.ok, outcome
    return session_id


def try_start(
    stub: core_pb2_grpc.MACPRuntimeServiceStub,
    token: str,
    *,
    mode: str = DECISION,
    participants: tuple[str, ...] = ("agent://alice",),
) -> wire.Outcome:
    """Send a SessionStart with an empty sender, which the runtime fills from the identity."""
    return wire.send(stub, wire.session_start(mode, wire.new_id(), "", participants), bearer(token))


def assert_unauthenticated(err: grpc.RpcError) -> None:
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    assert wire.trailer(err, "macp-error-code") == "UNAUTHENTICATED"


# --- static tokens -----------------------------------------------------------------------------------


def test_static_token_identity_becomes_the_initiator(client: MacpClient) -> None:
    session = DecisionSession(client, auth=as_token("tok-coord"))
    ack = session.start(intent="ship?", participants=["agent://alice"], ttl_ms=60_000)
    assert ack.ok
    metadata = client.get_session(session.session_id, auth=as_token("tok-coord")).metadata
    assert metadata.initiator == "agent://coord"
    assert metadata.state == envelope_pb2.SESSION_STATE_OPEN


def test_one_channel_carries_several_identities(
    client: MacpClient, stub: core_pb2_grpc.MACPRuntimeServiceStub
) -> None:
    coord, alice, bob = as_token("tok-coord"), as_token("tok-alice"), as_token("tok-bob")
    session = DecisionSession(client, auth=coord)
    session.start(intent="ship?", participants=["agent://alice"], ttl_ms=60_000)
    session.propose("p1", "ship", auth=alice)
    with pytest.raises(MacpAckError) as refused:
        session.propose("p2", "wait", auth=bob)  # bob is authenticated but not a participant
    assert refused.value.failure.code == "FORBIDDEN"
    ack = session.commit(action="decision.selected", authority_scope="e2e", reason="done", auth=coord)
    assert ack.session_state == envelope_pb2.SESSION_STATE_RESOLVED

    history = wire.read_history(stub, session.session_id, bearer("tok-alice"))
    assert [(e.message_type, e.sender) for e in history.envelopes] == [
        ("SessionStart", "agent://coord"),
        ("Proposal", "agent://alice"),
        ("Commitment", "agent://coord"),
    ]


def test_empty_envelope_sender_is_taken_from_the_identity(stub: core_pb2_grpc.MACPRuntimeServiceStub) -> None:
    session_id = wire.new_id()
    start = wire.session_start(DECISION, session_id, "", ["agent://alice"])
    assert wire.send(stub, start, bearer("tok-coord")).ok
    history = wire.read_history(stub, session_id, bearer("tok-coord"))
    assert [e.sender for e in history.envelopes] == ["agent://coord"]


def test_envelope_sender_differing_from_the_identity_is_unauthenticated(
    client: MacpClient, stub: core_pb2_grpc.MACPRuntimeServiceStub
) -> None:
    session_id = wire.new_id()
    forged = wire.session_start(DECISION, session_id, "agent://coord", ["agent://alice"])
    with pytest.raises(MacpAckError) as refused:
        client.send(forged, auth=AuthConfig.for_bearer("tok-alice"))
    assert refused.value.failure.code == "UNAUTHENTICATED"
    err = wire.expect_rpc_error(
        lambda: stub.GetSession(
            core_pb2.GetSessionRequest(session_id=session_id), metadata=bearer("tok-coord")
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


RPCS_NEEDING_AUTH: dict[str, Callable[[core_pb2_grpc.MACPRuntimeServiceStub, Any], object]] = {
    "Send": lambda s, md: s.Send(
        core_pb2.SendRequest(envelope=wire.session_start(DECISION, wire.new_id(), "agent://coord", [])),
        metadata=md,
        timeout=5,
    ),
    "GetSession": lambda s, md: s.GetSession(
        core_pb2.GetSessionRequest(session_id=wire.new_id()), metadata=md, timeout=5
    ),
    "ListSessions": lambda s, md: s.ListSessions(core_pb2.ListSessionsRequest(), metadata=md, timeout=5),
    "WatchSessions": lambda s, md: s.WatchSessions(core_pb2.WatchSessionsRequest(), metadata=md, timeout=5),
    "WatchSignals": lambda s, md: s.WatchSignals(core_pb2.WatchSignalsRequest(), metadata=md, timeout=5),
    "RegisterPolicy": lambda s, md: s.RegisterPolicy(
        policy_pb2.RegisterPolicyRequest(
            policy_descriptor=wire.policy_descriptor("policy.e2e.noauth", RULES_MAJORITY)
        ),
        metadata=md,
        timeout=5,
    ),
}


@pytest.mark.parametrize("rpc", sorted(RPCS_NEEDING_AUTH))
def test_missing_token_is_unauthenticated(stub: core_pb2_grpc.MACPRuntimeServiceStub, rpc: str) -> None:
    err = wire.expect_rpc_error(lambda: RPCS_NEEDING_AUTH[rpc](stub, ()))
    assert_unauthenticated(err)


@pytest.mark.parametrize(
    "metadata",
    [
        bearer("tok-nobody"),
        bearer("agent://coord"),  # a dev-mode style bearer: dev mode is off once auth is configured
        (("authorization", "Basic dG9rLWNvb3JkOg=="),),
        (("authorization", "Bearer tok-coord"), ("authorization", "Bearer tok-alice")),
    ],
    ids=["unknown-token", "dev-style-bearer", "basic-scheme", "two-authorization-headers"],
)
def test_wrong_credentials_are_unauthenticated(
    stub: core_pb2_grpc.MACPRuntimeServiceStub, metadata: wire.MetadataPairs
) -> None:
    start = wire.session_start(DECISION, wire.new_id(), "", ["agent://alice"])
    outcome = wire.send(stub, start, metadata)
    assert outcome.status == grpc.StatusCode.UNAUTHENTICATED
    assert outcome.code == "UNAUTHENTICATED"
    assert "tok-" not in outcome.message  # the presented credential is never echoed


def test_wrong_token_surfaces_as_sdk_ack_error(client: MacpClient) -> None:
    start = wire.session_start(DECISION, wire.new_id(), "", ["agent://alice"])
    with pytest.raises(MacpAckError) as refused:
        client.send(start, auth=AuthConfig.for_bearer("tok-nobody"))
    assert refused.value.failure.code == "UNAUTHENTICATED"


def test_x_macp_token_header_is_accepted_for_static_tokens(
    stub: core_pb2_grpc.MACPRuntimeServiceStub,
) -> None:
    session_id = wire.new_id()
    start = wire.session_start(DECISION, session_id, "agent://coord", ["agent://alice"])
    assert wire.send(stub, start, (("x-macp-token", "tok-coord"),)).ok


def test_allowed_modes_limits_the_modes_an_identity_may_use(
    stub: core_pb2_grpc.MACPRuntimeServiceStub,
) -> None:
    refused = try_start(stub, "tok-task-only")
    assert (refused.ok, refused.code) == (False, "FORBIDDEN")
    allowed = try_start(stub, "tok-task-only", mode=TASK)
    assert allowed.ok, allowed


def test_can_start_sessions_false_may_still_participate(stub: core_pb2_grpc.MACPRuntimeServiceStub) -> None:
    refused = try_start(stub, "tok-no-start", participants=())
    assert (refused.ok, refused.code) == (False, "FORBIDDEN")
    session_id = open_decision(stub, participants=("agent://no-start",))
    outcome = wire.send(stub, wire.proposal(session_id, "agent://no-start", "p1"), bearer("tok-no-start"))
    assert outcome.ok, outcome


def test_max_open_sessions_counts_open_sessions_only(stub: core_pb2_grpc.MACPRuntimeServiceStub) -> None:
    first = open_decision(stub, "tok-capped")
    second = try_start(stub, "tok-capped")
    assert (second.ok, second.code) == (False, "RATE_LIMITED")
    cancelled = stub.CancelSession(
        core_pb2.CancelSessionRequest(session_id=first, reason="make room"),
        metadata=bearer("tok-capped"),
        timeout=5,
    )
    assert cancelled.ack.ok
    assert cancelled.ack.session_state == envelope_pb2.SESSION_STATE_CANCELLED
    third = try_start(stub, "tok-capped")
    assert third.ok, third


def test_only_registry_managers_may_register_policies(
    client: MacpClient, stub: core_pb2_grpc.MACPRuntimeServiceStub
) -> None:
    descriptor = wire.policy_descriptor("policy.e2e.static-admin", RULES_MAJORITY)
    with pytest.raises(MacpTransportError) as refused:
        client.register_policy(descriptor, auth=as_token("tok-coord"))
    assert (refused.value.code, refused.value.macp_code) == ("PERMISSION_DENIED", "FORBIDDEN")
    err = wire.expect_rpc_error(
        lambda: stub.GetPolicy(
            policy_pb2.GetPolicyRequest(policy_id=descriptor.policy_id), metadata=bearer("tok-coord")
        )
    )
    assert wire.trailer(err, "macp-error-code") == "UNKNOWN_POLICY_VERSION"

    response = client.register_policy(descriptor, auth=as_token("tok-admin"))
    assert (response.ok, response.error) == (True, "")
    session_id = open_decision(stub, policy_version=descriptor.policy_id)
    metadata = stub.GetSession(
        core_pb2.GetSessionRequest(session_id=session_id), metadata=bearer("tok-coord")
    )
    assert metadata.metadata.policy_version == descriptor.policy_id


def test_observer_reads_sessions_it_is_not_part_of(stub: core_pb2_grpc.MACPRuntimeServiceStub) -> None:
    session_id = open_decision(stub, participants=("agent://alice",))
    assert wire.send(stub, wire.proposal(session_id, "agent://alice", "p1"), bearer("tok-alice")).ok

    seen = stub.GetSession(core_pb2.GetSessionRequest(session_id=session_id), metadata=bearer("tok-observer"))
    assert seen.metadata.initiator == "agent://coord"
    history = wire.read_history(stub, session_id, bearer("tok-observer"))
    assert history.errors == []
    assert [e.message_type for e in history.envelopes] == ["SessionStart", "Proposal"]

    # Observing grants no right to speak in the session.
    spoke = wire.send(stub, wire.proposal(session_id, "agent://observer", "p2"), bearer("tok-observer"))
    assert (spoke.ok, spoke.code) == (False, "FORBIDDEN")


def test_non_members_cannot_read_a_session(stub: core_pb2_grpc.MACPRuntimeServiceStub) -> None:
    session_id = open_decision(stub, participants=("agent://alice",))
    err = wire.expect_rpc_error(
        lambda: stub.GetSession(core_pb2.GetSessionRequest(session_id=session_id), metadata=bearer("tok-bob"))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert wire.trailer(err, "macp-error-code") == "FORBIDDEN"
    try:
        history = wire.read_history(stub, session_id, bearer("tok-bob"), timeout=5)
    except grpc.RpcError as refused:
        assert wire.trailer(refused, "macp-error-code") == "FORBIDDEN"
    else:
        assert history.envelopes == []
        assert [e.code for e in history.errors] == ["FORBIDDEN"]


def test_watch_signals_requires_auth_and_delivers_authenticated_signals(
    stub: core_pb2_grpc.MACPRuntimeServiceStub,
) -> None:
    assert_unauthenticated(
        wire.expect_rpc_error(lambda: stub.WatchSignals(core_pb2.WatchSignalsRequest(), timeout=5))
    )
    assert_unauthenticated(
        wire.expect_rpc_error(
            lambda: stub.WatchSignals(
                core_pb2.WatchSignalsRequest(), metadata=bearer("tok-nobody"), timeout=5
            )
        )
    )

    watch = stub.WatchSignals(core_pb2.WatchSignalsRequest(), metadata=bearer("tok-bob"), timeout=10)
    received = threading.Event()
    signal_payload = core_pb2.SignalPayload(signal_type="e2e.ping", data=b"hello", confidence=0.5)

    def keep_signalling() -> None:  # the watch subscribes asynchronously; repeat until it sees one
        while not received.is_set():
            signal = wire.envelope("", "Signal", "", "agent://alice", signal_payload.SerializeToString())
            assert wire.send(stub, signal, bearer("tok-alice")).ok
            received.wait(0.2)

    sender = threading.Thread(target=keep_signalling, daemon=True)
    sender.start()
    try:
        first = next(watch)
    finally:
        received.set()
        watch.cancel()
        sender.join(5)
    assert first.sender_authenticated
    assert (first.envelope.sender, first.envelope.message_type) == ("agent://alice", "Signal")
    assert core_pb2.SignalPayload.FromString(first.envelope.payload).signal_type == "e2e.ping"


# --- JWT ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_jwt_subject_becomes_the_sender(
    stub: core_pb2_grpc.MACPRuntimeServiceStub, keys: Keys, alg: str
) -> None:
    sub = f"agent://jwt-{alg.lower()}"
    token = keys.token(sub, alg=alg)
    session_id = wire.new_id()
    outcome = wire.send(stub, wire.session_start(DECISION, session_id, sub, ["agent://alice"]), bearer(token))
    assert outcome.ok, outcome
    metadata = stub.GetSession(
        core_pb2.GetSessionRequest(session_id=session_id), metadata=bearer(token)
    ).metadata
    assert metadata.initiator == sub
    forged = wire.send(stub, wire.proposal(session_id, "agent://alice", "p1"), bearer(token))
    assert (forged.ok, forged.code) == (False, "UNAUTHENTICATED")


def test_jwt_and_static_identities_share_one_channel(
    stub: core_pb2_grpc.MACPRuntimeServiceStub, keys: Keys
) -> None:
    token = keys.token("agent://jwt-lead")
    session_id = wire.new_id()
    start = wire.session_start(DECISION, session_id, "agent://jwt-lead", ["agent://alice"])
    assert wire.send(stub, start, bearer(token)).ok
    assert wire.send(stub, wire.proposal(session_id, "agent://alice", "p1"), bearer("tok-alice")).ok
    commit = wire.commitment(DECISION, session_id, "agent://jwt-lead")
    outcome = wire.send(stub, commit, bearer(token))
    assert outcome.ok, outcome
    assert outcome.ack is not None
    assert outcome.ack.session_state == envelope_pb2.SESSION_STATE_RESOLVED


def test_jwt_scopes_can_forbid_starting_sessions(
    stub: core_pb2_grpc.MACPRuntimeServiceStub, keys: Keys
) -> None:
    token = keys.token("agent://jwt-nostart", scopes={"can_start_sessions": False})
    outcome = try_start(stub, token, participants=())
    assert (outcome.ok, outcome.code) == (False, "FORBIDDEN")


def test_jwt_scopes_limit_modes(stub: core_pb2_grpc.MACPRuntimeServiceStub, keys: Keys) -> None:
    token = keys.token("agent://jwt-task", alg="ES256", scopes={"allowed_modes": [TASK]})
    refused = try_start(stub, token)
    assert (refused.ok, refused.code) == (False, "FORBIDDEN")
    assert try_start(stub, token, mode=TASK).ok


def test_jwt_scopes_cap_open_sessions(stub: core_pb2_grpc.MACPRuntimeServiceStub, keys: Keys) -> None:
    token = keys.token("agent://jwt-capped", scopes={"max_open_sessions": 1})
    assert try_start(stub, token).ok
    second = try_start(stub, token)
    assert (second.ok, second.code) == (False, "RATE_LIMITED")


def test_jwt_scopes_grant_observer_and_registry_rights(
    stub: core_pb2_grpc.MACPRuntimeServiceStub, keys: Keys
) -> None:
    session_id = open_decision(stub)
    plain = keys.token("agent://jwt-plain")
    err = wire.expect_rpc_error(
        lambda: stub.GetSession(core_pb2.GetSessionRequest(session_id=session_id), metadata=bearer(plain))
    )
    assert wire.trailer(err, "macp-error-code") == "FORBIDDEN"
    observer = keys.token("agent://jwt-observer", scopes={"is_observer": True})
    seen = stub.GetSession(core_pb2.GetSessionRequest(session_id=session_id), metadata=bearer(observer))
    assert seen.metadata.session_id == session_id

    descriptor = wire.policy_descriptor("policy.e2e.jwt-admin", RULES_MAJORITY)
    request = policy_pb2.RegisterPolicyRequest(policy_descriptor=descriptor)
    err = wire.expect_rpc_error(lambda: stub.RegisterPolicy(request, metadata=bearer(plain)))
    assert wire.trailer(err, "macp-error-code") == "FORBIDDEN"
    admin = keys.token("agent://jwt-admin", alg="ES256", scopes={"can_manage_mode_registry": True})
    assert stub.RegisterPolicy(request, metadata=bearer(admin)).ok


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _refused_tokens(keys: Keys) -> dict[str, tuple[str, str]]:
    """name -> (token, a word the refusal message must contain)."""
    now = int(time.time())
    sub = "agent://jwt-refused"
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 600}
    return {
        "expired": (keys.token(sub, exp=now - 3600, iat=now - 7200), "expired"),
        "wrong-issuer": (keys.token(sub, iss="https://elsewhere.test"), "issuer"),
        "wrong-audience": (keys.token(sub, aud="another-runtime"), "audience"),
        "missing-subject": (
            jwt.encode(
                {k: v for k, v in base.items() if k != "sub"},
                keys.rsa,
                algorithm="RS256",
                headers={"kid": "rsa-1"},
            ),
            "claim",
        ),
        "hs256-not-listed": (jwt.encode(base, "s" * 32, algorithm="HS256"), "algorithm"),
        "alg-none": (_unsigned(base), "algorithm"),
        "bad-signature": (
            jwt.encode(base, keys.impostor, algorithm="RS256", headers={"kid": "rsa-1"}),
            "signature",
        ),
        "es256-signed-with-rsa-kid": (
            jwt.encode(base, keys.ec, algorithm="ES256", headers={"kid": "rsa-1"}),
            "signature",
        ),
        "garbage": ("not.a.jwt", "jwt"),
    }


REFUSED = [
    "expired",
    "wrong-issuer",
    "wrong-audience",
    "missing-subject",
    "hs256-not-listed",
    "alg-none",
    "bad-signature",
    "es256-signed-with-rsa-kid",
    "garbage",
]


@pytest.mark.parametrize("case", REFUSED)
def test_invalid_jwts_are_unauthenticated(
    stub: core_pb2_grpc.MACPRuntimeServiceStub, keys: Keys, case: str
) -> None:
    token, hint = _refused_tokens(keys)[case]
    session_id = wire.new_id()
    outcome = wire.send(stub, wire.session_start(DECISION, session_id, "", ["agent://alice"]), bearer(token))
    assert outcome.status == grpc.StatusCode.UNAUTHENTICATED, outcome
    assert outcome.code == "UNAUTHENTICATED"
    assert hint in outcome.message.lower(), outcome.message
    err = wire.expect_rpc_error(
        lambda: stub.GetSession(
            core_pb2.GetSessionRequest(session_id=session_id), metadata=bearer("tok-coord")
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


# --- other configurations ----------------------------------------------------------------------------


def _start_with(
    stub: core_pb2_grpc.MACPRuntimeServiceStub, token: str, sender: str
) -> tuple[wire.Outcome, envelope_pb2.Envelope]:
    start = wire.session_start(DECISION, wire.new_id(), sender, [])
    return wire.send(stub, start, bearer(token)), start


def test_tokens_file(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(
        json.dumps(
            {
                "tokens": [
                    {"token": "file-lead", "sender": "agent://file-lead"},
                    {
                        "token": "file-watcher",
                        "sender": "agent://file-watcher",
                        "can_start_sessions": False,
                        "is_observer": True,
                    },
                ]
            }
        )
    )
    env = {"MACP_AUTH_TOKENS_FILE": str(tokens_file)}
    with running_runtime(tmp_path / "data", env) as runtime, grpc.insecure_channel(runtime.target) as channel:
        stub = wire.stub_for(channel)
        started, start = _start_with(stub, "file-lead", "agent://file-lead")
        assert started.ok, started
        refused, _ = _start_with(stub, "file-watcher", "agent://file-watcher")
        assert (refused.ok, refused.code) == (False, "FORBIDDEN")
        read = stub.GetSession(
            core_pb2.GetSessionRequest(session_id=start.session_id), metadata=bearer("file-watcher")
        )
        assert read.metadata.initiator == "agent://file-lead"
        for token in ("tok-coord", "agent://file-lead"):
            unknown, _ = _start_with(stub, token, "")
            assert (unknown.status, unknown.code) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


def test_tokens_json_wins_over_tokens_file(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps([{"token": "from-file", "sender": "agent://file"}]))
    env = {
        "MACP_AUTH_TOKENS_FILE": str(tokens_file),
        "MACP_AUTH_TOKENS_JSON": json.dumps([{"token": "from-json", "sender": "agent://json"}]),
    }
    with running_runtime(tmp_path / "data", env) as runtime, grpc.insecure_channel(runtime.target) as channel:
        stub = wire.stub_for(channel)
        assert _start_with(stub, "from-json", "agent://json")[0].ok
        from_file, _ = _start_with(stub, "from-file", "agent://file")
        assert from_file.code == "UNAUTHENTICATED"


def test_dev_mode_needs_allow_insecure(tmp_path: Path) -> None:
    cert = wire.self_signed_certificate(tmp_path)
    result = wire.serve_and_exit(
        {
            "MACP_BIND_ADDR": f"127.0.0.1:{wire.free_port()}",
            "MACP_DATA_DIR": str(tmp_path / "data"),
            "MACP_TLS_CERT_PATH": str(cert.cert_path),
            "MACP_TLS_KEY_PATH": str(cert.key_path),
        }
    )
    assert result.returncode != 0
    assert "no authentication configured" in result.stderr
    assert "MACP_ALLOW_INSECURE" in result.stderr
    assert "listening" not in result.stdout + result.stderr


def test_dev_mode_with_allow_insecure_takes_the_bearer_as_sender(tmp_path: Path) -> None:
    with running_runtime(tmp_path / "data") as runtime, grpc.insecure_channel(runtime.target) as channel:
        stub = wire.stub_for(channel)
        outcome, start = _start_with(stub, "agent://anyone", "agent://anyone")
        assert outcome.ok, outcome
        metadata = stub.GetSession(
            core_pb2.GetSessionRequest(session_id=start.session_id), metadata=bearer("agent://anyone")
        )
        assert metadata.metadata.initiator == "agent://anyone"
        assert_unauthenticated(
            wire.expect_rpc_error(lambda: stub.ListSessions(core_pb2.ListSessionsRequest()))
        )
    assert "dev mode" in runtime.log()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MACP_AUTH_ISSUER": ISSUER}, "MACP_AUTH_JWKS"),
        ({"MACP_AUTH_ISSUER": ISSUER, "MACP_AUTH_JWKS_JSON": "{not json"}, "MACP_AUTH_JWKS_JSON"),
        ({"MACP_AUTH_TOKENS_JSON": "[]"}, "MACP_AUTH_TOKENS_JSON"),
        ({"MACP_AUTH_TOKENS_FILE": "/nonexistent/tokens.json"}, "MACP_AUTH_TOKENS_FILE"),
    ],
    ids=["issuer-without-keys", "unparsable-jwks", "empty-token-list", "missing-tokens-file"],
)
def test_broken_auth_configuration_never_falls_back_to_dev_mode(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = wire.serve_and_exit(
        {
            "MACP_BIND_ADDR": f"127.0.0.1:{wire.free_port()}",
            "MACP_DATA_DIR": str(tmp_path / "data"),
            "MACP_ALLOW_INSECURE": "1",
            **env,
        }
    )
    assert result.returncode != 0, result.stderr
    assert named in result.stderr
