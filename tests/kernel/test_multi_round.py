"""ext.multi_round.v1 rules and Contribute decoding, driven through the public kernel API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.message import Message
from macp.modes.multi_round.v1 import multi_round_pb2
from macp.v1 import core_pb2

import macp_fixtures as fx
from pymacp.kernel import (
    Accepted,
    Decision,
    Envelope,
    ErrorCode,
    HistoryEntry,
    Identity,
    Kernel,
    Rejected,
    Rejection,
    Session,
    SessionState,
    catalog,
)
from pymacp.kernel.modes.multi_round import decode_contribution
from pymacp.kernel.replay import replay

MODE = "ext.multi_round.v1"
SID = "4c5d6e7f-8a9b-4c0d-9e1f-2a3b4c5d6e7f"
T0 = 1_780_000_000_000
KERNEL = Kernel()
COORD = "agent://coordinator"
ALICE = "agent://alice"
BOB = "agent://bob"
OUTSIDER = "agent://mallory"


class Run:
    """One multi-round session: send messages, keep the accepted history."""

    def __init__(self, participants: list[str] | None = None) -> None:
        self.now = T0
        start = core_pb2.SessionStartPayload(
            participants=[ALICE, BOB] if participants is None else participants,
            mode_version="1.0.0",
            configuration_version="cfg-1",
            ttl_ms=60_000,
        )
        env = Envelope("1.0", MODE, "SessionStart", "m0", SID, COORD, T0, start.SerializeToString())
        decision = KERNEL.decide(None, Identity(COORD), env, T0)
        assert isinstance(decision, Accepted), decision
        self.session: Session = decision.session
        self.history: list[HistoryEntry] = list(decision.entries)

    def send(self, sender: str, message_type: str, payload: Message | bytes) -> Decision:
        self.now += 1
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        env = Envelope("1.0", MODE, message_type, f"m{self.now - T0}", SID, sender, self.now, data)
        decision = KERNEL.decide(self.session, Identity(sender), env, self.now)
        if isinstance(decision, Accepted):
            self.session = decision.session
            self.history.extend(decision.entries)
        return decision

    def ok(self, sender: str, message_type: str, payload: Message | bytes) -> None:
        decision = self.send(sender, message_type, payload)
        assert isinstance(decision, Accepted), decision

    def refused(self, sender: str, message_type: str, payload: Message | bytes, code: ErrorCode) -> Rejection:
        before = self.session
        decision = self.send(sender, message_type, payload)
        assert isinstance(decision, Rejected), decision
        assert decision.rejection.code == code, decision.rejection
        assert self.session is before
        return decision.rejection

    def contribute(self, sender: str, value: str) -> None:
        self.ok(sender, "Contribute", multi_round_pb2.ContributePayload(value=value))

    @property
    def projection(self) -> dict[str, Any]:
        return catalog.spec_for(self.session.mode_descriptor).project(self.session.mode_state)


def commitment(**fields: Any) -> core_pb2.CommitmentPayload:
    values: dict[str, Any] = {
        "commitment_id": "c1",
        "action": "multi_round.converged",
        "authority_scope": "test",
        "reason": "done",
        "mode_version": "1.0.0",
        "configuration_version": "cfg-1",
        "outcome_positive": True,
    }
    values.update(fields)
    return core_pb2.CommitmentPayload(**values)


# ---------------------------------------------------------------- start
def test_start_needs_a_participant() -> None:
    start = core_pb2.SessionStartPayload(mode_version="1.0.0", configuration_version="cfg-1", ttl_ms=1000)
    env = Envelope("1.0", MODE, "SessionStart", "m0", SID, COORD, T0, start.SerializeToString())
    decision = KERNEL.decide(None, Identity(COORD), env, T0)
    assert isinstance(decision, Rejected)
    assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE


# ---------------------------------------------------------------- rounds and convergence
def test_rounds_advance_on_new_or_changed_values_until_all_agree() -> None:
    run = Run()
    assert run.projection == {
        "round": 0,
        "participants": [ALICE, BOB],
        "contributions": {},
        "convergence_type": "all_equal",
        "converged": False,
    }
    run.contribute(ALICE, "a")
    run.contribute(ALICE, "a")  # unchanged: accepted, no new round
    assert run.projection["round"] == 1
    run.contribute(BOB, "b")
    assert run.projection["converged"] is False
    run.ok(BOB, "Contribute", b'{"value": "a"}')  # the legacy JSON form
    assert run.projection == {
        "round": 3,
        "participants": [ALICE, BOB],
        "contributions": {ALICE: "a", BOB: "a"},
        "convergence_type": "all_equal",
        "converged": True,
    }
    rejection = run.refused(
        ALICE, "Contribute", multi_round_pb2.ContributePayload(value="c"), ErrorCode.INVALID_ENVELOPE
    )
    assert "converged" in rejection.message
    run.ok(COORD, "Commitment", commitment())
    assert run.session.state is SessionState.RESOLVED
    assert replay(run.history) == run.session


def test_a_listed_initiator_need_not_contribute_but_must_agree_if_it_does() -> None:
    run = Run([COORD, ALICE, BOB])
    run.contribute(COORD, "x")
    run.contribute(ALICE, "a")
    run.contribute(BOB, "a")
    assert run.projection["converged"] is False  # the initiator's recorded value differs
    run.contribute(COORD, "a")
    assert run.projection["converged"] is True


def test_a_listed_initiator_is_not_waited_for() -> None:
    run = Run([COORD, ALICE])
    run.contribute(ALICE, "a")
    assert run.projection["converged"] is True


def test_a_sole_participant_initiator_must_contribute() -> None:
    run = Run([COORD])
    run.refused(COORD, "Commitment", commitment(), ErrorCode.INVALID_ENVELOPE)
    run.contribute(COORD, "solo")
    assert run.projection["converged"] is True
    run.ok(COORD, "Commitment", commitment())


# ---------------------------------------------------------------- Contribute
def test_contribute_rules() -> None:
    run = Run()
    run.refused(OUTSIDER, "Contribute", multi_round_pb2.ContributePayload(value="a"), ErrorCode.FORBIDDEN)
    run.refused(COORD, "Contribute", multi_round_pb2.ContributePayload(value="a"), ErrorCode.FORBIDDEN)
    run.refused(OUTSIDER, "Contribute", b"", ErrorCode.FORBIDDEN)  # the sender is checked first
    for bad in (b"", b"\xff\x00garbage", b'{"value": 5}', b"\x10\x01"):
        run.refused(ALICE, "Contribute", bad, ErrorCode.INVALID_ENVELOPE)
    assert run.projection["round"] == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"value":"deploy"}', "deploy"),
        (b'{"value": "", "note": 1}', ""),  # legacy JSON carries the key explicitly
        (multi_round_pb2.ContributePayload(value="deploy").SerializeToString(), "deploy"),
        (b"\x0a\x01a\x10\x01", "a"),  # valid, non-canonical protobuf (an unknown field)
    ],
)
def test_decode_contribution(data: bytes, expected: str) -> None:
    assert decode_contribution(data) == expected


@pytest.mark.parametrize("data", [b"", b"\x0a\x02\xff\xfe", b"[1, 2]", b'{"other": "x"}', b"\x10\x01"])
def test_decode_contribution_refuses(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_contribution(data)


# ---------------------------------------------------------------- Commitment
def test_commitment_rules() -> None:
    run = Run()
    rejection = run.refused(COORD, "Commitment", commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "converged" in rejection.message
    run.contribute(ALICE, "a")
    run.contribute(BOB, "a")
    run.refused(ALICE, "Commitment", commitment(), ErrorCode.FORBIDDEN)
    run.refused(COORD, "Commitment", commitment(commitment_id=""), ErrorCode.INVALID_ENVELOPE)
    run.ok(COORD, "Commitment", commitment())


def test_commitment_readiness_is_checked_before_its_fields() -> None:
    run = Run()
    rejection = run.refused(COORD, "Commitment", commitment(commitment_id=""), ErrorCode.INVALID_ENVELOPE)
    assert "converged" in rejection.message


# ---------------------------------------------------------------- parity contract
def _parity_sections() -> dict[str, Any]:
    path = fx.require() / "parity" / "contract.json"
    sections: dict[str, Any] = json.loads(path.read_text())["sections"]
    return sections


def test_contribute_payload_vectors() -> None:
    section = _parity_sections()["contribute_payload"]
    assert section["decode_order"] == ["json", "protobuf"]
    checked = 0
    for vector in section["vectors"]:
        value = vector["value"]
        proto = bytes.fromhex(vector["protobuf_hex"])
        assert proto == multi_round_pb2.ContributePayload(value=value).SerializeToString(), vector["name"]
        assert decode_contribution(proto) == value, vector["name"]
        checked += 1
        if "legacy_json_hex" in vector:
            assert decode_contribution(bytes.fromhex(vector["legacy_json_hex"])) == value, vector["name"]
            checked += 1
    assert checked >= 15


def test_contribute_vectors_through_the_kernel() -> None:
    for vector in _parity_sections()["contribute_payload"]["vectors"]:
        for key in ("protobuf_hex", "legacy_json_hex"):
            if key in vector:
                run = Run([ALICE])
                run.ok(ALICE, "Contribute", bytes.fromhex(vector[key]))
                assert run.projection["contributions"] == {ALICE: vector["value"]}, (vector["name"], key)


def test_contribute_acceptance_rejects_an_empty_payload() -> None:
    assert _parity_sections()["contribute_acceptance"]["empty_payload"] == "reject"
    run = Run()
    rejection = run.refused(ALICE, "Contribute", b"", ErrorCode.INVALID_ENVELOPE)
    assert "empty" in rejection.message
