"""The kernel against the cross-implementation parity contract (schemas/parity/contract.json)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from macp.modes.decision.v1 import decision_pb2
from macp.modes.proposal.v1 import proposal_pb2
from macp.v1 import core_pb2

import macp_fixtures as fx
from pymacp.kernel import Accepted, Envelope, ErrorCode, Identity, Kernel, Rejected, catalog
from pymacp.kernel.envelope import SUPPORTED_PROTOCOL_VERSIONS

SID = "7d1e3c5a-9b2f-4a6c-8e0d-1f2a3b4c5d6e"
T0 = 1_780_000_000_000


@pytest.fixture(scope="module")
def sections() -> dict[str, Any]:
    root = fx.require()
    data: dict[str, Any] = json.loads((root / "parity" / "contract.json").read_text())["sections"]
    return data


def test_protocol_version(sections: dict[str, Any]) -> None:
    assert (sections["protocol"]["macp_version"],) == SUPPORTED_PROTOCOL_VERSIONS


def test_modes(sections: dict[str, Any]) -> None:
    assert [s.name for s in catalog.STANDARD_SPECS] == sections["modes"]["standard"]
    assert [s.name for s in catalog.EXTENSION_SPECS] == sections["modes"]["extension"]


def test_error_codes(sections: dict[str, Any]) -> None:
    ours = {code.value for code in ErrorCode}
    assert set(sections["error_codes"]["permanent"]) <= ours
    assert not set(sections["error_codes"]["deprecated"]) & ours  # never emitted


def _start(kernel: Kernel, mode_version: str, configuration_version: str, policy_version: str) -> Accepted:
    payload = core_pb2.SessionStartPayload(
        participants=["agent://a", "agent://b"],
        mode_version=mode_version,
        configuration_version=configuration_version,
        policy_version=policy_version,
        ttl_ms=60_000,
    ).SerializeToString()
    env = Envelope("1.0", "macp.mode.decision.v1", "SessionStart", "m0", SID, "", T0, payload)
    decision = kernel.decide(None, Identity("agent://a"), env, T0)
    assert isinstance(decision, Accepted), decision
    return decision


def test_sdk_defaults_are_accepted_out_of_the_box(sections: dict[str, Any]) -> None:
    d = sections["defaults"]
    session = _start(Kernel(), d["mode_version"], d["configuration_version"], d["policy_version"]).session
    assert session.policy.policy_id == d["policy_version"]


def test_commitment_hash_spellings(sections: dict[str, Any]) -> None:
    table = sections["commitment_hash"]
    kernel = Kernel()
    session = _start(kernel, "1.0.0", "cfg-1", "").session
    proposal = Envelope(
        "1.0",
        "macp.mode.decision.v1",
        "Proposal",
        "p",
        SID,
        "",
        T0,
        decision_pb2.ProposalPayload(proposal_id="p1", option="o").SerializeToString(),
    )
    proposed = kernel.decide(session, Identity("agent://a"), proposal, T0)
    assert isinstance(proposed, Accepted)
    for spelling, expect in [(s, True) for s in table["accept"]] + [(s, False) for s in table["reject"]]:
        payload = core_pb2.CommitmentPayload(
            commitment_id="c",
            action="decision.selected",
            authority_scope="s",
            reason="r",
            mode_version="1.0.0",
            configuration_version="cfg-1",
            outcome_positive=True,
            supersedes=core_pb2.CommitmentRef(session_id="other", commitment_hash=spelling),
        ).SerializeToString()
        env = Envelope("1.0", "macp.mode.decision.v1", "Commitment", "c", SID, "", T0, payload)
        decision = kernel.decide(proposed.session, Identity("agent://a"), env, T0)
        if expect:
            assert isinstance(decision, Accepted), (spelling, decision)
        else:
            assert isinstance(decision, Rejected), spelling
            assert decision.rejection.code == ErrorCode.INVALID_ENVELOPE


def test_proposal_dispositions(sections: dict[str, Any]) -> None:
    kernel = Kernel()
    start = core_pb2.SessionStartPayload(
        participants=["agent://a", "agent://b"],
        mode_version="1.0.0",
        configuration_version="c",
        ttl_ms=60_000,
    ).SerializeToString()
    mode = "macp.mode.proposal.v1"
    d = kernel.decide(
        None, Identity("agent://a"), Envelope("1.0", mode, "SessionStart", "m0", SID, "", T0, start), T0
    )
    assert isinstance(d, Accepted)
    session = d.session
    steps = [
        ("Proposal", "m1", proposal_pb2.ProposalPayload(proposal_id="p1", title="t")),
        ("Proposal", "m2", proposal_pb2.ProposalPayload(proposal_id="p2", title="t")),
        ("Withdraw", "m3", proposal_pb2.WithdrawPayload(proposal_id="p1", reason="r")),
    ]
    for kind, mid, payload in steps:
        env = Envelope("1.0", mode, kind, mid, SID, "", T0, payload.SerializeToString())
        d = kernel.decide(session, Identity("agent://a"), env, T0)
        assert isinstance(d, Accepted), d
        session = d.session
    projection = catalog.spec_for(session.mode_descriptor).project(session.mode_state)
    dispositions = {pid: p["disposition"] for pid, p in projection["proposals"].items()}
    assert dispositions == {"p1": "Withdrawn", "p2": "Live"}
    assert set(dispositions.values()) == set(sections["proposal_disposition"]["mode_state_dispositions"])
