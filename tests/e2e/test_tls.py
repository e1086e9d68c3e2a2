"""TLS against a real ``pymacp serve``: the production shape (TLS, static tokens, no insecure flag).

The certificate is self-signed for 127.0.0.1/::1/localhost and generated per module; the
official SDK trusts it through ``root_certificates``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from macp.v1 import core_pb2, envelope_pb2
from macp_sdk.auth import AuthConfig
from macp_sdk.client import MacpClient
from macp_sdk.decision import DecisionSession
from macp_sdk.errors import MacpAckError

import wire_support as wire
from e2e_support import wait_json
from runtime_process import free_port
from wire_support import Certificate, TlsRuntimeProcess

TOKENS = [
    {"token": "tls-coord", "sender": "agent://coord"},
    {"token": "tls-alice", "sender": "agent://alice"},
]
COORD = AuthConfig.for_bearer("tls-coord", sender_hint="agent://coord", expected_sender="agent://coord")
ALICE = AuthConfig.for_bearer("tls-alice", sender_hint="agent://alice", expected_sender="agent://alice")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return wire.self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certificate: Certificate) -> Iterator[TlsRuntimeProcess]:
    env = {
        "MACP_ALLOW_INSECURE": "",
        "MACP_TLS_CERT_PATH": str(certificate.cert_path),
        "MACP_TLS_KEY_PATH": str(certificate.key_path),
        "MACP_AUTH_TOKENS_JSON": json.dumps(TOKENS),
    }
    runtime = TlsRuntimeProcess(tmp_path_factory.mktemp("tls-runtime") / "data", certificate.pem, env)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def test_the_runtime_announces_tls_and_token_auth(server: TlsRuntimeProcess) -> None:
    log = server.log()
    assert "(TLS," in log
    assert "static tokens (2 identities)" in log
    assert "dev mode" not in log


def test_sdk_completes_a_session_over_tls(server: TlsRuntimeProcess, certificate: Certificate) -> None:
    with MacpClient(
        target=server.target, root_certificates=certificate.pem, auth=COORD, default_timeout=10
    ) as client:
        assert client.secure
        assert client.initialize().selected_protocol_version == "1.0"
        session = DecisionSession(client, auth=COORD)
        assert session.start(intent="ship over TLS?", participants=["agent://alice"], ttl_ms=60_000).ok
        session.propose("p1", "ship", auth=ALICE)
        session.vote("p1", "APPROVE", auth=ALICE)
        ack = session.commit(action="decision.selected", authority_scope="tls", reason="approved")
        assert ack.session_state == envelope_pb2.SESSION_STATE_RESOLVED
        metadata = client.get_session(session.session_id).metadata
        assert (metadata.state, metadata.initiator) == (envelope_pb2.SESSION_STATE_RESOLVED, "agent://coord")


def test_the_certificate_names_localhost_too(server: TlsRuntimeProcess, certificate: Certificate) -> None:
    target = f"localhost:{server.port}"
    with MacpClient(target=target, root_certificates=certificate.pem, default_timeout=10) as client:
        assert client.initialize().runtime_info.name == "pymacp"


def test_wrong_token_over_tls_is_unauthenticated(server: TlsRuntimeProcess, certificate: Certificate) -> None:
    with MacpClient(target=server.target, root_certificates=certificate.pem, default_timeout=10) as client:
        start = wire.session_start(wire.DECISION, wire.new_id(), "", ["agent://alice"])
        with pytest.raises(MacpAckError) as refused:
            client.send(start, auth=AuthConfig.for_bearer("not-a-token"))
        assert refused.value.failure.code == "UNAUTHENTICATED"


def test_plaintext_connection_to_a_tls_port_fails(server: TlsRuntimeProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        request = core_pb2.InitializeRequest(supported_protocol_versions=["1.0"])
        err = wire.expect_rpc_error(lambda: wire.stub_for(channel).Initialize(request, timeout=3))
    assert wire.status_of(err) == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_certificate_is_refused(
    server: TlsRuntimeProcess, tmp_path: Path
) -> None:
    stranger = wire.self_signed_certificate(tmp_path, "stranger")
    credentials = grpc.ssl_channel_credentials(root_certificates=stranger.pem)
    with grpc.secure_channel(server.target, credentials) as channel:
        request = core_pb2.InitializeRequest(supported_protocol_versions=["1.0"])
        err = wire.expect_rpc_error(lambda: wire.stub_for(channel).Initialize(request, timeout=3))
    assert wire.status_of(err) == grpc.StatusCode.UNAVAILABLE


def test_without_tls_or_allow_insecure_the_runtime_refuses_to_start(tmp_path: Path) -> None:
    result = wire.serve_and_exit(
        {
            "MACP_BIND_ADDR": f"127.0.0.1:{wire.free_port()}",
            "MACP_DATA_DIR": str(tmp_path / "data"),
            "MACP_AUTH_TOKENS_JSON": json.dumps(TOKENS),
        }
    )
    assert result.returncode != 0
    assert "TLS is required" in result.stderr
    assert "MACP_TLS_CERT_PATH" in result.stderr
    assert "MACP_ALLOW_INSECURE" in result.stderr


def test_serve_console_observes_a_tls_runtime_with_static_tokens(
    tmp_path: Path, certificate: Certificate
) -> None:
    port = free_port()
    env = {
        "MACP_ALLOW_INSECURE": "",
        "MACP_TLS_CERT_PATH": str(certificate.cert_path),
        "MACP_TLS_KEY_PATH": str(certificate.key_path),
        "MACP_AUTH_TOKENS_JSON": json.dumps(TOKENS),
    }
    args = ("--console", "--console-no-auth", "--console-bind", f"127.0.0.1:{port}")
    runtime = TlsRuntimeProcess(tmp_path / "data", certificate.pem, env, args)
    runtime.start()
    try:
        console = f"http://127.0.0.1:{port}"
        # The console reaches the runtime over TLS, trusting the runtime's own certificate,
        # with its in-process observer identity (no configured token is an observer).
        assert wait_json(f"{console}/readyz", lambda doc: doc.get("ok") is True)["runtime"] == "ok"
        with MacpClient(
            target=runtime.target, root_certificates=certificate.pem, auth=COORD, default_timeout=10
        ) as client:
            s = DecisionSession(client, auth=COORD)
            assert s.start(intent="observed over TLS", participants=["agent://alice"], ttl_ms=60_000).ok
        runs = wait_json(f"{console}/runs?sessionId={s.session_id}", lambda doc: bool(doc["data"]))["data"]
        assert runs[0]["modeName"] == "macp.mode.decision.v1"
    finally:
        runtime.stop()
