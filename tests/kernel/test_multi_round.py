"""ext.multi_round.v1 rules and Contribute decoding, driven through the public kernel API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from macp.modes.multi_round.v1 import multi_round_pb2

import macp_fixtures as fx
from kernel_driver import SessionDriver, start_session
from pymacp.kernel import ErrorCode, Rejected, SessionState
from pymacp.kernel.modes.multi_round import decode_contribution

MODE = "ext.multi_round.v1"
COORD = "agent://coordinator"
ALICE = "agent://alice"
BOB = "agent://bob"
OUTSIDER = "agent://mallory"


def start(participants: list[str] | None = None) -> SessionDriver:
    """A multi-round session the coordinator starts."""
    return SessionDriver.start(MODE, COORD, [ALICE, BOB] if participants is None else participants)


def contribute(run: SessionDriver, sender: str, value: str) -> None:
    run.ok(sender, "Contribute", multi_round_pb2.ContributePayload(value=value))


# ---------------------------------------------------------------- start
def test_start_needs_a_participant() -> None:
    decision = start_session(MODE, COORD, [])
    assert isinstance(decision, Rejected)
    assert decision.rejection.code is ErrorCode.INVALID_ENVELOPE


# ---------------------------------------------------------------- rounds and convergence
def test_rounds_advance_on_new_or_changed_values_until_all_agree() -> None:
    run = start()
    assert run.state == {
        "round": 0,
        "participants": [ALICE, BOB],
        "contributions": {},
        "convergence_type": "all_equal",
        "converged": False,
    }
    contribute(run, ALICE, "a")
    contribute(run, ALICE, "a")  # unchanged: accepted, no new round
    assert run.state["round"] == 1
    contribute(run, BOB, "b")
    assert run.state["converged"] is False
    run.ok(BOB, "Contribute", b'{"value": "a"}')  # the legacy JSON form
    assert run.state == {
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
    run.ok(COORD, "Commitment", run.commitment())
    assert run.session.state is SessionState.RESOLVED
    assert run.replay() == run.session


def test_a_listed_initiator_need_not_contribute_but_must_agree_if_it_does() -> None:
    run = start([COORD, ALICE, BOB])
    contribute(run, COORD, "x")
    contribute(run, ALICE, "a")
    contribute(run, BOB, "a")
    assert run.state["converged"] is False  # the initiator's recorded value differs
    contribute(run, COORD, "a")
    assert run.state["converged"] is True


def test_a_listed_initiator_is_not_waited_for() -> None:
    run = start([COORD, ALICE])
    contribute(run, ALICE, "a")
    assert run.state["converged"] is True


def test_a_sole_participant_initiator_must_contribute() -> None:
    run = start([COORD])
    run.refused(COORD, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    contribute(run, COORD, "solo")
    assert run.state["converged"] is True
    run.ok(COORD, "Commitment", run.commitment())


# ---------------------------------------------------------------- Contribute
def test_contribute_rules() -> None:
    run = start()
    run.refused(OUTSIDER, "Contribute", multi_round_pb2.ContributePayload(value="a"), ErrorCode.FORBIDDEN)
    run.refused(COORD, "Contribute", multi_round_pb2.ContributePayload(value="a"), ErrorCode.FORBIDDEN)
    run.refused(OUTSIDER, "Contribute", b"", ErrorCode.FORBIDDEN)  # the sender is checked first
    for bad in (b"", b"\xff\x00garbage", b'{"value": 5}', b"\x10\x01"):
        run.refused(ALICE, "Contribute", bad, ErrorCode.INVALID_ENVELOPE)
    assert run.state["round"] == 0


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
    run = start()
    rejection = run.refused(COORD, "Commitment", run.commitment(), ErrorCode.INVALID_ENVELOPE)
    assert "converged" in rejection.message
    contribute(run, ALICE, "a")
    contribute(run, BOB, "a")
    run.refused(ALICE, "Commitment", run.commitment(), ErrorCode.FORBIDDEN)
    run.refused(COORD, "Commitment", run.commitment(commitment_id=""), ErrorCode.INVALID_ENVELOPE)
    run.ok(COORD, "Commitment", run.commitment())


def test_commitment_readiness_is_checked_before_its_fields() -> None:
    run = start()
    rejection = run.refused(COORD, "Commitment", run.commitment(commitment_id=""), ErrorCode.INVALID_ENVELOPE)
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
                run = start([ALICE])
                run.ok(ALICE, "Contribute", bytes.fromhex(vector[key]))
                assert run.state["contributions"] == {ALICE: vector["value"]}, (vector["name"], key)


def test_contribute_acceptance_rejects_an_empty_payload() -> None:
    assert _parity_sections()["contribute_acceptance"]["empty_payload"] == "reject"
    run = start()
    rejection = run.refused(ALICE, "Contribute", b"", ErrorCode.INVALID_ENVELOPE)
    assert "empty" in rejection.message
