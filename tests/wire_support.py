"""Wire-level helpers for the end-to-end tests that drive a real ``pymacp serve`` over gRPC.

Envelope builders, a ``Send`` wrapper that reads the answer whether it comes as an Ack or
as a gRPC status with the ``macp-error-code`` trailer, a history reader (subscribe, then
half-close so the server flushes the replay and ends the call), a self-signed certificate
for TLS tests, and a runner for ``pymacp serve`` invocations that are expected to exit.

(``tests/e2e/e2e_support.py`` holds the SDK-level helpers of the mode tests; this module is
separate so the two never shadow each other on ``sys.path``.)
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from macp.modes.decision.v1 import decision_pb2
from macp.v1 import core_pb2, core_pb2_grpc, envelope_pb2, policy_pb2

from runtime_process import RuntimeProcess, free_port

__all__ = ["free_port"]

DECISION = "macp.mode.decision.v1"
TASK = "macp.mode.task.v1"
MODE_VERSION = "1.0.0"
CONFIGURATION_VERSION = "config.default"
TTL_MS = 60_000
CALL_TIMEOUT = 10.0
# The production defaults (60 starts and 600 messages a minute per sender) would throttle a test.
NO_RATE_LIMITS = {
    "MACP_SESSION_START_LIMIT_PER_MINUTE": "1000000",
    "MACP_MESSAGE_LIMIT_PER_MINUTE": "1000000",
}
MetadataPairs: TypeAlias = tuple[tuple[str, str], ...]
Stub: TypeAlias = core_pb2_grpc.MACPRuntimeServiceStub


def new_id() -> str:
    return str(uuid.uuid4())


def bearer(token: str) -> MetadataPairs:
    return (("authorization", f"Bearer {token}"),)


def stub_for(channel: grpc.Channel) -> Stub:
    return core_pb2_grpc.MACPRuntimeServiceStub(channel)


# --- envelopes ---------------------------------------------------------------------------------------


def envelope(
    mode: str, message_type: str, session_id: str, sender: str, payload: bytes, message_id: str | None = None
) -> envelope_pb2.Envelope:
    return envelope_pb2.Envelope(
        macp_version="1.0",
        mode=mode,
        message_type=message_type,
        message_id=message_id or new_id(),
        session_id=session_id,
        sender=sender,
        timestamp_unix_ms=int(time.time() * 1000),  # the runtime measures the TTL from it
        payload=payload,
    )


def session_start(
    mode: str,
    session_id: str,
    sender: str,
    participants: Sequence[str],
    *,
    policy_version: str = "",
    configuration_version: str = CONFIGURATION_VERSION,
    ttl_ms: int = TTL_MS,
) -> envelope_pb2.Envelope:
    payload = core_pb2.SessionStartPayload(
        intent="end-to-end test",
        participants=list(participants),
        mode_version=MODE_VERSION,
        configuration_version=configuration_version,
        policy_version=policy_version,
        ttl_ms=ttl_ms,
    )
    return envelope(mode, "SessionStart", session_id, sender, payload.SerializeToString())


def proposal(session_id: str, sender: str, proposal_id: str, option: str = "ship") -> envelope_pb2.Envelope:
    payload = decision_pb2.ProposalPayload(proposal_id=proposal_id, option=option, rationale="because")
    return envelope(DECISION, "Proposal", session_id, sender, payload.SerializeToString())


def vote(session_id: str, sender: str, proposal_id: str, choice: str = "APPROVE") -> envelope_pb2.Envelope:
    payload = decision_pb2.VotePayload(proposal_id=proposal_id, vote=choice, reason="considered")
    return envelope(DECISION, "Vote", session_id, sender, payload.SerializeToString())


def commitment(
    mode: str,
    session_id: str,
    sender: str,
    *,
    action: str = "decision.selected",
    outcome_positive: bool = True,
    policy_version: str = "",
    configuration_version: str = CONFIGURATION_VERSION,
) -> envelope_pb2.Envelope:
    payload = core_pb2.CommitmentPayload(
        commitment_id=new_id(),
        action=action,
        authority_scope="e2e",
        reason="the test decided",
        mode_version=MODE_VERSION,
        policy_version=policy_version,
        configuration_version=configuration_version,
        outcome_positive=outcome_positive,
    )
    return envelope(mode, "Commitment", session_id, sender, payload.SerializeToString())


def policy_descriptor(
    policy_id: str, rules: Mapping[str, Any], *, mode: str = DECISION, schema_version: int = 3
) -> policy_pb2.PolicyDescriptor:
    return policy_pb2.PolicyDescriptor(
        policy_id=policy_id,
        mode=mode,
        description=f"end-to-end test policy {policy_id}",
        schema_version=schema_version,
        rules=json.dumps(rules),
    )


# --- calls -------------------------------------------------------------------------------------------


def trailer(error: grpc.RpcError, key: str) -> str | bytes | None:
    for name, value in error.trailing_metadata() or ():
        if name == key:
            found: str | bytes = value
            return found
    return None


def status_of(error: grpc.RpcError) -> grpc.StatusCode:
    return error.code()


@dataclass(frozen=True)
class Outcome:
    """The answer to one Send: an Ack (``status`` None) or a gRPC error (``ack`` None)."""

    ok: bool
    code: str
    message: str = ""
    status: grpc.StatusCode | None = None
    ack: envelope_pb2.Ack | None = None


def send(
    stub: Stub, env: envelope_pb2.Envelope, metadata: MetadataPairs, timeout: float = CALL_TIMEOUT
) -> Outcome:
    try:
        response = stub.Send(core_pb2.SendRequest(envelope=env), metadata=metadata, timeout=timeout)
    except grpc.RpcError as err:
        code = trailer(err, "macp-error-code")
        return Outcome(False, str(code or ""), err.details() or "", status_of(err))
    ack = response.ack
    return Outcome(ack.ok, ack.error.code, ack.error.message, None, ack)


def expect_rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """Run ``call`` (draining it when it returns a stream) and return the gRPC error it must raise."""
    try:
        result = call()
        if isinstance(result, Iterator):
            for _ in result:
                pass
    except grpc.RpcError as err:
        return err
    raise AssertionError("the call succeeded; a gRPC error was expected")


def get_session(stub: Stub, session_id: str, metadata: MetadataPairs) -> core_pb2.SessionMetadata:
    request = core_pb2.GetSessionRequest(session_id=session_id)
    return stub.GetSession(request, metadata=metadata, timeout=CALL_TIMEOUT).metadata


@dataclass
class History:
    """What a subscription replayed, and the inline errors the stream carried, if any."""

    envelopes: list[envelope_pb2.Envelope] = field(default_factory=list)
    errors: list[envelope_pb2.MACPError] = field(default_factory=list)

    @property
    def message_ids(self) -> list[str]:
        return [e.message_id for e in self.envelopes]

    def of_type(self, message_type: str) -> list[envelope_pb2.Envelope]:
        return [e for e in self.envelopes if e.message_type == message_type]


def read_history(
    stub: Stub,
    session_id: str,
    metadata: MetadataPairs,
    after_sequence: int = 0,
    timeout: float = CALL_TIMEOUT,
) -> History:
    """Subscribe from ``after_sequence`` and half-close: the server replays what is stored, then ends."""
    frame = core_pb2.StreamSessionRequest(subscribe_session_id=session_id, after_sequence=after_sequence)
    history = History()
    for response in stub.StreamSession(iter([frame]), metadata=metadata, timeout=timeout):
        if response.HasField("envelope"):
            history.envelopes.append(response.envelope)
        elif response.HasField("error"):
            history.errors.append(response.error)
    return history


# --- processes ---------------------------------------------------------------------------------------


def serve_and_exit(
    env: Mapping[str, str], *args: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``pymacp serve`` with exactly the MACP_* variables in ``env`` and wait for it to exit."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MACP_")}
    return subprocess.run(
        [sys.executable, "-m", "pymacp", "serve", *args],
        env={**clean, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path
    pem: bytes


def self_signed_certificate(directory: Path, name: str = "server") -> Certificate:
    """A self-signed P-256 certificate valid for 127.0.0.1, ::1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pymacp e2e {name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Certificate(cert_path, key_path, pem)


class TlsRuntimeProcess(RuntimeProcess):
    """A runtime serving TLS: readiness is probed over a channel that trusts ``root_pem``."""

    def __init__(
        self,
        data_dir: Path,
        root_pem: bytes,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(data_dir, env, args)
        self.root_pem = root_pem

    def ready(self) -> bool:
        credentials = grpc.ssl_channel_credentials(root_certificates=self.root_pem)
        try:
            with grpc.secure_channel(self.target, credentials) as channel:
                request = core_pb2.InitializeRequest(supported_protocol_versions=["1.0"])
                stub_for(channel).Initialize(request, timeout=0.5)
            return True
        except grpc.RpcError:
            return False
