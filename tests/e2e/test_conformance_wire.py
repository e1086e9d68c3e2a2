"""Every public MACP conformance transcript, run over real gRPC against one ``pymacp serve``.

This is the wire-level twin of ``tests/kernel/test_conformance.py``. One runtime (dev-mode
auth, so each call's ``authorization: Bearer <sender>`` is that sender's identity) serves
all transcripts. For each fixture the test registers its inline policy with RegisterPolicy
(policy ids are fixed strings, so each distinct policy is registered once per runtime),
opens a session with a SessionStart from the initiator, sends every message with a raw
``Send`` and compares ``ok`` / ``error.code`` of the Ack with ``expect`` /
``expected_error_code``. It then reads the final state with GetSession and subscribes from
``after_sequence=0`` to fetch the accepted history: exactly SessionStart plus the accepted
messages, in order, whose accepted Commitment (if any) is the resolution compared with
``expected_resolution``.

Mode-state projections (``expected_mode_state``) are not exposed on the wire; they are
checked by ``tests/kernel/test_conformance.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from macp.v1 import core_pb2, envelope_pb2, policy_pb2

import macp_fixtures as fx
import wire_support as wire
from runtime_process import RuntimeProcess, running_runtime
from wire_support import Stub, bearer

STATE_LABELS = {
    envelope_pb2.SESSION_STATE_OPEN: "Open",
    envelope_pb2.SESSION_STATE_RESOLVED: "Resolved",
    envelope_pb2.SESSION_STATE_SUSPENDED: "Suspended",
    envelope_pb2.SESSION_STATE_EXPIRED: "Expired",
    envelope_pb2.SESSION_STATE_CANCELLED: "Cancelled",
}
PATHS: list[Path | None] = [*fx.transcript_files()] or [None]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    with running_runtime(tmp_path_factory.mktemp("conformance") / "data", wire.NO_RATE_LIMITS) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def stub(server: RuntimeProcess) -> Iterator[Stub]:
    with grpc.insecure_channel(server.target) as channel:
        yield wire.stub_for(channel)


@pytest.fixture(scope="module")
def registered() -> dict[str, str]:
    """policy_id -> the canonical JSON of the descriptor registered under it in this runtime."""
    return {}


def register_inline_policy(
    stub: Stub, policy: dict[str, Any], initiator: str, registered: dict[str, str]
) -> None:
    canonical = json.dumps(policy, sort_keys=True)
    policy_id = policy["policy_id"]
    if policy_id in registered:
        assert registered[policy_id] == canonical, f"two fixtures define {policy_id!r} differently"
        return
    descriptor = policy_pb2.PolicyDescriptor(
        policy_id=policy_id,
        mode=policy["mode"],
        description=policy.get("description", ""),
        schema_version=policy["schema_version"],
        rules=json.dumps(policy["rules"]),
    )
    request = policy_pb2.RegisterPolicyRequest(policy_descriptor=descriptor)
    response = stub.RegisterPolicy(request, metadata=bearer(initiator), timeout=wire.CALL_TIMEOUT)
    assert (response.ok, response.error) == (True, ""), f"RegisterPolicy({policy_id}) refused"
    registered[policy_id] = canonical


def open_session(stub: Stub, fixture: dict[str, Any]) -> envelope_pb2.Envelope:
    payload = core_pb2.SessionStartPayload(
        intent="conformance over the wire",
        participants=fixture["participants"],
        mode_version=fixture["mode_version"],
        configuration_version=fixture["configuration_version"],
        policy_version=fixture.get("policy_version", ""),
        ttl_ms=fixture["ttl_ms"],
    )
    start = wire.envelope(
        fixture["mode"], "SessionStart", wire.new_id(), fixture["initiator"], payload.SerializeToString()
    )
    outcome = wire.send(stub, start, bearer(fixture["initiator"]))
    assert outcome.ok, f"SessionStart refused: {outcome.code} {outcome.message}"
    return start


def _id(path: Path | None) -> str:
    return path.stem if path is not None else "conformance-data-missing"


@pytest.mark.parametrize("path", PATHS, ids=_id)
def test_transcript_over_grpc(stub: Stub, registered: dict[str, str], path: Path | None) -> None:
    if path is None:
        pytest.skip(fx.MISSING)
    fixture = fx.load(path)
    if "policy" in fixture:
        register_inline_policy(stub, fixture["policy"], fixture["initiator"], registered)
    start = open_session(stub, fixture)
    session_id = start.session_id

    accepted = [start.message_id]
    for msg in fx.messages(fixture):
        env = wire.envelope(fixture["mode"], msg.message_type, session_id, msg.sender, msg.payload)
        outcome = wire.send(stub, env, bearer(msg.sender))
        where = f"message {msg.index} ({msg.sender} {msg.message_type})"
        if msg.expect == "accept":
            assert outcome.ok, f"{where}: expected accept, got {outcome.code}: {outcome.message}"
            assert outcome.ack is not None
            assert not outcome.ack.duplicate
            assert (outcome.ack.message_id, outcome.ack.session_id) == (env.message_id, session_id)
            accepted.append(env.message_id)
        else:
            assert not outcome.ok, f"{where}: expected reject, got accept"
            assert outcome.code, f"{where}: a rejection must carry an error code"
            if msg.expected_error_code:
                assert outcome.code == msg.expected_error_code, f"{where}: {outcome.message}"

    metadata = wire.get_session(stub, session_id, bearer(fixture["initiator"]))
    assert STATE_LABELS.get(metadata.state) == fixture["expected_final_state"]
    assert metadata.initiator == fixture["initiator"]
    assert list(metadata.participants) == fixture["participants"]

    history = wire.read_history(stub, session_id, bearer(fixture["initiator"]))
    assert history.errors == []
    assert history.message_ids == accepted, "the replay must hold exactly the accepted envelopes, in order"

    commitments = history.of_type("Commitment")
    present = fixture.get("expect_resolution_present", fixture["expected_final_state"] == "Resolved")
    assert len(commitments) == (1 if present else 0)
    if "expected_resolution" in fixture:
        resolution = core_pb2.CommitmentPayload.FromString(commitments[0].payload)
        for key, value in fixture["expected_resolution"].items():
            assert getattr(resolution, key) == value, f"resolution {key}"


def test_the_whole_corpus_ran() -> None:
    fx.require()
    assert len(fx.transcript_files()) == 33
