"""Every public MACP conformance transcript, run against the kernel directly.

Each fixture opens a session, replays its messages with the expected accept/reject and
error code for each, then checks the final state, the resolution and the mode-state
projection. The accepted history must also replay into an identical session.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from macp.v1 import core_pb2

import macp_fixtures as fx
from pymacp.kernel import (
    Accepted,
    Duplicate,
    Envelope,
    HistoryEntry,
    Identity,
    Kernel,
    PolicyDescriptor,
    Registry,
    Rejected,
    Session,
    catalog,
)
from pymacp.kernel.policy.registration import descriptor_from_json, register
from pymacp.kernel.replay import replay

T0 = 1_780_000_000_000


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def run_fixture(fixture: dict[str, Any]) -> tuple[Session, list[HistoryEntry]]:
    kernel = Kernel()
    policies: dict[str, PolicyDescriptor] = {}
    if "policy" in fixture:
        descriptor = descriptor_from_json(fixture["policy"])
        assert isinstance(descriptor, PolicyDescriptor), f"inline policy refused: {descriptor}"
        result = register(policies, descriptor, T0)
        assert isinstance(result, dict), f"inline policy refused: {result}"
        policies = result
    registry = Registry(policies=policies)
    sid = str(uuid.uuid4())
    start = core_pb2.SessionStartPayload(
        intent="conformance",
        participants=fixture["participants"],
        mode_version=fixture["mode_version"],
        configuration_version=fixture["configuration_version"],
        policy_version=fixture.get("policy_version", ""),
        ttl_ms=fixture["ttl_ms"],
    )
    env = Envelope(
        "1.0", fixture["mode"], "SessionStart", "m0", sid, fixture["initiator"], T0, start.SerializeToString()
    )
    decision = kernel.decide(None, Identity(fixture["initiator"]), env, T0, registry)
    assert isinstance(decision, Accepted), f"SessionStart refused: {decision}"
    session = decision.session
    history = list(decision.entries)

    for msg in fx.messages(fixture):
        now = T0 + msg.index
        env = Envelope(
            "1.0", fixture["mode"], msg.message_type, f"m{msg.index}", sid, msg.sender, now, msg.payload
        )
        due = kernel.advance(session, now)
        if due is not None:
            session, history = due.session, history + list(due.entries)
        decision = kernel.decide(session, Identity(msg.sender), env, now, registry)
        where = f"message {msg.index} ({msg.sender} {msg.message_type})"
        if msg.expect == "accept":
            assert isinstance(decision, Accepted), f"{where}: expected accept, got {decision}"
            session, history = decision.session, history + list(decision.entries)
        else:
            assert isinstance(decision, Rejected), f"{where}: expected reject, got {type(decision).__name__}"
            assert not isinstance(decision, Duplicate)
            if msg.expected_error_code:
                assert decision.rejection.code == msg.expected_error_code, f"{where}: {decision.rejection}"
    return session, history


@pytest.mark.parametrize("path", fx.transcript_files(), ids=_ids(fx.transcript_files()))
def test_transcript(path: Path) -> None:
    fixture = fx.load(path)
    session, history = run_fixture(fixture)

    assert session.state.label == fixture["expected_final_state"]
    present = fixture.get("expect_resolution_present", fixture["expected_final_state"] == "Resolved")
    assert (session.resolution is not None) == present
    if "expected_resolution" in fixture:
        assert session.resolution is not None
        commitment = core_pb2.CommitmentPayload.FromString(session.resolution)
        for key, value in fixture["expected_resolution"].items():
            assert getattr(commitment, key) == value, f"resolution {key}"
    if "expected_mode_state" in fixture:
        projection = catalog.spec_for(session.mode_descriptor).project(session.mode_state)
        problem = fx.subset_mismatch(fixture["expected_mode_state"], projection)
        assert problem is None, problem

    assert replay(history) == session


def test_corpus_is_complete() -> None:
    fx.require()
    assert len(fx.transcript_files()) == 33
